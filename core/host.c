/* host.c - the host table handed to every plugin instance: what a plugin
 * may do with the core (loop, log, config, HTTP, reporting, catalog,
 * metrics), each entry checking that the caller is allowed to call it. */
#include "build_config.h"
#include "host.h"
#include "helpers.h"
#include "config.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "report.h"
#include "util.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---- identity and log ---- */

static uv_loop_t *h_loop(regent_ctx *ctx)
{
	return ctx->agent ? ctx->agent->loop : NULL;
}

static void h_vlog(regent_ctx *ctx, regent_log_level level, const char *fmt, va_list ap)
{
	if (ctx && level <= REGENT_LOG_WARN && level <= regent_log_threshold) {
		/* Kept so that set_health() does not warn a second time about
		 * the cause the plugin has just logged. */
		va_list copy;
		va_copy(copy, ap);
		char *msg;
		if (vasprintf(&msg, fmt, copy) < 0)
			msg = NULL;
		va_end(copy);
		free(ctx->last_warning);
		ctx->last_warning = msg;
	}
	regent_vlogf(level, ctx ? ctx->who : "plugin", fmt, ap);
}

static void h_log(regent_ctx *ctx, regent_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	h_vlog(ctx, level, fmt, ap);
	va_end(ap);
}

static bool h_log_enabled(regent_ctx *ctx, regent_log_level level)
{
	(void)ctx;
	return level <= regent_log_threshold;
}

static const char *h_instance_name(regent_ctx *ctx)
{
	return ctx->sec->name;
}

static const char *agent_value(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = regent_cfg_find(ctx->cfg->agent, key);
	return v && v->raw ? v->raw : NULL;
}

static const char *h_node(regent_ctx *ctx)
{
	return agent_value(ctx, "node");
}

static const char *h_host_ip(regent_ctx *ctx)
{
	return agent_value(ctx, "host_ip");
}

/* ---- config ---- */

static const regent_cfg_value *lookup(regent_ctx *ctx, const regent_cfg_section *s,
                                      const char *key, regent_cfg_type type)
{
	const regent_cfg_value *v = regent_cfg_find(s, key);
	if (!v) {
		regent_log(REGENT_LOG_ERROR, ctx->who, "plugin bug: key \"%s\" is not declared", key);
		return NULL;
	}
	if (v->key->type != type) {
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "plugin bug: key \"%s\" read with the wrong type", key);
		return NULL;
	}
	return v;
}

static const char *h_cfg_string(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = regent_cfg_find(ctx->sec, key);
	if (!v) {
		regent_log(REGENT_LOG_ERROR, ctx->who, "plugin bug: key \"%s\" is not declared", key);
		return NULL;
	}
	return v->raw; /* any type reads as its text */
}

static int64_t h_cfg_int(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = lookup(ctx, ctx->sec, key, REGENT_CFG_INT);
	return v ? v->i : 0;
}

static bool h_cfg_bool(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = lookup(ctx, ctx->sec, key, REGENT_CFG_BOOL);
	return v ? v->i != 0 : false;
}

static uint64_t h_cfg_duration_ms(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = lookup(ctx, ctx->sec, key, REGENT_CFG_DURATION);
	return v ? (uint64_t)v->i : 0;
}

static size_t h_cfg_list(regent_ctx *ctx, const char *key, const char *const **items)
{
	const regent_cfg_value *v = lookup(ctx, ctx->sec, key, REGENT_CFG_LIST);
	*items = v ? (const char *const *)v->list : NULL;
	return v ? v->nlist : 0;
}

static bool h_cfg_is_set(regent_ctx *ctx, const char *key)
{
	const regent_cfg_value *v = regent_cfg_find(ctx->sec, key);
	return v && v->set;
}

