/*
 * etcd.c - the etcd store plugin (etcd v3 JSON gateway, /v3/...).
 *
 * Registration: one lease per agent, kept alive every TTL/3 from the loop;
 * each local instance is the key <prefix>/<service>/<id> holding the
 * instance's JSON (host->instance_encode), attached to the lease.  The
 * registration table maps each key to the value wanted and the value
 * written under the current lease; only differences are sent, batched in
 * one /v3/kv/txn at a time.  A lost lease is replaced and everything is
 * written again; stop() revokes the lease so the keys vanish at once.
 *
 * Discovery (only when this host has a sink): a range read of the prefix
 * (paged, at one revision), then one watch stream from revision + 1.  The
 * view (key -> decoded instance, grouped by service) changes only on a
 * complete read or on watch events; each change is reported per service
 * with catalog_set, a complete read with catalog_sync_begin/end.  A lost
 * stream resumes from the last revision seen on the next endpoint; a
 * compaction or cancel re-reads.
 *
 * Owns: the plugin state, its timers, every HTTP request it started (at
 * most one per kind of call), the registration table and the view.
 */
#include <regent/plugin.h>

#include "etcd_util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TXN_MAX_OPS 64         /* etcd's --max-txn-ops defaults to 128 */
#define RANGE_PAGE 1000        /* keys per range page */
#define META_LISTEN_PORT "port" /* what the haproxy sink reads as the seed's listen port */
#define STABLE_WATCH_MS 10000u /* a watch up this long resets the backoff */

/* ------------------------------------------------------------------ */
/* Configuration                                                      */
/* ------------------------------------------------------------------ */

static const regent_config_key config_keys[] = {
	{"endpoints", REGENT_CFG_LIST, "http://127.0.0.1:2379", false, 0, 0,
	 "etcd client URLs (http:// or https://), tried in turn on failure"},
	{"prefix", REGENT_CFG_STRING, "/backends", false, 0, 0,
	 "key prefix: instances are <prefix>/<service>/<id>"},
	{"ttl", REGENT_CFG_DURATION, "15s", false, 2000, 3600000,
	 "lease TTL (whole seconds); kept alive every ttl/3"},
	{"timeout", REGENT_CFG_DURATION, "3s", false, 100, 600000,
	 "timeout of one request (the watch stream has none)"},
	{"backoff_initial", REGENT_CFG_DURATION, "200ms", false, 1, 600000,
	 "first retry delay after a failure"},
	{"backoff_max", REGENT_CFG_DURATION, "10s", false, 1, 3600000,
	 "cap of the exponential retry delay (jitter +-20%)"},
	{"revoke_timeout", REGENT_CFG_DURATION, "2s", false, 100, 60000,
	 "how long stopping may spend revoking the lease"},
	{"watch_idle_timeout", REGENT_CFG_DURATION, "11m", false, 0, 86400000,
	 "reconnect a watch silent this long (etcd sends progress every 10m); 0 = never"},
	{"username", REGENT_CFG_STRING, NULL, false, 0, 0, "etcd user (enables auth)"},
	{"password", REGENT_CFG_STRING, NULL, false, 0, 0, "the user's password (never logged)"},
	{"ca", REGENT_CFG_STRING, NULL, false, 0, 0, "CA bundle to verify https endpoints"},
	{"cert", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate (PEM) for https"},
	{"key", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate's private key (PEM)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* State                                                              */
/* ------------------------------------------------------------------ */

enum op { OP_AUTH, OP_GRANT, OP_KEEPALIVE, OP_TXN, OP_REVOKE, OP_RANGE, OP_WATCH, OP_N };
static const char *const op_names[OP_N] = {"auth",  "grant", "keepalive", "txn",
                                           "revoke", "range", "watch"};

/* Which part of the plugin a failure belongs to (health, log dedup). */
enum comp { COMP_AUTH, COMP_REG, COMP_DISC, COMP_N };
static const char *const comp_names[COMP_N] = {"authentication", "registration", "discovery"};

struct etcd;

typedef struct call {
	struct etcd *e;
	int op;
	regent_http_req *req;
	size_t ep;          /* endpoint index it went to */
	unsigned token_gen; /* which token it carried */
	uint64_t t0;
} call;

/* One registration: an etcd key this agent owns. */
typedef struct reg {
	char *key;
	char *want;    /* value wanted; NULL = the key should not exist */
	char *written; /* value written under the current lease (when have) */
	char *sending; /* value in the txn in flight (NULL there = delete) */
	int64_t rev;   /* revision of our last put */
	bool have;     /* the key exists under the current lease */
	bool in_txn;
} reg;

/* One key of the discovery view. */
typedef struct kent {
	char *key;
	int64_t mod_rev;
	struct ksvc *svc;       /* NULL for a bad key */
	char *id;               /* instance keys */
	regent_instance *inst;  /* decoded; NULL when bad or a port key */
	bool is_port, bad;
	struct kent *prev, *next; /* within the service */
} kent;

typedef struct ksvc {
	char *name;
	kent *head;
	size_t nkeys;
	int port;         /* from <prefix>/<svc>/port, 0 when none */
} ksvc;

typedef struct view {
	esmap *keys; /* key -> kent */
	esmap *svcs; /* name -> ksvc */
} view;

enum dstate { D_OFF, D_IDLE, D_RANGE, D_WATCH };

typedef struct etcd {
	regent_ctx *ctx;
	const regent_host *h;

	/* config */
	char **eps; /* copies, trailing '/' dropped */
	size_t neps;
	char *prefix;     /* normalised, no trailing '/' */
	char *kprefix;    /* prefix + "/": the range start */
	char *kend;       /* range end */
	size_t kend_len;
	int64_t ttl_s;
	uint64_t timeout_ms, revoke_ms, watch_idle_ms;
	const char *user, *password, *ca, *cert, *key;

	size_t ep; /* current endpoint */
	call calls[OP_N];
	bool started, stopping, stop_done;

	/* auth */
	char *token;
	unsigned token_gen;
	unsigned quiet_refusals; /* token refusals retried since the last success */
	regent_backoff auth_bo;
	uv_timer_t *auth_timer;

	/* registration */
	esmap *regs; /* key -> reg */
	int64_t lease;
	int64_t lease_ttl;
	int64_t txn_lease;
	reg **txn;
	size_t ntxn;
	size_t txn_limit;
	regent_backoff reg_bo;
	uv_timer_t *reg_timer, *ka_timer;

	/* discovery */
	bool want;
	enum dstate dstate;
	view cur;      /* what was last reported */
	view pending;  /* a complete read in progress */
	bool have_view;
	int64_t range_rev;
	char *range_next;  /* next page's start key, raw bytes */
	size_t range_next_len;
	int64_t wrev;      /* last revision the view reflects */
	char *cluster_id;
	bool watch_created, watch_reread, watch_rotate;
	uint64_t watch_t0;
	char *watch_err;
	regent_backoff disc_bo;
	uv_timer_t *disc_timer;

	/* stop */
	uv_timer_t *stop_timer;
	uint64_t stop_deadline;

	/* health */
	char *err[COMP_N];
	bool healthy_reported, health_known;

	/* metrics */
	regent_metric *m_ops[OP_N], *m_errs[OP_N], *m_lat[OP_N];
	regent_metric *m_put, *m_del, *m_reconnects, *m_events, *m_resyncs, *m_keys, *m_leases;
} etcd;

static void kick(etcd *e);
static void disc_kick(etcd *e);
static void reg_kick(etcd *e);
static void watch_start(etcd *e);
static void stop_continue(etcd *e);

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static void *xcalloc(size_t n, size_t s)
{
	void *p = calloc(n ? n : 1, s ? s : 1);
	if (!p)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

static char *xasprintf(const char *fmt, ...) REGENT_PRINTF(1, 2);
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

static const char *cur_ep(const etcd *e)
{
	return e->eps[e->ep];
}

static uv_timer_t *timer_new(etcd *e)
{
	uv_timer_t *t = xcalloc(1, sizeof(*t));
	uv_timer_init(e->h->loop(e->ctx), t);
	t->data = e;
	return t;
}

static void timer_close(uv_timer_t **t)
{
	if (*t) {
		uv_timer_stop(*t);
		uv_close((uv_handle_t *)*t, (uv_close_cb)free);
		*t = NULL;
	}
}

static bool timer_active(uv_timer_t *t)
{
	return t && uv_is_active((uv_handle_t *)t);
}

static bool busy(const etcd *e, int op)
{
	return e->calls[op].req != NULL;
}

/* base64 of bytes into a JSON string. */
static json_t *b64(const etcd *e, const void *data, size_t len)
{
	char *s = e->h->base64_encode(data, len);
	json_t *j = json_string(s);
	free(s);
	return j;
}

static json_t *b64s(const etcd *e, const char *s)
{
	return b64(e, s, strlen(s));
}

/* An int64 as etcd wants it in requests (decimal string). */
static json_t *jint64(int64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return json_string(buf);
}

/* ------------------------------------------------------------------ */
/* Health and failure reporting                                       */
/* ------------------------------------------------------------------ */

static void update_health(etcd *e)
{
	const char *reason = NULL;
	for (int i = 0; i < COMP_N && !reason; i++)
		reason = e->err[i];
	bool ok = reason == NULL;
	if (e->health_known && ok == e->healthy_reported && ok)
		return;
	e->health_known = true;
	e->healthy_reported = ok;
	e->h->set_health(e->ctx, ok, reason);
}

/* A part of the plugin failed: log once per distinct cause (repeats at
 * debug level), mark unhealthy. */
static void comp_fail(etcd *e, int comp, regent_log_level level, const char *fmt, ...)
	REGENT_PRINTF(4, 5);
static void comp_fail(etcd *e, int comp, regent_log_level level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bool repeat = e->err[comp] && strcmp(e->err[comp], msg) == 0;
	e->h->log(e->ctx, repeat ? REGENT_LOG_DEBUG : level, "%s", msg);
	if (!repeat) {
		free(e->err[comp]);
		e->err[comp] = xstrdup(msg);
	}
	update_health(e);
}

static void comp_ok(etcd *e, int comp)
{
	e->quiet_refusals = 0;
	if (e->err[comp]) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "%s works again (through %s)", comp_names[comp],
		          cur_ep(e));
		free(e->err[comp]);
		e->err[comp] = NULL;
	}
	update_health(e);
}

/* ------------------------------------------------------------------ */
/* HTTP calls                                                         */
/* ------------------------------------------------------------------ */

typedef struct resp {
	int err;          /* transport error (negative errno), 0 when answered */
	long status;
	int64_t code;     /* gRPC code from an error body, -1 when none */
	const char *msg;  /* error text */
	json_t *json;     /* parsed body (buffered calls) */
} resp;

enum fkind { F_NONE, F_ROTATE, F_AUTH, F_LEASE, F_COMPACTED, F_OTHER };

static int failure_kind(const resp *r)
{
	if (r->err)
		return F_ROTATE;
	if (r->status == 200 && r->code < 0)
		return F_NONE;
	if (r->status == 401 || r->code == 16)
		return F_AUTH;
	if (r->code == 5)
		return F_LEASE;
	if (r->code == 11)
		return F_COMPACTED;
	/* unavailable, deadline exceeded, unknown/internal: another member
	 * may do better (the Go client's rule: transport error, 500, 503). */
	if (r->status >= 500 || r->code == 14 || r->code == 4 || r->code == 2 || r->code == 13)
		return F_ROTATE;
	return F_OTHER;
}

/* Moves to the next endpoint if the failed call used the current one. */
static void rotate(etcd *e, const call *c, const char *why)
{
	if (e->neps < 2 || c->ep != e->ep)
		return;
	size_t old = e->ep;
	e->ep = (e->ep + 1) % e->neps;
	e->h->log(e->ctx, REGENT_LOG_INFO, "switching from %s (%s) to %s", e->eps[old], why,
	          e->eps[e->ep]);
}

/* The token the call carried was refused: forget it (once).  Returns
 * true when this looks like an ordinary expiry, to be retried quietly
 * (not more than a few times in a row without any success). */
static bool token_refused(etcd *e, const call *c)
{
	if (e->user && e->token && c->token_gen == e->token_gen) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "auth token refused by %s; authenticating again",
		          e->eps[c->ep]);
		free(e->token);
		e->token = NULL;
	}
	return e->user && ++e->quiet_refusals <= 3;
}

