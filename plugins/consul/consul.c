/* consul.c - the Consul store plugin.
 *
 * Owns, per plugin instance:
 *  - registration: one entry per local instance (id -> desired agent
 *    service registration), sent to the local agent with
 *    PUT /v1/agent/service/register (a TTL check with
 *    DeregisterCriticalServiceAfter), kept passing with
 *    PUT /v1/agent/check/pass/<check> every ttl/3, removed with
 *    PUT /v1/agent/service/deregister/<id>.  At most MAX_INFLIGHT requests
 *    at a time; failures wait for one shared backoff timer.  A pass answered
 *    404 means the agent forgot us (it restarted): everything is registered
 *    again.  stop() deregisters every service the agent may hold.
 *  - discovery (only when the host has a sink): one blocking query on
 *    /v1/catalog/services and one per service on
 *    /v1/health/service/<name>?passing, each with its own index, backoff
 *    and rate limit; watches start and stop as services appear and vanish.
 *    The first full read is bracketed by catalog_sync_begin/end.
 *
 * Everything runs on the core's loop through host->http_request.  The
 * ACL token goes out only as the X-Consul-Token header and is never
 * logged. */
#include "consul_int.h"

#include <regent/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 16         /* registration-side requests at once */
#define STOP_REQ_TIMEOUT_MS 3000
#define STOP_INFLIGHT 64        /* deregistrations at once when stopping */

typedef enum reg_op { OP_NONE = 0, OP_REGISTER, OP_DEREGISTER, OP_PASS } reg_op;

/* One service this node's agent should (or should no longer) hold: a
 * local instance, or one adopted from the agent on start. */
typedef struct reg {
	consul *c;
	char *cid;         /* Consul service id (the map's key) */
	char *id;          /* regent instance id */
	char *service;
	char *body;        /* desired registration; NULL: deregister it */
	char *sent;        /* body of the register in flight */
	char *pass_path;   /* /v1/agent/check/pass/<escaped check id> */
	char *dereg_path;  /* /v1/agent/service/deregister/<escaped id> */
	char hash[CONSUL_HASH_LEN];       /* of body */
	char agent_hash[CONSUL_HASH_LEN]; /* what the agent held on start */
	bool synced;       /* the agent acknowledged body */
	bool known;        /* the agent may hold the service */
	bool adopted;      /* held by the agent on start, not claimed by a source yet */
	bool pass_due;
	bool waiting;      /* failed: waits for the retry timer */
	bool failed;       /* the last attempt failed */
	bool rejected;     /* 400: not retried until the instance changes */
	bool stop_todo;    /* stopping: a deregistration still to send */
	reg_op op;         /* in flight */
	bool op_was_known; /* a register that replaces a known service */
	uint64_t op_epoch;
	regent_http_req *req;
	struct reg *prev, *next;
} reg;

static const char *const m_names[] = {"register", "deregister", "pass", "catalog", "health", "list"};

