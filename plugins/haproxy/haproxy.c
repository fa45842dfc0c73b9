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
 * threadpool (proc.c).  Pure rendering and parsing live in render.c. */
#include "model.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

typedef enum {
	P_IDLE = 0,
	P_WRITE_CAND,
	P_CHECK,
	P_FINAL,
	P_DUMP,
	P_WRITE_STATE,
	P_RENAME,
	P_RELOAD,
	P_CONFIRM,
} pstate;

typedef struct hx {
	regent_ctx *ctx;
	const regent_host *h;
	uv_loop_t *loop;
	bool started, stopping;

	/* configuration */
	char *config_file, *cand_path, *tmp_path, *state_file, *state_tmp;
	char *admin_socket, *master_socket, *reload_command, *haproxy_bin;
	const char *const *include;
	size_t ninclude;
	bool manage;
	char stats_bind[80];
	bool stats_on;
	char bind_addr[HX_ADDR_MAX + 2];
	uint16_t stats_port;
	uint64_t reload_interval, drain_timeout, check_timeout, cmd_timeout, startup_grace;
	uint64_t started_ms;
	size_t recovered;   /* services in the file of an earlier run */
	int64_t slots_default, retries_default;
	uint64_t t_connect, t_client, t_server, t_check, inter;

	/* model (model.c) */
	hx_model m;
	const regent_catalog *cat;     /* the latest snapshot (referenced) */
	uv_timer_t *t_model;           /* empty grace ends, exclusions retried */
	unsigned mirror_gen;           /* m.gen the file was last rendered from */
	bool mirror_force;             /* render again even if m.gen did not move */
	unsigned excl_gen;             /* m.excl_gen reported */
	char *excl_note;               /* the excluded services, for /healthz */
	regent_metric *m_excluded;
	char *g_want, *g_cand, *g_run; /* global part (admin socket, stats) */
	char *file_text;               /* the installed file's text */
	char *last_rejected;           /* candidate haproxy -c refused */
	bool rejected_wait;            /* ... and no snapshot since */
	bool installed_once;
	const regent_catalog *pending; /* applied() not yet reported */

	/* fast path */
	hx_cli *admin_req;
	unsigned batch_epoch; /* of the command batch in flight */
	size_t batch_slots;
	bool admin_polling;
	unsigned epoch;
	uv_timer_t *t_poll;  /* drain polling */
	uv_timer_t *t_retry; /* admin backoff */
	regent_backoff admin_backoff;
	bool admin_blocked;
	char *admin_err;

	/* slow path */
	pstate ps;
	bool force_reload;
	uint64_t last_pipeline_ms;
	uv_timer_t *t_slow;
	hx_run *run;
	hx_write *write; /* candidate, state file or rename */
	hx_cli *master_req;
	hx_proc_info before;
	long before_admin_pid;
	long want_worker;
	uint64_t confirm_deadline;
	hx_poll *confirm;
	char *cand_text;
	regent_backoff reload_backoff;
	char *reload_err, *reject_err;

	/* mirror */
	hx_write *mirror;
	unsigned file_gen; /* bumped by every install */
	bool dump_pending;
	uint64_t retry_at;

	/* managed master (master.c) */
	hx_sup *sup;
	bool master_ready, adopting, keep_running;
	char *master_err, *pid_file, *log_file;
	unsigned spawn_gen;

	/* make-before-break start: proven once a configuration passed
	 * haproxy -c and runs */
	bool proven, failed, checked_once, verify_only;

	/* failed writes of config_file: retried on a timer */
	char *write_err;
	uv_timer_t *t_wretry;

	/* metrics */
	regent_metric *m_runtime, *m_reloads, *m_rejected, *m_reload_fail, *m_restarts,
		*m_runtime_err;
} hx;

static void kick(hx *s);

/* ------------------------------------------------------------------ */
/* Configuration                                                      */
/* ------------------------------------------------------------------ */