static void describe(const resp *r, char *buf, size_t n)
{
	if (r->err)
		snprintf(buf, n, "%s", r->msg && r->msg[0] ? r->msg : strerror(-r->err));
	else if (r->code >= 0)
		snprintf(buf, n, "HTTP %ld: %s (code %lld)", r->status, r->msg ? r->msg : "",
		         (long long)r->code);
	else
		snprintf(buf, n, "HTTP %ld%s%s", r->status, r->msg && r->msg[0] ? ": " : "",
		         r->msg ? r->msg : "");
}

typedef void (*call_handler)(etcd *e, call *c, resp *r);
static call_handler handlers[OP_N];

static void on_call_done(void *arg, const regent_http_result *res)
{
	call *c = arg;
	etcd *e = c->e;
	c->req = NULL;
	uint64_t took = e->h->now_ms() - c->t0;
	e->h->metric_add(e->m_ops[c->op], 1);
	e->h->metric_observe(e->m_lat[c->op], (double)took / 1000.0);
	resp r = {.err = res->error, .status = res->status, .code = -1, .msg = res->error_msg};
	if (!r.err && res->body && res->body_len) {
		json_error_t jerr;
		r.json = json_loadb(res->body, res->body_len, JSON_DISABLE_EOF_CHECK, &jerr);
	}
	/* Errors: {"error":m,"message":m,"code":N} (unary) or, from streams,
	 * {"error":{"grpc_code":N,"http_code":N,"message":m}}. */
	json_t *err = json_object_get(r.json, "error");
	if (json_is_object(err)) {
		etcd_json_int64(json_object_get(err, "grpc_code"), &r.code);
		r.msg = json_string_value(json_object_get(err, "message"));
	} else if (err || (r.json && r.status != 200)) {
		if (!etcd_json_int64(json_object_get(r.json, "code"), &r.code))
			r.code = -1;
		r.msg = json_string_value(json_object_get(r.json, "message"));
		if (!r.msg)
			r.msg = json_string_value(err);
	}
	if (!r.err && r.status == 200 && c->op != OP_WATCH && !json_is_object(r.json)) {
		r.err = -EPROTO;
		r.msg = "response is not a JSON object";
	}
	if (!r.msg)
		r.msg = "";
	if (failure_kind(&r) != F_NONE)
		e->h->metric_add(e->m_errs[c->op], 1);
	json_t *j = r.json;
	handlers[c->op](e, c, &r); /* may free e (stop finished) */
	json_decref(j);
}

/* Starts call `op` (body is stolen).  Returns 0 or a negative errno
 * (nothing started then). */
static int call_start(etcd *e, int op, const char *path, json_t *body, regent_http_data_cb on_data)
{
	call *c = &e->calls[op];
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return -ENOMEM;
	char *url = xasprintf("%s%s", cur_ep(e), path);
	char *auth = e->token && e->token[0] ? xasprintf("Authorization: %s", e->token) : NULL;
	const char *headers[4];
	size_t nh = 0;
	headers[nh++] = "Content-Type: application/json";
	if (auth)
		headers[nh++] = auth;
	if (op == OP_WATCH)
		headers[nh++] = "Grpc-Metadata-hasleader: true";
	regent_http_opts o = {
		.size = sizeof(o),
		.method = "POST",
		.url = url,
		.headers = headers,
		.nheaders = nh,
		.body = text,
		.body_len = strlen(text),
		.ca_file = e->ca,
		.cert_file = e->cert,
		.key_file = e->key,
		.on_data = on_data,
		.on_done = on_call_done,
		.arg = c,
	};
	uint64_t to = e->timeout_ms;
	o.connect_timeout_ms = to < 3000 ? to : 3000;
	if (op == OP_WATCH) {
		o.flags = REGENT_HTTP_LINES;
		o.idle_timeout_ms = e->watch_idle_ms;
	} else if (op == OP_RANGE) {
		o.timeout_ms = to * 3;
	} else if (op == OP_REVOKE) {
		uint64_t now = e->h->now_ms();
		uint64_t left = e->stop_deadline > now ? e->stop_deadline - now : 1;
		o.timeout_ms = left < to ? left : to;
		if (o.connect_timeout_ms > o.timeout_ms)
			o.connect_timeout_ms = o.timeout_ms;
	} else {
		o.timeout_ms = to;
	}
	c->e = e;
	c->op = op;
	c->ep = e->ep;
	c->token_gen = e->token_gen;
	c->t0 = e->h->now_ms();
	int err = 0;
	c->req = e->h->http_request(e->ctx, &o, &err);
	free(url);
	free(auth); /* the token is in the core's copy only */
	free(text);
	if (!c->req) {
		e->h->log(e->ctx, REGENT_LOG_ERROR, "cannot start %s request to %s%s: %s",
		          op_names[op], cur_ep(e), path, strerror(err ? -err : EIO));
		return err ? err : -EIO;
	}
	return 0;
}