static void h_cfg_error(regent_ctx *ctx, const char *key, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const regent_cfg_value *v = key ? regent_cfg_find(ctx->sec, key) : NULL;
	int line = v && v->set ? v->line : ctx->sec->line;
	if (key)
		regent_config_add_error(ctx->cfg, line, "%s.%s: %s", ctx->sec->header, key, msg);
	else
		regent_config_add_error(ctx->cfg, line, "[%s]: %s", ctx->sec->header, msg);
}

static void h_cfg_service_error(regent_ctx *ctx, const char *service, const char *key,
                                const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* validate() runs on the config being checked (ctx->cfg). */
	const regent_cfg_section *s = service ? regent_config_service(ctx->cfg, service) : NULL;
	const regent_cfg_value *v = s && key ? regent_cfg_find(s, key) : NULL;
	int line = v && v->set ? v->line : s ? s->line : ctx->sec->line;
	const char *name = service ? service : "?";
	if (key)
		regent_config_add_error(ctx->cfg, line, "service %s.%s: %s", name, key, msg);
	else
		regent_config_add_error(ctx->cfg, line, "[service %s]: %s", name, msg);
}

/* Service sections come from the running config (so a reload that only
 * changes [service X] reaches the sinks without restarting them). */
static const regent_config *svc_config(regent_ctx *ctx)
{
	return ctx->agent ? ctx->agent->cfg : ctx->cfg;
}

static size_t h_services(regent_ctx *ctx, const char *const **names)
{
	const regent_config *c = svc_config(ctx);
	*names = c->service_names;
	return c->nservice_names;
}

static const regent_cfg_value *svc_value(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_section *s = regent_config_service(svc_config(ctx), service);
	const regent_cfg_value *v = s ? regent_cfg_find(s, key) : NULL;
	/* A value that failed its type check (already reported) reads as
	 * unset: a plugin's checks never see it. */
	return v && v->bad ? NULL : v;
}

static const char *h_service_string(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_value *v = svc_value(ctx, service, key);
	if (v)
		return v->raw;
	/* No section: the declared default, if any. */
	const regent_config *c = svc_config(ctx);
	for (size_t i = 0; i < c->nservice_keys; i++)
		if (strcmp(c->service_keys[i].name, key) == 0)
			return c->service_keys[i].default_value;
	return NULL;
}

static int64_t h_service_int(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_value *v = svc_value(ctx, service, key);
	if (v)
		return v->raw ? v->i : 0;
	const char *d = h_service_string(ctx, service, key);
	return d ? strtoll(d, NULL, 10) : 0;
}

static bool h_service_bool(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_value *v = svc_value(ctx, service, key);
	if (v)
		return v->raw && v->i;
	/* No section: the declared default, read as the parser reads values. */
	const char *d = h_service_string(ctx, service, key);
	int64_t b = 0;
	return d && regent_config_parse_bool(d, &b) == 0 && b;
}

static uint64_t h_service_duration_ms(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_value *v = svc_value(ctx, service, key);
	if (v)
		return v->raw ? (uint64_t)v->i : 0;
	/* No section: the declared default, as service_int and service_bool. */
	const char *d = h_service_string(ctx, service, key);
	int64_t ms = 0;
	return d && regent_parse_duration(d, &ms, NULL) == 0 ? (uint64_t)ms : 0;
}

static bool h_service_is_set(regent_ctx *ctx, const char *service, const char *key)
{
	const regent_cfg_value *v = svc_value(ctx, service, key);
	return v && v->set;
}

/* ---- HTTP ---- */

static regent_http_req *h_http_request(regent_ctx *ctx, const regent_http_opts *opts, int *err)
{
	if (!ctx->agent) {
		if (err)
			*err = -EPERM;
		return NULL;
	}
	return regent_http_request(ctx->agent->http, opts, err);
}

/* ---- sources ---- */

static bool is_kind(regent_ctx *ctx, regent_kind kind, const char *what)
{
	if (ctx->kind == kind && ctx->agent)
		return true;
	regent_log(REGENT_LOG_ERROR, ctx->who, "plugin bug: %s called by a %s plugin", what,
	           regent_kind_name(ctx->kind));
	return false;
}