static const regent_config_key keys[] = {
	{"config_file", REGENT_CFG_STRING, "/var/lib/regent/haproxy.cfg", false, 0, 0,
	 "the file regent generates (haproxy loads it beside the user's files)"},
	{"manage", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "start and supervise haproxy in master-worker mode"},
	{"keep_running", REGENT_CFG_BOOL, "true", false, 0, 0,
	 "manage: haproxy keeps serving when regent stops (the next start adopts it); false: "
	 "stopped with regent"},
	{"haproxy", REGENT_CFG_STRING, "haproxy", false, 0, 0, "the haproxy binary"},
	{"include", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "the user's own config files/dirs, loaded before config_file (manage) and used by "
	 "haproxy -c"},
	{"admin_socket", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "haproxy's admin socket (stats socket ... level admin)"},
	{"master_socket", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy's master CLI socket"},
	{"reload_command", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "reload command run with /bin/sh -c instead of the master CLI"},
	{"state_file", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "server-state file (default: config_file's directory/haproxy.state)"},
	{"bind_address", REGENT_CFG_STRING, "*", false, 0, 0,
	 "address the service listeners bind (* or an IP literal)"},
	{"stats", REGENT_CFG_STRING, "127.0.0.1:1936", false, 0, 0,
	 "stats listener ADDR:PORT, or off (loopback only unless stats_public = true)"},
	{"stats_public", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "allow the stats listener on a non-loopback address (like the stats sink's public)"},
	{"empty_grace", REGENT_CFG_DURATION, "60s", false, 0, 86400000,
	 "how long a service whose instances all left keeps its listener (503/close meanwhile)"},
	{"reload_interval", REGENT_CFG_DURATION, "1s", false, 0, 3600000,
	 "minimum time between two reloads (changes in between coalesce)"},
	{"drain_timeout", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "longest time a leaving instance is drained before maintenance"},
	{"startup_grace", REGENT_CFG_DURATION, "5s", false, 0, 600000,
	 "at start, how long an empty catalog waits before it may empty the routes of an earlier run"},
	{"check_timeout", REGENT_CFG_DURATION, "30s", false, 100, 600000,
	 "time limit of haproxy -c"},
	{"command_timeout", REGENT_CFG_DURATION, "5s", false, 100, 600000,
	 "time limit of one admin or master socket request"},
	{"slots", REGENT_CFG_INT, "8", false, 1, 4096, "server slots per service"},
	{"retries", REGENT_CFG_INT, "3", false, 0, 100, "connection retries per request"},
	{"timeout_connect", REGENT_CFG_DURATION, "5s", false, 1, 86400000, "default connect timeout"},
	{"timeout_client", REGENT_CFG_DURATION, "1m", false, 1, 86400000, "default client timeout"},
	{"timeout_server", REGENT_CFG_DURATION, "1m", false, 1, 86400000, "default server timeout"},
	{"timeout_check", REGENT_CFG_DURATION, "0", false, 0, 86400000,
	 "default health check timeout (0: haproxy's)"},
	{"check_interval", REGENT_CFG_DURATION, "2s", false, 100, 86400000,
	 "default health check interval"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static const regent_config_key service_keys[] = {
	{"mode", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy: tcp (default) or http"},
	{"check", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "haproxy: HTTP health check path (default: TCP connect check)"},
	{"balance", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy: balance algorithm (roundrobin)"},
	{"maxconn", REGENT_CFG_INT, NULL, false, 1, 10000000, "haproxy: listener maxconn"},
	{"retries", REGENT_CFG_INT, NULL, false, 0, 100, "haproxy: connection retries"},
	{"timeout_connect", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: connect timeout"},
	{"timeout_client", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: client timeout"},
	{"timeout_server", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: server timeout"},
	{"timeout_check", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: check timeout"},
	{"check_interval", REGENT_CFG_DURATION, NULL, false, 100, 86400000,
	 "haproxy: health check interval"},
	{"server_options", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "haproxy: extra server options from the allow-list"},
	{"slots", REGENT_CFG_INT, NULL, false, 1, 4096, "haproxy: server slots"},
	{"empty_grace", REGENT_CFG_DURATION, NULL, false, 0, 86400000,
	 "haproxy: how long the listener stays once every instance left (default: the sink's)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

static char *xasprintf(const char *fmt, ...) REGENT_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = NULL;
	if (vasprintf(&p, fmt, ap) < 0)
		abort();
	va_end(ap);
	return p;
}

static bool streq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Default paths beside config_file. */
static char *beside(const char *file, const char *name)
{
	const char *slash = strrchr(file, '/');
	int dirlen = slash ? (int)(slash - file) : 0;
	return xasprintf("%.*s/%s", dirlen, file, name);
}

static bool socket_path_ok(const char *p)
{
	struct sockaddr_un sa;
	return hx_valid_file_path(p) && strlen(p) < sizeof(sa.sun_path);
}

/* "ADDR:PORT" / "[V6]:PORT" / "*:PORT" -> haproxy bind text and port;
 * *loopback says whether ADDR is 127.0.0.0/8 or ::1. */
static bool parse_stats(const char *v, char *out, size_t outlen, uint16_t *port, bool *loopback)
{
	char addr[64];
	const char *colon = strrchr(v, ':');
	if (!colon || (size_t)(colon - v) >= sizeof(addr))
		return false;
	memcpy(addr, v, (size_t)(colon - v));
	addr[colon - v] = '\0';
	size_t al = strlen(addr);
	if (al >= 2 && addr[0] == '[' && addr[al - 1] == ']') {
		memmove(addr, addr + 1, al - 2);
		addr[al - 2] = '\0';
	}
	uint16_t p;
	if (!hx_parse_port(colon + 1, &p)) /* digits only: "+80", " 80", "80x" are refused */
		return false;
	*port = p;
	char canon[HX_ADDR_MAX];
	bool v6 = false;
	*loopback = hx_valid_ip(addr, canon, &v6) &&
	            (v6 ? strcmp(canon, "::1") == 0 : strncmp(canon, "127.", 4) == 0);
	return hx_format_bind(addr, (unsigned)p, out, outlen);
}

/* --check-config (and a reload's validation): the haproxy binary runs and
 * accepts the user's includes with the part regent writes first in its
 * file (hx_check_binary, master.c).  Returns 0, or a negative errno with
 * the reason in why. */
static int check_binary(regent_ctx *ctx, const regent_host *h, char *why, size_t whylen)
{
	bool manage = h->cfg_bool(ctx, "manage");
	const char *st = h->cfg_string(ctx, "stats");
	char sb[80];
	bool lb = false;
	uint16_t sport = 0;
	bool stats_on = st && strcmp(st, "off") != 0 && parse_stats(st, sb, sizeof(sb), &sport, &lb);
	char *global = hx_render_global(manage ? "/nonexistent/regent-check.sock" : NULL, NULL,
	                                stats_on ? sb : NULL);
	const char *const *inc;
	size_t ninc = h->cfg_list(ctx, "include", &inc);
	int rc = hx_check_binary(h->cfg_string(ctx, "haproxy"), inc, ninc, global,
	                         h->cfg_duration_ms(ctx, "check_timeout"), why, whylen);
	free(global);
	return rc;
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int bad = 0;
	const char *cf = h->cfg_string(ctx, "config_file");
	if (!hx_valid_file_path(cf)) {
		h->cfg_error(ctx, "config_file",
		             "must be an absolute path of letters, digits and ._/+@=,- (got \"%s\")", cf);
		bad = -EINVAL;
	}
	bool manage = h->cfg_bool(ctx, "manage");
	static const char *const sockets[] = {"admin_socket", "master_socket"};
	for (size_t i = 0; i < 2; i++) {
		const char *p = h->cfg_string(ctx, sockets[i]);
		if (p && !socket_path_ok(p)) {
			h->cfg_error(ctx, sockets[i],
			             "must be an absolute path of letters, digits and ._/+@=,- shorter than "
			             "108 bytes (got \"%s\")",
			             p);
			bad = -EINVAL;
		}
	}
	const char *sf = h->cfg_string(ctx, "state_file");
	if (sf && !hx_valid_file_path(sf)) {
		h->cfg_error(ctx, "state_file",
		             "must be an absolute path of letters, digits and ._/+@=,- (got \"%s\")", sf);
		bad = -EINVAL;
	}
	if (!manage) {
		if (!h->cfg_string(ctx, "admin_socket")) {
			h->cfg_error(ctx, NULL,
			             "admin_socket is required unless manage = true (haproxy's `stats socket "
			             "PATH level admin`)");
			bad = -EINVAL;
		}
		if (!h->cfg_string(ctx, "master_socket") && !h->cfg_string(ctx, "reload_command")) {
			h->cfg_error(ctx, NULL,
			             "master_socket or reload_command is required unless manage = true");
			bad = -EINVAL;
		}
	} else if (h->cfg_string(ctx, "reload_command")) {
		h->cfg_error(ctx, "reload_command",
		             "not used with manage = true (regent reloads its own haproxy)");
		bad = -EINVAL;
	}
	const char *const *inc;
	size_t ninc = h->cfg_list(ctx, "include", &inc);
	for (size_t i = 0; i < ninc; i++)
		if (!hx_valid_file_path(inc[i])) {
			h->cfg_error(ctx, "include", "\"%s\" is not an absolute path of letters, digits and "
			                             "._/+@=,-", inc[i]);
			bad = -EINVAL;
		}
	const char *ba = h->cfg_string(ctx, "bind_address");
	char tmp[80];
	if (!hx_format_bind(ba, 1, tmp, sizeof(tmp))) {
		h->cfg_error(ctx, "bind_address", "must be * or an IP literal (got \"%s\")", ba);
		bad = -EINVAL;
	}
	const char *st = h->cfg_string(ctx, "stats");
	uint16_t sport = 0;
	bool lo = false;
	if (st && strcmp(st, "off") != 0 && !parse_stats(st, tmp, sizeof(tmp), &sport, &lo)) {
		h->cfg_error(ctx, "stats", "must be ADDR:PORT (ADDR: * or an IP literal) or off (got \"%s\")",
		             st);
		bad = -EINVAL;
	} else if (st && strcmp(st, "off") != 0 && !lo && !h->cfg_bool(ctx, "stats_public")) {
		h->cfg_error(ctx, "stats",
		             "%s is not a loopback address: haproxy's stats page would be reachable "
		             "from other hosts; set stats_public = true if that is meant",
		             st);
		bad = -EINVAL;
	}
	/* [service] sections: settings and ports. */
	const char *const *names;
	size_t n = h->services(ctx, &names);
	for (size_t i = 0; i < n; i++) {
		svc_settings ss;
		char why[512];
		if (hx_read_settings(ctx, h, names[i], &ss, why, sizeof(why)) < 0) {
			h->cfg_error(ctx, NULL, "%s", why);
			bad = -EINVAL;
		}
		hx_buf_free(&ss.srvopts);
		int64_t p = h->service_is_set(ctx, names[i], "port") ? h->service_int(ctx, names[i], "port")
		                                                     : 0;
		if (!p)
			continue;
		if (p == sport) {
			h->cfg_error(ctx, NULL, "[service %s] port %lld is the stats listener's port",
			             names[i], (long long)p);
			bad = -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (h->service_is_set(ctx, names[j], "port") &&
			    h->service_int(ctx, names[j], "port") == p) {
				h->cfg_error(ctx, NULL, "services %s and %s both claim port %lld", names[j],
				             names[i], (long long)p);
				bad = -EINVAL;
			}
	}
	if (!bad) {
		char why[1024];
		int rc = check_binary(ctx, h, why, sizeof(why));
		if (rc < 0) {
			h->cfg_error(ctx, rc == -ENOENT ? "haproxy" : "include", "%s", why);
			bad = -EINVAL;
		}
	}
	return bad;
}

/* ------------------------------------------------------------------ */
/* Health and logging                                                 */
/* ------------------------------------------------------------------ */

static void set_reason(char **slotp, const char *reason)
{
	free(*slotp);
	*slotp = reason ? xstrdup(reason) : NULL;
}

static void update_health(hx *s)
{
	const char *r = s->master_err ? s->master_err
	                : s->write_err ? s->write_err
	                : s->admin_err ? s->admin_err
	                : s->reload_err ? s->reload_err
	                : s->reject_err ? s->reject_err
	                                : s->excl_note;
	s->h->set_health(s->ctx, r == NULL, r);
}

/* Services left out of the configuration: the metric, and a /healthz note
 * naming each with its cause (the others keep being routed). */
static void report_exclusions(hx *s)
{
	if (s->excl_gen == s->m.excl_gen)
		return;
	s->excl_gen = s->m.excl_gen;
	s->h->metric_set(s->m_excluded, (double)s->m.nexcluded);
	free(s->excl_note);
	s->excl_note = hx_model_excluded_note(&s->m);
	update_health(s);
}

/* ------------------------------------------------------------------ */
/* Shapes (the model is in model.c)                                   */
/* ------------------------------------------------------------------ */

static void shape_clear(shape *p)
{
	free(p->listen);
	free(p->srvopts);
	memset(p, 0, sizeof(*p));
}

static void shape_copy(shape *dst, const shape *src)
{
	shape_clear(dst);
	dst->listen = xstrdup(src->listen);
	dst->srvopts = xstrdup(src->srvopts);
	dst->nslots = src->listen ? src->nslots : 0;
	dst->port = src->port;
}

static bool shape_eq(const shape *a, const shape *b)
{
	if (!a->listen || !b->listen)
		return !a->listen && !b->listen;
	return strcmp(a->listen, b->listen) == 0 && streq(a->srvopts, b->srvopts) &&
	       a->nslots == b->nslots;
}

/* ------------------------------------------------------------------ */
/* Rendering the file                                                 */
/* ------------------------------------------------------------------ */

typedef enum { R_RUN, R_CAND } which;

static const shape *shape_of(svc *v, which w)
{
	return w == R_RUN ? &v->run : &v->cand;
}

/* How a slot is written now: ready with its address, or disabled. */
static srv_view slot_as_file(const slot *sl)
{
	srv_view f = {.st = AP_MAINT};
	if (sl->st == ST_READY) {
		f.st = AP_READY;
		snprintf(f.addr, sizeof(f.addr), "%s", sl->addr);
		f.port = sl->port;
	}
	return f;
}

static char *render_file(hx *s, which w)
{
	hx_buf b = {0};
	hx_buf_printf(&b,
	              "# Generated by regent (sink %s): do not edit, regent rewrites this file.\n"
	              "# Loaded by haproxy after the user's own files; one listen per service.\n\n",
	              s->h->instance_name(s->ctx));
	const char *g = w == R_RUN ? s->g_run : s->g_cand;
	if (g)
		hx_buf_puts(&b, g);
	/* Lines of the candidate, so that an error haproxy -c reports at a
	 * line can be pinned on its service. */
	size_t line = 1;
	for (const char *c = hx_buf_str(&b); *c; c++)
		line += *c == '\n';
	for (svc *v = s->m.svcs; v; v = v->next) {
		const shape *p = shape_of(v, w);
		if (!p->listen)
			continue;
		if (w == R_CAND)
			v->line0 = line;
		hx_buf_puts(&b, p->listen);
		for (const char *c = p->listen; *c; c++)
			line += *c == '\n';
		for (size_t i = 0; i < p->nslots && i < v->nslots; i++) {
			slot *sl = &v->slots[i];
			sl->pend = slot_as_file(sl);
			hx_server_line l = {.enabled = sl->pend.st == AP_READY, .addr = sl->addr,
			                    .port = sl->port, .id = sl->id};
			hx_render_server(&b, i, &l, p->srvopts);
		}
		hx_buf_puts(&b, "\n");
		line += p->nslots < v->nslots ? p->nslots : v->nslots;
		line++;
		if (w == R_CAND)
			v->line1 = line;
	}
	return hx_buf_take(&b);
}

/* The written file is on disk: it is what haproxy loads next. */
static void pend_to_file(hx *s, which w)
{
	for (svc *v = s->m.svcs; v; v = v->next) {
		const shape *p = shape_of(v, w);
		for (size_t i = 0; p->listen && i < p->nslots && i < v->nslots; i++)
			v->slots[i].file = v->slots[i].pend;
	}
}

/* haproxy just loaded the installed file: that is its state now. */
static void ap_from_file(hx *s)
{
	s->epoch++;
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap = v->slots[i].file;
			v->slots[i].inflight = false;
		}
}

static void ap_unknown(hx *s)
{
	s->epoch++;
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap.st = AP_UNKNOWN;
			v->slots[i].inflight = false;
		}
}

/* ------------------------------------------------------------------ */
/* Fast path: the admin socket                                        */
/* ------------------------------------------------------------------ */

static bool admin_usable(hx *s)
{
	if (s->stopping || s->admin_blocked || s->admin_req)
		return false;
	/* From the final render to the new worker, haproxy's state is the
	 * file's: the fast path waits (a change made now would reach only the
	 * old worker). */
	if (s->ps >= P_FINAL)
		return false;
	if (s->manage && !s->master_ready)
		return false;
	return true;
}

static void on_retry(uv_timer_t *t)
{
	hx *s = t->data;
	s->admin_blocked = false;
	kick(s);
}

static void admin_failed(hx *s, const char *what)
{
	uint64_t d = s->h->backoff_next(&s->admin_backoff);
	char *msg = xasprintf("admin socket %s: %s; retrying in %llu ms", s->admin_socket, what,
	                      (unsigned long long)d);
	if (!streq(msg, s->admin_err))
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s", msg);
	set_reason(&s->admin_err, msg);
	free(msg);
	update_health(s);
	s->admin_blocked = true;
	uv_timer_start(s->t_retry, on_retry, d, 0);
}

static void admin_ok(hx *s)
{
	s->h->backoff_reset(&s->admin_backoff);
	if (s->admin_err) {
		set_reason(&s->admin_err, NULL);
		update_health(s);
	}
}

/* What haproxy should have for a slot. */
static srv_view slot_target(slot *sl)
{
	srv_view t = {.st = AP_MAINT};
	if (sl->st == ST_READY || sl->st == ST_DRAIN) {
		t.st = sl->st == ST_READY ? AP_READY : AP_DRAIN;
		snprintf(t.addr, sizeof(t.addr), "%s", sl->addr);
		t.port = sl->port;
	}
	return t;
}

/* Appends the commands that bring one slot from ap to its target; returns
 * how many. */
static int slot_cmds(hx_buf *b, const svc *v, size_t i, slot *sl)
{
	const srv_view *a = &sl->ap;
	/* The common case, a slot haproxy already has right, costs no text. */
	if (sl->st == ST_FREE ? a->st == AP_MAINT
	    : sl->st == ST_DRAIN ? a->st == AP_DRAIN
	    : a->st == AP_READY && a->port == sl->port && strcmp(a->addr, sl->addr) == 0)
		return 0;
	srv_view t = slot_target(sl);
	char srv[160];
	snprintf(srv, sizeof(srv), "%s/s%zu", v->name, i + 1);
	int n = 0;
	if (t.st == AP_READY) {
		if (a->st == AP_UNKNOWN || strcmp(a->addr, t.addr) != 0 || a->port != t.port) {
			hx_buf_printf(b, "%sset server %s addr %s port %u", b->len ? ";" : "", srv, t.addr,
			              (unsigned)t.port);
			n++;
		}
		if (a->st != AP_READY) {
			hx_buf_printf(b, "%sset server %s state ready", b->len ? ";" : "", srv);
			n++;
			if (a->st == AP_MAINT) /* a joining instance counts as up until checked */
				hx_buf_printf(b, ";set server %s health up", srv), n++;
		}
	} else if (t.st == AP_DRAIN) {
		if (a->st != AP_DRAIN) {
			hx_buf_printf(b, "%sset server %s state drain", b->len ? ";" : "", srv);
			n++;
		}
	} else if (a->st != AP_MAINT) {
		hx_buf_printf(b, "%sset server %s state maint", b->len ? ";" : "", srv);
		n++;
	}
	if (n) {
		sl->sent = t;
		sl->inflight = true;
	}
	return n;
}

static void on_admin_cmds(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	unsigned epoch = s->batch_epoch;
	size_t nchanged = s->batch_slots;
	(void)len;
	s->admin_req = NULL;
	bool same = epoch == s->epoch;
	if (status < 0) {
		for (svc *v = s->m.svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].inflight = false;
		admin_failed(s, uv_strerror(status));
		return;
	}
	size_t elen = 0;
	const char *err = hx_cli_error(out, &elen);
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			slot *sl = &v->slots[i];
			if (!sl->inflight)
				continue;
			sl->inflight = false;
			if (same)
				sl->ap = err ? (srv_view){.st = AP_UNKNOWN} : sl->sent;
		}
	if (err) {
		s->h->metric_add(s->m_runtime_err, 1);
		char what[300];
		snprintf(what, sizeof(what), "haproxy refused a runtime change: %.*s", (int)(elen > 200 ? 200 : elen),
		         err);
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s", what);
		if (strstr(out, "No such backend") || strstr(out, "No such server")) {
			/* haproxy does not run the file regent installed: reload it. */
			s->force_reload = true;
		}
		admin_failed(s, "a runtime change was refused");
		return;
	}
	admin_ok(s);
	s->h->metric_add(s->m_runtime, (double)nchanged);
	kick(s);
}

/* Sends the next batch of runtime commands; true if one went out. */
static bool send_cmds(hx *s)
{
	hx_buf b = {0};
	size_t nslots = 0;
	for (svc *v = s->m.svcs; v && b.len < 8000; v = v->next)
		for (size_t i = 0; i < v->nslots && b.len < 8000; i++) {
			if (!hx_slot_live(v, i))
				continue;
			slot *sl = &v->slots[i];
			/* A draining slot haproxy already has in maintenance
			 * (a reload, or it never got there) is simply free. */
			if (sl->st == ST_DRAIN && sl->ap.st == AP_MAINT)
				hx_slot_free_id(&s->m, sl);
			if (slot_cmds(&b, v, i, sl))
				nslots++;
		}
	if (!b.len) {
		hx_buf_free(&b);
		return false;
	}
	s->batch_epoch = s->epoch;
	s->batch_slots = nslots;
	int err = 0;
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "runtime: %s", hx_buf_str(&b));
	s->admin_req = hx_cli_request(s->loop, s->admin_socket, hx_buf_str(&b), s->cmd_timeout,
	                              on_admin_cmds, s, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		for (svc *v = s->m.svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].inflight = false;
		admin_failed(s, strerror(-err));
		return false;
	}
	return true;
}

/* Drain polling: a draining slot with no session left (or past the drain
 * timeout) goes to maintenance and is free again. */
static bool any_draining(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++)
			if (hx_slot_live(v, i) && v->slots[i].st == ST_DRAIN && v->slots[i].ap.st == AP_DRAIN)
				return true;
	return false;
}

static void on_stat_row(void *arg, const char *px, const char *sv, long scur)
{
	hx *s = arg;
	svc *v = hx_svc_find(&s->m, px);
	if (!v || sv[0] != 's')
		return;
	char *end;
	long idx = strtol(sv + 1, &end, 10);
	if (*end || idx < 1 || (size_t)idx > v->nslots || !hx_slot_live(v, (size_t)idx - 1))
		return;
	slot *sl = &v->slots[idx - 1];
	if (sl->st != ST_DRAIN || sl->ap.st != AP_DRAIN)
		return;
	uint64_t now = s->h->now_ms();
	bool timed_out = now - sl->drain_since >= s->drain_timeout;
	if (scur == 0 || timed_out) {
		s->h->log(s->ctx, timed_out && scur ? REGENT_LOG_WARN : REGENT_LOG_DEBUG,
		          "%s/s%ld: instance %s drained%s (%ld sessions left)", v->name, idx, sl->id,
		          timed_out && scur ? " by timeout" : "", scur);
		hx_slot_free_id(&s->m, sl);
	}
}

static void on_admin_poll(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->admin_req = NULL;
	s->admin_polling = false;
	if (status < 0) {
		admin_failed(s, uv_strerror(status));
		return;
	}
	hx_parse_show_stat(out, on_stat_row, s);
	kick(s);
}

static void on_poll_timer(uv_timer_t *t)
{
	hx *s = t->data;
	if (!admin_usable(s) || !any_draining(s))
		return;
	hx_buf b = {0};
	for (svc *v = s->m.svcs; v; v = v->next) {
		bool d = false;
		for (size_t i = 0; i < v->nslots && !d; i++)
			d = hx_slot_live(v, i) && v->slots[i].st == ST_DRAIN;
		if (d)
			hx_buf_printf(&b, "%sshow stat %s 4 -1", b.len ? ";" : "", v->name);
	}
	int err = 0;
	s->admin_polling = true;
	s->admin_req = hx_cli_request(s->loop, s->admin_socket, hx_buf_str(&b), s->cmd_timeout,
	                              on_admin_poll, s, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		s->admin_polling = false;
		admin_failed(s, strerror(-err));
	}
}

/* ------------------------------------------------------------------ */
/* Mirror: every runtime change is written into the file too          */
/* ------------------------------------------------------------------ */

static void on_wretry(uv_timer_t *t)
{
	kick(t->data);
}

/* A write of config_file (or of its candidate) failed: unhealthy with the
 * cause, and tried again every second until it works, with no new change
 * needed. */
static void write_failed(hx *s, const char *path, int err)
{
	char *msg = xasprintf("cannot write %s: %s; retrying every second", path, uv_strerror(err));
	if (!streq(msg, s->write_err)) {
		s->h->log(s->ctx, REGENT_LOG_ERROR, "%s", msg);
		set_reason(&s->write_err, msg);
		update_health(s);
	}
	free(msg);
	if (!s->stopping && s->t_wretry)
		uv_timer_start(s->t_wretry, on_wretry, 1000, 0);
}

static void write_ok(hx *s)
{
	if (!s->write_err)
		return;
	s->h->log(s->ctx, REGENT_LOG_INFO, "%s written again", s->config_file);
	set_reason(&s->write_err, NULL);
	update_health(s);
}

static void on_mirror_written(void *arg, int status)
{
	hx *s = arg;
	s->mirror = NULL;
	if (status < 0) {
		free(s->file_text);
		s->file_text = NULL; /* unknown now: written again by the retry */
		s->mirror_force = true;
		write_failed(s, s->config_file, status);
		return;
	}
	write_ok(s);
	pend_to_file(s, R_RUN);
	kick(s);
}

static void maybe_mirror(hx *s)
{
	if (s->mirror || s->ps != P_IDLE || !s->installed_once)
		return;
	/* Rendered once per change of the model, never per kick. */
	if (s->m.gen == s->mirror_gen && !s->mirror_force)
		return;
	s->mirror_gen = s->m.gen;
	s->mirror_force = false;
	char *text = render_file(s, R_RUN);
	if (s->file_text && strcmp(text, s->file_text) == 0) {
		free(text);
		return;
	}
	int err = 0;
	s->mirror = hx_write_file(s->loop, s->config_file, s->tmp_path, text, strlen(text), false,
	                          on_mirror_written, s, &err);
	if (!s->mirror) {
		free(text);
		s->mirror_force = true;
		write_failed(s, s->config_file, err);
		return;
	}
	free(s->file_text);
	s->file_text = text;
}

/* ------------------------------------------------------------------ */
/* Slow path: render, check, install, reload                          */
/* ------------------------------------------------------------------ */

static bool slow_needed(hx *s)
{
	if (s->force_reload || !streq(s->g_want, s->g_run) || !s->installed_once)
		return true;
	for (svc *v = s->m.svcs; v; v = v->next)
		if (!shape_eq(&v->want, &v->run))
			return true;
	return false;
}

static void pipeline_done(hx *s)
{
	s->ps = P_IDLE;
	free(s->cand_text);
	s->cand_text = NULL;
	for (svc *v = s->m.svcs; v; v = v->next)
		shape_clear(&v->cand);
	free(s->g_cand);
	s->g_cand = NULL;
	hx_model_gc(&s->m);
	kick(s);
}

static void drop_pending(hx *s)
{
	if (s->pending)
		s->h->catalog_unref(s->pending);
	s->pending = NULL;
}

static void reload_start(hx *s);

static void install_done(hx *s)
{
	/* The candidate is the installed file now. */
	free(s->file_text);
	s->file_text = s->cand_text;
	s->cand_text = NULL;
	pend_to_file(s, R_CAND);
	for (svc *v = s->m.svcs; v; v = v->next)
		shape_copy(&v->run, &v->cand);
	free(s->g_run);
	s->g_run = xstrdup(s->g_cand);
	s->installed_once = true;
	s->file_gen++;
	s->m.gen++; /* the installed shapes are rendered by the mirror now */
	write_ok(s);
	if (s->reject_err) {
		set_reason(&s->reject_err, NULL);
		update_health(s);
	}
}

static void on_state_written(void *arg, int status);

/* An old state file must not outlive a failed write: its addresses would
 * win over the new file's. */
static void unlink_state(hx *s)
{
	uv_fs_t req;
	uv_fs_unlink(NULL, &req, s->state_file, NULL);
	uv_fs_req_cleanup(&req);
}

static void on_rename(void *arg, int status)
{
	hx *s = arg;
	s->write = NULL;
	if (status < 0) {
		write_failed(s, s->config_file, status);
		pipeline_done(s);
		return;
	}
	install_done(s);
	reload_start(s);
}

static void do_rename(hx *s)
{
	s->ps = P_RENAME;
	int err = 0;
	s->write = hx_rename(s->loop, s->cand_path, s->config_file, on_rename, s, &err);
	if (!s->write) {
		write_failed(s, s->config_file, err);
		pipeline_done(s);
	}
}

static void on_state_written(void *arg, int status)
{
	hx *s = arg;
	s->write = NULL;
	if (status < 0) {
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "cannot write the server-state file %s: %s (servers start from the config)",
		          s->state_file, uv_strerror(status));
		unlink_state(s);
	}
	do_rename(s);
}

static void write_state(hx *s, const char *text)
{
	s->ps = P_WRITE_STATE;
	int err = 0;
	s->write = hx_write_file(s->loop, s->state_file, s->state_tmp, text, strlen(text), false,
	                         on_state_written, s, &err);
	if (!s->write) {
		s->h->log(s->ctx, REGENT_LOG_WARN, "cannot write %s: %s", s->state_file, strerror(-err));
		do_rename(s);
	}
}

/* A state line survives only where the candidate has the same server
 * ready at the same address: haproxy prefers the state file's address over
 * the configuration's, so anything else must come from the file. */
static bool keep_state_line(void *arg, const char *px, const char *sv, const char *addr,
                            unsigned port, unsigned admin)
{
	hx *s = arg;
	svc *v = hx_svc_find(&s->m, px);
	if (!v || !v->cand.listen || sv[0] != 's') /* only our proxies read this file */
		return false;
	char *end;
	long idx = strtol(sv + 1, &end, 10);
	if (*end || idx < 1 || (size_t)idx > v->cand.nslots || (size_t)idx > v->nslots)
		return false;
	const srv_view *f = &v->slots[idx - 1].pend;
	return f->st == AP_READY && strcmp(f->addr, addr) == 0 && f->port == port &&
	       (admin & 0x2f) == 0;
}

static void on_dump(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->admin_req = NULL;
	char *text;
	if (status < 0 || strncmp(out, "1\n", 2) != 0) {
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "cannot dump the server state over %s (%s); the new worker starts from the "
		          "config",
		          s->admin_socket, status < 0 ? uv_strerror(status) : "unexpected answer");
		text = xstrdup("1\n");
	} else {
		text = hx_filter_state(out, keep_state_line, s);
	}
	write_state(s, text);
	free(text);
}

static bool haproxy_running(hx *s)
{
	return s->manage ? s->master_ready : true;
}

/* Runs once the admin channel is free (kick() calls it). */
static void start_dump(hx *s)
{
	s->dump_pending = false;
	if (!haproxy_running(s)) {
		write_state(s, "1\n");
		return;
	}
	int err = 0;
	s->admin_req = hx_cli_request(s->loop, s->admin_socket, "show servers state", s->cmd_timeout,
	                              on_dump, s, &err);
	if (!s->admin_req)
		write_state(s, "1\n");
}

static void log_haproxy_output(hx *s, regent_log_level lvl, const char *out)
{
	const char *p = out;
	int lines = 0;
	while (p && *p && lines < 30) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		const char *notice = strstr(p, "[NOTICE]");
		if (len && (!notice || notice > p + len)) { /* haproxy's version banner: noise */
			s->h->log(s->ctx, lvl, "haproxy: %.*s", len, p);
			lines++;
		}
		p = nl ? nl + 1 : NULL;
	}
}

static void to_dump(hx *s)
{
	s->ps = P_DUMP;
	s->dump_pending = true;
	kick(s);
}

static void on_final_written(void *arg, int status)
{
	hx *s = arg;
	s->write = NULL;
	if (status < 0) {
		write_failed(s, s->cand_path, status);
		pipeline_done(s);
		return;
	}
	to_dump(s);
}

/* The check passed.  Instances may have come and gone while it ran: render
 * the checked shapes again with the servers as they are now (addresses are
 * validated, the structure is the one haproxy accepted), so that the new
 * worker starts from the latest state.  The fast path waits from here to
 * the new worker. */
static void final_render(hx *s)
{
	s->ps = P_FINAL;
	char *text = render_file(s, R_CAND);
	if (strcmp(text, s->cand_text) == 0) {
		free(text);
		to_dump(s);
		return;
	}
	free(s->cand_text);
	s->cand_text = text;
	int err = 0;
	s->write = hx_write_file(s->loop, s->config_file, s->cand_path, text, strlen(text), true,
	                         on_final_written, s, &err);
	if (!s->write) {
		write_failed(s, s->cand_path, err);
		pipeline_done(s);
	}
}

static void arm_model_timer(hx *s, uint64_t at);

/* haproxy -c refused the candidate: the services whose lines (or proxy
 * names) its ALERTs name are left out of the next one.  Returns whether
 * any was. */
static bool exclude_rejected(hx *s, const char *out)
{
	size_t n = 0;
	size_t plen = strlen(s->cand_path);
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[400];
		snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) - 1 ? len : sizeof(line) - 1),
		         p);
		p = nl ? nl + 1 : NULL;
		if (!strstr(line, "[ALERT]"))
			continue;
		svc *v = NULL;
		const char *at = strstr(line, s->cand_path);
		if (at && at[plen] == ':') {
			char *end;
			unsigned long ln = strtoul(at + plen + 1, &end, 10);
			if (end != at + plen + 1)
				v = hx_model_svc_at_line(&s->m, (size_t)ln);
		}
		for (const char *q = line; !v && (q = strstr(q, "proxy '")) != NULL; q += 7) {
			const char *e = strchr(q + 7, '\'');
			if (e && e - (q + 7) < 200) {
				char name[201];
				snprintf(name, sizeof(name), "%.*s", (int)(e - (q + 7)), q + 7);
				svc *c = hx_svc_find(&s->m, name);
				if (c && c->cand.listen)
					v = c;
			}
		}
		if (!v || v->excluded)
			continue;
		const char *msg = strstr(line, "] : ");
		char why[300];
		snprintf(why, sizeof(why), "haproxy -c refused its section (%.200s)",
		         msg ? msg + 4 : line);
		hx_model_exclude(&s->m, v, why);
		n++;
	}
	if (!n)
		return false;
	report_exclusions(s);
	arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	return true;
}
static void trial_fail(hx *s, int err, const char *why);
static void install_unchanged(hx *s);

