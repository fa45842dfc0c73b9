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
#include "consul_util.h"

#include <regent/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 16         /* registration-side requests at once */
#define MIN_QUERY_GAP_MS 50     /* between two starts of one blocking query */
#define STOP_REQ_TIMEOUT_MS 3000
#define STOP_INFLIGHT 64        /* deregistrations at once when stopping */
#define WARNED_MAX 1024         /* invalid service names remembered */

typedef struct consul consul;

typedef enum reg_op { OP_NONE = 0, OP_REGISTER, OP_DEREGISTER, OP_PASS } reg_op;

/* One local instance as the agent should (or should no longer) hold it. */
typedef struct reg {
	consul *c;
	char *id;
	char *service;
	char *body;        /* desired registration; NULL: deregister it */
	char *sent;        /* body of the register in flight */
	char *pass_path;   /* /v1/agent/check/pass/<escaped check id> */
	char *dereg_path;  /* /v1/agent/service/deregister/<escaped id> */
	bool synced;       /* the agent acknowledged body */
	bool known;        /* the agent may hold the service */
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

/* One blocking query: /v1/catalog/services (name NULL) or the health of
 * one service. */
typedef struct watch {
	consul *c;
	char *name;
	char *path;        /* path and the fixed query, ending in '?' or a param */
	uint64_t index;
	uint64_t last_start;
	regent_backoff bo;
	regent_http_req *req;
	uv_timer_t *timer;
	bool first_done;   /* a first successful read was reported */
	bool failing;
	bool seen;         /* marks during a catalog diff */
	bool warned_index; /* answered without X-Consul-Index */
} watch;

struct consul {
	regent_ctx *ctx;
	const regent_host *h;
	/* config */
	char *base;
	char *shown;       /* base without credentials, for logs */
	char *unix_path;
	char *token_hdr;
	const char *headers[2];
	size_t nheaders;
	const char *ca, *cert, *key, *dc;
	const char *const *tags;
	size_t ntags;
	const char *const *ignore;
	size_t nignore;
	uint64_t ttl_ms, dereg_ms, wait_ms, timeout_ms;
	/* registration */
	cmap *regs;
	reg *head, *tail;
	size_t inflight;
	uint64_t epoch;
	size_t reg_failing;
	regent_backoff reg_bo;
	uv_timer_t *pass_timer, *retry_timer;
	char reg_problem[320];
	/* discovery */
	bool watching;
	watch *catalog;
	cmap *watches;     /* name -> watch */
	cmap *warned;      /* invalid service names already warned about */
	bool sync_open, synced_once;
	size_t disc_failing;
	char disc_problem[320];
	/* lifecycle */
	bool started, stopping;
	consul *next_live;  /* every instance of this plugin in the process */
	size_t stop_pending, stop_ok, stop_failed;
	/* metrics */
	regent_metric *m_req[5], *m_err[5], *m_rereg, *m_registered, *m_watched;
};

enum { M_REGISTER, M_DEREGISTER, M_PASS, M_CATALOG, M_HEALTH };
static const char *const m_names[] = {"register", "deregister", "pass", "catalog", "health"};

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
	 "DeregisterCriticalServiceAfter: a dead agent's services leave after this"},
	{"wait", REGENT_CFG_DURATION, "5m", false, 1000, 600000,
	 "how long a blocking query waits for a change"},
	{"timeout", REGENT_CFG_DURATION, "10s", false, 100, 300000,
	 "timeout of a single non-blocking request"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

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

static void count(consul *c, regent_metric **m, int op)
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
static void describe(const regent_http_result *res, char *out, size_t len)
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

static void update_health(consul *c)
{
	const char *why = NULL;
	if (c->reg_failing)
		why = c->reg_problem;
	else if (c->disc_failing)
		why = c->disc_problem;
	c->h->set_health(c->ctx, why == NULL, why);
}

static regent_http_req *send_req(consul *c, const char *method, const char *path,
                                 const char *body, uint64_t timeout_ms,
                                 regent_http_done_cb cb, void *arg, int *err)
{
	char *url = xasprintf("%s%s", c->base, path);
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
	cmap_del(c->regs, r->id);
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
	update_health(c);
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
			update_health(c);
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
	update_health(c);
}

static void on_reg_done(void *arg, const regent_http_result *res);

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
		r->req = send_req(c, "PUT", r->dereg_path, NULL, STOP_REQ_TIMEOUT_MS, on_reg_done, r,
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

static void on_reg_done(void *arg, const regent_http_result *res)
{
	reg *r = arg;
	consul *c = r->c;
	reg_op op = r->op;
	r->req = NULL;
	r->op = OP_NONE;
	c->inflight--;
	char what[300];
	describe(res, what, sizeof(what));
	bool ok = !res->error && res->status >= 200 && res->status < 300;
	int mop = op == OP_REGISTER ? M_REGISTER : op == OP_DEREGISTER ? M_DEREGISTER : M_PASS;
	if (!ok)
		count(c, c->m_err, mop);

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
				update_health(c);
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
		} else if (res->status == 404 ||
		           (res->status == 500 && res->body &&
		            strstr(res->body, "does not have associated TTL"))) {
			/* 404 Unknown check ID (Consul >= 1.11); older agents
			 * answered an unknown check with this 500. */
			if (r->op_epoch == c->epoch) {
				char *why = xasprintf("the Consul agent at %s no longer knows the check "
				                      "of %s (it restarted, or reaped the service)",
				                      c->shown, r->id);
				lost_all(c, why);
				free(why);
			}
		} else if (res->status == 403) {
			reg_fail(c, r, REGENT_LOG_ERROR,
			         "Consul refused the TTL pass of %s: %s (ACL: check the token)", r->id,
			         what);
		} else {
			reg_fail(c, r, REGENT_LOG_WARN, "cannot pass the TTL check of %s at %s: %s",
			         r->id, c->shown, what);
		}
		break;
	default:
		break;
	}
	pump(c);
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
	r->req = send_req(c, method, path, body, c->timeout_ms, on_reg_done, r, &err);
	if (!r->req) {
		r->op = OP_NONE;
		reg_fail(c, r, REGENT_LOG_ERROR, "cannot send a request for %s to %s: %s", r->id,
		         c->shown, strerror(-err));
		return true;
	}
	c->inflight++;
	int mop = op == OP_REGISTER ? M_REGISTER : op == OP_DEREGISTER ? M_DEREGISTER : M_PASS;
	count(c, c->m_req, mop);
	if (op == OP_REGISTER) {
		free(r->sent);
		r->sent = xstrdup(r->body);
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
	if (c->stopping || !c->started || agent_busy_deregistering(c))
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
		if (r->body && r->synced)
			r->pass_due = true;
	pump(c);
}

static reg *reg_get(consul *c, const regent_instance *inst)
{
	reg *r = cmap_get(c->regs, inst->id);
	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->c = c;
	r->id = xstrdup(inst->id);
	r->service = xstrdup(inst->service);
	char *cid = consul_check_id(inst->id);
	char *e = consul_escape(cid);
	r->pass_path = xasprintf("/v1/agent/check/pass/%s", e);
	free(e);
	free(cid);
	e = consul_escape(inst->id);
	r->dereg_path = xasprintf("/v1/agent/service/deregister/%s", e);
	free(e);
	cmap_put(c->regs, r->id, r);
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
	char dropped[256];
	char *body = consul_register_body(inst, c->h->node(c->ctx), c->ttl_ms, c->dereg_ms,
	                                  dropped, sizeof(dropped));
	reg *r = reg_get(c, inst);
	if (r->body && strcmp(r->body, body) == 0) {
		free(body);
		return false;
	}
	if (dropped[0])
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "instance %s: meta key(s) %s left out (Consul takes [A-Za-z0-9_-] keys, "
		          "not \"consul-...\", at most %d pairs; proto, service_port and node are "
		          "regent's own)",
		          inst->id, dropped, CONSUL_META_MAX);
	free(r->body);
	r->body = body;
	if (strcmp(r->service, inst->service) != 0) {
		free(r->service);
		r->service = xstrdup(inst->service);
	}
	r->synced = false;
	r->rejected = false;
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
	reg *r = cmap_get(c->regs, inst->id);
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
		update_health(c);
	}
	if (!r->known && !r->req)
		reg_unlink_free(c, r);
	else
		pump(c);
	update_registered_gauge(c);
}

