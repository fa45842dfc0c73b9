/* consul_reg.c - the Consul store's registration: one entry per local
 * instance (Consul service id -> desired agent service registration),
 * sent to the local agent with PUT /v1/agent/service/register (a TTL
 * check with DeregisterCriticalServiceAfter), kept passing with
 * PUT /v1/agent/check/pass/<check> every ttl/3, removed with
 * PUT /v1/agent/service/deregister/<id>.  At most MAX_INFLIGHT requests at
 * a time; failures wait for one shared backoff timer.  A pass answered 404
 * means the agent forgot us (it restarted): everything is registered again.
 *
 * The reconcile of a start: GET /v1/agent/services; the services a regent
 * of this node registered are adopted (kept passing) and those no source
 * claims within reconcile_wait are deregistered, so a restart or a reload
 * changes nothing in any catalog.  The stop: what to deregister is decided
 * with the state file (consul_state.c), then STOP_INFLIGHT at a time.
 *
 * Owns: the registration table (struct reg), its timers (pass, retry,
 * list, adopt), the listing request, the stop-time deregistrations.
 */
#include "consul_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 16         /* registration-side requests at once */
#define STOP_REQ_TIMEOUT_MS 3000
#define STOP_INFLIGHT 64        /* deregistrations at once when stopping */


static void pump(consul *c);
static reg *reg_get_cid(consul *c, const char *cid, const char *rid, const char *service);

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
	c->h->map_del(c->regs, r->cid);
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
	consul_state_claim(c);
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
	c->h->http_describe(res, what, sizeof(what));
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
			consul_state_stopped(c);
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
				char *why = c->h->xasprintf("the Consul agent at %s no longer knows the check "
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
		r->sent = c->h->xstrdup(r->body);
		r->known = true; /* the agent may hold it from now on */
	}
	return true;
}

static void pump(consul *c)
{
	if (c->stopping || !c->started || c->listing)
		return;
	reg *next;
	for (reg *r = c->head; r && c->inflight < MAX_INFLIGHT; r = next) {
		next = r->next;
		reg_step(c, r);
	}
	consul_state_changed(c);
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
	reg *r = c->h->map_get(c->regs, cid);
	if (r)
		return r;
	r = c->h->xcalloc(1, sizeof(*r));
	r->c = c;
	r->cid = c->h->xstrdup(cid);
	r->id = c->h->xstrdup(rid);
	r->service = c->h->xstrdup(service);
	char *chk = consul_check_id(c->h, cid);
	char *e = c->h->url_escape(chk, 0);
	r->pass_path = c->h->xasprintf("/v1/agent/check/pass/%s", e);
	free(e);
	free(chk);
	e = c->h->url_escape(cid, 0);
	r->dereg_path = c->h->xasprintf("/v1/agent/service/deregister/%s", e);
	free(e);
	c->h->map_put(c->regs, r->cid, r);
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
	char *body = consul_register_body(c->h, inst, c->h->node(c->ctx), c->ttl_ms, c->dereg_ms,
	                                  dropped, sizeof(dropped), hash);
	char *cid = consul_service_id(c->h, inst->id);
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
		r->service = c->h->xstrdup(inst->service);
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

void consul_register_instance(void *self, const regent_instance *inst)
{
	consul *c = self;
	if (c->stopping)
		return;
	if (want(c, inst))
		pump(c);
}

void consul_deregister_instance(void *self, const regent_instance *inst)
{
	consul *c = self;
	if (c->stopping)
		return;
	char *cid = consul_service_id(c->h, inst->id);
	reg *r = c->h->map_get(c->regs, cid);
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
	c->h->http_describe(res, what, sizeof(what));
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
	} else if (ok && consul_parse_agent_services(c->h, res->body, res->body_len,
	                                      c->h->node(c->ctx), &as, why, sizeof(why)) < 0) {
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
		reg *r = c->h->map_get(c->regs, a->cid);
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
	if (consul_state_gate(c)) {
		/* The previous instance of this section still deregisters at
		 * this agent: listing now could adopt what it is removing. */
		uv_timer_start(c->list_timer, on_list_timer, 50, 0);
		return;
	}
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

/* ---- start, stop, destroy ---- */

void consul_reg_start(consul *c)
{
	c->pass_timer = c->h->timer_new(c->ctx, c);
	c->retry_timer = c->h->timer_new(c->ctx, c);
	c->list_timer = c->h->timer_new(c->ctx, c);
	c->adopt_timer = c->h->timer_new(c->ctx, c);
	uint64_t every = c->ttl_ms / 3 ? c->ttl_ms / 3 : 1;
	uv_timer_start(c->pass_timer, on_pass_tick, every, every);
	c->listing = true;
	c->start_pending = true;
	list_issue(c);
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

int consul_reg_stop(consul *c, regent_stop_reason why)
{
	uv_timer_t *timers[] = {c->pass_timer, c->retry_timer, c->list_timer, c->adopt_timer};
	for (size_t i = 0; i < 4; i++)
		if (timers[i])
			uv_timer_stop(timers[i]);
	if (c->list_req) {
		c->h->http_cancel(c->list_req);
		c->list_req = NULL;
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
	}
	const char *because = "";
	size_t total = consul_state_on_stop(c, why, &because);
	c->stop_pending = total;
	if (held > total)
		c->h->log(c->ctx, REGENT_LOG_INFO, "leaving %zu service%s registered at %s (%s: %s)",
		          held - total, held - total == 1 ? "" : "s", c->shown, reason_name(why),
		          because);
	if (!total)
		return 0;
	c->h->log(c->ctx, REGENT_LOG_INFO, "deregistering %zu service%s from Consul (%s%s%s)", total,
	          total == 1 ? "" : "s", reason_name(why), held > total ? "" : because[0] ? ": " : "",
	          held > total ? "" : because);
	stop_pump(c);
	if (c->stop_pending == 0) {
		/* Never call host->stopped() from inside stop(). */
		stop_summary(c);
		consul_state_stopped(c);
		return 0;
	}
	return REGENT_PENDING;
}

void consul_reg_destroy(consul *c)
{
	if (c->list_req)
		c->h->http_cancel(c->list_req);
	c->list_req = NULL;
	while (c->head)
		reg_unlink_free(c, c->head);
	c->stop_pending = 0;
	c->h->timer_close(&c->pass_timer);
	c->h->timer_close(&c->retry_timer);
	c->h->timer_close(&c->list_timer);
	c->h->timer_close(&c->adopt_timer);
}