static void call_cancel(etcd *e, int op)
{
	if (e->calls[op].req) {
		e->h->http_cancel(e->calls[op].req);
		e->calls[op].req = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Authentication                                                     */
/* ------------------------------------------------------------------ */

static void on_auth_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (e->stopping)
		stop_continue(e);
	else
		kick(e);
}

static void auth_start(etcd *e)
{
	json_t *b = json_pack("{s:s,s:s}", "name", e->user, "password", e->password);
	if (call_start(e, OP_AUTH, "/v3/auth/authenticate", b, NULL) < 0)
		uv_timer_start(e->auth_timer, on_auth_timer, e->h->backoff_next(&e->auth_bo), 0);
}

/* True when calls may go out now (no auth, or a token in hand); else
 * makes sure an authentication is under way. */
static bool have_token(etcd *e)
{
	if (!e->user || e->token)
		return true;
	if (!busy(e, OP_AUTH) && !timer_active(e->auth_timer))
		auth_start(e);
	return false;
}

static void auth_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	const char *tok = json_string_value(json_object_get(r->json, "token"));
	if (fk == F_NONE && tok) {
		free(e->token);
		e->token = xstrdup(tok);
		e->token_gen++;
		e->h->backoff_reset(&e->auth_bo);
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "authenticated as \"%s\" on %s", e->user,
		          e->eps[c->ep]);
		comp_ok(e, COMP_AUTH);
	} else if (fk == F_NONE || (r->msg && strstr(r->msg, "authentication is not enabled"))) {
		/* A server without auth: go on without a token. */
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "%s does not have authentication enabled; username \"%s\" is not used",
		          e->eps[c->ep], e->user);
		free(e->token);
		e->token = xstrdup("");
		e->token_gen++;
		comp_ok(e, COMP_AUTH);
	} else {
		char d[512];
		describe(r, d, sizeof(d));
		if (fk == F_ROTATE) {
			rotate(e, c, d);
			comp_fail(e, COMP_AUTH, REGENT_LOG_WARN, "cannot authenticate at %s: %s",
			          e->eps[c->ep], d);
		} else {
			/* Wrong user or password, or the user lacks a role: the
			 * operator must act; keep retrying slowly. */
			comp_fail(e, COMP_AUTH, REGENT_LOG_ERROR,
			          "authentication as user \"%s\" failed at %s: %s; check username and "
			          "password in [store %s]",
			          e->user, e->eps[c->ep], r->msg && r->msg[0] ? r->msg : d,
			          e->h->instance_name(e->ctx));
			if (e->auth_bo.current_ms < e->auth_bo.max_ms / 2)
				e->auth_bo.current_ms = e->auth_bo.max_ms / 2;
		}
		uv_timer_start(e->auth_timer, on_auth_timer, e->h->backoff_next(&e->auth_bo), 0);
		return;
	}
	if (e->stopping)
		stop_continue(e);
	else
		kick(e);
}

/* ------------------------------------------------------------------ */
/* Registration                                                       */
/* ------------------------------------------------------------------ */

static void reg_free(reg *g)
{
	free(g->key);
	free(g->want);
	free(g->written);
	free(g->sending);
	free(g);
}

static bool reg_dirty(const reg *g)
{
	if (g->in_txn)
		return false;
	if (g->want)
		return !g->have || strcmp(g->want, g->written) != 0;
	return g->have;
}

/* Drops an entry that wants nothing and holds nothing. */
static void reg_maybe_drop(etcd *e, reg *g)
{
	if (!g->want && !g->have && !g->in_txn) {
		esmap_del(e->regs, g->key);
		reg_free(g);
	}
}

static size_t keys_written(etcd *e)
{
	size_t n = 0;
	esmap_iter it = {0};
	void *v;
	while (esmap_next(e->regs, &it, NULL, &v))
		n += ((reg *)v)->have;
	return n;
}

static void on_reg_timer(uv_timer_t *t)
{
	kick(t->data);
}

static void reg_retry(etcd *e)
{
	uv_timer_start(e->reg_timer, on_reg_timer, e->h->backoff_next(&e->reg_bo), 0);
}

/* The lease is gone (expired or revoked): everything must be written
 * again under a new one. */
static void lease_lost(etcd *e, const char *why)
{
	size_t n = 0;
	esmap_iter it = {0};
	void *v;
	while (esmap_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		if (g->want)
			n++;
		g->have = false;
		free(g->written);
		g->written = NULL;
		reg_maybe_drop(e, g);
	}
	e->h->log(e->ctx, REGENT_LOG_WARN,
	          "lease %llx is gone (%s); granting a new one and registering %zu instance%s again",
	          (unsigned long long)e->lease, why, n, n == 1 ? "" : "s");
	e->lease = 0;
	uv_timer_stop(e->ka_timer);
	e->h->metric_set(e->m_keys, 0);
}

static void ka_schedule(etcd *e, uint64_t ms);

static void grant_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	int64_t id = 0, ttl = 0;
	if (fk == F_NONE && (!etcd_json_int64(json_object_get(r->json, "ID"), &id) || id == 0 ||
	                     !etcd_json_int64(json_object_get(r->json, "TTL"), &ttl) || ttl <= 0)) {
		r->err = -EPROTO;
		r->msg = "lease grant answer without ID or TTL";
		fk = F_ROTATE;
	}
	if (fk != F_NONE) {
		char d[512];
		describe(r, d, sizeof(d));
		bool quiet = fk == F_AUTH && token_refused(e, c);
		if (fk == F_ROTATE)
			rotate(e, c, d);
		if (!quiet)
			comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot get a lease from %s: %s",
			          e->eps[c->ep], d);
		reg_retry(e);
		return;
	}
	e->lease = id;
	e->lease_ttl = ttl;
	e->h->metric_add(e->m_leases, 1);
	e->h->log(e->ctx, REGENT_LOG_INFO, "lease %llx granted by %s (TTL %lld s)",
	          (unsigned long long)id, e->eps[c->ep], (long long)ttl);
	/* Everything is (re)written under the new lease. */
	esmap_iter it = {0};
	void *v;
	while (esmap_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		g->have = false;
		free(g->written);
		g->written = NULL;
		reg_maybe_drop(e, g);
	}
	e->h->backoff_reset(&e->reg_bo);
	ka_schedule(e, (uint64_t)ttl * 1000 / 3);
	kick(e);
}

static void keepalive_start(etcd *e);

static void on_ka_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (e->lease && !busy(e, OP_KEEPALIVE))
		keepalive_start(e);
}

static void ka_schedule(etcd *e, uint64_t ms)
{
	uv_timer_start(e->ka_timer, on_ka_timer, ms ? ms : 1, 0);
}

static void keepalive_start(etcd *e)
{
	if (!have_token(e)) {
		/* kick() after authenticating comes back here via the timer. */
		ka_schedule(e, 200);
		return;
	}
	json_t *b = json_pack("{s:o}", "ID", jint64(e->lease));
	if (call_start(e, OP_KEEPALIVE, "/v3/lease/keepalive", b, NULL) < 0)
		ka_schedule(e, e->h->backoff_next(&e->reg_bo));
}