/* ------------------------------------------------------------------ */
/* discovery                                                          */
/* ------------------------------------------------------------------ */

static void watch_issue(watch *w);
static void check_sync(consul *c);

static void on_watch_timer(uv_timer_t *t)
{
	watch_issue(t->data);
}

static void watch_schedule(watch *w, uint64_t delay_ms)
{
	if (delay_ms == 0)
		watch_issue(w);
	else
		uv_timer_start(w->timer, on_watch_timer, delay_ms, 0);
}

/* Next query no sooner than MIN_QUERY_GAP_MS after the last one started:
 * a fast-moving index cannot make a busy loop, and a change that lands
 * meanwhile is answered at once by the next query. */
static void watch_next(watch *w)
{
	uint64_t now = w->c->h->now_ms();
	uint64_t due = w->last_start + MIN_QUERY_GAP_MS;
	watch_schedule(w, due > now ? due - now : 0);
}

static watch *watch_new(consul *c, const char *name)
{
	watch *w = calloc(1, sizeof(*w));
	if (!w)
		abort();
	w->c = c;
	w->bo.initial_ms = 100;
	w->bo.max_ms = 10000;
	if (name) {
		w->name = xstrdup(name);
		char *e = consul_escape(name);
		char *tags = xstrdup("");
		for (size_t i = 0; i < c->ntags; i++) {
			char *t = consul_escape(c->tags[i]);
			char *n = xasprintf("%s&tag=%s", tags, t);
			free(t);
			free(tags);
			tags = n;
		}
		w->path = xasprintf("/v1/health/service/%s?passing%s", e, tags);
		free(tags);
		free(e);
	} else {
		w->path = xstrdup("/v1/catalog/services?");
	}
	if (c->dc) {
		char *e = consul_escape(c->dc);
		char *p = xasprintf("%s%sdc=%s", w->path, name ? "&" : "", e);
		free(e);
		free(w->path);
		w->path = p;
	}
	w->timer = calloc(1, sizeof(*w->timer));
	if (!w->timer)
		abort();
	uv_timer_init(c->h->loop(c->ctx), w->timer);
	w->timer->data = w;
	return w;
}

