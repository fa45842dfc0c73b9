/* haproxy.c - the haproxy sink: keeps a local haproxy routing every
 * catalog service to its instances.  It owns one generated file
 * (config_file) and the server-state file beside it.  Each service is a
 * `listen` block with a fixed number of server slots (s1..sN); an instance
 * keeps its slot for as long as it lives.
 *
 *  - fast path: an instance joining, leaving (drain, then maint) or moving
 *    within an existing service is applied over the admin socket with
 *    `set server` (no reload), then mirrored into the file;
 *  - slow path: anything else (a service appears or goes, settings change,
 *    slots run out) renders the file, checks it with `haproxy -c` (async),
 *    dumps the server state, renames the file into place and reloads
 *    through the master CLI (or a configured command), rate-limited;
 *  - manage = true: starts haproxy in master-worker mode and restarts it
 *    with backoff when it dies.
 *
 * Everything is asynchronous on the core's loop: sockets through
 * uv_pipe_t (cli.c), children through uv_spawn and file writes through the
 * threadpool (proc.c).  Pure rendering and parsing live in render.c.
 *
 * This file owns the plugin entry and lifecycle (create, start, stop,
 * destroy, apply), health, the start on trial, the managed master's events,
 * the scheduler (hx_kick) and the removal of temporary files dead runs
 * left; settings.c, runtime.c, pipeline.c and reload.c hold the rest (see
 * sink.h). */
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Health and logging                                                 */
/* ------------------------------------------------------------------ */

void hx_set_reason(hx *s, char **slotp, const char *reason)
{
	free(*slotp);
	*slotp = s->h->xstrdup(reason);
}

/* One part per cause (host->health_part): /healthz names every failing
 * one, "<part>: <reason>".  Services left out make the plugin unhealthy
 * too (the others keep being routed). */
void hx_update_health(hx *s)
{
	const struct {
		const char *part, *reason;
	} parts[] = {
		{"haproxy", s->master_err},     {"file", s->write_err},
		{"admin socket", s->admin_err}, {"reload", s->reload_err},
		{"check", s->reject_err},       {"services", s->excl_note},
	};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		s->h->health_part(s->ctx, parts[i].part, parts[i].reason == NULL, parts[i].reason);
	/* a note, not a failure: haproxy runs, with its own command line */
	const char *stale = s->sup ? hx_sup_stale(s->sup) : NULL;
	char note[700];
	if (stale)
		snprintf(note, sizeof note, "started with another command line (%.500s): replaced at "
		         "the next reload (make before break), else applies when haproxy starts anew",
		         stale);
	s->h->health_part(s->ctx, "command line", true, stale ? note : NULL);
}

/* Services left out of the configuration: the metric, and a /healthz note
 * naming each with its cause (the others keep being routed). */
void hx_report_exclusions(hx *s)
{
	if (s->excl_gen == s->m.excl_gen)
		return;
	s->excl_gen = s->m.excl_gen;
	s->h->metric_set(s->m_excluded, (double)(s->m.nexcluded + s->m.ncapped));
	free(s->excl_note);
	s->excl_note = hx_model_excluded_note(&s->m);
	hx_update_health(s);
}

/* ------------------------------------------------------------------ */
/* The managed master (master.c) and the start on trial               */
/* ------------------------------------------------------------------ */

/* This instance failed its trial: say so once and touch nothing more (the
 * haproxy that runs keeps its configuration). */
static void cancel_all(hx *s);

void hx_trial_fail(hx *s, int err, const char *why)
{
	if (s->proven || s->failed)
		return;
	s->failed = true;
	cancel_all(s);
	hx_drop_pending(s);
	if (s->sup)
		hx_sup_stop(s->sup, false);
	s->h->started(s->ctx, err, why);
}

/* Proven: a configuration passed haproxy -c (with this binary and these
 * includes) and runs (the worker answers, the runtime state is set). */
static void maybe_proven(hx *s)
{
	if (s->proven || s->failed || !s->checked_once || !s->installed_once || s->ps != P_IDLE ||
	    s->force_reload || (s->manage && !s->master_ready))
		return;
	s->proven = true;
	s->h->started(s->ctx, 0, NULL);
}