/* A source may report from inside its start() (state CREATED) and until
 * it is told to stop. */
static bool reporting(const regent_ctx *ctx)
{
	return !ctx->agent->stopping && (ctx->state == CTX_CREATED || ctx->state == CTX_PENDING ||
	                                 ctx->state == CTX_STARTED);
}

static int h_local_up(regent_ctx *ctx, const regent_instance *inst)
{
	if (!is_kind(ctx, REGENT_KIND_SOURCE, "local_up"))
		return -EPERM;
	if (!reporting(ctx))
		return 0;
	char why[256];
	regent_inst *in = regent_inst_copy(inst, h_node(ctx), why, sizeof(why));
	if (!in) {
		regent_log(REGENT_LOG_WARN, ctx->who, "skipped: %s", why);
		return -EINVAL;
	}
	int rc = regent_localset_up(ctx->agent->local, ctx, in);
	if (rc == -EEXIST)
		regent_log(REGENT_LOG_WARN, ctx->who,
		           "instance id %s is already reported by another source; skipped", inst->id);
	return rc;
}

static int h_local_down(regent_ctx *ctx, const char *id)
{
	if (!is_kind(ctx, REGENT_KIND_SOURCE, "local_down"))
		return -EPERM;
	if (!reporting(ctx))
		return 0;
	return regent_localset_down(ctx->agent->local, ctx, id);
}

static void h_local_resync_begin(regent_ctx *ctx)
{
	if (is_kind(ctx, REGENT_KIND_SOURCE, "local_resync_begin") && reporting(ctx))
		regent_localset_resync_begin(ctx->agent->local, ctx);
}

static void h_local_resync_end(regent_ctx *ctx)
{
	if (is_kind(ctx, REGENT_KIND_SOURCE, "local_resync_end") && reporting(ctx)) {
		regent_localset_resync_end(ctx->agent->local, ctx);
		ctx->listed = true;
	}
}

/* ---- stores ---- */

/* A service name from the registry, checked once for both report paths. */
static bool store_service_ok(regent_ctx *ctx, const char *service)
{
	if (service && regent_valid_service(service))
		return true;
	regent_log(REGENT_LOG_WARN, ctx->who, "skipped service \"%.80s\" from the registry: invalid name",
	           service ? service : "");
	return false;
}

/* The core's copy of a reported instance of service, or NULL (logged). */
static regent_inst *store_copy(regent_ctx *ctx, const regent_instance *inst, const char *service)
{
	char why[256];
	regent_instance tmp = *inst;
	tmp.service = service;
	regent_inst *in = regent_inst_copy(&tmp, "", why, sizeof(why));
	if (!in)
		regent_log(REGENT_LOG_WARN, ctx->who, "skipped an instance from the registry: %s", why);
	return in;
}

/* The catalog's reference to a block instance_decode gave (ABI 1.6), or,
 * for what is not such a block (a plugin bug, logged) or names another
 * service, a copy as catalog_set makes. */
static regent_inst *store_share(regent_ctx *ctx, const regent_instance *inst, const char *service)
{
	regent_inst *in = regent_inst_of_decoded(inst);
	if (in && strcmp(in->pub.service, service) == 0)
		return in;
	if (!in)
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "plugin bug: an instance of service %s handed as decoded was not given by "
		           "instance_decode (or was freed); copied instead",
		           service);
	regent_inst_unref(in);
	return store_copy(ctx, inst, service);
}

/* catalog_set and catalog_set_decoded: the service's instances, copied or
 * (decoded blocks) shared. */