static void watch_free(watch *w)
{
	consul *c = w->c;
	if (w->req)
		c->h->http_cancel(w->req);
	if (w->failing && c->disc_failing)
		c->disc_failing--;
	uv_close((uv_handle_t *)w->timer, (uv_close_cb)free);
	free(w->name);
	free(w->path);
	free(w);
}

static void watch_free_v(void *w)
{
	watch_free(w);
}

static void watch_fail(watch *w, regent_log_level level, const char *fmt, ...) REGENT_PRINTF(3, 4);
static void watch_fail(watch *w, regent_log_level level, const char *fmt, ...)
{
	consul *c = w->c;
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bool first = c->disc_failing == 0;
	if (!w->failing) {
		w->failing = true;
		c->disc_failing++;
	}
	/* The index of a restarted agent starts low again: read afresh. */
	w->index = 0;
	c->h->log(c->ctx, first ? level : REGENT_LOG_DEBUG, "%s; keeping the last catalog, retrying",
	          msg);
	snprintf(c->disc_problem, sizeof(c->disc_problem), "%s", msg);
	update_health(c);
	count(c, c->m_err, w->name ? M_HEALTH : M_CATALOG);
	watch_schedule(w, c->h->backoff_next(&w->bo));
}

static void watch_ok(watch *w)
{
	consul *c = w->c;
	c->h->backoff_reset(&w->bo);
	if (w->failing) {
		w->failing = false;
		c->disc_failing--;
		if (c->disc_failing == 0) {
			c->h->log(c->ctx, REGENT_LOG_INFO, "reading the catalog from %s again",
			          c->shown);
			update_health(c);
		}
	}
}

static bool ignored(consul *c, const char *name)
{
	for (size_t i = 0; i < c->nignore; i++)
		if (strcmp(c->ignore[i], name) == 0)
			return true;
	return false;
}

