/* agent.c - the running agent: creates and starts plugin instances from
 * the config, wires sources -> local set -> stores and stores -> catalog
 * -> sinks, applies SIGHUP reloads make-before-break (a changed section's
 * new instance starts beside the running one and replaces it only once it
 * has proven itself), and shuts down in reverse order. */
#include "build_config.h"
#include "helpers.h"
#include "host.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- systemd notification (sd_notify protocol, no libsystemd) ---- */

void regent_notify(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !path[0])
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t plen = strlen(path);
	if (plen >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, plen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		regent_log(REGENT_LOG_DEBUG, NULL, "sd_notify to %s failed: %s", path, strerror(errno));
	close(fd);
}

/* ---- local set -> stores ---- */

/* Running: started, or on trial (start() returned REGENT_PENDING).  An
 * instance on trial works like a running one: a store registers, a sink
 * applies, a source reports. */
static bool running(const regent_ctx *c)
{
	return c->state == CTX_STARTED || c->state == CTX_PENDING;
}

static void for_stores(regent_agent *a, regent_inst *inst, bool up)
{
	if (up && a->drained) /* core/ctl.c: drained hosts register nothing */
		return;
	for (regent_ctx *c = a->ctxs; c; c = c->next) {
		if (c->kind != REGENT_KIND_STORE || !running(c))
			continue;
		const regent_store_ops *so = c->desc->store_ops;
		if (up)
			so->register_instance(c->self, &inst->pub);
		else
			so->deregister_instance(c->self, &inst->pub);
	}
}

static void local_on_up(void *arg, regent_inst *inst, regent_inst *old)
{
	regent_agent *a = arg;
	if (old && strcmp(old->pub.service, inst->pub.service) != 0)
		for_stores(a, old, false);
	regent_log(REGENT_LOG_INFO, NULL, "local %s %s %s:%u/%s", old ? "changed" : "up",
	           inst->pub.id, inst->pub.address, inst->pub.port, regent_proto_name(inst->pub.proto));
	for_stores(a, inst, true);
}

static void local_on_down(void *arg, regent_inst *inst)
{
	regent_agent *a = arg;
	regent_log(REGENT_LOG_INFO, NULL, "local down %s", inst->pub.id);
	for_stores(a, inst, false);
}

/* A source on trial and the one it is to replace may report the same
 * ids: counted once, so the swap takes down only what the new one lacks. */
static bool local_may_share(void *arg, const void *owner, const void *other)
{
	(void)arg;
	const regent_ctx *x = owner, *y = other;
	return x->replaces == y || y->replaces == x;
}

static const regent_localset_ops local_ops = {local_on_up, local_on_down, local_may_share};

/* ---- catalog -> sinks ---- */

/* A sink that did not ask for snapshots with unknown services
 * (host->catalog_want_unknown) gets none before its first without any:
 * then the whole snapshot, as a first apply. */
static void apply_sink(regent_agent *a, regent_ctx *c, const regent_catalog *snap,
                       const char *const *changed, size_t n)
{
	const regent_sink_ops *so = c->desc->sink_ops;
	if (!c->applied && !c->want_unknown && regent_catalog_unknown(snap, NULL)) {
		if (!c->held_first)
			regent_log(REGENT_LOG_INFO, c->who,
			           "no catalog yet: %zu service%s not read from the registry yet",
			           regent_catalog_unknown(snap, NULL),
			           regent_catalog_unknown(snap, NULL) == 1 ? " is" : "s are");
		c->held_first = true;
		return;
	}
	if (c->held_first)
		n = regent_catalog_services(snap, &changed);
	c->held_first = false;
	c->applied = true;
	so->apply(c->self, snap, changed, n);
	char *l = regent_xasprintf("plugin=\"%s\"", c->sec->name);
	regent_metric_add(regent_metrics_get(a->metrics, REGENT_METRIC_COUNTER,
	                                     "regent_sink_applies_total",
	                                     "Catalog snapshots handed to a sink.", l),
	                  1);
	free(l);
}

/* A sink whose replacement is on trial gets nothing: both would drive the
 * same thing (one haproxy).  It gets the whole snapshot again if the new
 * one fails. */
static void on_flush(void *arg, const regent_catalog *snap, const char *const *changed, size_t n)
{
	regent_agent *a = arg;
	regent_log(REGENT_LOG_DEBUG, NULL, "catalog: %zu services, %zu instances, %zu changed",
	           regent_catalog_services(snap, NULL), regent_catalog_total(snap), n);
	const char *sinks[REGENT_HISTORY_SINKS];
	size_t nsinks = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		if (c->kind == REGENT_KIND_SINK && running(c) && !c->candidate &&
		    nsinks < REGENT_HISTORY_SINKS)
			sinks[nsinks++] = c->sec->name;
	regent_history_flush(a->history, snap, changed, n, sinks, nsinks, regent_now_ms(),
	                     regent_wall_ns());
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		if (c->kind == REGENT_KIND_SINK && running(c) && !c->candidate)
			apply_sink(a, c, snap, changed, n);
	regent_notify("STATUS=%zu services, %zu instances in the catalog; %zu local",
	              regent_catalog_services(snap, NULL), regent_catalog_total(snap),
	              regent_localset_size(a->local));
	regent_agent_trim_when_quiet(a);
}