static void on_sup(void *arg, hx_sup_event ev, int err, const char *why)
{
	hx *s = arg;
	switch (ev) {
	case HX_SUP_READY:
		s->master_ready = true;
		hx_set_reason(s, &s->master_err, NULL);
		hx_update_health(s); /* and the command line's note, gone after a start */
		/* Its first start took this instance's complete file, with no
		 * state file and nothing written into it since: it runs what the
		 * file says (no need to read 16,000 server states back at 10,000
		 * instances).  Otherwise learnt, and only the differences set. */
		bool as_file = s->cold_direct && s->m.gen == s->spawn_mgen && !s->mirror &&
		               !s->mirror_force && s->spawn_gen == s->file_gen;
		if (s->cold_direct) { /* its first start took the unchecked file */
			s->cold_direct = false;
			hx_ok_shapes_learn_run(s);
		}
		if (as_file)
			hx_ap_from_file(s);
		else
			hx_ap_unknown(s);
		hx_drops_reread(s); /* it read the installed file */
		if (s->spawn_gen != s->file_gen) {
			s->force_reload = true; /* it may have read an older file */
			s->stale_run = true;
		}
		if (hx_sup_stale(s->sup))
			s->force_reload = true; /* a replacement: reload.c */
		hx_kick(s);
		return;
	case HX_SUP_DOWN:
	case HX_SUP_FAILED:
		s->master_ready = false;
		hx_conn_reset(s->rt, 0); /* the next worker is a new one, not a surprise */
		s->stale_run = false;
		s->spawn_gen = s->file_gen; /* the restart reads the installed file */
		if (ev == HX_SUP_DOWN && why) /* (none: replaced while this one yields) */
			s->h->metric_add(s->m_restarts, 1);
		hx_set_reason(s, &s->master_err, why);
		hx_update_health(s);
		/* A reload in progress has nobody to talk to any more. */
		if (s->ps == P_RELOAD || s->ps == P_CONFIRM) {
			hx_cli_cancel(s->master_req);
			s->master_req = NULL;
			hx_poll_cancel(s->confirm);
			s->confirm = NULL;
			hx_pipeline_done(s);
		}
		if (ev == HX_SUP_FAILED && !s->proven)
			hx_trial_fail(s, err, why);
		if (ev == HX_SUP_DOWN && s->cold_direct) {
			hx_cold_direct_refused(s); /* no restart with that file */
			hx_kick(s);                /* the checked candidate */
		}
		return;
	case HX_SUP_STOPPED:
		s->h->stopped(s->ctx);
		return;
	case HX_SUP_EXE_REPLACED:
		/* A package upgrade: a reload re-executes the master's argv[0],
		 * the new file (its workers follow, seamlessly). */
		s->h->log(s->ctx, REGENT_LOG_INFO, "haproxy (master pid %ld) runs a binary since "
		          "replaced (%s): reloading, so that it runs the new one",
		          hx_sup_pid(s->sup), why);
		if (!s->yielding) {
			s->force_reload = true;
			hx_kick(s);
		}
		return;
	case HX_SUP_REPLACED:
	case HX_SUP_REPLACE_FAILED:
		hx_update_health(s); /* the command line's note, gone once replaced */
		hx_reload_replaced(s, ev == HX_SUP_REPLACED ? hx_sup_worker(s->sup) : 0, why);
		return;
	}
}

static void on_adopted(void *arg, int result, const char *why)
{
	hx *s = arg;
	s->adopting = false;
	s->spawned_once = result > 0;
	if (result < 0) {
		hx_set_reason(s, &s->master_err, why);
		hx_update_health(s);
		hx_trial_fail(s, result, why);
		return;
	}
	/* Adopted: it runs the file on disk as it was (spawn_gen stays 0
	 * unless install_unchanged() found ours the same): a file installed
	 * since makes its READY force one reload.  None: started once the
	 * file is in. */
	hx_kick(s);
}

/* ------------------------------------------------------------------ */
/* The scheduler                                                      */
/* ------------------------------------------------------------------ */

static void maybe_applied(hx *s)
{
	if (!s->pending || s->ps != P_IDLE || s->admin_req || (s->manage && !s->master_ready) ||
	    hx_slow_needed(s) || !hx_runtime_settled(s))
		return;
	s->h->applied(s->ctx, s->pending);
	hx_drop_pending(s);
}