static void warn_name_once(consul *c, const char *name)
{
	if (cmap_get(c->warned, name))
		return;
	if (cmap_size(c->warned) < WARNED_MAX)
		cmap_put(c->warned, name, (void *)1);
	c->h->log(c->ctx, REGENT_LOG_WARN,
	          "skipped Consul service \"%.80s\": invalid name (allowed: "
	          "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
	          name);
}

/* Whether an entry of /v1/catalog/services is one to watch (warns once
 * about an invalid name when warn is set). */
static bool usable_service(consul *c, const consul_service_entry *e, bool warn)
{
	if (ignored(c, e->name))
		return false;
	if (!c->h->valid_service(e->name)) {
		if (warn)
			warn_name_once(c, e->name);
		return false;
	}
	return !c->ntags || consul_tags_match(e->tags, e->ntags, c->tags, c->ntags);
}

static void on_services(consul *c, const consul_services *s)
{
	cmap_iter it = {0};
	watch *w;
	void *v;
	while (cmap_next(c->watches, &it, NULL, &v))
		((watch *)v)->seen = false;
	for (size_t i = 0; i < s->n; i++) {
		const consul_service_entry *e = &s->v[i];
		if (!usable_service(c, e, true))
			continue;
		w = cmap_get(c->watches, e->name);
		if (w) {
			w->seen = true;
			continue;
		}
		w = watch_new(c, e->name);
		w->seen = true;
		cmap_put(c->watches, e->name, w);
		c->h->log(c->ctx, REGENT_LOG_DEBUG, "watching service %s", e->name);
		watch_issue(w);
	}
	it = (cmap_iter){0};
	const char *name;
	while (cmap_next(c->watches, &it, &name, &v)) {
		w = v;
		if (w->seen)
			continue;
		c->h->log(c->ctx, REGENT_LOG_INFO, "service %s left the Consul catalog", w->name);
		c->h->catalog_remove(c->ctx, w->name);
		cmap_del(c->watches, name);
		watch_free(w);
	}
	if (c->m_watched)
		c->h->metric_set(c->m_watched, (double)cmap_size(c->watches));
	update_health(c); /* a failing watch may be gone */
}

static void on_health(consul *c, watch *w, const consul_instances *in, size_t skipped,
                      const char *why)
{
	if (skipped)
		c->h->log(c->ctx, REGENT_LOG_WARN, "service %s: skipped %zu instance%s from Consul: %s",
		          w->name, skipped, skipped == 1 ? "" : "s", why);
	c->h->catalog_set(c->ctx, w->name, in->ptrs, in->n);
}