static void keepalive_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	json_t *res = json_object_get(r->json, "result");
	int64_t id = 0, ttl = 0;
	if (fk == F_NONE && !json_is_object(res)) {
		r->err = -EPROTO;
		r->msg = "keepalive answer without result";
		fk = F_ROTATE;
	}
	if (fk == F_NONE) {
		etcd_json_int64(json_object_get(res, "ID"), &id);
		if (id != e->lease) {
			/* An answer for a lease replaced meanwhile: keep the
			 * current one's keepalives going. */
			if (e->lease && !timer_active(e->ka_timer))
				ka_schedule(e, (uint64_t)e->lease_ttl * 1000 / 3);
			return;
		}
		if (!etcd_json_int64(json_object_get(res, "TTL"), &ttl) || ttl <= 0) {
			lease_lost(e, "keepalive found no TTL: it expired");
			kick(e);
			return;
		}
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "lease %llx kept alive (TTL %lld s)",
		          (unsigned long long)id, (long long)ttl);
		e->lease_ttl = ttl;
		if (!busy(e, OP_TXN) && !timer_active(e->reg_timer))
			e->h->backoff_reset(&e->reg_bo);
		/* The lease lives: registration works unless a txn is failing. */
		if (!timer_active(e->reg_timer))
			comp_ok(e, COMP_REG);
		ka_schedule(e, (uint64_t)ttl * 1000 / 3);
		return;
	}
	if (fk == F_LEASE) {
		lease_lost(e, "keepalive: lease not found");
		kick(e);
		return;
	}
	char d[512];
	describe(r, d, sizeof(d));
	bool quiet = fk == F_AUTH && token_refused(e, c);
	if (fk != F_AUTH)
		rotate(e, c, d);
	if (!quiet)
		comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot keep lease %llx alive through %s: %s",
		          (unsigned long long)e->lease, e->eps[c->ep], d);
	uint64_t next = e->h->backoff_next(&e->reg_bo);
	uint64_t third = (uint64_t)(e->lease_ttl > 0 ? e->lease_ttl : e->ttl_s) * 1000 / 3;
	ka_schedule(e, next < third ? next : third);
	if (fk == F_AUTH)
		kick(e);
}

static void txn_start(etcd *e)
{
	json_t *ops = json_array();
	size_t cap = e->txn_limit ? e->txn_limit : TXN_MAX_OPS;
	e->txn = xcalloc(cap, sizeof(*e->txn));
	e->ntxn = 0;
	esmap_iter it = {0};
	void *v;
	while (e->ntxn < cap && esmap_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		if (!reg_dirty(g))
			continue;
		json_t *op;
		if (g->want)
			op = json_pack("{s:{s:o,s:o,s:o}}", "request_put", "key", b64s(e, g->key), "value",
			               b64s(e, g->want), "lease", jint64(e->lease));
		else
			op = json_pack("{s:{s:o}}", "request_delete_range", "key", b64s(e, g->key));
		json_array_append_new(ops, op);
		g->in_txn = true;
		free(g->sending);
		g->sending = g->want ? xstrdup(g->want) : NULL;
		e->txn[e->ntxn++] = g;
	}
	if (e->ntxn == 0) {
		json_decref(ops);
		free(e->txn);
		e->txn = NULL;
		return;
	}
	e->txn_lease = e->lease;
	json_t *b = json_pack("{s:o}", "success", ops);
	if (call_start(e, OP_TXN, "/v3/kv/txn", b, NULL) < 0) {
		for (size_t i = 0; i < e->ntxn; i++) {
			e->txn[i]->in_txn = false;
			free(e->txn[i]->sending);
			e->txn[i]->sending = NULL;
		}
		free(e->txn);
		e->txn = NULL;
		e->ntxn = 0;
		reg_retry(e);
	}
}

static void txn_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	reg **batch = e->txn;
	size_t n = e->ntxn;
	e->txn = NULL;
	e->ntxn = 0;
	bool current = e->txn_lease == e->lease && e->lease != 0;
	size_t puts = 0, dels = 0;
	int64_t rev = 0;
	etcd_json_int64(json_object_get(json_object_get(r->json, "header"), "revision"), &rev);
	for (size_t i = 0; i < n; i++) {
		reg *g = batch[i];
		g->in_txn = false;
		if (fk == F_NONE && current) {
			if (g->sending) {
				free(g->written);
				g->written = g->sending;
				g->sending = NULL;
				g->have = true;
				g->rev = rev;
				puts++;
				e->h->log(e->ctx, REGENT_LOG_DEBUG, "put %s", g->key);
			} else {
				free(g->written);
				g->written = NULL;
				g->have = false;
				dels++;
				e->h->log(e->ctx, REGENT_LOG_DEBUG, "deleted %s", g->key);
			}
		}
		free(g->sending);
		g->sending = NULL;
		reg_maybe_drop(e, g);
	}
	if (fk == F_NONE) {
		free(batch);
		e->h->metric_add(e->m_put, (double)puts);
		e->h->metric_add(e->m_del, (double)dels);
		e->h->metric_set(e->m_keys, (double)keys_written(e));
		e->h->backoff_reset(&e->reg_bo);
		e->txn_limit = 0;
		comp_ok(e, COMP_REG);
		kick(e);
		return;
	}
	char d[512];
	describe(r, d, sizeof(d));
	if (fk == F_LEASE && e->txn_lease == e->lease) {
		free(batch);
		lease_lost(e, "a put was refused: lease not found");
		kick(e);
		return;
	}
	bool quiet = fk == F_AUTH && token_refused(e, c);
	if (fk == F_ROTATE)
		rotate(e, c, d);
	if (quiet) {
		/* an expired token: authenticate and retry */
	} else if (fk == F_OTHER) {
		if (n == 1)
			comp_fail(e, COMP_REG, REGENT_LOG_ERROR, "etcd %s refused to write key %s: %s",
			          e->eps[c->ep], batch[0]->key, d);
		else
			comp_fail(e, COMP_REG, REGENT_LOG_WARN,
			          "etcd %s refused a batch of %zu writes: %s; retrying one by one",
			          e->eps[c->ep], n, d);
		e->txn_limit = 1; /* find the key it objects to */
	} else {
		comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot write %zu key%s through %s: %s", n,
		          n == 1 ? "" : "s", e->eps[c->ep], d);
	}
	free(batch);
	reg_retry(e);
}

static void grant_start(etcd *e)
{
	json_t *b = json_pack("{s:o,s:i}", "TTL", jint64(e->ttl_s), "ID", 0);
	if (call_start(e, OP_GRANT, "/v3/lease/grant", b, NULL) < 0)
		reg_retry(e);
}

static void reg_kick(etcd *e)
{
	if (timer_active(e->reg_timer) || busy(e, OP_GRANT) || busy(e, OP_TXN))
		return;
	bool dirty = false, need_lease = false;
	esmap_iter it = {0};
	void *v;
	while (esmap_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		if (reg_dirty(g)) {
			dirty = true;
			if (g->want)
				need_lease = true;
		}
	}
	if (!dirty || !have_token(e))
		return;
	if (!e->lease) {
		if (need_lease)
			grant_start(e);
		return;
	}
	txn_start(e);
}

static char *reg_key(etcd *e, const regent_instance *inst)
{
	return xasprintf("%s/%s/%s", e->prefix, inst->service, inst->id);
}

static void register_instance(void *self, const regent_instance *inst)
{
	etcd *e = self;
	if (!e->h->valid_service(inst->service)) {
		e->h->log(e->ctx, REGENT_LOG_WARN, "not registering %s: invalid service name", inst->id);
		return;
	}
	if (strcmp(inst->id, "port") == 0) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "not registering instance id \"port\" of %s: %s/%s/port is the listen port",
		          inst->service, e->prefix, inst->service);
		return;
	}
	char *key = reg_key(e, inst);
	reg *g = esmap_get(e->regs, key);
	if (!g) {
		g = xcalloc(1, sizeof(*g));
		g->key = key;
		esmap_put(e->regs, g->key, g);
	} else {
		free(key);
	}
	free(g->want);
	g->want = e->h->instance_encode(inst);
	if (!g->want) {
		e->h->log(e->ctx, REGENT_LOG_ERROR, "cannot encode instance %s", inst->id);
		reg_maybe_drop(e, g);
		return;
	}
	if (!e->stopping)
		reg_kick(e);
}

static void deregister_instance(void *self, const regent_instance *inst)
{
	etcd *e = self;
	char *key = reg_key(e, inst);
	reg *g = esmap_get(e->regs, key);
	free(key);
	if (!g)
		return;
	free(g->want);
	g->want = NULL;
	reg_maybe_drop(e, g);
	if (!e->stopping)
		reg_kick(e);
}

/* ------------------------------------------------------------------ */
/* The discovery view                                                 */
/* ------------------------------------------------------------------ */

static void view_init(view *v)
{
	v->keys = esmap_new();
	v->svcs = esmap_new();
}

static void kent_free(etcd *e, kent *k)
{
	if (k->inst)
		e->h->instance_free(k->inst);
	free(k->id);
	free(k->key);
	free(k);
}