static void apply_all(regent_agent *a, regent_ctx *c)
{
	const regent_catalog *snap = regent_cat_current(a->cat);
	const char *const *names;
	size_t n = regent_catalog_services(snap, &names);
	apply_sink(a, c, snap, names, n);
}

/* ---- plugin instance lifecycle ---- */

static bool has_sinks(const regent_config *cfg)
{
	for (size_t i = 0; i < cfg->nsections; i++)
		if (cfg->sections[i]->kind == REGENT_SECTION_SINK)
			return true;
	return false;
}

static void register_one(void *arg, regent_inst *inst)
{
	regent_ctx *c = arg;
	c->desc->store_ops->register_instance(c->self, &inst->pub);
}

static uint64_t start_timeout_ms(const regent_agent *a)
{
	const regent_cfg_value *v = regent_cfg_find(a->cfg->agent, "start_timeout");
	return v && v->raw ? (uint64_t)v->i : 30000;
}

static void set_text(char **field, char *text)
{
	free(*field);
	*field = text;
}

static void ctx_stop(regent_agent *a, regent_ctx *c);
static void on_trial_timer(uv_timer_t *t);

/* A source that inherited the local instances of the instance it followed
 * (inherit()): those it has not reported again go now (it is ready, or
 * its time is up).  Those its first full listing lacked went at its
 * resync_end already. */
static void drop_inherited(regent_agent *a, regent_ctx *c, const char *when)
{
	if (c->inherit_timer)
		uv_timer_stop(c->inherit_timer);
	size_t n = regent_localset_drop_inherited(a->local, c);
	if (n)
		regent_log(REGENT_LOG_WARN, c->who,
		           "%zu local instance%s the previous instance reported and this one did not "
		           "report again %s: down",
		           n, n == 1 ? "" : "s", when);
}

static void on_inherit_timer(uv_timer_t *t)
{
	regent_ctx *c = t->data;
	char *when = regent_xasprintf("within %.1f s (twice start_timeout)",
	                              2.0 * (double)start_timeout_ms(c->agent) / 1000.0);
	drop_inherited(c->agent, c, when);
	free(when);
}

/* A reload's new instance `to` of a source inherits the local instances
 * `from` reported, so that they stay up (the stores see nothing) until it
 * has had its chance to report them: `from` is a source whose start had
 * failed, started afresh (source_heir), or the instance replaced by a
 * candidate proven at once before its first full listing (take_over: a
 * source whose start() returns 0 and lists asynchronously, as docker
 * does).  One it does not report again goes at the end of its first full
 * listing (core/localset.c), when it says it is ready (started(ctx, 0):
 * a source lists first), and at the latest twice start_timeout from now. */
static void inherit(regent_agent *a, regent_ctx *from, regent_ctx *to)
{
	size_t n = regent_localset_hand_over(a->local, from, to);
	if (n == 0)
		return;
	regent_log(REGENT_LOG_INFO, from->who,
	           "%zu local instance%s kept up for the new instance to report again", n,
	           n == 1 ? "" : "s");
	if (!to->inherit_timer) {
		to->inherit_timer = regent_xcalloc(1, sizeof(*to->inherit_timer));
		uv_timer_init(a->loop, to->inherit_timer);
		to->inherit_timer->data = to;
	}
	uv_timer_start(to->inherit_timer, on_inherit_timer, 2 * start_timeout_ms(a), 0);
}

/* The candidate c has proven itself: it takes the place of the instance
 * it replaces, which is stopped (REPLACED). */
static void take_over(regent_agent *a, regent_ctx *c)
{
	regent_ctx *old = c->replaces;
	c->replaces = NULL;
	old->candidate = NULL;
	set_text(&c->who, regent_xstrdup(old->who));
	if (c->kind == REGENT_KIND_STORE) {
		regent_cat_view_promote(c->view, old->view);
		old->view = NULL; /* the catalog frees it once the new view has read */
	}
	regent_log(REGENT_LOG_INFO, c->who, "the new configuration took over; stopping the previous "
	                                     "instance");
	old->stop_reason = REGENT_STOP_REPLACED;
	if (c->kind == REGENT_KIND_SOURCE && !c->listed && !c->started_called)
		inherit(a, old, c); /* proven at once, before its first listing */
	ctx_stop(a, old); /* a source: ids the new one reports too stay up */
}