void hx_kick(hx *s)
{
	if (s->stopping || !s->started || s->failed)
		return;
	if (s->ho_waiting)
		return; /* the file and haproxy are still the previous instance's */
	if (s->yielding) {
		hx_ho_kick(s); /* a new instance takes over: nothing new starts */
		return;
	}
	if (hx_ho_held(s))
		return; /* a write of an instance that stopped still lands (handover.c) */
	if (s->manage && s->installed_once && !s->adopting && !hx_sup_busy(s->sup) &&
	    s->ps == P_IDLE && !s->mirror && !hx_first_start_waits(s)) {
		s->spawn_gen = s->file_gen;
		s->spawn_mgen = s->m.gen;
		s->spawned_once = true;
		hx_sup_spawn(s->sup);
	}
	/* Listeners of dropped sections close first, before the state dump of
	 * a reload that may be waiting for the admin socket too: else the
	 * reload comes first, and the old worker's socket lives on in the
	 * copies fdkeep.c holds (accepting into a backlog nobody serves) until
	 * they are fetched again from the new worker. */
	hx_send_drops(s);
	if ((s->ps == P_DUMP || s->ps == P_FINAL) && s->dump_pending && !s->admin_req)
		hx_start_dump(s);
	if (s->learn_pending && hx_admin_usable(s))
		hx_learn(s);
	if (hx_admin_usable(s) && !hx_send_cmds(s) && !s->admin_req && hx_any_draining(s) &&
	    !uv_is_active((uv_handle_t *)s->t_poll))
		uv_timer_start(s->t_poll, hx_on_drain_poll, 100, 0);
	if (hx_slow_needed(s))
		hx_schedule_slow(s);
	else if (s->reject_err && s->ps == P_IDLE) {
		/* What is wanted runs (the rejected change was undone). */
		hx_set_reason(s, &s->reject_err, NULL);
		hx_update_health(s);
	}
	hx_maybe_mirror(s);
	maybe_applied(s);
	maybe_proven(s);
}

/* ------------------------------------------------------------------ */
/* Plugin interface                                                   */
/* ------------------------------------------------------------------ */

/* Whether two snapshots have the same unknown services (sorted lists). */
static bool same_unknown(const regent_host *h, const regent_catalog *a, const regent_catalog *b)
{
	const char *const *na, *const *nb;
	size_t ka = h->catalog_unknown(a, &na), kb = h->catalog_unknown(b, &nb);
	if (ka != kb)
		return false;
	for (size_t i = 0; i < ka; i++)
		if (strcmp(na[i], nb[i]) != 0)
			return false;
	return true;
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t n)
{
	hx *s = self;
	(void)changed;
	(void)n;
	if (s->stopping || s->failed)
		return;
	if (s->ho_waiting) { /* applied once the file and haproxy are this instance's */
		if (s->ho_cat)
			s->h->catalog_unref(s->ho_cat);
		s->ho_cat = s->h->catalog_ref(cat);
		return;
	}
	hx_drop_pending(s);
	s->pending = s->h->catalog_ref(cat);
	s->rejected_wait = false; /* a change: a rejected configuration may be tried again */
	/* Only the services that changed are computed again; the first
	 * snapshot computes every one (and those of an earlier run's file). */
	bool all = s->cat == NULL;
	/* A service unknown before (never read) is computed from scratch
	 * once known: its slots are an earlier run's, not prev's.  Once per
	 * change of the unknown services, not per snapshot while they last. */
	if (s->cat && !same_unknown(s->h, s->cat, cat))
		all = true;
	const regent_catalog *prev = s->cat; /* read by the update: unref'd after it */
	s->cat = s->h->catalog_ref(cat);
	hx_model_update(&s->m, prev, cat, changed, n, all);
	if (prev)
		s->h->catalog_unref(prev);
	hx_report_exclusions(s);
	hx_arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	hx_kick(s);
}

static void on_model_timer(uv_timer_t *t)
{
	hx *s = t->data;
	if (s->stopping)
		return;
	hx_arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	hx_report_exclusions(s);
	hx_kick(s);
}