static void view_clear(etcd *e, view *v)
{
	if (!v->keys)
		return;
	esmap_iter it = {0};
	void *val;
	while (esmap_next(v->keys, &it, NULL, &val))
		kent_free(e, val);
	it = (esmap_iter){0};
	while (esmap_next(v->svcs, &it, NULL, &val)) {
		ksvc *s = val;
		free(s->name);
		free(s);
	}
	esmap_free(v->keys);
	esmap_free(v->svcs);
	v->keys = v->svcs = NULL;
}

/* Unlinks and frees one key (and its service when that was its last). */
static void view_drop(etcd *e, view *v, kent *k)
{
	esmap_del(v->keys, k->key);
	ksvc *s = k->svc;
	if (s) {
		if (k->prev)
			k->prev->next = k->next;
		else
			s->head = k->next;
		if (k->next)
			k->next->prev = k->prev;
		if (k->is_port)
			s->port = 0;
		if (--s->nkeys == 0) {
			esmap_del(v->svcs, s->name);
			free(s->name);
			free(s);
		}
	}
	kent_free(e, k);
}

/* Puts one key/value into v; `old` (may be NULL) is the view that was
 * reported before, so a bad value seen unchanged is not warned again.
 * Keys are held in a printable form (\xNN escapes), which is the key
 * itself for every sane key and still one-to-one for the others.
 * Returns the service name touched (malloc'd) or NULL. */
static char *view_put(etcd *e, view *v, const view *old, const char *key, size_t klen,
                      const char *val, size_t vlen, int64_t mod_rev)
{
	char *kp = etcd_printable(key, klen, klen);
	kent *prevk = esmap_get(v->keys, kp);
	char *touched = prevk && prevk->svc ? xstrdup(prevk->svc->name) : NULL;
	if (prevk)
		view_drop(e, v, prevk);
	const kent *seen = old && old->keys ? esmap_get(old->keys, kp) : NULL;
	bool quiet = seen && seen->bad && seen->mod_rev == mod_rev;
	kent *k = xcalloc(1, sizeof(*k));
	k->key = kp;
	k->mod_rev = mod_rev;
	esmap_put(v->keys, k->key, k);
	char *svc = NULL, *id = NULL;
	etcd_key_kind kind = etcd_split_key(key, klen, e->prefix, &svc, &id);
	const char *why = NULL;
	int port = 0;
	if (kind == ETCD_KEY_BAD) {
		why = "not of the form <prefix>/<service>/<id>";
	} else if (!e->h->valid_service(svc)) {
		why = "invalid service name (allowed: [A-Za-z0-9][A-Za-z0-9._-]{0,62})";
	} else if (kind == ETCD_KEY_PORT) {
		port = etcd_parse_port(val, vlen);
		if (!port)
			why = "the listen port is not a number in 1..65535";
	} else if (e->h->instance_decode(val, vlen, svc, id, &k->inst) != 0 || !k->inst) {
		k->inst = NULL;
		why = "the value is neither an instance's JSON nor ip:port (or has an invalid field)";
	}
	if (why) {
		k->bad = true;
		if (!quiet) {
			char *vp = etcd_printable(val, vlen, 80);
			e->h->log(e->ctx, REGENT_LOG_WARN,
			          "skipped key %.300s (mod revision %lld): %s; value: \"%s\"", kp,
			          (long long)mod_rev, why, vp);
			free(vp);
		}
		free(svc);
		free(id);
		return touched;
	}
	ksvc *s = esmap_get(v->svcs, svc);
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->name = svc;
		esmap_put(v->svcs, s->name, s);
	} else {
		free(svc);
	}
	k->svc = s;
	k->id = id;
	k->is_port = kind == ETCD_KEY_PORT;
	if (k->is_port)
		s->port = port;
	k->next = s->head;
	if (s->head)
		s->head->prev = k;
	s->head = k;
	s->nkeys++;
	free(touched); /* the key names its service: the same one */
	return xstrdup(s->name);
}

/* Removes a key; returns the service touched (malloc'd) or NULL. */
static char *view_del(etcd *e, view *v, const char *key, size_t klen)
{
	char *kp = etcd_printable(key, klen, klen);
	kent *k = esmap_get(v->keys, kp);
	free(kp);
	if (!k)
		return NULL;
	char *touched = k->svc ? xstrdup(k->svc->name) : NULL;
	view_drop(e, v, k);
	return touched;
}

/* Reports one service of the current view to the core. */
static void publish_service(etcd *e, const char *name)
{
	ksvc *s = esmap_get(e->cur.svcs, name);
	if (!s) {
		e->h->catalog_remove(e->ctx, name);
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "service %s: gone from %s/", name, e->prefix);
		return;
	}
	size_t n = 0;
	for (kent *k = s->head; k; k = k->next)
		n += k->inst != NULL;
	regent_instance *copies = xcalloc(n, sizeof(*copies));
	const regent_instance **list = xcalloc(n, sizeof(*list));
	regent_kv **metas = xcalloc(n, sizeof(*metas));
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%d", s->port);
	size_t i = 0;
	for (kent *k = s->head; k; k = k->next) {
		if (!k->inst)
			continue;
		copies[i] = *k->inst;
		if (s->port) {
			/* The seed's <prefix>/<svc>/port, as meta on every instance
			 * (unless the instance says otherwise itself). */
			bool own = false;
			for (size_t m = 0; m < k->inst->nmeta; m++)
				own = own || strcmp(k->inst->meta[m].key, META_LISTEN_PORT) == 0;
			if (!own) {
				metas[i] = xcalloc(k->inst->nmeta + 1, sizeof(regent_kv));
				if (k->inst->nmeta)
					memcpy(metas[i], k->inst->meta, k->inst->nmeta * sizeof(regent_kv));
				metas[i][k->inst->nmeta].key = META_LISTEN_PORT;
				metas[i][k->inst->nmeta].value = portbuf;
				copies[i].meta = metas[i];
				copies[i].nmeta = k->inst->nmeta + 1;
			}
		}
		list[i] = &copies[i];
		i++;
	}
	e->h->catalog_set(e->ctx, name, list, n);
	if (e->h->log_enabled(e->ctx, REGENT_LOG_DEBUG))
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "service %s: %zu instance%s%s%s", name, n,
		          n == 1 ? "" : "s", s->port ? ", listen port " : "", s->port ? portbuf : "");
	for (i = 0; i < n; i++)
		free(metas[i]);
	free(metas);
	free(list);
	free(copies);
}

static void publish_all(etcd *e)
{
	e->h->catalog_sync_begin(e->ctx);
	esmap_iter it = {0};
	const char *name;
	while (esmap_next(e->cur.svcs, &it, &name, NULL))
		publish_service(e, name);
	e->h->catalog_sync_end(e->ctx);
}

/* ------------------------------------------------------------------ */
/* Discovery: range read                                              */
/* ------------------------------------------------------------------ */

static void on_disc_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (e->dstate == D_IDLE)
		disc_kick(e);
	else if (e->dstate == D_WATCH && !busy(e, OP_WATCH))
		watch_start(e);
}

static void disc_retry(etcd *e, uint64_t ms)
{
	uv_timer_start(e->disc_timer, on_disc_timer, ms ? ms : 1, 0);
}

static void range_page(etcd *e)
{
	json_t *b = json_object();
	if (e->range_next)
		json_object_set_new(b, "key", b64(e, e->range_next, e->range_next_len));
	else
		json_object_set_new(b, "key", b64s(e, e->kprefix));
	json_object_set_new(b, "range_end", b64(e, e->kend, e->kend_len));
	json_object_set_new(b, "limit", json_integer(RANGE_PAGE));
	if (e->range_rev)
		json_object_set_new(b, "revision", jint64(e->range_rev));
	if (call_start(e, OP_RANGE, "/v3/kv/range", b, NULL) < 0) {
		view_clear(e, &e->pending);
		e->dstate = D_IDLE;
		disc_retry(e, e->h->backoff_next(&e->disc_bo));
	}
}

static void range_start(etcd *e)
{
	view_clear(e, &e->pending);
	view_init(&e->pending);
	e->range_rev = 0;
	free(e->range_next);
	e->range_next = NULL;
	e->range_next_len = 0;
	e->dstate = D_RANGE;
	range_page(e);
}