static const regent_config_key keys[] = {
	{"address", REGENT_CFG_STRING, "http://127.0.0.1:8500", false, 0, 0,
	 "the local Consul agent: http://host:port, https://host:port or unix:///path"},
	{"token", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "ACL token, sent as X-Consul-Token (never logged)"},
	{"datacenter", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "datacenter to read the catalog from (default: the agent's)"},
	{"ca", REGENT_CFG_STRING, NULL, false, 0, 0, "CA bundle to verify an https agent"},
	{"cert", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate (https)"},
	{"key", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate's key (https)"},
	{"tag", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "discover only instances carrying all these tags"},
	{"ignore_services", REGENT_CFG_LIST, "consul", false, 0, 0,
	 "service names never read into the catalog"},
	{"ttl", REGENT_CFG_DURATION, "15s", false, 1000, 3600000,
	 "TTL of each instance's check (passed every ttl/3)"},
	{"deregister_after", REGENT_CFG_DURATION, "1m", false, 1000, 86400000,
	 "DeregisterCriticalServiceAfter (Consul floors it at 1m and reaps every 30 s)"},
	{"health_states", REGENT_CFG_LIST, "passing", false, 0, 0,
	 "check states that count as serving: passing, or passing, warning"},
	{"deregister_on_stop", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "deregister every service when the agent exits (a host being decommissioned); "
	 "default: keep them, a restarted regent takes them over"},
	{"reconcile_wait", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "on start, how long services this node registered earlier wait for a source to "
	 "report them again before they are deregistered"},
	{"wait", REGENT_CFG_DURATION, "5m", false, 1000, 600000,
	 "how long a blocking query waits for a change"},
	{"timeout", REGENT_CFG_DURATION, "10s", false, 100, 300000,
	 "timeout of a single non-blocking request"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

char *consul_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		abort();
	return d;
}

char *consul_xasprintf(const char *fmt, ...)
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

void consul_count(consul *c, regent_metric **m, int op)
{
	if (m[op])
		c->h->metric_add(m[op], 1);
}

/* A short, printable copy of an HTTP error body for a log line. */
static void body_excerpt(const regent_http_result *res, char *out, size_t len)
{
	size_t k = 0;
	if (res->body)
		for (size_t i = 0; i < res->body_len && k + 1 < len && i < 200; i++) {
			unsigned char ch = (unsigned char)res->body[i];
			out[k++] = (ch < 0x20 || ch >= 0x7f) ? ' ' : (char)ch;
		}
	while (k > 0 && out[k - 1] == ' ')
		k--;
	out[k] = '\0';
}

/* "HTTP 403: ACL not found" or the transport error. */
void consul_describe(const regent_http_result *res, char *out, size_t len)
{
	if (res->error) {
		snprintf(out, len, "%s", res->error_msg && res->error_msg[0] ? res->error_msg
		                                                             : strerror(-res->error));
		return;
	}
	char ex[208];
	body_excerpt(res, ex, sizeof(ex));
	snprintf(out, len, "HTTP %ld%s%s", res->status, ex[0] ? ": " : "", ex);
}

void consul_update_health(consul *c)
{
	const char *why = NULL;
	if (c->reg_failing || c->list_failing)
		why = c->reg_problem;
	else if (c->disc_failing)
		why = c->disc_problem;
	c->h->set_health(c->ctx, why == NULL, why);
}

regent_http_req *consul_send(consul *c, const char *method, const char *path,
                                 const char *body, uint64_t timeout_ms,
                                 regent_http_done_cb cb, void *arg, int *err)
{
	char *url = consul_xasprintf("%s%s", c->base, path);
	const char *hdrs[3];
	size_t nh = 0;
	for (size_t i = 0; i < c->nheaders; i++)
		hdrs[nh++] = c->headers[i];
	if (body)
		hdrs[nh++] = "Content-Type: application/json";
	regent_http_opts o = {
		.size = sizeof(o),
		.method = method,
		.url = url,
		.unix_socket = c->unix_path,
		.headers = hdrs,
		.nheaders = nh,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.timeout_ms = timeout_ms,
		.connect_timeout_ms = timeout_ms < 5000 ? timeout_ms : 5000,
		.ca_file = c->ca,
		.cert_file = c->cert,
		.key_file = c->key,
		.on_done = cb,
		.arg = arg,
	};
	regent_http_req *r = c->h->http_request(c->ctx, &o, err);
	free(url);
	return r;
}

/* ------------------------------------------------------------------ */
/* registration                                                       */
/* ------------------------------------------------------------------ */

static void pump(consul *c);
static void kick_others(consul *c);

static void reg_unlink_free(consul *c, reg *r)
{
	if (r->req) {
		c->h->http_cancel(r->req);
		c->inflight--;
	}
	if (r->failed && c->reg_failing)
		c->reg_failing--;
	if (r->prev)
		r->prev->next = r->next;
	else
		c->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		c->tail = r->prev;
	cmap_del(c->regs, r->cid);
	free(r->cid);
	free(r->id);
	free(r->service);
	free(r->body);
	free(r->sent);
	free(r->pass_path);
	free(r->dereg_path);
	free(r);
}

static void update_registered_gauge(consul *c)
{
	if (!c->m_registered)
		return;
	size_t n = 0;
	for (reg *r = c->head; r; r = r->next)
		n += r->synced && r->body;
	c->h->metric_set(c->m_registered, (double)n);
}

static void on_retry(uv_timer_t *t)
{
	consul *c = t->data;
	for (reg *r = c->head; r; r = r->next)
		r->waiting = false;
	pump(c);
}

static void schedule_retry(consul *c)
{
	if (uv_is_active((uv_handle_t *)c->retry_timer))
		return;
	uint64_t d = c->h->backoff_next(&c->reg_bo);
	uv_timer_start(c->retry_timer, on_retry, d, 0);
}

/* A registration-side request failed: retry later, report. */
static void reg_fail(consul *c, reg *r, regent_log_level level, const char *fmt, ...)
	REGENT_PRINTF(4, 5);
static void reg_fail(consul *c, reg *r, regent_log_level level, const char *fmt, ...)
{
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bool first = c->reg_failing == 0;
	if (!r->failed) {
		r->failed = true;
		c->reg_failing++;
	}
	r->waiting = true;
	/* One line per outage; the rest at debug level. */
	c->h->log(c->ctx, first ? level : REGENT_LOG_DEBUG, "%s; retrying", msg);
	snprintf(c->reg_problem, sizeof(c->reg_problem), "%s", msg);
	consul_update_health(c);
	schedule_retry(c);
}

static void reg_ok(consul *c, reg *r)
{
	c->h->backoff_reset(&c->reg_bo);
	if (r && r->failed) {
		r->failed = false;
		c->reg_failing--;
		if (c->reg_failing == 0) {
			c->h->log(c->ctx, REGENT_LOG_INFO, "Consul agent at %s accepts requests again",
			          c->shown);
			consul_update_health(c);
		}
	}
}

/* Register everything again (the agent lost our services). */
static void local_again(void *arg, const regent_instance *inst);

static void lost_all(consul *c, const char *why)
{
	size_t n = 0;
	c->epoch++;
	reg *next;
	for (reg *r = c->head; r; r = next) {
		next = r->next;
		if (r->req && r->op == OP_PASS) {
			c->h->http_cancel(r->req);
			r->req = NULL;
			r->op = OP_NONE;
			c->inflight--;
		}
		r->pass_due = false;
		r->adopted = false;
		if (!r->body) {
			if (!r->req) {
				reg_unlink_free(c, r);
				continue;
			}
			r->known = false;
			continue;
		}
		r->synced = false;
		r->known = false;
		r->rejected = false;
		n++;
	}
	c->h->log(c->ctx, REGENT_LOG_WARN, "%s: registering %zu instance%s again", why, n,
	          n == 1 ? "" : "s");
	if (c->m_rereg)
		c->h->metric_add(c->m_rereg, 1);
	/* Re-assert the local set as the core knows it. */
	c->h->local_foreach(c->ctx, local_again, c);
	update_registered_gauge(c);
	consul_update_health(c);
}

static void on_reg_done(void *arg, const regent_http_result *res);

/* start() returned REGENT_PENDING: tell the core once the agent answered
 * the listing and every registration or refresh then due was answered. */
static void maybe_started(consul *c)
{
	if (!c->start_pending || c->listing || c->stopping || c->inflight)
		return;
	for (reg *r = c->head; r; r = r->next)
		if ((r->body && !r->synced && !r->rejected) || r->pass_due)
			return;
	c->start_pending = false;
	size_t local = 0;
	for (reg *r = c->head; r; r = r->next)
		local += r->body != NULL;
	c->h->log(c->ctx, REGENT_LOG_INFO,
	          "ready: the agent at %s held %zu service%s this node registered before "
	          "(adopted), %zu local instance%s in sync",
	          c->shown, c->adopted_n, c->adopted_n == 1 ? "" : "s", local,
	          local == 1 ? "" : "s");
	c->h->started(c->ctx, 0, NULL);
}

/* A misconfiguration no retry can cure (a token refused): the start
 * fails (a reload keeps the running instance). */
static void start_failed(consul *c, int err, const char *why)
{
	if (!c->start_pending)
		return;
	c->start_pending = false;
	c->h->started(c->ctx, err, why);
}

static void stop_summary(consul *c)
{
	if (c->stop_failed)
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "deregistered %zu of %zu services from Consul; the others leave when "
		          "their TTL check has been critical for %" PRIu64 " s",
		          c->stop_ok, c->stop_ok + c->stop_failed, c->dereg_ms / 1000);
	else if (c->stop_ok)
		c->h->log(c->ctx, REGENT_LOG_INFO, "deregistered %zu service%s from Consul", c->stop_ok,
		          c->stop_ok == 1 ? "" : "s");
}

/* Sends the stop-time deregistrations still queued, STOP_INFLIGHT at a
 * time (thousands at once would exhaust file descriptors). */
static void stop_pump(consul *c)
{
	for (reg *r = c->head; r && c->inflight < STOP_INFLIGHT; r = r->next) {
		if (!r->stop_todo)
			continue;
		r->stop_todo = false;
		int err = 0;
		r->op = OP_DEREGISTER;
		r->req = consul_send(c, "PUT", r->dereg_path, NULL, STOP_REQ_TIMEOUT_MS, on_reg_done, r,
		                  &err);
		if (!r->req) {
			r->op = OP_NONE;
			c->stop_failed++;
			c->stop_pending--;
			c->h->log(c->ctx, REGENT_LOG_WARN, "cannot deregister %s from %s: %s", r->id,
			          c->shown, strerror(-err));
			continue;
		}
		c->inflight++;
	}
}

/* A TTL update answered "unknown check": 404 Unknown check ID (Consul >=
 * 1.12); 500 Unknown check "..." (<= 1.11 with ACLs); 500 ... does not
 * have associated TTL (<= 1.11 without ACLs). */
static bool consul_unknown_check(const regent_http_result *res)
{
	if (res->error)
		return false;
	if (res->status == 404)
		return true;
	return res->status == 500 && res->body &&
	       (strstr(res->body, "Unknown check") || strstr(res->body, "does not have associated TTL"));
}

static void on_reg_done(void *arg, const regent_http_result *res)
{
	reg *r = arg;
	consul *c = r->c;
	reg_op op = r->op;
	r->req = NULL;
	r->op = OP_NONE;
	c->inflight--;
	char what[300];
	consul_describe(res, what, sizeof(what));
	bool ok = !res->error && res->status >= 200 && res->status < 300;
	int mop = op == OP_REGISTER ? M_REGISTER : op == OP_DEREGISTER ? M_DEREGISTER : M_PASS;
	if (!ok)
		consul_count(c, c->m_err, mop);

	if (c->stopping) {
		/* Only deregistrations run while stopping. */
		if (ok || res->status == 404)
			c->stop_ok++;
		else {
			c->stop_failed++;
			c->h->log(c->ctx, REGENT_LOG_WARN, "cannot deregister %s from %s: %s", r->id,
			          c->shown, what);
		}
		r->known = !(ok || res->status == 404);
		if (c->stop_pending > 0)
			c->stop_pending--;
		stop_pump(c);
		if (c->stop_pending == 0) {
			stop_summary(c);
			kick_others(c);
			c->h->stopped(c->ctx);
		}
		return;
	}

	switch (op) {
	case OP_REGISTER:
		/* An HTTP error means the agent did not take it. */
		if (!ok && !res->error)
			r->known = r->op_was_known;
		if (ok) {
			reg_ok(c, r);
			if (r->op_epoch == c->epoch && r->body && r->sent &&
			    strcmp(r->body, r->sent) == 0) {
				r->synced = true;
				/* A replaced registration keeps its check's status. */
				r->pass_due = r->op_was_known;
				c->h->log(c->ctx, REGENT_LOG_DEBUG, "registered %s (%s)", r->id,
				          r->service);
			}
		} else if (res->status == 400) {
			r->rejected = true;
			if (r->failed) {
				r->failed = false;
				c->reg_failing--;
				consul_update_health(c);
			}
			c->h->log(c->ctx, REGENT_LOG_ERROR,
			          "Consul refused to register %s (service %s): %s; not retried until "
			          "the instance changes",
			          r->id, r->service, what);
		} else if (res->status == 403) {
			reg_fail(c, r, REGENT_LOG_ERROR,
			         "Consul refused to register %s (service %s): %s (ACL: the token is "
			         "missing, unknown, or lacks service:write)",
			         r->id, r->service, what);
			start_failed(c, -EACCES, c->reg_problem);
		} else {
			reg_fail(c, r, REGENT_LOG_WARN, "cannot register %s at %s: %s", r->id,
			         c->shown, what);
		}
		free(r->sent);
		r->sent = NULL;
		update_registered_gauge(c);
		break;
	case OP_DEREGISTER:
		if (ok || res->status == 404) {
			reg_ok(c, r);
			r->known = false;
			c->h->log(c->ctx, REGENT_LOG_DEBUG, "deregistered %s%s", r->id,
			          ok ? "" : " (the agent did not know it)");
			if (!r->body) {
				reg_unlink_free(c, r);
				r = NULL;
			}
		} else if (res->status == 403) {
			reg_fail(c, r, REGENT_LOG_ERROR,
			         "Consul refused to deregister %s: %s (ACL: check the token)", r->id,
			         what);
		} else {
			reg_fail(c, r, REGENT_LOG_WARN, "cannot deregister %s at %s: %s", r->id,
			         c->shown, what);
		}
		break;
	case OP_PASS:
		if (ok) {
			reg_ok(c, r);
			r->pass_due = false;
		} else if (consul_unknown_check(res) && r->adopted) {
			/* Adopted on start and gone since (reaped): nothing to keep. */
			reg_ok(c, r);
			r->pass_due = false;
			r->adopted = false;
			r->known = false;
		} else if (consul_unknown_check(res)) {
			if (r->op_epoch == c->epoch) {
				char *why = consul_xasprintf("the Consul agent at %s no longer knows the check "
				                      "of %s (it restarted, or reaped the service)",
				                      c->shown, r->id);
				lost_all(c, why);
				free(why);
			}
		} else if (res->status == 403) {
			reg_fail(c, r, REGENT_LOG_ERROR,
			         "Consul refused the TTL pass of %s: %s (ACL: check the token)", r->id,
			         what);
			start_failed(c, -EACCES, c->reg_problem);
		} else {
			reg_fail(c, r, REGENT_LOG_WARN, "cannot pass the TTL check of %s at %s: %s",
			         r->id, c->shown, what);
		}
		break;
	default:
		break;
	}
	pump(c);
	maybe_started(c);
}

/* Starts the request entry r needs, if any.  Returns false when r was
 * freed. */
static bool reg_step(consul *c, reg *r)
{
	if (r->req || r->waiting)
		return true;
	const char *method = "PUT", *path = NULL, *body = NULL;
	reg_op op = OP_NONE;
	if (r->body && !r->synced && !r->rejected) {
		op = OP_REGISTER;
		path = "/v1/agent/service/register";
		body = r->body;
	} else if (!r->body && r->adopted) {
		/* Held on start, no source claimed it yet: keep it passing. */
		if (!r->pass_due)
			return true;
		op = OP_PASS;
		path = r->pass_path;
	} else if (!r->body && r->known) {
		op = OP_DEREGISTER;
		path = r->dereg_path;
	} else if (!r->body) {
		reg_unlink_free(c, r);
		return false;
	} else if (r->synced && r->pass_due) {
		op = OP_PASS;
		path = r->pass_path;
	} else {
		return true;
	}
	int err = 0;
	r->op = op;
	r->op_epoch = c->epoch;
	r->op_was_known = r->known;
	r->req = consul_send(c, method, path, body, c->timeout_ms, on_reg_done, r, &err);
	if (!r->req) {
		r->op = OP_NONE;
		reg_fail(c, r, REGENT_LOG_ERROR, "cannot send a request for %s to %s: %s", r->id,
		         c->shown, strerror(-err));
		return true;
	}
	c->inflight++;
	int mop = op == OP_REGISTER ? M_REGISTER : op == OP_DEREGISTER ? M_DEREGISTER : M_PASS;
	consul_count(c, c->m_req, mop);
	if (op == OP_REGISTER) {
		free(r->sent);
		r->sent = consul_xstrdup(r->body);
		r->known = true; /* the agent may hold it from now on */
	}
	return true;
}

/* The instances of this plugin alive in the process (one loop, so no
 * locking).  A SIGHUP reload that changes [store consul] stops the old
 * instance (which deregisters everything) before it starts the new one
 * (which registers everything again): the new one waits until the old
 * one's deregistrations at the same agent are answered, so that they
 * cannot overtake the new registrations. */
static consul *g_live;

static bool same_agent(const consul *a, const consul *b)
{
	return strcmp(a->base, b->base) == 0 &&
	       strcmp(a->unix_path ? a->unix_path : "", b->unix_path ? b->unix_path : "") == 0;
}

static bool agent_busy_deregistering(const consul *c)
{
	for (const consul *o = g_live; o; o = o->next_live)
		if (o != c && o->stopping && o->stop_pending > 0 && same_agent(o, c))
			return true;
	return false;
}

/* An instance finished deregistering: let the others go on. */
static void kick_others(consul *c)
{
	for (consul *o = g_live; o; o = o->next_live)
		if (o != c && !o->stopping && same_agent(o, c))
			pump(o);
}

static void pump(consul *c)
{
	if (c->stopping || !c->started || c->listing || agent_busy_deregistering(c))
		return;
	reg *next;
	for (reg *r = c->head; r && c->inflight < MAX_INFLIGHT; r = next) {
		next = r->next;
		reg_step(c, r);
	}
}

static void on_pass_tick(uv_timer_t *t)
{
	consul *c = t->data;
	for (reg *r = c->head; r; r = r->next)
		if ((r->body && r->synced) || r->adopted)
			r->pass_due = true;
	pump(c);
}

/* The entry of a Consul service id, created when missing. */
static reg *reg_get_cid(consul *c, const char *cid, const char *rid, const char *service)
{
	reg *r = cmap_get(c->regs, cid);
	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->c = c;
	r->cid = consul_xstrdup(cid);
	r->id = consul_xstrdup(rid);
	r->service = consul_xstrdup(service);
	char *chk = consul_check_id(cid);
	char *e = consul_escape(chk);
	r->pass_path = consul_xasprintf("/v1/agent/check/pass/%s", e);
	free(e);
	free(chk);
	e = consul_escape(cid);
	r->dereg_path = consul_xasprintf("/v1/agent/service/deregister/%s", e);
	free(e);
	cmap_put(c->regs, r->cid, r);
	r->prev = c->tail;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	return r;
}

/* Sets the desired registration of inst; true when it changed. */
static bool want(consul *c, const regent_instance *inst)
{
	char dropped[256], hash[CONSUL_HASH_LEN];
	char *body = consul_register_body(inst, c->h->node(c->ctx), c->ttl_ms, c->dereg_ms,
	                                  dropped, sizeof(dropped), hash);
	char *cid = consul_service_id(inst->id);
	reg *r = reg_get_cid(c, cid, inst->id, inst->service);
	free(cid);
	if (r->body && strcmp(r->body, body) == 0) {
		free(body);
		return false;
	}
	if (dropped[0])
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "instance %s: meta key(s) %s left out (Consul takes [A-Za-z0-9_-] keys, "
		          "not \"consul-...\", at most %d pairs; proto, service_port, node, regent-id "
		          "and regent-hash are regent's own)",
		          inst->id, dropped, CONSUL_META_MAX);
	free(r->body);
	r->body = body;
	memcpy(r->hash, hash, sizeof(hash));
	if (strcmp(r->service, inst->service) != 0) {
		free(r->service);
		r->service = consul_xstrdup(inst->service);
	}
	r->rejected = false;
	if ((r->adopted || (r->known && !r->synced && !r->req)) && r->agent_hash[0] &&
	    strcmp(r->agent_hash, hash) == 0) {
		/* The agent holds exactly this since before the start: keep it,
		 * refresh its TTL at once. */
		r->adopted = false;
		r->synced = true;
		r->pass_due = true;
		r->agent_hash[0] = '\0';
		c->kept_n++;
		c->h->log(c->ctx, REGENT_LOG_DEBUG, "kept %s (%s) as the agent holds it", r->id,
		          r->service);
	} else {
		r->adopted = false;
		r->agent_hash[0] = '\0';
		r->synced = false;
	}
	return true;
}

static void local_again(void *arg, const regent_instance *inst)
{
	want(arg, inst);
}

static void register_instance(void *self, const regent_instance *inst)
{
	consul *c = self;
	if (c->stopping)
		return;
	if (want(c, inst))
		pump(c);
}

static void deregister_instance(void *self, const regent_instance *inst)
{
	consul *c = self;
	if (c->stopping)
		return;
	char *cid = consul_service_id(inst->id);
	reg *r = cmap_get(c->regs, cid);
	free(cid);
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->synced = false;
	r->rejected = false;
	r->pass_due = false;
	if (r->failed) {
		/* Whatever failed for the registration no longer matters. */
		r->failed = false;
		c->reg_failing--;
		consul_update_health(c);
	}
	if (!r->known && !r->req)
		reg_unlink_free(c, r);
	else
		pump(c);
	update_registered_gauge(c);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                          */
/* ------------------------------------------------------------------ */

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	char why[256];
	char *base = NULL, *up = NULL;
	const char *addr = h->cfg_string(ctx, "address");
	if (consul_parse_address(addr, &base, &up, why, sizeof(why)) < 0) {
		h->cfg_error(ctx, "address", "%s", why);
		rc = -EINVAL;
	}
	const char *tok = h->cfg_string(ctx, "token");
	if (tok) {
		bool bad = !tok[0];
		for (const char *p = tok; *p; p++)
			bad |= (unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f;
		if (bad) {
			/* Never echo the token itself. */
			h->cfg_error(ctx, "token", "must be printable ASCII without blanks");
			rc = -EINVAL;
		}
	}
	const char *dc = h->cfg_string(ctx, "datacenter");
	if (dc) {
		bool bad = !dc[0];
		for (const char *p = dc; *p; p++)
			bad |= !(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') ||
			         *p == '-' || *p == '_' || *p == '.');
		if (bad) {
			h->cfg_error(ctx, "datacenter", "\"%s\" is not a datacenter name", dc);
			rc = -EINVAL;
		}
	}
	bool tls = base && strncmp(base, "https://", 8) == 0;
	static const char *const files[] = {"ca", "cert", "key"};
	for (size_t i = 0; i < 3; i++) {
		const char *f = h->cfg_string(ctx, files[i]);
		if (!f)
			continue;
		if (f[0] != '/') {
			h->cfg_error(ctx, files[i], "must be an absolute path, got \"%s\"", f);
			rc = -EINVAL;
		} else if (base && !tls) {
			h->cfg_error(ctx, files[i], "is only used with an https:// address");
			rc = -EINVAL;
		}
	}
	if (!h->cfg_string(ctx, "cert") != !h->cfg_string(ctx, "key")) {
		h->cfg_error(ctx, h->cfg_string(ctx, "cert") ? "key" : "cert",
		             "cert and key go together");
		rc = -EINVAL;
	}
	const char *const *tags;
	size_t nt = h->cfg_list(ctx, "tag", &tags);
	for (size_t i = 0; i < nt; i++)
		for (const char *p = tags[i]; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				h->cfg_error(ctx, "tag", "control character in a tag");
				rc = -EINVAL;
				break;
			}
	const char *const *st;
	size_t ns = h->cfg_list(ctx, "health_states", &st);
	bool has_passing = false;
	for (size_t i = 0; i < ns; i++) {
		if (strcmp(st[i], "passing") == 0)
			has_passing = true;
		else if (strcmp(st[i], "warning") != 0) {
			h->cfg_error(ctx, "health_states", "\"%s\" is not passing or warning", st[i]);
			rc = -EINVAL;
		}
	}
	if (!has_passing) {
		h->cfg_error(ctx, "health_states", "must include passing");
		rc = -EINVAL;
	}
	uint64_t dereg = h->cfg_duration_ms(ctx, "deregister_after");
	if (dereg < 60000) {
		char d[32], t[32], lo[32], hi[32];
		uint64_t ttl = h->cfg_duration_ms(ctx, "ttl");
		consul_duration(dereg, d, sizeof(d));
		consul_duration(ttl, t, sizeof(t));
		consul_duration(ttl + 60000, lo, sizeof(lo));
		consul_duration(ttl + 90000, hi, sizeof(hi));
		h->log(ctx, REGENT_LOG_WARN,
		       "deregister_after = %s: Consul raises DeregisterCriticalServiceAfter below 1m "
		       "to 1m and reaps every 30 s, so the services of a regent that died leave "
		       "the agent %s to %s after its last pass (they leave ?passing reads after "
		       "ttl = %s)",
		       d, lo, hi, t);
	}
	free(base);
	free(up);
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	consul *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ctx = ctx;
	c->h = h;
	char why[256];
	if (consul_parse_address(h->cfg_string(ctx, "address"), &c->base, &c->unix_path, why,
	                         sizeof(why)) < 0) {
		h->log(ctx, REGENT_LOG_ERROR, "address: %s", why);
		free(c);
		return -EINVAL;
	}
	c->shown = consul_redact_url(c->base);
	const char *tok = h->cfg_string(ctx, "token");
	if (tok && tok[0]) {
		c->token_hdr = consul_xasprintf("X-Consul-Token: %s", tok);
		c->headers[c->nheaders++] = c->token_hdr;
	}
	c->ca = h->cfg_string(ctx, "ca");
	c->cert = h->cfg_string(ctx, "cert");
	c->key = h->cfg_string(ctx, "key");
	c->dc = h->cfg_string(ctx, "datacenter");
	c->ntags = h->cfg_list(ctx, "tag", &c->tags);
	c->nignore = h->cfg_list(ctx, "ignore_services", &c->ignore);
	c->ttl_ms = h->cfg_duration_ms(ctx, "ttl");
	c->dereg_ms = h->cfg_duration_ms(ctx, "deregister_after");
	c->wait_ms = h->cfg_duration_ms(ctx, "wait");
	c->timeout_ms = h->cfg_duration_ms(ctx, "timeout");
	c->reconcile_ms = h->cfg_duration_ms(ctx, "reconcile_wait");
	c->dereg_on_stop = h->cfg_bool(ctx, "deregister_on_stop");
	const char *const *st;
	size_t ns = h->cfg_list(ctx, "health_states", &st);
	for (size_t i = 0; i < ns; i++)
		c->states |= strcmp(st[i], "warning") == 0 ? CONSUL_STATE_WARNING : CONSUL_STATE_PASSING;
	if (!c->states)
		c->states = CONSUL_STATE_PASSING;
	c->regs = cmap_new();
	c->next_live = g_live;
	g_live = c;
	c->reg_bo.initial_ms = 200;
	c->reg_bo.max_ms = c->ttl_ms / 3 < 10000 ? (c->ttl_ms / 3 ? c->ttl_ms / 3 : 1) : 10000;
	*self = c;
	return 0;
}

uv_timer_t *consul_timer(consul *c, void *data)
{
	uv_timer_t *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	uv_timer_init(c->h->loop(c->ctx), t);
	t->data = data;
	return t;
}

/* ---- the reconcile of a start ---- */

static void list_issue(consul *c);

static void on_list_timer(uv_timer_t *t)
{
	list_issue(t->data);
}

static void on_adopt_timer(uv_timer_t *t)
{
	consul *c = t->data;
	size_t n = 0;
	for (reg *r = c->head; r; r = r->next)
		if (r->adopted) {
			r->adopted = false;
			r->pass_due = false;
			n++;
		}
	if (n)
		c->h->log(c->ctx, REGENT_LOG_INFO,
		          "deregistering %zu service%s this node registered before the start and no "
		          "source reports any more",
		          n, n == 1 ? "" : "s");
	pump(c);
}

/* The agent's services: those a regent of this node registered are
 * adopted (kept passing; a source claims them, or they are deregistered
 * after reconcile_wait) instead of being deregistered and registered
 * again: a restart changes nothing in any catalog. */
static void on_list_done(void *arg, const regent_http_result *res)
{
	consul *c = arg;
	c->list_req = NULL;
	char what[200];
	consul_describe(res, what, sizeof(what));
	bool ok = !res->error && res->status == 200;
	consul_agent_services as;
	char why[256] = "";
	if (!res->error && res->status == 403) {
		/* The token may not read the agent (or is unknown): nothing to
		 * adopt; the registrations say what is wrong. */
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "cannot list the services of the Consul agent at %s: %s (ACL: the token "
		          "is unknown or lacks service:read); registering without adopting",
		          c->shown, what);
		ok = true;
		memset(&as, 0, sizeof(as));
		if (strstr(what, "ACL not found")) {
			/* A token the agent does not know: a misconfiguration. */
			snprintf(c->reg_problem, sizeof(c->reg_problem),
			         "the Consul agent at %s does not know the token (%s)", c->shown, what);
			start_failed(c, -EACCES, c->reg_problem);
		}
	} else if (ok && consul_parse_agent_services(res->body, res->body_len, c->h->node(c->ctx), &as, why,
	                                      sizeof(why)) < 0) {
		snprintf(what, sizeof(what), "bad answer: %.180s", why);
		ok = false;
	}
	if (!ok) {
		consul_count(c, c->m_err, M_LIST);
		snprintf(c->reg_problem, sizeof(c->reg_problem),
		         "cannot list the services of the Consul agent at %s: %s%s", c->shown, what,
		         res->status == 403 ? " (ACL: the token is unknown or lacks agent read)" : "");
		c->h->log(c->ctx, c->list_failing ? REGENT_LOG_DEBUG : REGENT_LOG_WARN, "%s; retrying",
		          c->reg_problem);
		c->list_failing = true;
		consul_update_health(c);
		uv_timer_start(c->list_timer, on_list_timer, c->h->backoff_next(&c->reg_bo), 0);
		return;
	}
	c->h->backoff_reset(&c->reg_bo);
	if (c->list_failing) {
		c->list_failing = false;
		consul_update_health(c);
	}
	for (size_t i = 0; i < as.n; i++) {
		const consul_agent_service *a = &as.v[i];
		reg *r = cmap_get(c->regs, a->cid);
		c->adopted_n++;
		if (r && r->body) {
			/* Reported by a source before the agent answered. */
			r->known = true;
			if (strcmp(r->hash, a->hash) == 0) {
				r->synced = true;
				r->pass_due = true;
				c->kept_n++;
				c->h->log(c->ctx, REGENT_LOG_DEBUG, "kept %s (%s) as the agent holds it",
				          r->id, r->service);
			}
			continue;
		}
		if (r)
			continue;
		r = reg_get_cid(c, a->cid, a->rid, a->service);
		r->known = true;
		r->adopted = true;
		r->pass_due = true; /* refresh its TTL at once */
		snprintf(r->agent_hash, sizeof(r->agent_hash), "%s", a->hash);
	}
	consul_agent_services_free(&as);
	c->listing = false;
	if (c->adopted_n)
		c->h->log(c->ctx, REGENT_LOG_INFO,
		          "the agent at %s holds %zu service%s this node registered before: kept "
		          "passing; those no source reports within %" PRIu64 " ms are deregistered",
		          c->shown, c->adopted_n, c->adopted_n == 1 ? "" : "s", c->reconcile_ms);
	uv_timer_start(c->adopt_timer, on_adopt_timer, c->reconcile_ms, 0);
	pump(c);
	maybe_started(c);
}

static void list_issue(consul *c)
{
	if (c->stopping)
		return;
	int err = 0;
	c->list_req = consul_send(c, "GET", "/v1/agent/services", NULL, c->timeout_ms, on_list_done,
	                          c, &err);
	if (c->list_req) {
		consul_count(c, c->m_req, M_LIST);
		return;
	}
	snprintf(c->reg_problem, sizeof(c->reg_problem), "cannot send a request to %s: %s",
	         c->shown, strerror(-err));
	c->h->log(c->ctx, REGENT_LOG_ERROR, "%s", c->reg_problem);
	start_failed(c, err, c->reg_problem);
	uv_timer_start(c->list_timer, on_list_timer, c->h->backoff_next(&c->reg_bo), 0);
}

static int start(void *self)
{
	consul *c = self;
	const regent_host *h = c->h;
	for (int i = 0; i < 6; i++) {
		char *l = consul_xasprintf("op=\"%s\"", m_names[i]);
		c->m_req[i] = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
		                        "Requests a store made to its registry, by operation.",
		                        l);
		c->m_err[i] = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
		                        "Requests of a store that failed, by operation.", l);
		free(l);
	}
	c->m_rereg = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_consul_reregistrations_total",
	                       "Times every instance was registered again (agent restarted).",
	                       NULL);
	c->m_registered = h->metric(c->ctx, REGENT_METRIC_GAUGE, "regent_consul_registered",
	                            "Instances the Consul agent acknowledged.", NULL);
	c->m_watched = h->metric(c->ctx, REGENT_METRIC_GAUGE, "regent_consul_watched_services",
	                         "Services in the catalog read from Consul.", NULL);
	c->m_reads = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_consul_service_reads_total",
	                       "Reads of one service's health (it changed).", NULL);
	c->pass_timer = consul_timer(c, c);
	c->retry_timer = consul_timer(c, c);
	c->list_timer = consul_timer(c, c);
	c->adopt_timer = consul_timer(c, c);
	uint64_t every = c->ttl_ms / 3 ? c->ttl_ms / 3 : 1;
	uv_timer_start(c->pass_timer, on_pass_tick, every, every);
	c->started = true;
	c->listing = true;
	c->start_pending = true;
	char ttl[32], dereg[32];
	consul_duration(c->ttl_ms, ttl, sizeof(ttl));
	consul_duration(c->dereg_ms, dereg, sizeof(dereg));
	c->watching = h->want_catalog(c->ctx);
	h->log(c->ctx, REGENT_LOG_INFO, "agent %s%s%s, ttl %s, deregister after %s%s%s%s",
	       c->shown, c->unix_path ? " via " : "", c->unix_path ? c->unix_path : "", ttl, dereg,
	       c->token_hdr ? ", with an ACL token" : "",
	       c->watching ? ", watching the catalog" : ", registering only",
	       c->states & CONSUL_STATE_WARNING ? " (passing and warning count)" : "");
	if (c->watching)
		consul_disc_start(c);
	list_issue(c);
	return REGENT_PENDING;
}