static void on_check(void *arg, int status, const char *out)
{
	hx *s = arg;
	s->run = NULL;
	bool verify = s->verify_only;
	s->verify_only = false;
	if (status == 0 || status == 2) {
		s->checked_once = true;
		if (verify)
			install_unchanged(s);
		else
			final_render(s);
		return;
	}
	s->h->metric_add(s->m_rejected, 1);
	if (status < 0)
		s->h->log(s->ctx, REGENT_LOG_ERROR, "cannot run %s -c: %s", s->haproxy_bin,
		          uv_strerror(status));
	else {
		s->h->log(s->ctx, REGENT_LOG_ERROR,
		          "haproxy rejected the new configuration (exit %d); it is not installed and the "
		          "running one stays; retried on the next change. haproxy said:",
		          status);
		log_haproxy_output(s, REGENT_LOG_ERROR, out);
	}
	if (status > 0 && exclude_rejected(s, out)) {
		/* Pinned on services: those are left out (or keep the section
		 * haproxy runs), every other change goes on at once. */
		uv_fs_t req;
		uv_fs_unlink(NULL, &req, s->cand_path, NULL);
		uv_fs_req_cleanup(&req);
		free(s->cand_text);
		s->cand_text = NULL;
		pipeline_done(s);
		return;
	}
	set_reason(&s->reject_err,
	           status < 0 ? "cannot run haproxy -c (see the log); the new configuration waits"
	                      : "haproxy rejected the latest configuration (see the log); the "
	                        "previous one runs");
	update_health(s);
	free(s->last_rejected);
	s->last_rejected = s->cand_text;
	s->cand_text = NULL;
	s->rejected_wait = true;
	uv_fs_t req;
	uv_fs_unlink(NULL, &req, s->cand_path, NULL);
	uv_fs_req_cleanup(&req);
	drop_pending(s);
	pipeline_done(s);
	if (!s->proven) {
		char *why = status < 0 ? xasprintf("cannot run %s -c: %s", s->haproxy_bin,
		                                   uv_strerror(status))
		                       : xasprintf("haproxy -c rejected the configuration (exit %d, see "
		                                   "the log)",
		                                   status);
		trial_fail(s, status < 0 ? status : -EINVAL, why);
		free(why);
	}
}