static void range_fail(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	char d[512];
	describe(r, d, sizeof(d));
	view_clear(e, &e->pending);
	e->dstate = D_IDLE;
	if (fk == F_COMPACTED) {
		/* A later page's revision was compacted meanwhile: start over. */
		e->h->log(e->ctx, REGENT_LOG_INFO, "read of %s/ at revision %lld: %s; reading again",
		          e->prefix, (long long)e->range_rev, d);
		disc_retry(e, 1);
		return;
	}
	bool quiet = fk == F_AUTH && token_refused(e, c);
	if (fk == F_ROTATE)
		rotate(e, c, d);
	if (!quiet)
		comp_fail(e, COMP_DISC, REGENT_LOG_WARN,
		          "cannot read %s/ from %s: %s; the catalog keeps its last known state",
		          e->prefix, e->eps[c->ep], d);
	disc_retry(e, e->h->backoff_next(&e->disc_bo));
}

static bool decode_kv(etcd *e, json_t *kv, char **key, size_t *klen, char **val, size_t *vlen,
                      int64_t *mod_rev)
{
	const char *k = json_string_value(json_object_get(kv, "key"));
	const char *v = json_string_value(json_object_get(kv, "value"));
	*key = *val = NULL;
	*mod_rev = 0;
	etcd_json_int64(json_object_get(kv, "mod_revision"), mod_rev);
	if (!k)
		return false;
	*key = e->h->base64_decode(k, klen);
	if (!*key)
		return false;
	if (v) {
		*val = e->h->base64_decode(v, vlen);
		if (!*val) {
			free(*key);
			*key = NULL;
			return false;
		}
	} else {
		*val = xstrdup("");
		*vlen = 0;
	}
	return true;
}

static void range_done(etcd *e, call *c, resp *r)
{
	if (failure_kind(r) != F_NONE) {
		range_fail(e, c, r);
		return;
	}
	json_t *hdr = json_object_get(r->json, "header");
	int64_t rev = 0;
	if (!etcd_json_int64(json_object_get(hdr, "revision"), &rev) || rev <= 0) {
		r->err = -EPROTO;
		r->msg = "range answer without header.revision";
		range_fail(e, c, r);
		return;
	}
	if (!e->range_rev)
		e->range_rev = rev;
	const char *cid = json_string_value(json_object_get(hdr, "cluster_id"));
	json_t *kvs = json_object_get(r->json, "kvs");
	size_t i;
	json_t *kv;
	char *lastkey = NULL;
	size_t lastlen = 0;
	json_array_foreach(kvs, i, kv)
	{
		char *key, *val;
		size_t klen = 0, vlen = 0;
		int64_t mr;
		if (!decode_kv(e, kv, &key, &klen, &val, &vlen, &mr)) {
			e->h->log(e->ctx, REGENT_LOG_WARN, "skipped an undecodable entry of %s/ from %s",
			          e->prefix, e->eps[c->ep]);
			continue;
		}
		free(view_put(e, &e->pending, e->have_view ? &e->cur : NULL, key, klen, val, vlen, mr));
		free(lastkey);
		lastkey = key;
		lastlen = klen;
		free(val);
	}
	json_t *more = json_object_get(r->json, "more");
	if (json_is_true(more) && lastkey) {
		/* Next page: right after the last key, at the same revision. */
		free(e->range_next);
		e->range_next = realloc(lastkey, lastlen + 1);
		if (!e->range_next)
			abort();
		e->range_next[lastlen] = '\0';
		e->range_next_len = lastlen + 1;
		range_page(e);
		return;
	}
	free(lastkey);
	free(e->range_next);
	e->range_next = NULL;
	/* Complete: this read replaces the view. */
	view_clear(e, &e->cur);
	e->cur = e->pending;
	e->pending = (view){0};
	e->have_view = true;
	e->wrev = e->range_rev;
	free(e->cluster_id);
	e->cluster_id = cid ? xstrdup(cid) : NULL;
	e->h->log(e->ctx, REGENT_LOG_INFO, "read %s/ at revision %lld from %s: %zu services, %zu keys",
	          e->prefix, (long long)e->wrev, e->eps[c->ep], esmap_size(e->cur.svcs),
	          esmap_size(e->cur.keys));
	e->h->mark_change(e->ctx, e->h->wall_ns());
	publish_all(e);
	comp_ok(e, COMP_DISC);
	e->dstate = D_WATCH;
	watch_start(e);
}

/* ------------------------------------------------------------------ */
/* Discovery: the watch stream                                        */
/* ------------------------------------------------------------------ */

/* Ends the stream from inside on_data: 1 aborts the transfer. */
static int watch_abort(etcd *e, bool reread, bool rot, const char *fmt, ...) REGENT_PRINTF(4, 5);
static int watch_abort(etcd *e, bool reread, bool rot, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->watch_reread = e->watch_reread || reread;
	e->watch_rotate = e->watch_rotate || rot;
	free(e->watch_err);
	e->watch_err = xstrdup(msg);
	return 1;
}

/* Someone else deleted a key this agent holds: write it again. */
static void own_key_deleted(etcd *e, const char *key, size_t klen, int64_t mod_rev)
{
	char *k = etcd_printable(key, klen, klen);
	reg *g = esmap_get(e->regs, k);
	free(k);
	if (!g || !g->have || g->in_txn || mod_rev <= g->rev)
		return;
	e->h->log(e->ctx, REGENT_LOG_WARN,
	          "key %s of this agent was deleted at revision %lld; writing it again", g->key,
	          (long long)mod_rev);
	g->have = false;
	free(g->written);
	g->written = NULL;
	reg_maybe_drop(e, g);
	reg_kick(e);
}

static void apply_events(etcd *e, json_t *events)
{
	size_t i, cap = json_array_size(events), nt = 0;
	char **touched = xcalloc(cap, sizeof(*touched));
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		json_t *kv = json_object_get(ev, "kv");
		const char *type = json_string_value(json_object_get(ev, "type"));
		char *key, *val;
		size_t klen = 0, vlen = 0;
		int64_t mr;
		if (!decode_kv(e, kv, &key, &klen, &val, &vlen, &mr)) {
			e->h->log(e->ctx, REGENT_LOG_WARN, "skipped an undecodable watch event");
			continue;
		}
		if (mr > e->wrev)
			e->wrev = mr;
		bool del = type && strcmp(type, "DELETE") == 0;
		if (del)
			own_key_deleted(e, key, klen, mr);
		char *t = del
			? view_del(e, &e->cur, key, klen)
			: view_put(e, &e->cur, NULL, key, klen, val, vlen, mr);
		free(key);
		free(val);
		if (!t)
			continue;
		bool dup = false;
		for (size_t j = 0; j < nt && !dup; j++)
			dup = strcmp(touched[j], t) == 0;
		if (dup)
			free(t);
		else
			touched[nt++] = t;
	}
	e->h->metric_add(e->m_events, (double)json_array_size(events));
	if (nt)
		e->h->mark_change(e->ctx, e->h->wall_ns());
	for (size_t j = 0; j < nt; j++) {
		publish_service(e, touched[j]);
		free(touched[j]);
	}
	free(touched);
}