/* The candidate c failed (its start, its started(), or its time ran out):
 * it is stopped (FAILED) and the instance it was to replace keeps running. */
static void trial_failed(regent_agent *a, regent_ctx *c, const char *reason)
{
	regent_ctx *old = c->replaces;
	c->replaces = NULL;
	old->candidate = NULL;
	regent_log(REGENT_LOG_ERROR, old->who, "new configuration refused: %s; the previous one runs",
	           reason);
	set_text(&old->note, regent_xasprintf("new configuration refused: %s; the previous one runs",
	                                      reason));
	regent_metric_add(a->m_reload_errors, 1);
	regent_metric_set(a->m_reload_ok, 0);
	c->stop_reason = REGENT_STOP_FAILED;
	ctx_stop(a, c); /* a source: only ids the old one does not report go */
	if (old->kind == REGENT_KIND_SINK && running(old) && regent_cat_flushed(a->cat))
		apply_all(a, old); /* it got nothing during the trial */
}

/* started(ctx, 0) (or start() returned 0 from a PENDING path). */
static void trial_passed(regent_agent *a, regent_ctx *c)
{
	c->state = CTX_STARTED;
	c->proven = true;
	if (c->trial_timer)
		uv_timer_stop(c->trial_timer);
	regent_log(REGENT_LOG_INFO, c->who, "ready");
	set_text(&c->start_error, NULL);
	if (c->inherit_timer)
		drop_inherited(a, c, "before it was ready");
	if (c->replaces)
		take_over(a, c);
}

/* A start without an instance to fall back on (the first start, or a
 * section a reload added) that failed: it stays, unhealthy with why. */
static void start_failed_alone(regent_ctx *c, const char *why)
{
	regent_log(REGENT_LOG_ERROR, c->who, "%s", why);
	set_text(&c->start_error, regent_xstrdup(why));
}

static void on_trial_timer(uv_timer_t *t)
{
	regent_ctx *c = t->data;
	regent_agent *a = c->agent;
	if (c->state != CTX_PENDING || a->stopping)
		return;
	if (c->started_called) {
		if (c->started_status >= 0) {
			trial_passed(a, c);
			return;
		}
		const char *r = c->started_reason ? c->started_reason : strerror(-c->started_status);
		if (c->replaces) {
			trial_failed(a, c, r);
			return;
		}
		char *why = regent_xasprintf("failed to start: %s", r);
		start_failed_alone(c, why);
		free(why);
		c->state = CTX_STARTED; /* it said it failed: no longer waiting */
		return;
	}
	char *why = regent_xasprintf("not ready within %.1f s (start_timeout)",
	                             (double)start_timeout_ms(a) / 1000.0);
	if (c->replaces)
		trial_failed(a, c, why);
	else
		start_failed_alone(c, why); /* a late started(ctx, 0) still clears it */
	free(why);
}

void regent_agent_started(regent_agent *a, regent_ctx *c, int status, const char *reason)
{
	if (a->stopping)
		return;
	if (c->started_called || (c->state != CTX_CREATED && c->state != CTX_PENDING)) {
		regent_log(c->started_called ? REGENT_LOG_WARN : REGENT_LOG_DEBUG, c->who,
		           "started(%d) ignored: %s", status,
		           c->started_called ? "plugin bug: called twice" : "not waiting for it");
		return;
	}
	c->started_called = true;
	c->started_status = status;
	set_text(&c->started_reason, reason ? regent_xstrdup(reason) : NULL);
	/* Handled from the loop, never on the plugin's stack: failing stops
	 * the plugin, which must not happen inside its own callback.  Inside
	 * start() (CREATED), ctx_start arms the timer once start() returns. */
	if (c->state == CTX_PENDING && c->trial_timer)
		uv_timer_start(c->trial_timer, on_trial_timer, 0, 0);
}

