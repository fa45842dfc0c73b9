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
#include "hx.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ------------------------------------------------------------------ */
/* Model                                                              */
/* ------------------------------------------------------------------ */

typedef enum { ST_FREE = 0, ST_READY, ST_DRAIN } slot_state;
typedef enum { AP_UNKNOWN = 0, AP_MAINT, AP_READY, AP_DRAIN } ap_state;

/* A server as one party knows it (haproxy, the file on disk...). */
typedef struct srv_view {
	ap_state st;
	char addr[HX_ADDR_MAX];
	uint16_t port;
} srv_view;

typedef struct slot {
	char *id; /* the instance in this slot; NULL when free */
	char addr[HX_ADDR_MAX];
	uint16_t port;
	slot_state st;
	uint64_t drain_since;
	srv_view ap;   /* what haproxy has, as last confirmed */
	srv_view sent; /* in the admin request in flight */
	srv_view file; /* what the installed file says */
	srv_view pend; /* what the file being written says */
	bool inflight, seen;
} slot;

/* The part of a service that only a reload can change. */
typedef struct shape {
	char *listen;  /* the listen block without servers; NULL: absent */
	char *srvopts; /* appended to every server line */
	size_t nslots;
} shape;

typedef struct svc {
	char *name;
	unsigned pxid; /* forced proxy id, stable while the service lives */
	shape want; /* from the latest snapshot */
	shape cand; /* in the slow path's candidate file */
	shape run;  /* in the installed file (what haproxy runs) */
	slot *slots;
	size_t nslots; /* allocated and meaningful */
	char *warned;     /* warnings of the previous snapshot ("\nmsg\nmsg\n") */
	hx_buf warn_now;  /* ... and of this one */
	bool in_cat;
	bool recovered; /* read from an earlier run's file: kept through the startup grace */
	struct svc *next; /* sorted by name */
} svc;

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
	bool grace_over;
	int64_t slots_default, retries_default;
	uint64_t t_connect, t_client, t_server, t_check, inter;

	/* model */
	svc *svcs;
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
	 "stats listener ADDR:PORT, or off"},
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

/* "ADDR:PORT" / "[V6]:PORT" / "*:PORT" -> haproxy bind text and port. */
static bool parse_stats(const char *v, char *out, size_t outlen, uint16_t *port)
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
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 1 || p > 65535)
		return false;
	*port = (uint16_t)p;
	return hx_format_bind(addr, (unsigned)p, out, outlen);
}

typedef struct svc_settings {
	hx_svc_cfg c;
	char bind[80];
	hx_buf srvopts;
	int64_t slots;
} svc_settings;

/* Reads a [service NAME] section (or the defaults) into st; returns 0 or
 * -EINVAL with why.  Used by validate() and at runtime. */