static void on_watch_done(void *arg, const regent_http_result *res)
{
	watch *w = arg;
	consul *c = w->c;
	regent_http_req *req = w->req;
	w->req = NULL;
	char what[120];
	if (w->name)
		snprintf(what, sizeof(what), "the health of service %s", w->name);
	else
		snprintf(what, sizeof(what), "the service list");
	if (res->error || res->status != 200) {
		char d[300];
		describe(res, d, sizeof(d));
		if (res->status == 403)
			watch_fail(w, REGENT_LOG_ERROR,
			           "Consul refused to read %s: %s (ACL: the token is unknown or lacks "
			           "read permission)",
			           what, d);
		else
			watch_fail(w, REGENT_LOG_WARN, "cannot read %s from %s: %s", what, c->shown,
			           d);
		return;
	}
	uint64_t got = consul_parse_index(c->h->http_header(req, "X-Consul-Index"));
	const char *filt = c->h->http_header(req, "X-Consul-Results-Filtered-By-ACLs");
	bool filtered = filt && strcmp(filt, "true") == 0;
	char why[256] = "";
	bool empty;
	if (!w->name) {
		consul_services s;
		if (consul_parse_services(res->body, res->body_len, &s, why, sizeof(why)) < 0) {
			watch_fail(w, REGENT_LOG_WARN, "bad answer from %s for the service list: %s",
			           c->shown, why);
			return;
		}
		/* Empty for us: "consul" alone is what an anonymous token
		 * allowed to resolve Consul's DNS name typically sees. */
		empty = true;
		for (size_t i = 0; i < s.n && empty; i++)
			empty = !usable_service(c, &s.v[i], false);
		if (!(filtered && empty)) {
			if (!c->synced_once && !c->sync_open) {
				c->h->catalog_sync_begin(c->ctx);
				c->sync_open = true;
			}
			on_services(c, &s);
		}
		consul_services_free(&s);
	} else {
		consul_instances in;
		size_t skipped = 0;
		if (consul_parse_health(res->body, res->body_len, w->name, &in, &skipped, why,
		                        sizeof(why)) < 0) {
			watch_fail(w, REGENT_LOG_WARN, "bad answer from %s for service %s: %s", c->shown,
			           w->name, why);
			return;
		}
		empty = in.n == 0 && skipped == 0;
		if (!(filtered && empty)) {
			on_health(c, w, &in, skipped, why);
			w->first_done = true;
		}
		consul_instances_free(&in);
	}
	if (filtered && empty) {
		/* Consul answers a missing or weak token with an empty result,
		 * not an error: that is no proof that the catalog is empty. */
		watch_fail(w, REGENT_LOG_ERROR,
		           "Consul filtered %s by ACLs down to nothing usable (the token is "
		           "missing or lacks service:read/node:read)",
		           what);
		return;
	}
	watch_ok(w);
	bool reset;
	uint64_t prev = w->index;
	w->index = consul_next_index(prev, got, &reset);
	if (reset && prev)
		c->h->log(c->ctx, REGENT_LOG_DEBUG,
		          "%s: index went from %" PRIu64 " to %" PRIu64 ": reading afresh", what, prev,
		          got);
	check_sync(c);
	if (!got) {
		/* No X-Consul-Index (not Consul, or a proxy dropped it): no
		 * blocking possible, so poll gently instead of every 50 ms. */
		if (!w->warned_index)
			c->h->log(c->ctx, REGENT_LOG_WARN,
			          "%s: the answer has no X-Consul-Index header; polling every second",
			          what);
		w->warned_index = true;
		watch_schedule(w, 1000);
		return;
	}
	watch_next(w);
}

static void watch_issue(watch *w)
{
	consul *c = w->c;
	if (c->stopping || w->req)
		return;
	uv_timer_stop(w->timer);
	char *url;
	uint64_t timeout;
	bool has_q = w->path[strlen(w->path) - 1] != '?';
	if (w->index) {
		char wait[32];
		consul_duration(c->wait_ms, wait, sizeof(wait));
		url = xasprintf("%s%sindex=%" PRIu64 "&wait=%s", w->path, has_q ? "&" : "", w->index,
		                wait);
		/* Consul adds up to wait/16 of jitter. */
		timeout = c->wait_ms + c->wait_ms / 16 + c->timeout_ms;
	} else {
		url = xstrdup(w->path);
		size_t n = strlen(url);
		if (url[n - 1] == '?')
			url[n - 1] = '\0';
		timeout = c->timeout_ms;
	}
	w->last_start = c->h->now_ms();
	int err = 0;
	w->req = send_req(c, "GET", url, NULL, timeout, on_watch_done, w, &err);
	free(url);
	if (w->req)
		count(c, c->m_req, w->name ? M_HEALTH : M_CATALOG);
	else
		watch_fail(w, REGENT_LOG_ERROR, "cannot send a request to %s: %s", c->shown,
		           strerror(-err));
}

static void check_sync(consul *c)
{
	if (!c->sync_open)
		return;
	cmap_iter it = {0};
	void *v;
	while (cmap_next(c->watches, &it, NULL, &v))
		if (!((watch *)v)->first_done)
			return;
	c->h->catalog_sync_end(c->ctx);
	c->sync_open = false;
	c->synced_once = true;
	c->h->log(c->ctx, REGENT_LOG_INFO, "read the catalog: %zu service%s", cmap_size(c->watches),
	          cmap_size(c->watches) == 1 ? "" : "s");
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
		c->token_hdr = xasprintf("X-Consul-Token: %s", tok);
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
	c->regs = cmap_new();
	c->watches = cmap_new();
	c->warned = cmap_new();
	c->next_live = g_live;
	g_live = c;
	c->reg_bo.initial_ms = 200;
	c->reg_bo.max_ms = c->ttl_ms / 3 < 10000 ? (c->ttl_ms / 3 ? c->ttl_ms / 3 : 1) : 10000;
	*self = c;
	return 0;
}