static int ctx_start(regent_agent *a, regent_ctx *c)
{
	c->generation = a->generation;
	int rc = c->desc->ops->create(c, &regent_host_table, &c->self);
	if (rc < 0) {
		regent_log(REGENT_LOG_ERROR, c->who, "cannot create: %s", strerror(-rc));
		set_text(&c->start_error, regent_xasprintf("cannot create: %s", strerror(-rc)));
		return rc;
	}
	c->state = CTX_CREATED;
	if (c->kind == REGENT_KIND_STORE)
		c->view = c->replaces ? regent_cat_view_new_candidate(a->cat, has_sinks(a->cfg))
		                      : regent_cat_view_new(a->cat, has_sinks(a->cfg));
	rc = c->desc->ops->start ? c->desc->ops->start(c->self) : 0;
	if (rc < 0) {
		regent_log(REGENT_LOG_ERROR, c->who, "cannot start: %s", strerror(-rc));
		c->failed_start = true;
		set_text(&c->start_error, regent_xasprintf("cannot start: %s", strerror(-rc)));
		return rc;
	}
	if (rc == REGENT_PENDING) {
		c->state = CTX_PENDING;
		c->trial_timer = regent_xcalloc(1, sizeof(*c->trial_timer));
		uv_timer_init(a->loop, c->trial_timer);
		c->trial_timer->data = c;
		uv_timer_start(c->trial_timer, on_trial_timer,
		               c->started_called ? 0 : start_timeout_ms(a), 0);
		regent_log(REGENT_LOG_INFO, c->who, "starting (%s %s); waiting for it to confirm%s",
		           c->desc->name, c->desc->version ? c->desc->version : "",
		           c->replaces ? " while the previous instance keeps running" : "");
	} else {
		c->state = CTX_STARTED;
		c->proven = true;
		regent_log(REGENT_LOG_INFO, c->who, "started (%s %s)", c->desc->name,
		           c->desc->version ? c->desc->version : "");
	}
	if (c->kind == REGENT_KIND_STORE && !a->drained)
		regent_localset_foreach(a->local, register_one, c);
	else if (c->kind == REGENT_KIND_SINK && regent_cat_flushed(a->cat))
		apply_all(a, c); /* a sink added by a reload, or on trial, catches up */
	if (c->state == CTX_STARTED && c->replaces)
		take_over(a, c); /* proven at once (a plugin of ABI 1.0) */
	return 0;
}

static void ctx_destroy(regent_agent *a, regent_ctx *c)
{
	(void)a;
	if (c->stop_timer) {
		uv_close((uv_handle_t *)c->stop_timer, (uv_close_cb)free);
		c->stop_timer = NULL;
	}
	if (c->trial_timer) {
		uv_close((uv_handle_t *)c->trial_timer, (uv_close_cb)free);
		c->trial_timer = NULL;
	}
	if (c->inherit_timer) {
		uv_close((uv_handle_t *)c->inherit_timer, (uv_close_cb)free);
		c->inherit_timer = NULL;
	}
	if (c->state != CTX_NEW)
		c->desc->ops->destroy(c->self);
	if (c->view)
		regent_cat_view_free(c->view);
	c->view = NULL;
	regent_ctx_free(c);
}

static void unlink_ctx(regent_ctx **list, regent_ctx *c)
{
	for (regent_ctx **pp = list; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			return;
		}
}

static void finish_shutdown(regent_agent *a);

/* A context finished stopping (or ran out of time): destroy it. */
static void ctx_stopped(regent_ctx *c)
{
	regent_agent *a = c->agent;
	if (c->stop_timer)
		uv_timer_stop(c->stop_timer);
	unlink_ctx(&a->dying, c);
	ctx_destroy(a, c);
	if (a->stopping && a->pending > 0 && --a->pending == 0)
		finish_shutdown(a);
}

static void on_stop_timeout(uv_timer_t *t)
{
	regent_ctx *c = t->data;
	regent_log(REGENT_LOG_WARN, c->who, "did not stop in time; destroying it");
	c->state = CTX_STOPPED;
	ctx_stopped(c);
}

/* Moves c to the dying list and stops it (c->stop_reason set by the
 * caller).  A trial it is part of ends without a take-over. */
static void ctx_stop(regent_agent *a, regent_ctx *c)
{
	if (c->candidate) {
		c->candidate->replaces = NULL;
		c->candidate = NULL;
	}
	if (c->replaces) {
		c->replaces->candidate = NULL;
		c->replaces = NULL;
	}
	if (c->trial_timer)
		uv_timer_stop(c->trial_timer);
	if (c->inherit_timer)
		uv_timer_stop(c->inherit_timer);
	unlink_ctx(&a->ctxs, c);
	c->next = a->dying;
	a->dying = c;
	if (c->kind == REGENT_KIND_SOURCE) {
		/* At shutdown the stores drop everything at once (lease revoke),
		 * so only a source stopped by a reload takes its instances down
		 * (those another source, its replacement, still reports stay;
		 * those handed to a new instance, inherit(), are not its own). */
		if (a->stopping)
			regent_localset_forget_owner(a->local, c);
		else
			regent_localset_drop_owner(a->local, c);
	}
	if (!running(c) || !c->desc->ops->stop) {
		c->state = CTX_STOPPED;
		ctx_stopped(c);
		return;
	}
	c->state = CTX_STOPPING;
	c->on_stopped = ctx_stopped;
	int rc = c->desc->ops->stop(c->self);
	if (rc == REGENT_PENDING && c->state == CTX_STOPPING) {
		const regent_cfg_value *v = regent_cfg_find(a->cfg->agent, "stop_timeout");
		c->stop_timer = regent_xcalloc(1, sizeof(*c->stop_timer));
		uv_timer_init(a->loop, c->stop_timer);
		c->stop_timer->data = c;
		uv_timer_start(c->stop_timer, on_stop_timeout, v ? (uint64_t)v->i : 5000, 0);
		return;
	}
	if (c->state == CTX_STOPPING) {
		c->state = CTX_STOPPED;
		ctx_stopped(c);
	}
}