static int read_settings(regent_ctx *ctx, const regent_host *h, const char *name, svc_settings *st,
                         char *why, size_t whylen)
{
	memset(st, 0, sizeof(*st));
	const char *mode = h->service_string(ctx, name, "mode");
	if (mode && strcmp(mode, "tcp") != 0 && strcmp(mode, "http") != 0) {
		snprintf(why, whylen, "[service %s] mode: must be tcp or http, got \"%.40s\"", name, mode);
		return -EINVAL;
	}
	st->c.name = name;
	st->c.http = mode && strcmp(mode, "http") == 0;
	const char *check = h->service_string(ctx, name, "check");
	if (check && check[0]) {
		if (!hx_valid_check_path(check)) {
			snprintf(why, whylen,
			         "[service %s] check: \"%.60s\" is not a path (/ then letters, digits and "
			         "._~!&()*+,;=:@%%/?-)",
			         name, check);
			return -EINVAL;
		}
		st->c.check_path = check;
	}
	const char *bal = h->service_string(ctx, name, "balance");
	if (bal && !hx_valid_balance(bal)) {
		snprintf(why, whylen,
		         "[service %s] balance: \"%.40s\" is not one of roundrobin, static-rr, leastconn, "
		         "first, source, random",
		         name, bal);
		return -EINVAL;
	}
	st->c.balance = bal ? bal : "roundrobin";
	if (h->service_is_set(ctx, name, "maxconn"))
		st->c.maxconn = h->service_int(ctx, name, "maxconn");
	st->slots = h->service_is_set(ctx, name, "slots") ? h->service_int(ctx, name, "slots") : 0;
	st->c.retries = h->service_is_set(ctx, name, "retries") ? h->service_int(ctx, name, "retries")
	                                                        : -1;
	const char *const *opts = NULL;
	size_t nopts = 0;
	if (h->service_is_set(ctx, name, "server_options")) {
		/* LIST values read as text: split on commas like the core does. */
		const char *raw = h->service_string(ctx, name, "server_options");
		char *copy = xstrdup(raw ? raw : ""), *save = NULL;
		const char *items[64];
		for (char *t = strtok_r(copy, ",", &save); t && nopts < 64; t = strtok_r(NULL, ",", &save)) {
			while (*t == ' ' || *t == '\t')
				t++;
			char *e = t + strlen(t);
			while (e > t && (e[-1] == ' ' || e[-1] == '\t'))
				*--e = '\0';
			if (*t)
				items[nopts++] = t;
		}
		opts = items;
		hx_buf tmp = {0};
		int rc = hx_server_options(opts, nopts, &tmp, why, whylen);
		if (rc == 0)
			hx_buf_puts(&st->srvopts, hx_buf_str(&tmp));
		hx_buf_free(&tmp);
		free(copy);
		if (rc < 0) {
			char inner[256];
			snprintf(inner, sizeof(inner), "%s", why);
			snprintf(why, whylen, "[service %s] server_options: %s", name, inner);
			hx_buf_free(&st->srvopts);
			return rc;
		}
	}
	return 0;
}