/* haproxy -c on path with the user's includes before it. */
static void run_check(hx *s, const char *path)
{
	s->ps = P_CHECK;
	size_t n = 0;
	char **argv = calloc(6 + 2 * s->ninclude, sizeof(*argv));
	if (!argv)
		abort();
	argv[n++] = s->haproxy_bin;
	argv[n++] = "-c";
	for (size_t i = 0; i < s->ninclude; i++) {
		argv[n++] = "-f";
		argv[n++] = (char *)s->include[i];
	}
	argv[n++] = "-f";
	argv[n++] = (char *)path;
	argv[n] = NULL;
	int err = 0;
	s->run = hx_run_start(s->loop, argv, s->check_timeout, on_check, s, &err);
	free(argv);
	if (!s->run)
		on_check(s, err, "");
}

static void on_cand_written(void *arg, int status)
{
	hx *s = arg;
	s->write = NULL;
	if (status < 0) {
		write_failed(s, s->cand_path, status);
		pipeline_done(s);
		return;
	}
	run_check(s, s->cand_path);
}

/* The file on disk is the candidate already (written by the previous run,
 * or the change was undone): nothing to reload. */
static void install_unchanged(hx *s)
{
	bool first = !s->installed_once;
	if (first)
		s->h->log(s->ctx, REGENT_LOG_INFO, "%s is up to date: no reload", s->config_file);
	install_done(s);
	if (first) {
		ap_unknown(s); /* an existing haproxy: assume nothing, set everything */
		s->spawn_gen = s->file_gen; /* an adopted master runs this text already */
	}
	pipeline_done(s);
}