static int view_set(regent_ctx *ctx, const char *what, const char *service,
                    const regent_instance *const *insts, size_t n, bool shared)
{
	if (!is_kind(ctx, REGENT_KIND_STORE, what) || !ctx->view)
		return -EPERM;
	if (!store_service_ok(ctx, service))
		return -EINVAL;
	regent_inst **ins = regent_xcalloc(n + 1, sizeof(*ins));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		regent_inst *in = !insts[i] ? NULL
		                  : shared  ? store_share(ctx, insts[i], service)
		                            : store_copy(ctx, insts[i], service);
		if (in)
			ins[k++] = in;
	}
	regent_cat_view_set(ctx->view, service, ins, k);
	free(ins);
	return 0;
}

/* catalog_instance_set and catalog_instance_set_decoded. */
static int view_put(regent_ctx *ctx, const char *what, const regent_instance *inst, bool shared)
{
	if (!is_kind(ctx, REGENT_KIND_STORE, what) || !ctx->view)
		return -EPERM;
	if (!store_service_ok(ctx, inst ? inst->service : NULL))
		return -EINVAL;
	regent_inst *in = shared ? store_share(ctx, inst, inst->service)
	                         : store_copy(ctx, inst, inst->service);
	if (!in)
		return -EINVAL;
	regent_cat_view_put(ctx->view, in);
	return 0;
}

static int h_catalog_set(regent_ctx *ctx, const char *service, const regent_instance *const *insts,
                         size_t n)
{
	return view_set(ctx, "catalog_set", service, insts, n, false);
}

static int h_catalog_instance_set(regent_ctx *ctx, const regent_instance *inst)
{
	return view_put(ctx, "catalog_instance_set", inst, false);
}

static int h_catalog_set_decoded(regent_ctx *ctx, const char *service,
                                 const regent_instance *const *insts, size_t n)
{
	return view_set(ctx, "catalog_set_decoded", service, insts, n, true);
}

static int h_catalog_instance_set_decoded(regent_ctx *ctx, const regent_instance *inst)
{
	return view_put(ctx, "catalog_instance_set_decoded", inst, true);
}

static int h_catalog_instance_remove(regent_ctx *ctx, const char *service, const char *id)
{
	if (!is_kind(ctx, REGENT_KIND_STORE, "catalog_instance_remove") || !ctx->view)
		return -EPERM;
	if (!regent_valid_service(service) || !id || !id[0])
		return -EINVAL; /* never reported, so nothing to remove */
	regent_cat_view_del(ctx->view, service, id);
	return 0;
}

static void h_catalog_remove(regent_ctx *ctx, const char *service)
{
	if (is_kind(ctx, REGENT_KIND_STORE, "catalog_remove") && ctx->view)
		regent_cat_view_remove(ctx->view, service);
}

static void h_catalog_set_unknown(regent_ctx *ctx, const char *service)
{
	if (is_kind(ctx, REGENT_KIND_STORE, "catalog_set_unknown") && ctx->view &&
	    store_service_ok(ctx, service))
		regent_cat_view_set_unknown(ctx->view, service);
}

static void h_catalog_want_unknown(regent_ctx *ctx)
{
	if (is_kind(ctx, REGENT_KIND_SINK, "catalog_want_unknown"))
		ctx->want_unknown = true;
}

static void h_catalog_sync_begin(regent_ctx *ctx)
{
	if (is_kind(ctx, REGENT_KIND_STORE, "catalog_sync_begin") && ctx->view)
		regent_cat_view_sync_begin(ctx->view);
}

static void h_catalog_sync_end(regent_ctx *ctx)
{
	if (is_kind(ctx, REGENT_KIND_STORE, "catalog_sync_end") && ctx->view)
		regent_cat_view_sync_end(ctx->view);
}

static bool h_want_catalog(regent_ctx *ctx)
{
	const regent_config *c = ctx->agent ? ctx->agent->cfg : ctx->cfg;
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->kind == REGENT_SECTION_SINK)
			return true;
	return false;
}

typedef struct foreach_arg {
	void (*fn)(void *arg, const regent_instance *inst);
	void *arg;
} foreach_arg;