/* ---- the agent ---- */

static void apply_agent_settings(regent_agent *a)
{
	const regent_cfg_value *v = regent_cfg_find(a->cfg->agent, "log_level");
	regent_log_level lvl;
	if (v && v->raw && regent_log_level_parse(v->raw, &lvl) == 0 && !getenv("REGENT_LOG_LEVEL"))
		regent_log_threshold = lvl;
	const regent_cfg_value *d = regent_cfg_find(a->cfg->agent, "debounce");
	const regent_cfg_value *m = regent_cfg_find(a->cfg->agent, "debounce_max");
	regent_cat_set_timing(a->cat, d ? (uint64_t)d->i : 50, m ? (uint64_t)m->i : 500);
}

regent_agent *regent_agent_new(uv_loop_t *loop, regent_config *cfg, const char *plugin_dir_override)
{
	regent_agent *a = regent_xcalloc(1, sizeof(*a));
	a->loop = loop;
	a->cfg = regent_config_ref(cfg);
	a->plugin_dir_override = plugin_dir_override ? regent_xstrdup(plugin_dir_override) : NULL;
	a->start_wall_ns = regent_wall_ns();
	a->metrics = regent_metrics_new();
	a->local = regent_localset_new(&local_ops, a);
	a->history = regent_history_new();
	a->cat = regent_cat_new(loop, 50, 500, on_flush, a);
	regent_agent_mem_init(a);
	apply_agent_settings(a);
	int rc = regent_http_init(&a->http, loop);
	if (rc < 0)
		regent_log(REGENT_LOG_ERROR, NULL, "HTTP client: %s", strerror(-rc));
	a->m_reloads = regent_metrics_get(a->metrics, REGENT_METRIC_COUNTER, "regent_reloads_total",
	                                  "Configuration reloads applied.", NULL);
	a->m_reload_errors = regent_metrics_get(a->metrics, REGENT_METRIC_COUNTER,
	                                        "regent_reload_errors_total",
	                                        "Configuration reloads refused.", NULL);
	/* The names Prometheus itself uses for its own configuration. */
	a->m_reload_ok = regent_metrics_get(a->metrics, REGENT_METRIC_GAUGE,
	                                    "regent_config_last_reload_successful",
	                                    "Whether the last configuration reload attempt (or the "
	                                    "start) succeeded.",
	                                    NULL);
	a->m_reload_ts = regent_metrics_get(a->metrics, REGENT_METRIC_GAUGE,
	                                    "regent_config_last_reload_success_timestamp_seconds",
	                                    "Timestamp of the last successful configuration load "
	                                    "(start or reload).",
	                                    NULL);
	regent_metric_set(a->m_reload_ok, 1);
	regent_metric_set(a->m_reload_ts, (double)a->start_wall_ns / 1e9);
	char *l = regent_xasprintf("version=\"%s\"", REGENT_VERSION);
	regent_metric_set(regent_metrics_get(a->metrics, REGENT_METRIC_GAUGE, "regent_build_info",
	                                     "regent's version.", l),
	                  1);
	free(l);
	return a;
}

/* Start order: stores, sinks, sources (so reports find their consumers);
 * stop order is the reverse. */
static int kind_rank(int kind)
{
	return kind == REGENT_KIND_STORE ? 0 : kind == REGENT_KIND_SINK ? 1 : 2;
}

static void append_ctx(regent_agent *a, regent_ctx *c)
{
	regent_ctx **pp = &a->ctxs;
	while (*pp && kind_rank((*pp)->kind) <= kind_rank(c->kind))
		pp = &(*pp)->next;
	c->next = *pp;
	*pp = c;
}

static int start_ctx(regent_agent *a, regent_ctx *c)
{
	append_ctx(a, c);
	return ctx_start(a, c);
}

static int start_section(regent_agent *a, const regent_cfg_section *s)
{
	return start_ctx(a, regent_ctx_new(a, a->cfg, s));
}

/* The instance of s that replaces the source c, whose start had failed
 * (started afresh): it inherits c's local instances. */
static regent_ctx *source_heir(regent_agent *a, regent_ctx *c, const regent_cfg_section *s)
{
	regent_ctx *h = regent_ctx_new(a, a->cfg, s);
	inherit(a, c, h);
	return h;
}

/* Starts the new instance of old's changed section beside it (listed
 * right after it); old keeps working until the new one has proven itself. */