/* The next empty grace end or exclusion retry (0: none). */
void hx_arm_model_timer(hx *s, uint64_t at)
{
	if (!s->t_model)
		return;
	if (!at) {
		uv_timer_stop(s->t_model);
		return;
	}
	uint64_t now = s->h->now_ms();
	uv_timer_start(s->t_model, on_model_timer, at > now ? at - now : 0, 0);
}

static void on_file_recovered(void *arg, const char *proxy, size_t slotno, const char *addr,
                              unsigned port, const char *id)
{
	hx *s = arg;
	if (!s->h->valid_service(proxy) || slotno >= HX_MAX_SLOTS)
		return;
	svc *v = hx_svc_get(&s->m, proxy);
	hx_svc_grow(&s->m, v, slotno + 1);
	s->m.gen++;
	slot *sl = &v->slots[slotno];
	char canon[HX_ADDR_MAX];
	bool v6;
	if (addr && id && port && hx_valid_ip(addr, canon, &v6) && !sl->id) {
		hx_slot_take(&s->m, v, slotno, id);
		hx_ip_parse(canon, &sl->addr);
		sl->port = (uint16_t)port;
		hx_slot_set_st(&s->m, v, slotno, ST_READY);
	}
	if (!v->want.listen && v->want.nslots < slotno + 1)
		v->want.nslots = slotno + 1; /* the slot count it had */
}

static void on_id_recovered(void *arg, const char *proxy, unsigned id)
{
	hx *s = arg;
	if (!s->h->valid_service(proxy) || id < HX_FIRST_ID)
		return;
	/* taken (a hand-edited file): keep the allocated one */
	hx_svc_set_id(&s->m, hx_svc_get(&s->m, proxy), id);
}

/* Reads the file an earlier run wrote, so that instances keep their slots
 * (server names) and an unchanged file needs no reload.  A small local
 * file, read once at start. */
static void recover(hx *s)
{
	FILE *f = fopen(s->config_file, "r");
	if (!f)
		return;
	hx_buf b = {.h = s->h};
	char tmp[8192];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0 && b.len < (64u << 20))
		hx_buf_add(&b, tmp, n);
	fclose(f);
	if (b.len && memchr(b.data, '\0', b.len)) {
		/* Blocks of zeros: the rename reached the disk before the data
		 * (a power loss after a write without fsync, see hx_write_file).
		 * Nothing of it is kept, and it is never taken for a render (a
		 * render that is the text before the zeros would compare equal):
		 * written again before haproxy starts. */
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "%s has NUL bytes (cut short by a power loss?): its slots are not kept, "
		          "and it is written again",
		          s->config_file);
		hx_buf_free(&b);
		return;
	}
	s->recovered_text = hx_buf_take(&b);
	hx_parse_file(s->recovered_text, on_file_recovered, on_id_recovered, s);
	hx_model_sort(&s->m);
	size_t nsvc = hx_model_recovered(&s->m);
	s->recovered = nsvc;
	if (nsvc)
		s->h->log(s->ctx, REGENT_LOG_INFO, "%s: kept the server slots of %zu services",
		          s->config_file, nsvc);
}

/* The model's settings, read once (create). */
static void model_setup(hx *s)
{
	hx_model *m = &s->m;
	hx_model_init(m, s->ctx, s->h);
	snprintf(m->bind_addr, sizeof(m->bind_addr), "%s", s->bind_addr);
	m->stats_on = s->stats_on;
	m->stats_port = s->stats_port;
	m->maxconn = s->maxconn;
	m->fd_loose = !s->strict_limits;
	m->slots_default = s->slots_default;
	m->retries_default = s->retries_default;
	m->t_connect = s->t_connect;
	m->t_client = s->t_client;
	m->t_server = s->t_server;
	m->t_check = s->t_check;
	m->inter = s->inter;
	m->empty_grace = s->h->cfg_duration_ms(s->ctx, "empty_grace");
	/* Managed: the state file is declared once in regent's global (haproxy
	 * parses it once, not once per proxy).  Driving the user's haproxy,
	 * whose global is theirs: each listen names the file. */
	m->state_global = s->manage;
	m->state_file = s->state_file;
	s->m_excluded = s->h->metric(s->ctx, REGENT_METRIC_GAUGE, "regent_haproxy_services_excluded",
	                             "Services left out of haproxy's configuration (port cannot be "
	                             "bound, or haproxy refused their section) or capped by "
	                             "haproxy's open-file limit; retried.",
	                             NULL);
}