static uv_timer_t *new_timer(consul *c, void *data)
{
	uv_timer_t *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	uv_timer_init(c->h->loop(c->ctx), t);
	t->data = data;
	return t;
}

static int start(void *self)
{
	consul *c = self;
	const regent_host *h = c->h;
	for (int i = 0; i < 5; i++) {
		char *l = xasprintf("op=\"%s\"", m_names[i]);
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
	                         "Services with a blocking query on their health.", NULL);
	c->pass_timer = new_timer(c, c);
	c->retry_timer = new_timer(c, c);
	uint64_t every = c->ttl_ms / 3 ? c->ttl_ms / 3 : 1;
	uv_timer_start(c->pass_timer, on_pass_tick, every, every);
	c->started = true;
	char ttl[32], dereg[32];
	consul_duration(c->ttl_ms, ttl, sizeof(ttl));
	consul_duration(c->dereg_ms, dereg, sizeof(dereg));
	c->watching = h->want_catalog(c->ctx);
	h->log(c->ctx, REGENT_LOG_INFO, "agent %s%s%s, ttl %s, deregister after %s%s%s", c->shown,
	       c->unix_path ? " via " : "", c->unix_path ? c->unix_path : "", ttl, dereg,
	       c->token_hdr ? ", with an ACL token" : "",
	       c->watching ? ", watching the catalog" : ", registering only");
	if (c->watching) {
		c->catalog = watch_new(c, NULL);
		watch_issue(c->catalog);
	}
	pump(c); /* whatever was registered before start */
	return 0;
}

static int stop(void *self)
{
	consul *c = self;
	c->stopping = true;
	if (c->pass_timer)
		uv_timer_stop(c->pass_timer);
	if (c->retry_timer)
		uv_timer_stop(c->retry_timer);
	/* Discovery ends at once. */
	if (c->catalog) {
		watch_free(c->catalog);
		c->catalog = NULL;
	}
	cmap_iter it = {0};
	void *v;
	const char *name;
	while (cmap_next(c->watches, &it, &name, &v)) {
		cmap_del(c->watches, name);
		watch_free(v);
	}
	/* Deregister whatever the agent may hold. */
	for (reg *r = c->head; r; r = r->next) {
		if (r->req) {
			c->h->http_cancel(r->req);
			r->req = NULL;
			r->op = OP_NONE;
			c->inflight--;
		}
		r->stop_todo = r->known;
		c->stop_pending += r->known;
	}
	size_t total = c->stop_pending;
	stop_pump(c);
	if (c->stop_pending == 0) {
		/* Never call host->stopped() from inside stop(). */
		stop_summary(c);
		return 0;
	}
	c->h->log(c->ctx, REGENT_LOG_INFO, "deregistering %zu service%s from Consul", total,
	          total == 1 ? "" : "s");
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	consul *c = self;
	c->stopping = true;
	while (c->head)
		reg_unlink_free(c, c->head);
	c->stop_pending = 0;
	for (consul **pp = &g_live; *pp; pp = &(*pp)->next_live)
		if (*pp == c) {
			*pp = c->next_live;
			break;
		}
	kick_others(c);
	if (c->catalog)
		watch_free(c->catalog);
	cmap_free(c->watches, watch_free_v);
	cmap_free(c->regs, NULL);
	cmap_free(c->warned, NULL);
	if (c->pass_timer)
		uv_close((uv_handle_t *)c->pass_timer, (uv_close_cb)free);
	if (c->retry_timer)
		uv_close((uv_handle_t *)c->retry_timer, (uv_close_cb)free);
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
	.version = "0.1.0",
	.description = "Consul: agent services with TTL checks, blocking-query discovery",
	.config_keys = keys,
	.ops = &ops,
	.kind_ops = &store_ops,
};