static int watch_line(void *arg, const char *data, size_t len)
{
	call *c = arg;
	etcd *e = c->e;
	if (len == 0)
		return 0;
	json_error_t jerr;
	json_t *j = json_loadb(data, len, 0, &jerr);
	if (!json_is_object(j)) {
		json_decref(j);
		return watch_abort(e, false, true, "unparseable watch line from %s", e->eps[c->ep]);
	}
	int rc = 0;
	json_t *res = json_object_get(j, "result");
	json_t *err = json_object_get(j, "error");
	if (!json_is_object(res)) {
		int64_t code = -1;
		const char *msg = NULL;
		if (json_is_object(err)) {
			etcd_json_int64(json_object_get(err, "grpc_code"), &code);
			msg = json_string_value(json_object_get(err, "message"));
		} else {
			etcd_json_int64(json_object_get(j, "code"), &code);
			msg = json_string_value(json_object_get(j, "message"));
		}
		if (code == 16)
			token_refused(e, c);
		rc = watch_abort(e, false, code != 16, "watch stream error from %s: %s (code %lld)",
		                 e->eps[c->ep], msg ? msg : "unknown", (long long)code);
		json_decref(j);
		return rc;
	}
	json_t *hdr = json_object_get(res, "header");
	int64_t hrev = 0;
	etcd_json_int64(json_object_get(hdr, "revision"), &hrev);
	if (json_is_true(json_object_get(res, "canceled"))) {
		int64_t crev = 0;
		const char *why = json_string_value(json_object_get(res, "cancel_reason"));
		if (etcd_json_int64(json_object_get(res, "compact_revision"), &crev) && crev > 0) {
			e->h->metric_add(e->m_resyncs, 1);
			rc = watch_abort(e, true, false,
			                 "watch from revision %lld canceled: compacted up to %lld; "
			                 "reading %s/ again",
			                 (long long)e->wrev + 1, (long long)crev, e->prefix);
		} else {
			if (why && (strstr(why, "auth") || strstr(why, "Unauthenticated") ||
			            strstr(why, "permission")))
				token_refused(e, c);
			rc = watch_abort(e, true, false, "watch canceled by %s: %s; reading %s/ again",
			                 e->eps[c->ep], why ? why : "no reason given", e->prefix);
		}
		json_decref(j);
		return rc;
	}
	if (json_is_true(json_object_get(res, "created"))) {
		const char *cid = json_string_value(json_object_get(hdr, "cluster_id"));
		if (cid && e->cluster_id && strcmp(cid, e->cluster_id) != 0) {
			rc = watch_abort(e, true, false, "%s belongs to another cluster (%s, was %s)",
			                 e->eps[c->ep], cid, e->cluster_id);
		} else if (hrev && hrev < e->wrev) {
			/* The store went back in time (restored from a backup?). */
			rc = watch_abort(e, true, false,
			                 "%s is at revision %lld, behind the %lld already seen",
			                 e->eps[c->ep], (long long)hrev, (long long)e->wrev);
		} else {
			e->watch_created = true;
			e->h->log(e->ctx, REGENT_LOG_INFO, "watching %s/ from revision %lld on %s",
			          e->prefix, (long long)e->wrev + 1, e->eps[c->ep]);
			comp_ok(e, COMP_DISC);
		}
		json_decref(j);
		return rc;
	}
	json_t *events = json_object_get(res, "events");
	if (json_array_size(events) > 0)
		apply_events(e, events);
	else if (hrev > e->wrev)
		e->wrev = hrev; /* progress notification */
	json_decref(j);
	return 0;
}

static void watch_start(etcd *e)
{
	if (!have_token(e))
		return; /* kick() comes back */
	e->watch_created = e->watch_reread = e->watch_rotate = false;
	free(e->watch_err);
	e->watch_err = NULL;
	json_t *b = json_pack("{s:{s:o,s:o,s:o,s:b}}", "create_request", "key", b64s(e, e->kprefix),
	                      "range_end", b64(e, e->kend, e->kend_len), "start_revision",
	                      jint64(e->wrev + 1), "progress_notify", 1);
	e->watch_t0 = e->h->now_ms();
	if (call_start(e, OP_WATCH, "/v3/watch", b, watch_line) < 0)
		disc_retry(e, e->h->backoff_next(&e->disc_bo));
}

static void watch_done(etcd *e, call *c, resp *r)
{
	uint64_t up = e->h->now_ms() - e->watch_t0;
	e->h->metric_add(e->m_reconnects, 1);
	if (up >= STABLE_WATCH_MS)
		e->h->backoff_reset(&e->disc_bo);
	char d[512];
	if (e->watch_err)
		snprintf(d, sizeof(d), "%s", e->watch_err);
	else if (r->err || r->status != 200)
		describe(r, d, sizeof(d));
	else
		snprintf(d, sizeof(d), "%s closed the stream", e->eps[c->ep]);
	int fk = failure_kind(r);
	if (!e->watch_err && fk == F_AUTH)
		token_refused(e, c);
	if (e->watch_reread) {
		/* Compaction or cancel: the only way on is a full read. */
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s", d);
		e->dstate = D_IDLE;
		disc_retry(e, e->watch_created ? 1 : e->h->backoff_next(&e->disc_bo));
		return;
	}
	if (e->watch_rotate || !e->watch_err)
		rotate(e, c, d);
	comp_fail(e, COMP_DISC, REGENT_LOG_WARN,
	          "watch of %s/ lost (%s); resuming from revision %lld on %s", e->prefix, d,
	          (long long)e->wrev + 1, cur_ep(e));
	/* Stream loss: resume from the last revision seen. */
	e->dstate = D_WATCH;
	disc_retry(e, e->h->backoff_next(&e->disc_bo));
}

static void disc_kick(etcd *e)
{
	if (!e->want || e->stopping || timer_active(e->disc_timer))
		return;
	if (e->dstate == D_IDLE) {
		if (have_token(e))
			range_start(e);
	} else if (e->dstate == D_WATCH && !busy(e, OP_WATCH)) {
		watch_start(e);
	}
}

static void kick(etcd *e)
{
	if (e->stopping || !e->started)
		return;
	reg_kick(e);
	disc_kick(e);
}

/* ------------------------------------------------------------------ */
/* Stop: revoke the lease                                             */
/* ------------------------------------------------------------------ */

static void finish_stop(etcd *e)
{
	if (e->stop_done)
		return;
	e->stop_done = true;
	call_cancel(e, OP_REVOKE);
	call_cancel(e, OP_AUTH);
	uv_timer_stop(e->stop_timer);
	uv_timer_stop(e->auth_timer);
	e->h->stopped(e->ctx); /* the core may destroy us right here */
}

static void on_stop_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (e->stop_done)
		return;
	if (e->h->now_ms() + 5 >= e->stop_deadline) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "could not revoke lease %llx in time; its %zu keys expire within %lld s",
		          (unsigned long long)e->lease, keys_written(e), (long long)e->lease_ttl);
		finish_stop(e);
		return;
	}
	stop_continue(e);
}

static void revoke_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	if (fk == F_NONE || fk == F_LEASE) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "lease %llx revoked at %s: %zu keys removed",
		          (unsigned long long)e->lease, e->eps[c->ep], keys_written(e));
		e->lease = 0;
		finish_stop(e);
		return;
	}
	char d[512];
	describe(r, d, sizeof(d));
	e->h->log(e->ctx, REGENT_LOG_WARN, "cannot revoke lease %llx at %s: %s",
	          (unsigned long long)e->lease, e->eps[c->ep], d);
	if (fk == F_AUTH)
		token_refused(e, c);
	else
		rotate(e, c, d);
	/* Try again (next endpoint) shortly, within the deadline. */
	uint64_t now = e->h->now_ms();
	uint64_t left = e->stop_deadline > now ? e->stop_deadline - now : 0;
	uv_timer_start(e->stop_timer, on_stop_timer, left < 100 ? left : 100, 0);
}

/* Drives the revoke: authenticate if needed, then revoke.  Returns
 * false when nothing could be started (the caller finishes the stop). */
static bool stop_step(etcd *e)
{
	if (busy(e, OP_REVOKE) || busy(e, OP_AUTH))
		return true;
	if (e->user && !e->token) {
		uv_timer_stop(e->auth_timer);
		auth_start(e);
		return busy(e, OP_AUTH);
	}
	json_t *b = json_pack("{s:o}", "ID", jint64(e->lease));
	return call_start(e, OP_REVOKE, "/v3/lease/revoke", b, NULL) == 0;
}