static void model_teardown(hx *s)
{
	s->h->timer_close(&s->t_model);
	if (s->cat)
		s->h->catalog_unref(s->cat);
	s->cat = NULL;
	hx_model_free(&s->m);
	free(s->excl_note);
	s->excl_note = NULL;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	hx *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = h;
	/* Snapshots with unknown services (never read: ABI 1.9) come at once;
	 * an earlier run's file that routes one is kept as it is until it is
	 * read (pipeline.c, startup_hold). */
	h->catalog_want_unknown(ctx);
	hx_sink_configure(s);
	s->admin_backoff = (regent_backoff){.initial_ms = 200, .max_ms = 10000};
	s->reload_backoff = (regent_backoff){.initial_ms = 1000, .max_ms = 30000};
	model_setup(s);
	s->keep_running = h->cfg_bool(ctx, "keep_running");
	hx_global_opts go = {
		.admin_socket = s->manage ? s->admin_socket : NULL,
		.state_file = s->manage ? s->state_file : NULL,
		.stats_bind = s->stats_on ? s->stats_bind : NULL,
		.strict_limits = s->strict_limits,
		.maxconn = s->maxconn,
		.spread_ms = s->spread_ms,
		.threads = s->threads,
		.no_hc_ca = s->manage && s->ninclude == 0,
	};
	s->g_want = hx_render_global(s->h, &go);
	s->m_runtime = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_haproxy_runtime_updates_total",
	                         "Server changes applied over haproxy's runtime API (no reload).",
	                         NULL);
	s->m_reloads = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_haproxy_reloads_total",
	                         "haproxy reloads with a new configuration.", NULL);
	s->m_rejected = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_haproxy_config_rejected_total",
	                          "Generated configurations haproxy -c refused (not installed).", NULL);
	s->m_reload_fail = h->metric(ctx, REGENT_METRIC_COUNTER,
	                             "regent_haproxy_reload_failures_total",
	                             "Reloads that did not bring up a new worker.", NULL);
	s->m_restarts = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_haproxy_restarts_total",
	                          "Restarts of the managed haproxy after it died.", NULL);
	s->m_runtime_err = h->metric(ctx, REGENT_METRIC_COUNTER,
	                             "regent_haproxy_runtime_errors_total",
	                             "Runtime API batches haproxy refused.", NULL);
	s->m_admin_conns = h->metric(ctx, REGENT_METRIC_COUNTER,
	                             "regent_haproxy_admin_connections_total",
	                             "Persistent admin-socket connections opened (fast path).", NULL);
	hx_update_health(s);
	*self = s;
	return 0;
}