static const char *reason_name(regent_stop_reason r)
{
	switch (r) {
	case REGENT_STOP_EXIT: return "the agent exits";
	case REGENT_STOP_REPLACED: return "a reload replaced this section";
	case REGENT_STOP_REMOVED: return "the section was removed";
	case REGENT_STOP_FAILED: return "this instance failed its start";
	}
	return "?";
}

/* Another running instance of this plugin at the same agent (a reload's
 * new instance, which adopted what this one registered). */
static bool successor_at_same_agent(const consul *c, bool *other_agent)
{
	*other_agent = false;
	for (const consul *o = g_live; o; o = o->next_live) {
		if (o == c || o->stopping)
			continue;
		if (same_agent(o, c))
			return true;
		*other_agent = true;
	}
	return false;
}

static int stop(void *self)
{
	consul *c = self;
	regent_stop_reason why = c->h->stop_reason(c->ctx);
	c->stopping = true;
	uv_timer_t *timers[] = {c->pass_timer, c->retry_timer, c->list_timer, c->adopt_timer};
	for (size_t i = 0; i < 4; i++)
		if (timers[i])
			uv_timer_stop(timers[i]);
	if (c->list_req) {
		c->h->http_cancel(c->list_req);
		c->list_req = NULL;
	}
	/* Discovery ends at once. */
	consul_disc_stop(c);
	bool dereg, other_agent = false;
	const char *because = "";
	switch (why) {
	case REGENT_STOP_EXIT:
		dereg = c->dereg_on_stop;
		because = dereg ? "deregister_on_stop = true"
		                : "deregister_on_stop = false: a restarted regent takes them over; "
		                  "if none comes back, they leave ?passing reads after ttl";
		break;
	case REGENT_STOP_REPLACED:
		/* The new instance at the same agent holds the same ids (it
		 * adopted them): deregistering would remove its services. */
		dereg = !successor_at_same_agent(c, &other_agent) && other_agent;
		because = dereg ? "the new instance registers at another agent"
		                : "the new instance at the same agent took them over";
		break;
	case REGENT_STOP_REMOVED:
		dereg = true;
		break;
	default: /* FAILED: the instance it was to replace still runs */
		dereg = false;
		because = "this instance never took over; the running one keeps them";
		break;
	}
	size_t held = 0;
	for (reg *r = c->head; r; r = r->next) {
		if (r->req) {
			c->h->http_cancel(r->req);
			r->req = NULL;
			r->op = OP_NONE;
			c->inflight--;
		}
		held += r->known;
		r->stop_todo = dereg && r->known;
		c->stop_pending += dereg && r->known;
	}
	if (!dereg) {
		if (held)
			c->h->log(c->ctx, REGENT_LOG_INFO,
			          "leaving %zu service%s registered at %s (%s: %s)", held,
			          held == 1 ? "" : "s", c->shown, reason_name(why), because);
		return 0;
	}
	size_t total = c->stop_pending;
	stop_pump(c);
	if (c->stop_pending == 0) {
		/* Never call host->stopped() from inside stop(). */
		stop_summary(c);
		return 0;
	}
	c->h->log(c->ctx, REGENT_LOG_INFO, "deregistering %zu service%s from Consul (%s%s%s)", total,
	          total == 1 ? "" : "s", reason_name(why), because[0] ? ": " : "", because);
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	consul *c = self;
	c->stopping = true;
	if (c->list_req)
		c->h->http_cancel(c->list_req);
	while (c->head)
		reg_unlink_free(c, c->head);
	c->stop_pending = 0;
	for (consul **pp = &g_live; *pp; pp = &(*pp)->next_live)
		if (*pp == c) {
			*pp = c->next_live;
			break;
		}
	kick_others(c);
	consul_disc_stop(c);
	cmap_free(c->regs, NULL);
	uv_timer_t *timers[] = {c->pass_timer, c->retry_timer, c->list_timer, c->adopt_timer};
	for (size_t i = 0; i < 4; i++)
		if (timers[i])
			uv_close((uv_handle_t *)timers[i], (uv_close_cb)free);
	free(c->base);
	free(c->shown);
	free(c->unix_path);
	free(c->token_hdr);
	free(c);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), register_instance,
                                           deregister_instance};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("consul"),
	.kind = REGENT_KIND_STORE,
	.version = REGENT_PLUGIN_VERSION, /* regent's own (CMakeLists.txt) */
	.description = "Consul: agent services with TTL checks, blocking-query discovery",
	.config_keys = keys,
	.ops = &ops,
	.kind_ops = &store_ops,
};