static void foreach_tramp(void *arg, regent_inst *inst)
{
	foreach_arg *fa = arg;
	fa->fn(fa->arg, &inst->pub);
}

static void h_local_foreach(regent_ctx *ctx, void (*fn)(void *arg, const regent_instance *inst),
                            void *arg)
{
	if (!ctx->agent)
		return;
	foreach_arg fa = {fn, arg};
	regent_localset_foreach(ctx->agent->local, foreach_tramp, &fa);
}

/* ---- sinks ---- */

static const regent_catalog *h_catalog_current(regent_ctx *ctx)
{
	if (!ctx->agent)
		return NULL;
	return regent_catalog_ref(regent_cat_current(ctx->agent->cat));
}

static void h_stopped(regent_ctx *ctx)
{
	if (ctx->state != CTX_STOPPING)
		return;
	ctx->state = CTX_STOPPED;
	if (ctx->on_stopped)
		ctx->on_stopped(ctx);
}

int regent_state_dir_prepare(const char *dir, const char *who)
{
	if (dir[0] != '/') {
		regent_log(REGENT_LOG_ERROR, who, "state_dir %s: not an absolute path", dir);
		return -EINVAL;
	}
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		int e = errno;
		regent_log(REGENT_LOG_ERROR, who, "state_dir %s: cannot create it: %s", dir, strerror(e));
		return -e;
	}
	struct stat st;
	if (lstat(dir, &st) < 0) {
		int e = errno;
		regent_log(REGENT_LOG_ERROR, who, "state_dir %s: %s", dir, strerror(e));
		return -e;
	}
	const char *why = NULL;
	if (!S_ISDIR(st.st_mode))
		why = "not a directory (a symbolic link is refused too)";
	else if (st.st_uid != geteuid())
		why = "not owned by the user regent runs as";
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		why = "writable by group or others (chmod 0750 it)";
	if (why) {
		regent_log(REGENT_LOG_ERROR, who, "state_dir %s: %s", dir, why);
		return -EPERM;
	}
	return 0;
}

static void h_started(regent_ctx *ctx, int status, const char *reason)
{
	if (ctx->agent)
		regent_agent_started(ctx->agent, ctx, status, reason);
}

static regent_stop_reason h_stop_reason(regent_ctx *ctx)
{
	return ctx->stop_reason;
}

static const char *h_state_dir(regent_ctx *ctx)
{
	if (ctx->state_dir)
		return ctx->state_dir;
	const char *dir = agent_value(ctx, "state_dir");
	if (!dir || !dir[0])
		dir = REGENT_STATE_DIR_DEFAULT;
	if (regent_state_dir_prepare(dir, ctx->who) < 0)
		return NULL;
	ctx->state_dir = regent_xstrdup(dir);
	return ctx->state_dir;
}

static void h_set_health(regent_ctx *ctx, bool healthy, const char *reason)
{
	/* One warning per cause: when the plugin has just logged this very
	 * reason as a warning or error, the transition is logged at info
	 * without repeating it. */
	bool said = !healthy && reason && ctx->last_warning &&
	            strcmp(ctx->last_warning, reason) == 0;
	if (ctx->healthy != healthy && said)
		regent_log(REGENT_LOG_INFO, ctx->who, "unhealthy (the warning above)");
	else if (ctx->healthy != healthy)
		regent_log(healthy ? REGENT_LOG_INFO : REGENT_LOG_WARN, ctx->who, "%s%s%s",
		           healthy ? "healthy" : "unhealthy", reason ? ": " : "", reason ? reason : "");
	ctx->healthy = healthy;
	free(ctx->health_reason);
	ctx->health_reason = reason && !healthy ? regent_xstrdup(reason) : NULL;
	/* Healthy with a reason: a note worth showing (/healthz "note"). */
	free(ctx->health_note);
	ctx->health_note = reason && healthy ? regent_xstrdup(reason) : NULL;
}