static int start(void *self)
{
	hx *s = self;
	s->loop = s->h->loop(s->ctx);
	s->t_poll = s->h->timer_new(s->ctx, s);
	s->t_retry = s->h->timer_new(s->ctx, s);
	s->t_slow = s->h->timer_new(s->ctx, s);
	s->t_model = s->h->timer_new(s->ctx, s);
	s->t_wretry = s->h->timer_new(s->ctx, s);
	s->t_start = s->h->timer_new(s->ctx, s);
	hx_clean_temps(s);
	s->rt = hx_conn_new(s->h, s->ctx, s->loop, s->admin_socket, s->m_admin_conns, hx_on_worker, s);
	s->annot = hx_annot_new(s->ctx, s->h, s->loop, &s->m, s->admin_socket,
	                        s->h->cfg_duration_ms(s->ctx, "server_state_interval"),
	                        s->cmd_timeout);
	hx_annot_set_conn(s->annot, s->rt);
	s->started_ms = s->h->now_ms();
	s->started = true;
	s->h->log(s->ctx, REGENT_LOG_INFO, "%s haproxy; file %s, admin socket %s, %s %s",
	          s->manage ? "managing" : "driving an existing", s->config_file, s->admin_socket,
	          s->master_socket ? "reloads through the master CLI" : "reloads with the command",
	          s->master_socket ? s->master_socket : s->reload_command);
	if (s->manage) {
		/* The pid file and haproxy's output in the state directory: not
		 * in the config directory, which may fill up or turn read-only. */
		const char *sd = s->h->state_dir(s->ctx);
		const char *base = strrchr(s->config_file, '/') + 1;
		s->pid_file = sd ? s->h->xasprintf("%s/%s.pid", sd, base)
		                 : s->h->xasprintf("%s.pid", s->config_file);
		s->log_file = sd ? s->h->xasprintf("%s/%s.log", sd, base)
		                 : s->h->xasprintf("%s.log", s->config_file);
		s->fd_socket = sd ? s->h->xasprintf("%s/%s.fds.sock", sd, base)
		                  : s->h->xasprintf("%s.fds.sock", s->config_file);
		hx_sup_cfg c = {
			.ctx = s->ctx,
			.h = s->h,
			.loop = s->loop,
			.bin = s->haproxy_bin,
			.config_file = s->config_file,
			.master_socket = s->master_socket,
			.pid_file = s->pid_file,
			.log_file = s->log_file,
			.state_file = s->state_file,
			.state_tmp = s->state_tmp,
			.admin_socket = s->admin_socket,
			.fd_socket = s->fd_socket,
			.include = s->include,
			.ninclude = s->ninclude,
			.cmd_timeout = s->cmd_timeout,
			.crash_window = 10000,
		};
		s->sup = hx_sup_new(&c, on_sup, s);
		s->out = hx_output_new(s->ctx, s->h, s->loop, s->log_file,
		                       (uint64_t)s->h->cfg_int(s->ctx, "output_max_size"));
	}
	/* The instance this one replaces (a reload) yields the file and
	 * haproxy to it, once what it has in flight ended (handover.c). */
	if (!hx_ho_start(s))
		hx_own_begin(s);
	/* Proven once the first configuration passed haproxy -c and runs:
	 * until then the instance it replaces keeps working. */
	return REGENT_PENDING;
}

void hx_own_begin(hx *s)
{
	s->ho_waiting = false;
	s->ho_began = true;
	recover(s);
	hx_ho_carry(s); /* the empty graces of the instance it takes over from */
	if (s->manage) {
		/* An haproxy an earlier run left (or the instance this one
		 * replaces runs) is adopted, never stopped and restarted. */
		s->adopting = true;
		hx_sup_adopt(s->sup, on_adopted, s);
	}
	const regent_catalog *cat = s->ho_cat; /* what came while waiting */
	s->ho_cat = NULL;
	if (cat) {
		apply(s, cat, NULL, 0); /* the first snapshot: every service */
		s->h->catalog_unref(cat);
	}
}

static void cancel_all(hx *s)
{
	hx_cli_cancel(s->admin_req);
	s->admin_req = NULL;
	for (size_t i = 0; i < s->ndrop_sent; i++) /* a disable batch's names */
		free(s->drop_sent[i]);
	free(s->drop_sent);
	s->drop_sent = NULL;
	s->ndrop_sent = 0;
	hx_cli_cancel(s->master_req);
	s->master_req = NULL;
	s->h->spawn_cancel(s->run);
	s->run = NULL;
	/* The writes go on without s (not cancelled: they would land unseen),
	 * and the other instance waits for them (handover.c). */
	hx_jobs_orphan(s);
	s->write = NULL;
	s->state_write = NULL;
	s->swap = NULL;
	s->mirror = NULL;
	hx_poll_cancel(s->confirm);
	s->confirm = NULL;
	uv_timer_t *ts[] = {s->t_poll, s->t_retry, s->t_slow, s->t_wretry, s->t_start};
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
		if (ts[i])
			uv_timer_stop(ts[i]);
}

/* EXIT (regent stops), REPLACED (the new instance adopted it) and FAILED
 * (a trial instance touches nothing) leave haproxy serving the last good
 * configuration; REMOVED, or EXIT with keep_running = false, stops it. */
static int stop(void *self)
{
	hx *s = self;
	regent_stop_reason why = s->h->stop_reason(s->ctx);
	s->stopping = true;
	cancel_all(s);
	hx_drop_pending(s);
	hx_annot_free(s->annot);
	s->annot = NULL;
	hx_conn_free(s->rt); /* after the requests on it were cancelled */
	s->rt = NULL;
	hx_ho_leave(s); /* nothing of this instance runs now */
	hx_output_free(s->out); /* the instance that replaces this one keeps it */
	s->out = NULL;
	bool kill = why == REGENT_STOP_REMOVED || (why == REGENT_STOP_EXIT && !s->keep_running);
	if (s->sup && hx_sup_stop(s->sup, kill))
		return REGENT_PENDING;
	return 0;
}