static void start_pipeline(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next)
		shape_copy(&v->cand, &v->want);
	free(s->g_cand);
	s->g_cand = xstrdup(s->g_want);
	char *text = render_file(s, R_CAND);
	if (s->last_rejected && strcmp(text, s->last_rejected) == 0 && !s->force_reload) {
		free(text); /* haproxy said no to exactly this: wait for a change */
		for (svc *v = s->m.svcs; v; v = v->next)
			shape_clear(&v->cand);
		free(s->g_cand);
		s->g_cand = NULL;
		drop_pending(s);
		return;
	}
	s->last_pipeline_ms = s->h->now_ms();
	s->cand_text = text;
	bool same = s->file_text && strcmp(text, s->file_text) == 0;
	if (same && !s->force_reload) {
		if (!s->checked_once) {
			/* This instance has not proven this binary and these
			 * includes yet: haproxy -c on the file as it is. */
			s->verify_only = true;
			run_check(s, s->config_file);
			return;
		}
		install_unchanged(s);
		return;
	}
	s->ps = P_WRITE_CAND;
	int err = 0;
	s->write = hx_write_file(s->loop, s->config_file, s->cand_path, text, strlen(text), true,
	                         on_cand_written, s, &err);
	if (!s->write) {
		s->h->log(s->ctx, REGENT_LOG_ERROR, "cannot write %s: %s", s->cand_path, strerror(-err));
		pipeline_done(s);
	}
}