/* ---- metrics ---- */

static char *plugin_labels(regent_ctx *ctx, const char *labels)
{
	return regent_xasprintf("plugin=\"%s\"%s%s", ctx->sec->name, labels && labels[0] ? "," : "",
	                        labels ? labels : "");
}

static regent_metric *h_metric(regent_ctx *ctx, regent_metric_type type, const char *name,
                               const char *help, const char *labels)
{
	if (!ctx->agent)
		return NULL;
	char *l = plugin_labels(ctx, labels);
	regent_metric *m = regent_metrics_get(ctx->agent->metrics, type, name, help, l);
	free(l);
	return m;
}

static void h_metrics_write(regent_ctx *ctx, regent_write_cb out, void *arg)
{
	if (!ctx->agent)
		return;
	regent_buf b = {0};
	regent_report_metrics(ctx->agent, &b);
	out(arg, b.data ? b.data : "", b.len);
	regent_buf_free(&b);
}

static char *h_health_json(regent_ctx *ctx)
{
	return regent_report_health(ctx->agent);
}

/* ---- latency ---- */

static uint64_t h_now_ms(void)
{
	return regent_now_ms();
}

static uint64_t h_wall_ns(void)
{
	return regent_wall_ns();
}

static void h_mark_change(regent_ctx *ctx, uint64_t origin_wall_ns)
{
	if (ctx->agent)
		regent_cat_mark(ctx->agent->cat, origin_wall_ns);
}

static void h_applied(regent_ctx *ctx, const regent_catalog *cat)
{
	if (!ctx->agent || !cat)
		return;
	uint64_t origin = regent_catalog_origin_ns(cat), now = regent_wall_ns();
	regent_metric *m = h_metric(ctx, REGENT_METRIC_HISTOGRAM, "regent_propagation_seconds",
	                            "Time from a change entering the agent to a sink applying it.",
	                            NULL);
	regent_metric_observe(m, now > origin ? (double)(now - origin) / 1e9 : 0);
	if (ctx->agent->history)
		regent_history_applied(ctx->agent->history, ctx->sec->name, cat, regent_now_ms(), now);
	regent_agent_applied(ctx->agent, origin, now);
}

/* ---- ABI 1.2: annotations and the recent past ---- */

static int h_annotations_set(regent_ctx *ctx, const regent_annotation *const *items, size_t n)
{
	if (!ctx->agent)
		return -EPERM;
	return regent_annotations_set(ctx, items, n);
}

static int h_validate_purpose(regent_ctx *ctx)
{
	return ctx->validate_purpose;
}

static int h_annotations_update(regent_ctx *ctx, const regent_annotation *const *put,
                                size_t nput, const regent_annotation *const *del, size_t ndel)
{
	if (!ctx->agent)
		return -EPERM;
	return regent_annotations_update(ctx, put, nput, del, ndel);
}

static int h_annotations_source(regent_ctx *ctx,
                                void (*source)(void *self,
                                               void (*emit)(void *emit_arg,
                                                            const regent_annotation *a),
                                               void *emit_arg),
                                void *self)
{
	if (!ctx->agent)
		return -EPERM;
	return regent_annotations_source(ctx, source, self);
}

static void h_annotations_foreach(regent_ctx *ctx,
                                  void (*fn)(void *arg, const char *publisher,
                                             const regent_annotation *a),
                                  void *arg)
{
	regent_annotations_foreach(ctx->agent, fn, arg);
}

static void h_changes_foreach(regent_ctx *ctx, void (*fn)(void *arg, const regent_change *c),
                              void *arg)
{
	if (ctx->agent && ctx->agent->history)
		regent_history_changes(ctx->agent->history, fn, arg);
}