static uint64_t svc_dur(hx *s, const char *name, const char *key, uint64_t dflt)
{
	return s->h->service_is_set(s->ctx, name, key) ? s->h->service_duration_ms(s->ctx, name, key)
	                                               : dflt;
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
	uint16_t sport = 0;
	bool stats_on = st && strcmp(st, "off") != 0 && parse_stats(st, sb, sizeof(sb), &sport);
	char *global = hx_render_global(manage ? "/nonexistent/regent-check.sock" : NULL,
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
	if (st && strcmp(st, "off") != 0 && !parse_stats(st, tmp, sizeof(tmp), &sport)) {
		h->cfg_error(ctx, "stats", "must be ADDR:PORT (ADDR: * or an IP literal) or off (got \"%s\")",
		             st);
		bad = -EINVAL;
	}
	/* [service] sections: settings and ports. */
	const char *const *names;
	size_t n = h->services(ctx, &names);
	for (size_t i = 0; i < n; i++) {
		svc_settings ss;
		char why[512];
		if (read_settings(ctx, h, names[i], &ss, why, sizeof(why)) < 0) {
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
	                                : s->reject_err;
	s->h->set_health(s->ctx, r == NULL, r);
}

/* Logs a per-service warning once: not again while every snapshot since
 * has raised it too. */
static void svc_warn(hx *s, svc *v, const char *fmt, ...) REGENT_PRINTF(3, 4);
static void svc_warn(hx *s, svc *v, const char *fmt, ...)
{
	char msg[520];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg + 1, sizeof(msg) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	msg[0] = '\n';
	size_t len = strlen(msg);
	msg[len] = '\n';
	msg[len + 1] = '\0';
	if (!v->warned || !strstr(v->warned, msg))
		s->h->log(s->ctx, REGENT_LOG_WARN, "%.*s", (int)(len - 1), msg + 1);
	if (!v->warn_now.len)
		hx_buf_puts(&v->warn_now, "\n");
	hx_buf_puts(&v->warn_now, msg + 1);
}

static void warn_begin(hx *s)
{
	for (svc *v = s->svcs; v; v = v->next)
		hx_buf_free(&v->warn_now);
}

static void warn_end(hx *s)
{
	for (svc *v = s->svcs; v; v = v->next) {
		free(v->warned);
		v->warned = v->warn_now.len ? hx_buf_take(&v->warn_now) : NULL;
		hx_buf_free(&v->warn_now);
	}
}

/* ------------------------------------------------------------------ */
/* Services and slots                                                 */
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
}

static bool shape_eq(const shape *a, const shape *b)
{
	if (!a->listen || !b->listen)
		return !a->listen && !b->listen;
	return strcmp(a->listen, b->listen) == 0 && streq(a->srvopts, b->srvopts) &&
	       a->nslots == b->nslots;
}

static void slot_free_id(slot *sl)
{
	free(sl->id);
	sl->id = NULL;
	sl->st = ST_FREE;
}

static void svc_free(svc *v)
{
	shape_clear(&v->want);
	shape_clear(&v->cand);
	shape_clear(&v->run);
	for (size_t i = 0; i < v->nslots; i++)
		free(v->slots[i].id);
	free(v->slots);
	free(v->warned);
	hx_buf_free(&v->warn_now);
	free(v->name);
	free(v);
}

static svc *svc_find(hx *s, const char *name)
{
	for (svc *v = s->svcs; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static svc *svc_get(hx *s, const char *name)
{
	svc *v = svc_find(s, name);
	if (v)
		return v;
	v = calloc(1, sizeof(*v));
	if (!v)
		abort();
	v->name = xstrdup(name);
	/* The smallest free proxy id. */
	for (unsigned id = HX_FIRST_ID; !v->pxid; id++) {
		bool used = false;
		for (svc *o = s->svcs; o && !used; o = o->next)
			used = o->pxid == id;
		if (!used)
			v->pxid = id;
	}
	svc **pp = &s->svcs;
	while (*pp && strcmp((*pp)->name, name) < 0)
		pp = &(*pp)->next;
	v->next = *pp;
	*pp = v;
	return v;
}

static void svc_grow(svc *v, size_t n)
{
	if (n <= v->nslots)
		return;
	slot *p = realloc(v->slots, n * sizeof(*p));
	if (!p)
		abort();
	memset(p + v->nslots, 0, (n - v->nslots) * sizeof(*p));
	v->slots = p;
	v->nslots = n;
}

/* Drops services that nobody wants, nobody is installing and haproxy does
 * not run. */
static void svc_gc(hx *s)
{
	for (svc **pp = &s->svcs; *pp;) {
		svc *v = *pp;
		if (!v->in_cat && !v->want.listen && !v->cand.listen && !v->run.listen &&
		    !(v->recovered && !s->grace_over)) {
			*pp = v->next;
			svc_free(v);
		} else {
			pp = &v->next;
		}
	}
}

/* Whether the runtime API can reach this slot now. */
static bool slot_live(const svc *v, size_t i)
{
	return v->run.listen && i < v->run.nslots;
}

/* ------------------------------------------------------------------ */
/* Snapshot -> model                                                  */
/* ------------------------------------------------------------------ */

typedef struct cand_inst {
	const regent_instance *in;
	char addr[HX_ADDR_MAX];
} cand_inst;

typedef struct plan {
	const char *name;
	cand_inst *insts;
	size_t n;
	long port;
	bool explicit_port;
	bool ok;
} plan;

static int plan_cmp(const void *a, const void *b)
{
	const plan *x = a, *y = b;
	if (x->explicit_port != y->explicit_port)
		return x->explicit_port ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Effective listen port: [service] port, else the instances' service_port
 * (the most common one), else their meta "port" (the seed's /port key). */
static long pick_port(hx *s, svc *v, plan *p)
{
	if (s->h->service_is_set(s->ctx, p->name, "port")) {
		p->explicit_port = true;
		return (long)s->h->service_int(s->ctx, p->name, "port");
	}
	long best = 0;
	size_t best_n = 0, distinct = 0;
	for (size_t i = 0; i < p->n; i++) {
		long sp = p->insts[i].in->service_port;
		if (!sp)
			continue;
		size_t cnt = 0;
		bool first = true;
		for (size_t j = 0; j < p->n; j++) {
			if (p->insts[j].in->service_port == sp)
				cnt++;
			if (j < i && p->insts[j].in->service_port == sp)
				first = false;
		}
		if (first)
			distinct++;
		if (cnt > best_n || (cnt == best_n && sp < best)) {
			best = sp;
			best_n = cnt;
		}
	}
	if (distinct > 1)
		svc_warn(s, v,
		         "service %s: instances disagree on service_port; listening on %ld (the most "
		         "common); set [service %s] port to choose",
		         p->name, best, p->name);
	if (best)
		return best;
	for (size_t i = 0; i < p->n; i++)
		for (size_t m = 0; m < p->insts[i].in->nmeta; m++)
			if (strcmp(p->insts[i].in->meta[m].key, "port") == 0) {
				char *end;
				long mp = strtol(p->insts[i].in->meta[m].value, &end, 10);
				if (!*end && mp >= 1 && mp <= 65535)
					return mp;
			}
	return 0;
}

/* Builds the shape a service wants; false (with a warning) when its
 * settings cannot be rendered. */
static bool build_shape(hx *s, svc *v, long port, shape *out)
{
	svc_settings ss;
	char why[512];
	if (read_settings(s->ctx, s->h, v->name, &ss, why, sizeof(why)) < 0) {
		svc_warn(s, v, "service %s is not routed: %s", v->name, why);
		return false;
	}
	if (!hx_format_bind(s->bind_addr, (unsigned)port, ss.bind, sizeof(ss.bind))) {
		hx_buf_free(&ss.srvopts);
		return false;
	}
	ss.c.bind = ss.bind;
	ss.c.id = v->pxid;
	if (ss.c.retries < 0)
		ss.c.retries = s->retries_default;
	ss.c.t_connect = svc_dur(s, v->name, "timeout_connect", s->t_connect);
	ss.c.t_client = svc_dur(s, v->name, "timeout_client", s->t_client);
	ss.c.t_server = svc_dur(s, v->name, "timeout_server", s->t_server);
	ss.c.t_check = svc_dur(s, v->name, "timeout_check", s->t_check);
	uint64_t inter = svc_dur(s, v->name, "check_interval", s->inter);
	ss.c.state_file = s->state_file;
	char t[32];
	hx_fmt_ms(t, sizeof(t), inter);
	out->listen = hx_render_listen(&ss.c);
	out->srvopts = xasprintf(" check inter %s%s", t, hx_buf_str(&ss.srvopts));
	out->nslots = (size_t)(ss.slots > 0 ? ss.slots : s->slots_default);
	hx_buf_free(&ss.srvopts);
	return true;
}

/* Places the service's instances into slots. */
static void assign_slots(hx *s, svc *v, plan *p)
{
	uint64_t now = s->h->now_ms();
	for (size_t i = 0; i < v->nslots; i++)
		v->slots[i].seen = false;
	cand_inst **fresh = calloc(p->n + 1, sizeof(*fresh));
	size_t nfresh = 0;
	if (!fresh)
		abort();
	for (size_t k = 0; k < p->n; k++) {
		cand_inst *ci = &p->insts[k];
		slot *hit = NULL;
		for (size_t i = 0; i < v->nslots && !hit; i++)
			if (v->slots[i].id && strcmp(v->slots[i].id, ci->in->id) == 0)
				hit = &v->slots[i];
		if (!hit) {
			fresh[nfresh++] = ci;
			continue;
		}
		hit->seen = true;
		snprintf(hit->addr, sizeof(hit->addr), "%s", ci->addr); /* a move, or the same */
		hit->port = ci->in->port;
		hit->st = ST_READY;
	}
	/* Leaving instances: drain where haproxy runs them, else free at once. */
	for (size_t i = 0; i < v->nslots; i++) {
		slot *sl = &v->slots[i];
		if (!sl->id || sl->seen)
			continue;
		if (slot_live(v, i) && sl->ap.st != AP_MAINT) {
			if (sl->st != ST_DRAIN) {
				sl->st = ST_DRAIN;
				sl->drain_since = now;
			}
		} else {
			slot_free_id(sl);
		}
	}
	/* Joining instances: a free live slot first, then any free slot, then
	 * a new one (which takes a reload). */
	for (size_t k = 0; k < nfresh; k++) {
		slot *got = NULL;
		for (int pass = 0; pass < 2 && !got; pass++)
			for (size_t i = 0; i < v->nslots && !got; i++)
				if (v->slots[i].st == ST_FREE && (pass == 1 || slot_live(v, i)))
					got = &v->slots[i];
		if (!got) {
			svc_grow(v, v->nslots + 1);
			got = &v->slots[v->nslots - 1];
		}
		got->id = xstrdup(fresh[k]->in->id);
		snprintf(got->addr, sizeof(got->addr), "%s", fresh[k]->addr);
		got->port = fresh[k]->in->port;
		got->st = ST_READY;
	}
	free(fresh);
}

static void update_model(hx *s, const regent_catalog *cat)
{
	const regent_host *h = s->h;
	const char *const *names;
	size_t n = h->catalog_services(cat, &names);
	plan *plans = calloc(n + 1, sizeof(*plans));
	if (!plans)
		abort();
	warn_begin(s);
	for (svc *v = s->svcs; v; v = v->next)
		v->in_cat = false;
	for (size_t i = 0; i < n; i++) {
		plan *p = &plans[i];
		p->name = names[i];
		if (!h->valid_service(names[i]))
			continue;
		svc *v = svc_get(s, names[i]);
		v->in_cat = true;
		if (strcmp(names[i], HX_STATS_PROXY) == 0) {
			svc_warn(s, v, "service %s is not routed: the name is taken by the stats listener",
			         names[i]);
			continue;
		}
		const regent_instance *const *insts;
		size_t k = h->catalog_instances(cat, names[i], &insts);
		p->insts = calloc(k + 1, sizeof(*p->insts));
		if (!p->insts)
			abort();
		for (size_t j = 0; j < k; j++) {
			const regent_instance *in = insts[j];
			bool v6;
			if (in->proto != REGENT_PROTO_TCP)
				continue; /* haproxy proxies TCP only */
			if (!hx_valid_ip(in->address, p->insts[p->n].addr, &v6) || in->port == 0) {
				svc_warn(s, v,
				         "service %s: instance %s skipped: address \"%.80s\" port %u is not an "
				         "IP literal and port (haproxy needs both)",
				         names[i], in->id, in->address ? in->address : "", in->port);
				continue;
			}
			p->insts[p->n++].in = in;
		}
		p->port = pick_port(s, v, p);
		if (!p->port) {
			svc_warn(s, v,
			         "service %s is not routed: no port (set [service %s] port, or register "
			         "instances with a service_port)",
			         names[i], names[i]);
			continue;
		}
		p->ok = true;
	}
	/* Ports: explicit ones first, then by name; the stats port is taken. */
	qsort(plans, n, sizeof(*plans), plan_cmp);
	for (size_t i = 0; i < n; i++) {
		plan *p = &plans[i];
		if (!p->ok)
			continue;
		svc *v = svc_find(s, p->name);
		if (s->stats_on && p->port == s->stats_port) {
			svc_warn(s, v, "service %s is not routed: port %ld is the stats listener's", p->name,
			         p->port);
			p->ok = false;
			continue;
		}
		for (size_t j = 0; j < i; j++)
			if (plans[j].ok && plans[j].port == p->port) {
				svc_warn(s, v, "services %s and %s both claim port %ld; %s is not routed",
				         plans[j].name, p->name, p->port, p->name);
				p->ok = false;
				break;
			}
	}
	for (size_t i = 0; i < n; i++) {
		plan *p = &plans[i];
		svc *v = p->name ? svc_find(s, p->name) : NULL;
		if (!v)
			continue;
		shape want = {0};
		if (p->ok && build_shape(s, v, p->port, &want)) {
			assign_slots(s, v, p);
			/* Slots never shrink while the service lives; they grow in
			 * steps of the configured count. */
			size_t need = v->want.listen ? v->want.nslots : 0;
			if (v->run.listen && v->run.nslots > need)
				need = v->run.nslots;
			if (want.nslots > need)
				need = want.nslots;
			size_t used = 0;
			for (size_t j = 0; j < v->nslots; j++)
				if (v->slots[j].st != ST_FREE)
					used = j + 1;
			size_t step = want.nslots;
			while (need < used)
				need += step;
			want.nslots = need;
			svc_grow(v, need);
			shape_clear(&v->want);
			v->want = want;
		} else {
			shape_clear(&want);
			shape_clear(&v->want);
			v->in_cat = true;
		}
		free(p->insts);
	}
	free(plans);
	/* Services that left the catalog: their instances leave with them. */
	for (svc *v = s->svcs; v; v = v->next) {
		if (v->in_cat && v->want.listen)
			continue;
		if (v->recovered && !s->grace_over && !v->in_cat)
			continue; /* its slots wait for the catalog to fill */
		if (!v->in_cat)
			shape_clear(&v->want);
		plan none = {.name = v->name};
		assign_slots(s, v, &none);
	}
	warn_end(s);
	svc_gc(s);
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
	for (svc *v = s->svcs; v; v = v->next) {
		const shape *p = shape_of(v, w);
		if (!p->listen)
			continue;
		hx_buf_puts(&b, p->listen);
		for (size_t i = 0; i < p->nslots && i < v->nslots; i++) {
			slot *sl = &v->slots[i];
			sl->pend = slot_as_file(sl);
			hx_server_line l = {.enabled = sl->pend.st == AP_READY, .addr = sl->addr,
			                    .port = sl->port, .id = sl->id};
			hx_render_server(&b, i, &l, p->srvopts);
		}
		hx_buf_puts(&b, "\n");
	}
	return hx_buf_take(&b);
}

/* The written file is on disk: it is what haproxy loads next. */
static void pend_to_file(hx *s, which w)
{
	for (svc *v = s->svcs; v; v = v->next) {
		const shape *p = shape_of(v, w);
		for (size_t i = 0; p->listen && i < p->nslots && i < v->nslots; i++)
			v->slots[i].file = v->slots[i].pend;
	}
}

/* haproxy just loaded the installed file: that is its state now. */
static void ap_from_file(hx *s)
{
	s->epoch++;
	for (svc *v = s->svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap = v->slots[i].file;
			v->slots[i].inflight = false;
		}
}

static void ap_unknown(hx *s)
{
	s->epoch++;
	for (svc *v = s->svcs; v; v = v->next)
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
	srv_view t = slot_target(sl);
	const srv_view *a = &sl->ap;
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
		for (svc *v = s->svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].inflight = false;
		admin_failed(s, uv_strerror(status));
		return;
	}
	size_t elen = 0;
	const char *err = hx_cli_error(out, &elen);
	for (svc *v = s->svcs; v; v = v->next)
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
	for (svc *v = s->svcs; v && b.len < 8000; v = v->next)
		for (size_t i = 0; i < v->nslots && b.len < 8000; i++) {
			if (!slot_live(v, i))
				continue;
			slot *sl = &v->slots[i];
			/* A draining slot haproxy already has in maintenance
			 * (a reload, or it never got there) is simply free. */
			if (sl->st == ST_DRAIN && sl->ap.st == AP_MAINT)
				slot_free_id(sl);
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
		for (svc *v = s->svcs; v; v = v->next)
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
	for (svc *v = s->svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++)
			if (slot_live(v, i) && v->slots[i].st == ST_DRAIN && v->slots[i].ap.st == AP_DRAIN)
				return true;
	return false;
}

static void on_stat_row(void *arg, const char *px, const char *sv, long scur)
{
	hx *s = arg;
	svc *v = svc_find(s, px);
	if (!v || sv[0] != 's')
		return;
	char *end;
	long idx = strtol(sv + 1, &end, 10);
	if (*end || idx < 1 || (size_t)idx > v->nslots || !slot_live(v, (size_t)idx - 1))
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
		slot_free_id(sl);
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
	for (svc *v = s->svcs; v; v = v->next) {
		bool d = false;
		for (size_t i = 0; i < v->nslots && !d; i++)
			d = slot_live(v, i) && v->slots[i].st == ST_DRAIN;
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
	for (svc *v = s->svcs; v; v = v->next)
		if (!shape_eq(&v->want, &v->run))
			return true;
	return false;
}

static void pipeline_done(hx *s)
{
	s->ps = P_IDLE;
	free(s->cand_text);
	s->cand_text = NULL;
	for (svc *v = s->svcs; v; v = v->next)
		shape_clear(&v->cand);
	free(s->g_cand);
	s->g_cand = NULL;
	svc_gc(s);
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
	for (svc *v = s->svcs; v; v = v->next)
		shape_copy(&v->run, &v->cand);
	free(s->g_run);
	s->g_run = xstrdup(s->g_cand);
	s->installed_once = true;
	s->file_gen++;
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
	svc *v = svc_find(s, px);
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
	for (svc *v = s->svcs; v; v = v->next)
		shape_copy(&v->cand, &v->want);
	free(s->g_cand);
	s->g_cand = xstrdup(s->g_want);
	char *text = render_file(s, R_CAND);
	if (s->last_rejected && strcmp(text, s->last_rejected) == 0 && !s->force_reload) {
		free(text); /* haproxy said no to exactly this: wait for a change */
		for (svc *v = s->svcs; v; v = v->next)
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
	if (s->grace_over || !s->recovered)
		return false;
	bool any = false;
	for (svc *v = s->svcs; v && !any; v = v->next)
		any = v->want.listen != NULL;
	if (any || now >= s->started_ms + s->startup_grace) {
		s->grace_over = true;
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

static bool view_eq(const srv_view *a, const srv_view *b)
{
	if (a->st != b->st)
		return false;
	if (a->st == AP_MAINT || a->st == AP_UNKNOWN)
		return true;
	return strcmp(a->addr, b->addr) == 0 && a->port == b->port;
}

static bool runtime_settled(hx *s)
{
	for (svc *v = s->svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			if (!slot_live(v, i))
				continue;
			srv_view t = slot_target(&v->slots[i]);
			if (!view_eq(&t, &v->slots[i].ap))
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
	(void)changed;
	(void)n;
	if (s->stopping || s->failed)
		return;
	drop_pending(s);
	s->pending = s->h->catalog_ref(cat);
	s->rejected_wait = false; /* a change: a rejected configuration may be tried again */
	update_model(s, cat);
	kick(s);
}

static void on_file_recovered(void *arg, const char *proxy, size_t slotno, const char *addr,
                              unsigned port, const char *id)
{
	hx *s = arg;
	if (!s->h->valid_service(proxy) || slotno >= 4096)
		return;
	svc *v = svc_get(s, proxy);
	svc_grow(v, slotno + 1);
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
	for (svc *o = s->svcs; o; o = o->next)
		if (o->pxid == id)
			return; /* taken (a hand-edited file): keep the allocated one */
	svc_get(s, proxy)->pxid = id;
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
	size_t nsvc = 0;
	for (svc *v = s->svcs; v; v = v->next) {
		v->recovered = true;
		nsvc++;
	}
	s->recovered = nsvc;
	if (nsvc)
		s->h->log(s->ctx, REGENT_LOG_INFO, "%s: kept the server slots of %zu services",
		          s->config_file, nsvc);
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
	s->stats_on = st && strcmp(st, "off") != 0 &&
	              parse_stats(st, s->stats_bind, sizeof(s->stats_bind), &s->stats_port);
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
	s->keep_running = h->cfg_bool(ctx, "keep_running");
	s->g_want = hx_render_global(s->manage ? s->admin_socket : NULL,
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
	close_timer(&s->t_wretry);
	while (s->svcs) {
		svc *v = s->svcs;
		s->svcs = v->next;
		svc_free(v);
	}
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