static void on_slow_timer(uv_timer_t *t)
{
	kick(t->data);
}

/* At start, a catalog with no routable service (a store still reading,
 * say) does not empty the routes an earlier run left, for a while. */
static bool startup_hold(hx *s, uint64_t now)
{
	if (s->m.grace_over || !s->recovered)
		return false;
	bool any = false;
	for (svc *v = s->m.svcs; v && !any; v = v->next)
		any = v->want.listen != NULL;
	if (any || now >= s->started_ms + s->startup_grace) {
		s->m.grace_over = true;
		/* The earlier run's services the catalog does not list go now. */
		hx_model_update(&s->m, s->cat, NULL, 0, true);
		report_exclusions(s);
		return false;
	}
	if (!uv_is_active((uv_handle_t *)s->t_slow)) {
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "the catalog has no service yet; keeping %s as it is for up to %llu ms",
		          s->config_file, (unsigned long long)(s->started_ms + s->startup_grace - now));
		uv_timer_start(s->t_slow, on_slow_timer, s->started_ms + s->startup_grace - now, 0);
	}
	return true;
}

static void schedule_slow(hx *s)
{
	if (s->ps != P_IDLE || s->mirror || s->stopping || (s->rejected_wait && !s->force_reload))
		return;
	uint64_t now = s->h->now_ms();
	if (startup_hold(s, now))
		return;
	uint64_t due = s->last_pipeline_ms ? s->last_pipeline_ms + s->reload_interval : 0;
	if (s->retry_at > due)
		due = s->retry_at;
	if (due > now) {
		if (!uv_is_active((uv_handle_t *)s->t_slow))
			uv_timer_start(s->t_slow, on_slow_timer, due - now, 0);
		return;
	}
	start_pipeline(s);
}

/* ---- reload: master CLI or a command, then confirmation ---- */

static void reload_ok(hx *s, long worker)
{
	uint64_t took = s->h->now_ms() - s->last_pipeline_ms;
	s->h->metric_add(s->m_reloads, 1);
	s->h->backoff_reset(&s->reload_backoff);
	s->retry_at = 0;
	if (s->reload_err) {
		set_reason(&s->reload_err, NULL);
		update_health(s);
	}
	s->h->log(s->ctx, REGENT_LOG_INFO, "haproxy reloaded (worker %ld), %llu ms after the change",
	          worker, (unsigned long long)took);
	ap_from_file(s);
	pipeline_done(s);
}

static void reload_fail(hx *s, const char *why)
{
	s->h->metric_add(s->m_reload_fail, 1);
	uint64_t d = s->h->backoff_next(&s->reload_backoff);
	s->retry_at = s->h->now_ms() + d;
	char *msg = xasprintf("haproxy reload failed: %s; retrying in %llu ms", why,
	                      (unsigned long long)d);
	s->h->log(s->ctx, REGENT_LOG_ERROR, "%s", msg);
	set_reason(&s->reload_err, msg);
	free(msg);
	update_health(s);
	s->force_reload = true;
	ap_unknown(s);
	drop_pending(s);
	pipeline_done(s);
	if (!s->proven && !s->manage)
		trial_fail(s, -EIO, why);
}

/* Confirmation: the master's reload counter moves (a higher failed count:
 * refused), then the admin socket answers from the new worker. */
static int confirm_info(void *arg, int status, const char *out)
{
	hx *s = arg;
	if (status == -ETIMEDOUT) {
		s->confirm = NULL;
		reload_fail(s, "the new worker did not show up in time");
		return 1;
	}
	long pid = status == 0 ? hx_parse_info_pid(out) : 0;
	if (pid && (s->want_worker ? pid == s->want_worker : pid != s->before_admin_pid)) {
		s->confirm = NULL;
		reload_ok(s, pid);
		return 1;
	}
	return 0;
}

static int confirm_proc(void *arg, int status, const char *out)
{
	hx *s = arg;
	if (status == -ETIMEDOUT) {
		s->confirm = NULL;
		reload_fail(s, "the new worker did not show up in time");
		return 1;
	}
	hx_proc_info pi;
	if (status == 0 && hx_parse_show_proc(out, &pi) == 0 && pi.reloads > s->before.reloads) {
		if (pi.failed > s->before.failed) {
			s->confirm = NULL;
			reload_fail(s, "haproxy refused the new configuration (its log says why); the old "
			               "worker keeps serving");
			return 1;
		}
		if (pi.worker_pid) {
			/* The master has its new worker; wait until the admin socket is
			 * that worker's. */
			s->want_worker = pi.worker_pid;
			uint64_t now = s->h->now_ms();
			s->confirm = hx_poll_start(s->loop, s->admin_socket, "show info", 0, 50,
			                           s->confirm_deadline > now ? s->confirm_deadline - now : 1,
			                           s->cmd_timeout, confirm_info, s);
			return 1;
		}
	}
	return 0;
}