static bool start_candidate(regent_agent *a, regent_ctx *old, const regent_cfg_section *s)
{
	regent_ctx *c = regent_ctx_new(a, a->cfg, s);
	set_text(&c->who, regent_xasprintf("%s (new)", old->who));
	c->replaces = old;
	old->candidate = c;
	set_text(&old->note, NULL);
	c->next = old->next;
	old->next = c;
	regent_log(REGENT_LOG_INFO, old->who,
	           "configuration changed: starting the new instance beside the running one");
	if (ctx_start(a, c) < 0 && c->replaces) {
		char *why = regent_xstrdup(c->start_error ? c->start_error : "cannot start");
		trial_failed(a, c, why);
		free(why);
		return false;
	}
	return true;
}

int regent_agent_start(regent_agent *a)
{
	if (!a->http)
		return -EIO;
	int rank_rc = 0;
	for (int rank = 0; rank < 3 && rank_rc == 0; rank++)
		for (size_t i = 0; i < a->cfg->nsections && rank_rc == 0; i++) {
			const regent_cfg_section *s = a->cfg->sections[i];
			if (s->lp && kind_rank((int)s->kind) == rank)
				rank_rc = start_section(a, s);
		}
	if (rank_rc < 0)
		return rank_rc;
	/* No watching store: the (empty) catalog is complete now. */
	if (regent_cat_ready(a->cat) && !regent_cat_flushed(a->cat))
		regent_cat_flush_now(a->cat);
	regent_notify("READY=1\nSTATUS=started");
	return 0;
}

static const regent_cfg_section *find_section(const regent_config *cfg, const char *header)
{
	for (size_t i = 0; i < cfg->nsections; i++)
		if (strcmp(cfg->sections[i]->header, header) == 0)
			return cfg->sections[i];
	return NULL;
}

static bool agent_identity_changed(const regent_config *o, const regent_config *n)
{
	static const char *const keys[] = {"node", "host_ip", "plugin_dir"};
	for (size_t i = 0; i < REGENT_ARRAY_LEN(keys); i++) {
		const regent_cfg_value *a = regent_cfg_find(o->agent, keys[i]);
		const regent_cfg_value *b = regent_cfg_find(n->agent, keys[i]);
		const char *x = a && a->raw ? a->raw : "", *y = b && b->raw ? b->raw : "";
		if (strcmp(x, y) != 0)
			return true;
	}
	return false;
}

static bool services_changed(const regent_config *o, const regent_config *n)
{
	if (o->nservice_names != n->nservice_names)
		return true;
	for (size_t i = 0; i < o->nservice_names; i++) {
		const regent_cfg_section *b = regent_config_service(n, o->service_names[i]);
		if (!regent_section_equal(regent_config_service(o, o->service_names[i]), b))
			return true;
	}
	return false;
}

/* Would c, created from its own config, be created the same from n's
 * section ns?  (The agent's identity and whether the host has sinks are
 * part of every instance's setup.) */
static bool same_setup(const regent_ctx *c, const regent_cfg_section *ns, const regent_config *n)
{
	return ns && ns->lp && ns->lp->desc == c->desc && regent_section_equal(c->sec, ns) &&
	       !agent_identity_changed(c->cfg, n) && has_sinks(c->cfg) == has_sinks(n);
}

/*
 * A reload, make-before-break.  For each running instance (not one on
 * trial) whose section:
 *  - is gone: stopped (REMOVED);
 *  - changed: a new instance starts beside it; it is retired (REPLACED)
 *    once the new one has proven itself (start() returned 0, or
 *    started(ctx, 0)); if the new one fails (start() < 0, started(ctx, <0),
 *    or no started() within [agent] start_timeout) the new one is stopped
 *    (FAILED), the running one stays and /healthz notes the refusal;
 *  - is unchanged: untouched (a refusal note from an earlier reload goes).
 * A reload during a trial: a trial whose section this reload leaves as it
 * is goes on; any other is abandoned (its instance stopped, FAILED) and
 * the section is handled against the running instance as above.
 */