static void destroy(void *self)
{
	hx *s = self;
	s->stopping = true;
	cancel_all(s);
	hx_ho_forget(s);
	hx_drop_pending(s);
	hx_sup_free(s->sup); /* never kills: stop() decided */
	s->sup = NULL;
	hx_output_free(s->out);
	s->out = NULL;
	s->h->timer_close(&s->t_poll);
	s->h->timer_close(&s->t_retry);
	s->h->timer_close(&s->t_slow);
	s->h->timer_close(&s->t_start);
	hx_annot_free(s->annot); /* before the model it reads */
	s->annot = NULL;
	hx_conn_free(s->rt);
	s->rt = NULL;
	model_teardown(s);
	s->h->timer_close(&s->t_wretry);
	hx_ok_shapes_clear(s);
	free(s->g_want);
	free(s->g_cand);
	free(s->g_run);
	free(s->recovered_text);
	hx_text_put(s->last_rejected);
	hx_text_put(s->cand_text);
	free(s->admin_err);
	free(s->reload_err);
	free(s->reject_err);
	free(s->master_err);
	free(s->write_err);
	free(s->pid_file);
	free(s->log_file);
	free(s->fd_socket);
	free(s->config_file);
	free(s->cand_path);
	free(s->tmp_path);
	free(s->state_file);
	free(s->state_tmp);
	free(s->st_cursor);
	hx_buf_free(&s->st_text);
	free(s->admin_socket);
	free(s->master_socket);
	free(s->reload_command);
	free(s->haproxy_bin);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), hx_validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("haproxy"),
	.kind = REGENT_KIND_SINK,
	.version = REGENT_PLUGIN_VERSION, /* regent's own (CMakeLists.txt) */
	.description = "routes every catalog service through a local haproxy (runtime API + reload)",
	.config_keys = hx_keys,
	.service_keys = hx_service_keys,
	.ops = &ops,
	.sink_ops = &sink_ops,
};

/* ------------------------------------------------------------------ */
/* Temporary files a dead run left                                    */
/* ------------------------------------------------------------------ */

/* "BASE.PID-N.new" / "BASE.PID-N.tmp" (or the older "BASE.new" /
 * "BASE.tmp") of a process that is gone: returns true for those. */
static bool stale_temp(const char *name, const char *base)
{
	size_t bl = strlen(base);
	if (strncmp(name, base, bl) != 0 || name[bl] != '.')
		return false;
	const char *rest = name + bl + 1;
	if (strcmp(rest, "new") == 0 || strcmp(rest, "tmp") == 0)
		return true;
	char *end;
	long pid = strtol(rest, &end, 10);
	if (end == rest || pid <= 0 || *end != '-')
		return false;
	if (!(end[1] >= '0' && end[1] <= '9'))
		return false;
	strtoul(end + 1, &end, 10);
	if (strcmp(end, ".new") != 0 && strcmp(end, ".tmp") != 0)
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static void clean_dir_of(hx *s, const char *file)
{
	const char *slash = strrchr(file, '/');
	char *dir = s->h->xasprintf("%.*s", slash == file ? 1 : (int)(slash - file), file);
	const char *base = slash + 1;
	DIR *d = opendir(dir);
	if (!d) {
		free(dir);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!stale_temp(e->d_name, base))
			continue;
		struct stat st;
		/* Only a regular file of regent's user (never through a link). */
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_uid != geteuid())
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0)
			s->h->log(s->ctx, REGENT_LOG_INFO, "removed %s/%s, a temporary file of a run that is gone",
			          dir, e->d_name);
	}
	closedir(d);
	free(dir);
}

/* At start (a small local directory, read once): the temporary files of
 * runs that are gone (killed in the middle of a write) are removed. */
void hx_clean_temps(hx *s)
{
	clean_dir_of(s, s->config_file);
	clean_dir_of(s, s->state_file); /* its own base name: no overlap */
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "temporary files of this instance: %s, %s, %s",
	          s->cand_path, s->tmp_path, s->state_tmp);
}