static void enter_confirm(hx *s)
{
	s->ps = P_CONFIRM;
	s->confirm_deadline = s->h->now_ms() + 15000;
	s->want_worker = 0;
	bool proc = s->master_socket != NULL;
	s->confirm = hx_poll_start(s->loop, proc ? s->master_socket : s->admin_socket,
	                           proc ? "show proc" : "show info", 20, 50, 15000, s->cmd_timeout,
	                           proc ? confirm_proc : confirm_info, s);
}

static void on_reload_sent(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	/* The master re-executes itself and closes the connection: an EOF or a
	 * reset is the normal answer.  Only "could not connect" is an error. */
	if (status == UV_ENOENT || status == UV_ECONNREFUSED || status == UV_ETIMEDOUT) {
		char why[256];
		snprintf(why, sizeof(why), "master socket %s: %s", s->master_socket, uv_strerror(status));
		reload_fail(s, why);
		return;
	}
	if (out[0])
		log_haproxy_output(s, REGENT_LOG_WARN, out);
	enter_confirm(s);
}

static void on_before_proc(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	if (status < 0 || hx_parse_show_proc(out, &s->before) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "master socket %s: %s", s->master_socket,
		         status < 0 ? uv_strerror(status) : "unexpected answer to show proc");
		reload_fail(s, why);
		return;
	}
	int err = 0;
	s->master_req = hx_cli_request(s->loop, s->master_socket, "reload", s->cmd_timeout,
	                               on_reload_sent, s, &err);
	if (!s->master_req)
		reload_fail(s, strerror(-err));
}

static void on_reload_command(void *arg, int status, const char *out)
{
	hx *s = arg;
	s->run = NULL;
	if (status != 0) {
		log_haproxy_output(s, REGENT_LOG_ERROR, out);
		char why[300];
		snprintf(why, sizeof(why), "reload_command exited with %d", status);
		reload_fail(s, why);
		return;
	}
	enter_confirm(s);
}

static void on_before_info(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	s->before_admin_pid = status == 0 ? hx_parse_info_pid(out) : 0;
	char *argv[] = {"/bin/sh", "-c", s->reload_command, NULL};
	int err = 0;
	s->run = hx_run_start(s->loop, argv, s->check_timeout, on_reload_command, s, &err);
	if (!s->run)
		on_reload_command(s, err, "");
}

static void reload_start(hx *s)
{
	s->force_reload = false;
	if (s->manage && !s->master_ready) {
		/* Not running (yet): the (re)start loads the new file; one
		 * starting right now may have read the old one. */
		pipeline_done(s);
		return;
	}
	s->ps = P_RELOAD;
	int err = 0;
	if (s->master_socket)
		s->master_req = hx_cli_request(s->loop, s->master_socket, "show proc", s->cmd_timeout,
		                               on_before_proc, s, &err);
	else
		s->master_req = hx_cli_request(s->loop, s->admin_socket, "show info", s->cmd_timeout,
		                               on_before_info, s, &err);
	if (!s->master_req)
		reload_fail(s, strerror(-err));
}

/* ------------------------------------------------------------------ */
/* The managed master (master.c) and the start on trial               */
/* ------------------------------------------------------------------ */

/* This instance failed its trial: say so once and touch nothing more (the
 * haproxy that runs keeps its configuration). */
static void cancel_all(hx *s);

static void trial_fail(hx *s, int err, const char *why)
{
	if (s->proven || s->failed)
		return;
	s->failed = true;
	cancel_all(s);
	drop_pending(s);
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
		if (s->master_err) {
			set_reason(&s->master_err, NULL);
			update_health(s);
		}
		ap_unknown(s); /* set every server from scratch */
		if (s->spawn_gen != s->file_gen)
			s->force_reload = true; /* it may have read an older file */
		kick(s);
		return;
	case HX_SUP_DOWN:
	case HX_SUP_FAILED:
		s->master_ready = false;
		s->spawn_gen = s->file_gen; /* the restart reads the installed file */
		if (ev == HX_SUP_DOWN)
			s->h->metric_add(s->m_restarts, 1);
		set_reason(&s->master_err, why);
		update_health(s);
		/* A reload in progress has nobody to talk to any more. */
		if (s->ps == P_RELOAD || s->ps == P_CONFIRM) {
			hx_cli_cancel(s->master_req);
			s->master_req = NULL;
			hx_poll_cancel(s->confirm);
			s->confirm = NULL;
			pipeline_done(s);
		}
		if (ev == HX_SUP_FAILED && !s->proven)
			trial_fail(s, err, why);
		return;
	case HX_SUP_STOPPED:
		s->h->stopped(s->ctx);
		return;
	}
}

static void on_adopted(void *arg, int result, const char *why)
{
	hx *s = arg;
	s->adopting = false;
	if (result < 0) {
		set_reason(&s->master_err, why);
		update_health(s);
		trial_fail(s, result, why);
		return;
	}
	/* Adopted: it runs the file on disk as it was (spawn_gen stays 0
	 * unless install_unchanged() found ours the same): a file installed
	 * since makes its READY force one reload.  None: started once the
	 * file is in. */
	kick(s);
}

/* ------------------------------------------------------------------ */
/* The scheduler                                                      */
/* ------------------------------------------------------------------ */

static bool runtime_settled(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			if (!hx_slot_live(v, i))
				continue;
			const slot *sl = &v->slots[i];
			const srv_view *a = &sl->ap;
			/* view_eq(slot_target(sl), ap) without building the target */
			bool eq = sl->st == ST_FREE ? a->st == AP_MAINT
			          : a->st == (sl->st == ST_READY ? AP_READY : AP_DRAIN) &&
			                    a->port == sl->port && strcmp(a->addr, sl->addr) == 0;
			if (!eq)
				return false;
		}
	return true;
}

static void maybe_applied(hx *s)
{
	if (!s->pending || s->ps != P_IDLE || s->admin_req || slow_needed(s) || !runtime_settled(s))
		return;
	if (s->manage && !s->master_ready)
		return;
	s->h->applied(s->ctx, s->pending);
	drop_pending(s);
}

static void kick(hx *s)
{
	if (s->stopping || !s->started || s->failed)
		return;
	if (s->manage && s->installed_once && !s->adopting && !hx_sup_busy(s->sup) &&
	    s->ps == P_IDLE && !s->mirror) {
		s->spawn_gen = s->file_gen;
		hx_sup_spawn(s->sup);
	}
	if (s->ps == P_DUMP && s->dump_pending && !s->admin_req)
		start_dump(s);
	if (admin_usable(s) && !send_cmds(s) && !s->admin_req && any_draining(s) &&
	    !uv_is_active((uv_handle_t *)s->t_poll))
		uv_timer_start(s->t_poll, on_poll_timer, 100, 0);
	if (slow_needed(s))
		schedule_slow(s);
	else if (s->reject_err && s->ps == P_IDLE) {
		/* What is wanted runs (the rejected change was undone). */
		set_reason(&s->reject_err, NULL);
		update_health(s);
	}
	maybe_mirror(s);
	maybe_applied(s);
	maybe_proven(s);
}

/* ------------------------------------------------------------------ */
/* Plugin interface                                                   */
/* ------------------------------------------------------------------ */

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t n)
{
	hx *s = self;
	if (s->stopping)
	(void)changed;
	(void)n;
	if (s->stopping || s->failed)
		return;
	drop_pending(s);
	s->pending = s->h->catalog_ref(cat);
	s->rejected_wait = false; /* a change: a rejected configuration may be tried again */
	/* Only the services that changed are computed again; the first
	 * snapshot computes every one (and those of an earlier run's file). */
	bool all = s->cat == NULL;
	if (s->cat)
		s->h->catalog_unref(s->cat);
	s->cat = s->h->catalog_ref(cat);
	hx_model_update(&s->m, cat, changed, n, all);
	report_exclusions(s);
	arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	kick(s);
}