int regent_agent_reload(regent_agent *a)
{
	if (a->stopping)
		return 0;
	/* systemd >= 253 pairs RELOADING=1 with MONOTONIC_USEC= (the reload's
	 * start on CLOCK_MONOTONIC) to tell this reload from an older one; it
	 * is required for Type=notify-reload and ignored by older systemd
	 * (Debian 12's 252 uses Type=notify + ExecReload=kill -HUP). */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	regent_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
	              (unsigned long long)now.tv_sec * 1000000ull +
	                  (unsigned long long)now.tv_nsec / 1000ull,
	              a->cfg->path);
	regent_log(REGENT_LOG_INFO, NULL, "reloading %s", a->cfg->path);
	regent_config *n = regent_config_load_for(a->cfg->path, a->plugin_dir_override,
	                                          REGENT_VALIDATE_RELOAD);
	if (n->nerrors) {
		for (size_t i = 0; i < n->nerrors; i++)
			regent_log(REGENT_LOG_ERROR, NULL, "%s", n->errors[i]);
		regent_log(REGENT_LOG_ERROR, NULL,
		           "new configuration refused (%zu error%s); the running one stays", n->nerrors,
		           n->nerrors == 1 ? "" : "s");
		/* /healthz says so until a reload is accepted: the log alone is easy to miss. */
		set_text(&a->reload_note,
		         n->nerrors == 1
		             ? regent_xasprintf("new configuration refused: %s; the previous one runs",
		                                n->errors[0])
		             : regent_xasprintf("new configuration refused: %s (and %zu more errors); "
		                                "the previous one runs",
		                                n->errors[0], n->nerrors - 1));
		regent_config_unref(n);
		regent_metric_add(a->m_reload_errors, 1);
		regent_metric_set(a->m_reload_ok, 0);
		regent_notify("READY=1\nSTATUS=reload refused; running the previous configuration");
		return -EINVAL;
	}
	set_text(&a->reload_note, NULL);
	regent_config *old_cfg = a->cfg;
	bool svc_changed = services_changed(old_cfg, n);
	a->cfg = n;
	a->generation++;
	apply_agent_settings(a);

	/* The running instances, in start order (their candidates excluded). */
	size_t nctx = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		nctx++;
	regent_ctx **run = regent_xcalloc(nctx + 1, sizeof(*run));
	regent_ctx **replace = regent_xcalloc(nctx + 1, sizeof(*replace));
	bool *catch_up = regent_xcalloc(nctx + 1, sizeof(*catch_up));
	bool *heir = regent_xcalloc(nctx + 1, sizeof(*heir));
	size_t nrun = 0, nchanged = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		if (!c->replaces)
			run[nrun++] = c;

	/* Trials this reload supersedes are abandoned first. */
	for (size_t i = nrun; i-- > 0;) {
		regent_ctx *c = run[i], *cand = c->candidate;
		if (!cand || same_setup(cand, find_section(n, c->sec->header), n))
			continue;
		regent_log(REGENT_LOG_WARN, cand->who,
		           "abandoned: a newer reload superseded its configuration");
		cand->stop_reason = REGENT_STOP_FAILED;
		ctx_stop(a, cand);
		catch_up[i] = c->kind == REGENT_KIND_SINK;
	}
	/* Removed sections stop (reverse start order); changed ones get a new
	 * instance below.  An instance whose start failed (or that does not
	 * run) is stopped and its section started afresh, as a restart of the
	 * agent would: stopped with REGENT_STOP_EXIT, so what outlives an agent
	 * (registrations, a managed haproxy) is kept for the new instance to
	 * take over.  A store that registered most of a host's instances but
	 * missed start_timeout would otherwise deregister them all at the
	 * operator's next SIGHUP, and a sink kill the haproxy that serves; a
	 * source hands its local instances to its new instance (source_heir),
	 * which is created here and started in its place below. */
	for (size_t i = nrun; i-- > 0;) {
		regent_ctx *c = run[i];
		const regent_cfg_section *ns = find_section(n, c->sec->header);
		if (c->candidate)
			continue; /* its trial goes on */
		if (same_setup(c, ns, n)) {
			set_text(&c->note, NULL);
			continue;
		}
		nchanged++;
		if (ns && running(c) && !c->start_error) {
			replace[i] = c;
			continue;
		}
		regent_log(REGENT_LOG_INFO, c->who, "stopping (%s)",
		           !ns ? "section removed"
		               : "configuration changed; its start had failed: started afresh, what "
		                 "it set up kept for the new instance as at a restart");
		c->stop_reason = ns ? REGENT_STOP_EXIT : REGENT_STOP_REMOVED;
		heir[i] = ns && ns->lp && c->kind == REGENT_KIND_SOURCE;
		regent_ctx *h = heir[i] ? source_heir(a, c, ns) : NULL;
		ctx_stop(a, c);
		run[i] = h;
	}
	/* Start what is new or changed, stores first. */
	size_t failures = 0;
	for (int rank = 0; rank < 3; rank++)
		for (size_t i = 0; i < n->nsections; i++) {
			const regent_cfg_section *s = n->sections[i];
			if (!s->lp || kind_rank((int)s->kind) != rank)
				continue;
			size_t k = 0;
			while (k < nrun && !(run[k] && strcmp(run[k]->sec->header, s->header) == 0))
				k++;
			if (k == nrun) {
				if (start_section(a, s) < 0)
					failures++;
			} else if (heir[k]) {
				if (start_ctx(a, run[k]) < 0)
					failures++;
			} else if (replace[k]) {
				regent_ctx *c = replace[k];
				/* A candidate proven at once retires (frees) c. */
				replace[k] = run[k] = NULL;
				if (!start_candidate(a, c, s))
					failures++;
			}
		}
	/* Sinks that keep running read [service X] through the host table:
	 * a change there, or a trial abandoned above, gets them a fresh apply. */
	if (regent_cat_flushed(a->cat))
		for (regent_ctx *c = a->ctxs; c; c = c->next) {
			if (c->kind != REGENT_KIND_SINK || !running(c) || c->candidate ||
			    c->generation == a->generation)
				continue;
			bool abandoned = false;
			for (size_t k = 0; k < nrun; k++)
				abandoned = abandoned || (run[k] == c && catch_up[k]);
			if (svc_changed || abandoned)
				apply_all(a, c);
		}
	size_t trials = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		trials += c->replaces != NULL;
	regent_metric_add(a->m_reloads, 1);
	/* Plugin instances on trial may still be refused (trial_failed()). */
	regent_metric_set(a->m_reload_ok, 1);
	regent_metric_set(a->m_reload_ts, (double)regent_wall_ns() / 1e9);
	regent_log(REGENT_LOG_INFO, NULL, "configuration reloaded (%zu plugin instance%s restarted%s%s)",
	           nchanged, nchanged == 1 ? "" : "s", trials ? ", some on trial" : "",
	           failures ? ", some failed to start" : "");
	regent_notify("READY=1\nSTATUS=configuration reloaded");
	regent_agent_trim_when_quiet(a);
	free(replace);
	free(catch_up);
	free(heir);
	free(run);
	regent_config_unref(old_cfg);
	return 0;
}