/* From callbacks only (never from stop() itself). */
static void stop_continue(etcd *e)
{
	if (!e->stop_done && !stop_step(e))
		finish_stop(e);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                          */
/* ------------------------------------------------------------------ */

static bool file_readable(regent_ctx *ctx, const regent_host *h, const char *key)
{
	const char *p = h->cfg_string(ctx, key);
	if (p && access(p, R_OK) != 0) {
		h->cfg_error(ctx, key, "cannot read \"%s\": %s", p, strerror(errno));
		return false;
	}
	return true;
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	const char *const *eps;
	size_t n = h->cfg_list(ctx, "endpoints", &eps);
	if (n == 0) {
		h->cfg_error(ctx, "endpoints", "at least one endpoint is needed");
		rc = -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *u = eps[i];
		const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
		                   : strncmp(u, "https://", 8) == 0 ? u + 8
		                                                    : NULL;
		const char *at = strrchr(u, '@');
		if (at) {
			/* Never echo user info: it may hold a password. */
			h->cfg_error(ctx, "endpoints",
			             "\"...@%s\": user info in an endpoint URL is not supported; use "
			             "username and password",
			             at + 1);
			rc = -EINVAL;
		} else if (!rest || !rest[0] || strpbrk(rest, " \t?#")) {
			h->cfg_error(ctx, "endpoints",
			             "\"%s\" is not an http:// or https:// URL of the form "
			             "scheme://host:port (no query or spaces)",
			             u);
			rc = -EINVAL;
		}
	}
	char *p = etcd_normalize_prefix(h->cfg_string(ctx, "prefix"));
	if (!p) {
		h->cfg_error(ctx, "prefix", "must be empty or start with '/', printable, no spaces");
		rc = -EINVAL;
	}
	free(p);
	bool hu = h->cfg_is_set(ctx, "username"), hp = h->cfg_is_set(ctx, "password");
	if (hu != hp) {
		h->cfg_error(ctx, hu ? "password" : "username", "username and password go together");
		rc = -EINVAL;
	}
	if (hu && !(h->cfg_string(ctx, "username") && h->cfg_string(ctx, "username")[0])) {
		h->cfg_error(ctx, "username", "must not be empty");
		rc = -EINVAL;
	}
	if (h->cfg_is_set(ctx, "key") && !h->cfg_is_set(ctx, "cert")) {
		h->cfg_error(ctx, "key", "a client key needs cert too");
		rc = -EINVAL;
	}
	if (!file_readable(ctx, h, "ca") || !file_readable(ctx, h, "cert") ||
	    !file_readable(ctx, h, "key"))
		rc = -EINVAL;
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	etcd *e = xcalloc(1, sizeof(*e));
	e->ctx = ctx;
	e->h = h;
	const char *const *eps;
	e->neps = h->cfg_list(ctx, "endpoints", &eps);
	if (e->neps == 0) {
		free(e);
		return -EINVAL;
	}
	e->eps = xcalloc(e->neps, sizeof(*e->eps));
	for (size_t i = 0; i < e->neps; i++) {
		e->eps[i] = xstrdup(eps[i]);
		size_t l = strlen(e->eps[i]);
		while (l > 0 && e->eps[i][l - 1] == '/')
			e->eps[i][--l] = '\0';
	}
	e->prefix = etcd_normalize_prefix(h->cfg_string(ctx, "prefix"));
	if (!e->prefix) {
		for (size_t i = 0; i < e->neps; i++)
			free(e->eps[i]);
		free(e->eps);
		free(e);
		return -EINVAL;
	}
	e->kprefix = xasprintf("%s/", e->prefix);
	e->kend = etcd_prefix_end(e->kprefix, strlen(e->kprefix), &e->kend_len);
	e->ttl_s = (int64_t)((h->cfg_duration_ms(ctx, "ttl") + 999) / 1000);
	e->timeout_ms = h->cfg_duration_ms(ctx, "timeout");
	e->revoke_ms = h->cfg_duration_ms(ctx, "revoke_timeout");
	e->watch_idle_ms = h->cfg_duration_ms(ctx, "watch_idle_timeout");
	e->user = h->cfg_is_set(ctx, "username") ? h->cfg_string(ctx, "username") : NULL;
	e->password = h->cfg_is_set(ctx, "password") ? h->cfg_string(ctx, "password") : NULL;
	if (e->user && !e->password)
		e->user = NULL;
	e->ca = h->cfg_string(ctx, "ca");
	e->cert = h->cfg_string(ctx, "cert");
	e->key = h->cfg_string(ctx, "key");
	regent_backoff bo = {.initial_ms = h->cfg_duration_ms(ctx, "backoff_initial"),
	                     .max_ms = h->cfg_duration_ms(ctx, "backoff_max")};
	if (bo.max_ms < bo.initial_ms)
		bo.max_ms = bo.initial_ms;
	e->auth_bo = e->reg_bo = e->disc_bo = bo;
	e->regs = esmap_new();
	e->lease_ttl = e->ttl_s;

	for (int i = 0; i < OP_N; i++) {
		char *l = xasprintf("op=\"%s\"", op_names[i]);
		e->m_ops[i] = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
		                        "Requests a store made to its registry, by operation.", l);
		e->m_errs[i] = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
		                         "Requests of a store that failed, by operation.", l);
		e->m_lat[i] = h->metric(ctx, REGENT_METRIC_HISTOGRAM, "regent_store_request_seconds",
		                        "Duration of a store's requests, by operation.", l);
		free(l);
	}
	e->m_put = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
	                     "Requests a store made to its registry, by operation.", "op=\"put\"");
	e->m_del = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
	                     "Requests a store made to its registry, by operation.",
	                     "op=\"delete\"");
	e->m_reconnects = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_watch_reconnects_total",
	                            "Watch streams that ended and were started again.", NULL);
	e->m_events = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_watch_events_total",
	                        "Registry change events received by a store's watch.", NULL);
	e->m_resyncs = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_compactions_total",
	                         "Watches canceled by a compaction (followed by a full read).",
	                         NULL);
	e->m_keys = h->metric(ctx, REGENT_METRIC_GAUGE, "regent_store_registered_keys",
	                      "Keys this agent holds in its registry.", NULL);
	e->m_leases = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_leases_granted_total",
	                        "Leases (or sessions) a store obtained.", NULL);
	*self = e;
	return 0;
}

static int start(void *self)
{
	etcd *e = self;
	e->auth_timer = timer_new(e);
	e->reg_timer = timer_new(e);
	e->ka_timer = timer_new(e);
	e->disc_timer = timer_new(e);
	e->stop_timer = timer_new(e);
	e->want = e->h->want_catalog(e->ctx);
	e->dstate = e->want ? D_IDLE : D_OFF;
	e->started = true;
	e->h->log(e->ctx, REGENT_LOG_INFO, "endpoints %s%s, prefix %s/, ttl %lld s%s%s",
	          e->eps[0], e->neps > 1 ? " (+ more)" : "", e->prefix, (long long)e->ttl_s,
	          e->user ? ", auth as " : "", e->user ? e->user : "");
	kick(e);
	return 0;
}

static int stop(void *self)
{
	etcd *e = self;
	e->stopping = true;
	for (int i = 0; i < OP_N; i++)
		if (i != OP_AUTH)
			call_cancel(e, i);
	if (e->txn) {
		for (size_t i = 0; i < e->ntxn; i++)
			e->txn[i]->in_txn = false;
		free(e->txn);
		e->txn = NULL;
		e->ntxn = 0;
	}
	uv_timer_stop(e->reg_timer);
	uv_timer_stop(e->ka_timer);
	uv_timer_stop(e->disc_timer);
	if (!e->lease) {
		call_cancel(e, OP_AUTH);
		uv_timer_stop(e->auth_timer);
		return 0;
	}
	e->stop_deadline = e->h->now_ms() + e->revoke_ms;
	uv_timer_start(e->stop_timer, on_stop_timer, e->revoke_ms, 0);
	if (busy(e, OP_AUTH))
		return REGENT_PENDING; /* auth_done continues */
	uv_timer_stop(e->auth_timer);
	if (!stop_step(e)) {
		uv_timer_stop(e->stop_timer);
		return 0; /* host->stopped() must not be called from stop() */
	}
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	etcd *e = self;
	for (int i = 0; i < OP_N; i++)
		call_cancel(e, i);
	timer_close(&e->auth_timer);
	timer_close(&e->reg_timer);
	timer_close(&e->ka_timer);
	timer_close(&e->disc_timer);
	timer_close(&e->stop_timer);
	free(e->txn);
	esmap_iter it = {0};
	void *v;
	while (esmap_next(e->regs, &it, NULL, &v))
		reg_free(v);
	esmap_free(e->regs);
	view_clear(e, &e->cur);
	view_clear(e, &e->pending);
	for (int i = 0; i < COMP_N; i++)
		free(e->err[i]);
	free(e->range_next);
	free(e->cluster_id);
	free(e->watch_err);
	free(e->token);
	free(e->prefix);
	free(e->kprefix);
	free(e->kend);
	for (size_t i = 0; i < e->neps; i++)
		free(e->eps[i]);
	free(e->eps);
	free(e);
}

static call_handler handlers[OP_N] = {
	[OP_AUTH] = auth_done,       [OP_GRANT] = grant_done, [OP_KEEPALIVE] = keepalive_done,
	[OP_TXN] = txn_done,         [OP_REVOKE] = revoke_done, [OP_RANGE] = range_done,
	[OP_WATCH] = watch_done,
};

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), register_instance,
                                           deregister_instance};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("etcd"),
	.kind = REGENT_KIND_STORE,
	.version = "0.1.0",
	.description = "etcd v3 store: one lease per agent, range read + watch",
	.config_keys = config_keys,
	.ops = &ops,
	.kind_ops = &store_ops,
};