static void h_history_foreach(regent_ctx *ctx,
                              void (*fn)(void *arg, const regent_history_point *p), void *arg)
{
	if (ctx->agent && ctx->agent->history)
		regent_history_points(ctx->agent->history, regent_now_ms(), regent_wall_ns(), fn, arg);
}

/* ---- ABI 1.4 helpers that need the instance's loop ---- */

static uv_timer_t *h_timer_new(regent_ctx *ctx, void *data)
{
	return regent_timer_new(h_loop(ctx), data);
}

static regent_file_write *h_file_write(regent_ctx *ctx, const regent_file_write_opts *opts, int *err)
{
	return regent_file_write_start(h_loop(ctx), opts, err);
}

static regent_file_write *h_file_write_take(regent_ctx *ctx, const regent_file_write_opts *opts,
                                            void (*release)(void *arg), void *release_arg,
                                            int *err)
{
	return regent_file_write_take_start(h_loop(ctx), opts, release, release_arg, err);
}

static regent_file_write *h_file_patch(regent_ctx *ctx, const regent_file_patch_opts *opts, int *err)
{
	return regent_file_patch_start(h_loop(ctx), opts, err);
}

static regent_spawn *h_spawn(regent_ctx *ctx, const regent_spawn_opts *opts, int *err)
{
	return regent_spawn_start(h_loop(ctx), opts, err);
}