static void finish_shutdown(regent_agent *a)
{
	if (a->finished)
		return;
	a->finished = true;
	for (size_t i = 0; i < REGENT_ARRAY_LEN(a->sig); i++)
		if (a->sig[i].loop && !uv_is_closing((uv_handle_t *)&a->sig[i]))
			uv_close((uv_handle_t *)&a->sig[i], NULL);
	if (a->http)
		regent_http_close(a->http);
	a->http = NULL;
	regent_agent_mem_close(a);
	regent_cat_free(a->cat);
	a->cat = NULL;
	regent_history_free(a->history);
	a->history = NULL;
	regent_log(REGENT_LOG_INFO, NULL, "stopped");
	if (a->on_exit)
		a->on_exit(a);
}

void regent_agent_shutdown(regent_agent *a)
{
	if (a->stopping)
		return;
	a->stopping = true;
	regent_notify("STOPPING=1\nSTATUS=stopping");
	regent_log(REGENT_LOG_INFO, NULL, "stopping");
	/* Reverse start order: sources, sinks, then stores (deregister). */
	size_t n = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		n++;
	regent_ctx **list = regent_xcalloc(n + 1, sizeof(*list));
	n = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		list[n++] = c;
	a->pending = n + 1; /* +1 held until every stop() has been called */
	for (regent_ctx *c = a->dying; c; c = c->next)
		a->pending++;
	for (size_t i = n; i-- > 0;) {
		regent_log(REGENT_LOG_INFO, list[i]->who, "stopping");
		/* An instance on trial never took over: it touches nothing shared
		 * (it is listed after the one it would replace, so it stops first). */
		list[i]->stop_reason = list[i]->replaces ? REGENT_STOP_FAILED : REGENT_STOP_EXIT;
		ctx_stop(a, list[i]);
	}
	free(list);
	if (--a->pending == 0)
		finish_shutdown(a);
}

static void on_signal(uv_signal_t *s, int signum)
{
	regent_agent *a = s->data;
	if (signum == SIGHUP) {
		regent_agent_reload(a);
		return;
	}
	regent_log(REGENT_LOG_INFO, NULL, "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	if (a->stopping) {
		regent_log(REGENT_LOG_WARN, NULL, "second signal: exiting without waiting");
		a->exit_code = 1;
		uv_stop(a->loop);
		return;
	}
	regent_agent_shutdown(a);
}

void regent_agent_handle_signals(regent_agent *a)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	for (size_t i = 0; i < REGENT_ARRAY_LEN(sigs); i++) {
		uv_signal_init(a->loop, &a->sig[i]);
		a->sig[i].data = a;
		uv_signal_start(&a->sig[i], on_signal, sigs[i]);
	}
}

void regent_agent_free(regent_agent *a)
{
	if (!a)
		return;
	regent_localset_free(a->local);
	regent_annotations_scratch_free(a);
	regent_file_patch_forget_all(); /* the descriptors patches kept (filewrite.c) */
	if (a->counts_of)
		regent_catalog_unref(a->counts_of);
	free(a->counts_text);
	regent_metrics_free(a->metrics);
	regent_config_unref(a->cfg);
	free(a->plugin_dir_override);
	free(a->reload_note);
	free(a);
}