static void on_model_timer(uv_timer_t *t)
{
	hx *s = t->data;
	if (s->stopping)
		return;
	arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	report_exclusions(s);
	kick(s);
}

/* The next empty grace end or exclusion retry (0: none). */
static void arm_model_timer(hx *s, uint64_t at)
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
	hx_svc_grow(v, slotno + 1);
	s->m.gen++;
	slot *sl = &v->slots[slotno];
	char canon[HX_ADDR_MAX];
	bool v6;
	if (addr && id && port && hx_valid_ip(addr, canon, &v6) && !sl->id) {
		sl->id = xstrdup(id);
		snprintf(sl->addr, sizeof(sl->addr), "%s", canon);
		sl->port = (uint16_t)port;
		sl->st = ST_READY;
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
	hx_buf b = {0};
	char tmp[8192];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0 && b.len < (64u << 20))
		hx_buf_add(&b, tmp, n);
	fclose(f);
	s->file_text = hx_buf_take(&b);
	hx_parse_file(s->file_text, on_file_recovered, on_id_recovered, s);
	hx_model_sort(&s->m);
	size_t nsvc = 0;
	for (svc *v = s->m.svcs; v; v = v->next) {
		v->recovered = true;
		nsvc++;
	}
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
	                             "bound, or haproxy refused their section); retried.",
	                             NULL);
}

static void model_teardown(hx *s)
{
	if (s->t_model) {
		uv_close((uv_handle_t *)s->t_model, (uv_close_cb)free);
		s->t_model = NULL;
	}
	if (s->cat)
		s->h->catalog_unref(s->cat);
	s->cat = NULL;
	hx_model_free(&s->m);
	free(s->excl_note);
	s->excl_note = NULL;
}

static uv_timer_t *new_timer(hx *s)
{
	uv_timer_t *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	uv_timer_init(s->loop, t);
	t->data = s;
	return t;
}

static void close_timer(uv_timer_t **t)
{
	if (*t)
		uv_close((uv_handle_t *)*t, (uv_close_cb)free);
	*t = NULL;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	hx *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = h;
	s->manage = h->cfg_bool(ctx, "manage");
	s->config_file = xstrdup(h->cfg_string(ctx, "config_file"));
	s->cand_path = xasprintf("%s.new", s->config_file);
	s->tmp_path = xasprintf("%s.tmp", s->config_file);
	const char *sf = h->cfg_string(ctx, "state_file");
	s->state_file = sf ? xstrdup(sf) : beside(s->config_file, "haproxy.state");
	s->state_tmp = xasprintf("%s.tmp", s->state_file);
	const char *as = h->cfg_string(ctx, "admin_socket");
	const char *ms = h->cfg_string(ctx, "master_socket");
	s->admin_socket = as ? xstrdup(as) : beside(s->config_file, "haproxy-admin.sock");
	s->master_socket = ms ? xstrdup(ms)
	                      : s->manage ? beside(s->config_file, "haproxy-master.sock") : NULL;
	s->reload_command = xstrdup(h->cfg_string(ctx, "reload_command"));
	s->haproxy_bin = xstrdup(h->cfg_string(ctx, "haproxy"));
	s->ninclude = h->cfg_list(ctx, "include", &s->include);
	const char *ba = h->cfg_string(ctx, "bind_address");
	snprintf(s->bind_addr, sizeof(s->bind_addr), "%s", ba ? ba : "*");
	const char *st = h->cfg_string(ctx, "stats");
	bool lo = false;
	s->stats_on = st && strcmp(st, "off") != 0 &&
	              parse_stats(st, s->stats_bind, sizeof(s->stats_bind), &s->stats_port, &lo) &&
	              (lo || h->cfg_bool(ctx, "stats_public"));
	s->reload_interval = h->cfg_duration_ms(ctx, "reload_interval");
	s->drain_timeout = h->cfg_duration_ms(ctx, "drain_timeout");
	s->check_timeout = h->cfg_duration_ms(ctx, "check_timeout");
	s->cmd_timeout = h->cfg_duration_ms(ctx, "command_timeout");
	s->startup_grace = h->cfg_duration_ms(ctx, "startup_grace");
	s->slots_default = h->cfg_int(ctx, "slots");
	s->retries_default = h->cfg_int(ctx, "retries");
	s->t_connect = h->cfg_duration_ms(ctx, "timeout_connect");
	s->t_client = h->cfg_duration_ms(ctx, "timeout_client");
	s->t_server = h->cfg_duration_ms(ctx, "timeout_server");
	s->t_check = h->cfg_duration_ms(ctx, "timeout_check");
	s->inter = h->cfg_duration_ms(ctx, "check_interval");
	s->admin_backoff = (regent_backoff){.initial_ms = 200, .max_ms = 10000};
	s->reload_backoff = (regent_backoff){.initial_ms = 1000, .max_ms = 30000};
	model_setup(s);
	s->keep_running = h->cfg_bool(ctx, "keep_running");
	s->g_want = hx_render_global(s->manage ? s->admin_socket : NULL,
	                             s->manage ? s->state_file : NULL,
	                             s->stats_on ? s->stats_bind : NULL);
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
	s->h->set_health(ctx, true, NULL);
	*self = s;
	return 0;
}

static int start(void *self)
{
	hx *s = self;
	s->loop = s->h->loop(s->ctx);
	s->t_poll = new_timer(s);
	s->t_retry = new_timer(s);
	s->t_slow = new_timer(s);
	s->t_model = new_timer(s);
	s->t_wretry = new_timer(s);
	recover(s);
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
		s->pid_file = sd ? xasprintf("%s/%s.pid", sd, base) : xasprintf("%s.pid", s->config_file);
		s->log_file = sd ? xasprintf("%s/%s.log", sd, base) : xasprintf("%s.log", s->config_file);
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
			.include = s->include,
			.ninclude = s->ninclude,
			.cmd_timeout = s->cmd_timeout,
			.crash_window = 10000,
		};
		s->sup = hx_sup_new(&c, on_sup, s);
		/* An haproxy an earlier run left (or the instance this one
		 * replaces runs) is adopted, never stopped and restarted. */
		s->adopting = true;
		hx_sup_adopt(s->sup, on_adopted, s);
	}
	/* Proven once the first configuration passed haproxy -c and runs:
	 * until then the instance it replaces keeps working. */
	return REGENT_PENDING;
}

static void cancel_all(hx *s)
{
	hx_cli_cancel(s->admin_req);
	s->admin_req = NULL;
	hx_cli_cancel(s->master_req);
	s->master_req = NULL;
	hx_run_cancel(s->run);
	s->run = NULL;
	hx_write_cancel(s->write);
	s->write = NULL;
	hx_write_cancel(s->mirror);
	s->mirror = NULL;
	hx_poll_cancel(s->confirm);
	s->confirm = NULL;
	uv_timer_t *ts[] = {s->t_poll, s->t_retry, s->t_slow, s->t_wretry};
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
	drop_pending(s);
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
	drop_pending(s);
	hx_sup_free(s->sup); /* never kills: stop() decided */
	s->sup = NULL;
	close_timer(&s->t_poll);
	close_timer(&s->t_retry);
	close_timer(&s->t_slow);
	model_teardown(s);
	close_timer(&s->t_wretry);
	free(s->g_want);
	free(s->g_cand);
	free(s->g_run);
	free(s->file_text);
	free(s->last_rejected);
	free(s->cand_text);
	free(s->admin_err);
	free(s->reload_err);
	free(s->reject_err);
	free(s->master_err);
	free(s->write_err);
	free(s->pid_file);
	free(s->log_file);
	free(s->config_file);
	free(s->cand_path);
	free(s->tmp_path);
	free(s->state_file);
	free(s->state_tmp);
	free(s->admin_socket);
	free(s->master_socket);
	free(s->reload_command);
	free(s->haproxy_bin);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("haproxy"),
	.kind = REGENT_KIND_SINK,
	.version = "0.1.0",
	.description = "routes every catalog service through a local haproxy (runtime API + reload)",
	.config_keys = keys,
	.service_keys = service_keys,
	.ops = &ops,
	.kind_ops = &sink_ops,
};