const regent_host regent_host_table = {
	.abi_major = REGENT_ABI_MAJOR,
	.abi_minor = REGENT_ABI_MINOR,
	.size = sizeof(regent_host),
	.loop = h_loop,
	.log = h_log,
	.vlog = h_vlog,
	.log_enabled = h_log_enabled,
	.instance_name = h_instance_name,
	.node = h_node,
	.host_ip = h_host_ip,
	.cfg_string = h_cfg_string,
	.cfg_int = h_cfg_int,
	.cfg_bool = h_cfg_bool,
	.cfg_duration_ms = h_cfg_duration_ms,
	.cfg_list = h_cfg_list,
	.cfg_is_set = h_cfg_is_set,
	.cfg_error = h_cfg_error,
	.services = h_services,
	.service_string = h_service_string,
	.service_int = h_service_int,
	.service_bool = h_service_bool,
	.service_duration_ms = h_service_duration_ms,
	.service_is_set = h_service_is_set,
	.valid_service = regent_valid_service,
	.valid_address = regent_valid_address,
	.http_request = h_http_request,
	.http_cancel = regent_http_cancel,
	.http_header = regent_http_header,
	.local_up = h_local_up,
	.local_down = h_local_down,
	.local_resync_begin = h_local_resync_begin,
	.local_resync_end = h_local_resync_end,
	.catalog_set = h_catalog_set,
	.catalog_remove = h_catalog_remove,
	.catalog_sync_begin = h_catalog_sync_begin,
	.catalog_sync_end = h_catalog_sync_end,
	.want_catalog = h_want_catalog,
	.local_foreach = h_local_foreach,
	.catalog_services = regent_catalog_services,
	.catalog_instances = regent_catalog_instances,
	.catalog_ref = regent_catalog_ref,
	.catalog_unref = regent_catalog_unref,
	.catalog_current = h_catalog_current,
	.stopped = h_stopped,
	.set_health = h_set_health,
	.metric = h_metric,
	.metric_add = regent_metric_add,
	.metric_set = regent_metric_set,
	.metric_observe = regent_metric_observe,
	.metrics_write = h_metrics_write,
	.health_json = h_health_json,
	.instance_encode = regent_instance_encode,
	.instance_decode = regent_instance_decode,
	.instance_free = regent_instance_free,
	.backoff_next = regent_backoff_next,
	.backoff_reset = regent_backoff_reset,
	.now_ms = h_now_ms,
	.wall_ns = h_wall_ns,
	.mark_change = h_mark_change,
	.applied = h_applied,
	.base64_encode = regent_base64_encode,
	.base64_decode = regent_base64_decode,
	.started = h_started,
	.stop_reason = h_stop_reason,
	.state_dir = h_state_dir,
	.annotations_set = h_annotations_set,
	.annotations_foreach = h_annotations_foreach,
	.changes_foreach = h_changes_foreach,
	.history_foreach = h_history_foreach,
	.cfg_service_error = h_cfg_service_error,
	.catalog_instance_set = h_catalog_instance_set,
	.catalog_instance_remove = h_catalog_instance_remove,
	/* ABI 1.4: helpers.c, filewrite.c, spawn.c, util.c */
	.xmalloc = regent_xmalloc,
	.xcalloc = regent_xcalloc,
	.xrealloc = regent_xrealloc,
	.xstrdup = regent_h_strdup,
	.xstrndup = regent_h_strndup,
	.xasprintf = regent_xasprintf,
	.xvasprintf = regent_xvasprintf,
	.buf_add = regent_buf_add,
	.buf_puts = regent_h_buf_puts,
	.buf_printf = regent_buf_printf,
	.buf_vprintf = regent_buf_vprintf,
	.buf_json = regent_buf_json,
	.buf_free = regent_buf_free,
	.map_new = regent_map_new,
	.map_free = regent_map_free,
	.map_get = regent_map_get,
	.map_put = regent_map_put,
	.map_del = regent_map_del,
	.map_size = regent_map_size,
	.map_next = regent_map_next,
	.map_sorted_keys = regent_map_sorted_keys,
	.url_escape = regent_url_escape,
	.http_describe = regent_http_describe,
	.timer_new = h_timer_new,
	.timer_close = regent_timer_close,
	.file_write = h_file_write,
	.file_write_cancel = regent_file_write_cancel,
	.spawn = h_spawn,
	.spawn_cancel = regent_spawn_cancel,
	.health_part = regent_health_part,
	.cfg_address = regent_cfg_address,
	/* ABI 1.5 */
	.annotations_update = h_annotations_update,
	/* ABI 1.6 */
	.catalog_set_decoded = h_catalog_set_decoded,
	.catalog_instance_set_decoded = h_catalog_instance_set_decoded,
	.file_patch = h_file_patch,
	.validate_purpose = h_validate_purpose,
	/* ABI 1.7 */
	.process_start = regent_process_start,
	.process_reap = regent_process_reap,
	/* ABI 1.8 */
	.file_write_take = h_file_write_take,
	.annotations_source = h_annotations_source,
	/* ABI 1.9 */
	.catalog_set_unknown = h_catalog_set_unknown,
	.catalog_unknown = regent_catalog_unknown,
	.catalog_want_unknown = h_catalog_want_unknown,
	/* ABI 1.10 */
	.failure_note = regent_failure_note,
	/* ABI 1.11 */
	.failure_text = regent_failure_text,
};

/* ---- contexts ---- */

regent_ctx *regent_ctx_new(regent_agent *a, regent_config *cfg, const regent_cfg_section *sec)
{
	regent_ctx *ctx = regent_xcalloc(1, sizeof(*ctx));
	ctx->agent = a;
	ctx->cfg = regent_config_ref(cfg);
	ctx->sec = sec;
	ctx->desc = sec->lp->desc;
	ctx->kind = ctx->desc->kind;
	ctx->who = regent_xasprintf("%s %s", regent_kind_name(ctx->kind), sec->name);
	ctx->healthy = true;
	return ctx;
}

void regent_ctx_free(regent_ctx *ctx)
{
	if (!ctx)
		return;
	free(ctx->who);
	free(ctx->health_reason);
	free(ctx->state_dir);
	free(ctx->started_reason);
	free(ctx->start_error);
	free(ctx->note);
	free(ctx->health_note);
	regent_health_parts_free(ctx);
	regent_annotations_clear(ctx);
	free(ctx->last_warning);
	regent_config_unref(ctx->cfg);
	free(ctx);
}
