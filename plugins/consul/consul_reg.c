/* consul_reg.c - the Consul store's registration: one entry per local
 * instance (Consul service id -> desired agent service registration),
 * sent to the local agent with PUT /v1/agent/service/register (a TTL
 * check with DeregisterCriticalServiceAfter), kept passing with
 * PUT /v1/agent/check/pass/<check> every ttl/3, removed with
 * PUT /v1/agent/service/deregister/<id>.  At most MAX_INFLIGHT requests at
 * a time, REG_SHARE of them registers/deregisters while passes are due;
 * passes go by deadline (a min-heap on the time each is due), registers
 * and deregisters from a work list; failures wait for one shared backoff
 * timer.  A pass answered 404 means the agent forgot that service (it
 * restarted, or reaped it): one listing of the agent tells which others it
 * lost, and only those are registered again (consul_relist.c).
 *
 * The reconcile of a start: GET /v1/agent/services; the services a regent
 * of this node registered are adopted (kept passing) and those no source
 * claims within reconcile_wait are deregistered, so a restart or a reload
 * changes nothing in any catalog.  The stop: what to deregister is decided
 * with the state file (consul_state.c), then STOP_INFLIGHT at a time.
 *
 * Owns: the registration table (struct reg), the pass heap and the work
 * list over it, its timers (pass, retry, list, adopt), the listing
 * requests, the stop-time deregistrations.
 */
#include "consul_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 16         /* registration-side requests at once */
#define REG_SHARE 8             /* of which registers/deregisters while passes are due */
#define PASS_BATCH_MS 25        /* a pass due this soon goes with the ones due now */
#define STOP_REQ_TIMEOUT_MS 3000
#define STOP_INFLIGHT 64        /* deregistrations at once when stopping */


static reg *reg_get_cid(consul *c, const char *cid, const char *rid, const char *service);

static uint64_t now_ms(consul *c)
{
	return uv_now(c->h->loop(c->ctx));
}

uint64_t consul_pass_every(const consul *c)
{
	return c->ttl_ms / 3 ? c->ttl_ms / 3 : 1;
}

/* r no longer holds up the start: acknowledged, refused, replaced by a
 * newer body (changes after the start are not waited for: under churn
 * there is always one) or gone. */
static void start_wait_clear(consul *c, reg *r)
{
	if (!r->start_wait)
		return;
	r->start_wait = false;
	c->start_todo--;
}

static void req_cancel(consul *c, reg *r)
{
	if (!r->req)
		return;
	c->h->http_cancel(r->req);
	r->req = NULL;
	c->inflight--;
	if (r->op == OP_PASS)
		c->inflight_pass--;
	r->op = OP_NONE;
}

static void reg_unlink_free(consul *c, reg *r)
{
	start_wait_clear(c, r);
	req_cancel(c, r);
	consul_pass_cancel(c, r);
	consul_work_del(c, r);
	consul_set_synced(c, r, false);
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

void consul_registered_gauge(consul *c)
{
	if (c->m_registered)
		c->h->metric_set(c->m_registered, (double)c->n_synced);
}

static void on_retry(uv_timer_t *t)
{
	consul *c = t->data;
	c->pass_hold = false;
	for (reg *r = c->whead; r; r = r->wnext)
		r->waiting = false;
	consul_pump(c);
}

static void schedule_retry(consul *c)
{
	if (uv_is_active((uv_handle_t *)c->retry_timer))
		return;
	uint64_t d = c->h->backoff_next(&c->reg_bo);
	uv_timer_start(c->retry_timer, on_retry, d, 0);
	consul_recover_want(c);
}

bool consul_reg_waiting(consul *c)
{
	return c->reg_failing || c->list_failing ||
	       (c->retry_timer && uv_is_active((uv_handle_t *)c->retry_timer));
}

static void on_list_timer(uv_timer_t *t);

void consul_reg_resume(consul *c)
{
	if (c->retry_timer && uv_is_active((uv_handle_t *)c->retry_timer)) {
		uv_timer_stop(c->retry_timer);
		on_retry(c->retry_timer);
	}
	if (c->list_failing && c->list_timer && uv_is_active((uv_handle_t *)c->list_timer)) {
		uv_timer_stop(c->list_timer);
		on_list_timer(c->list_timer);
	}
}

static void reg_works_again(consul *c)
{
	char what[300];
	snprintf(what, sizeof what, "Consul agent at %s accepts requests", c->shown);
	consul_outage_end(c, &c->reg_outage, what);
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
	bool ongoing = c->reg_failing || c->list_failing;
	if (!r->failed) {
		r->failed = true;
		c->reg_failing++;
	}
	r->waiting = true;
	snprintf(c->reg_problem, sizeof(c->reg_problem), "%s", msg);
	consul_outage_note(c, &c->reg_outage, ongoing, level, "registration", msg, CONSUL_REG_THEN);
	consul_update_health(c);
	schedule_retry(c);
}

static void reg_ok(consul *c, reg *r)
{
	c->h->backoff_reset(&c->reg_bo);
	if (r && r->failed) {
		r->failed = false;
		c->reg_failing--;
		if (c->reg_failing == 0 && !c->list_failing) {
			reg_works_again(c);
			consul_update_health(c);
		}
	}
}

static void on_reg_done(void *arg, const regent_http_result *res);

/* The request counters' label of a registration-side request. */
static int op_metric(reg_op op)
{
	return op == OP_REGISTER ? M_REGISTER : op == OP_DEREGISTER ? M_DEREGISTER : M_PASS;
}

/* start() returned REGENT_PENDING: tell the core once the agent answered
 * the listing, acknowledged every registration that was due when it
 * answered (c->start_todo: what changes later, as under churn, is not
 * waited for) and, when it holds anything for us, took one write (a
 * register or a TTL pass: the token may write).  The passes of what the
 * agent already holds are not waited for: they go on by deadline; in a
 * reload, the running instance keeps them passing until this one is
 * ready. */
static void maybe_started(consul *c)
{
	if (!c->start_pending || c->listing || c->stopping || c->start_todo)
		return;
	if (!c->write_ok && c->pheap_n + c->inflight_pass > 0)
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
	if (op == OP_PASS)
		c->inflight_pass--;
	char what[300];
	consul_describe(c, res, what, sizeof(what));
	bool ok = !res->error && res->status >= 200 && res->status < 300;
	int mop = op_metric(op);
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
			c->write_ok = true;
			if (r->body && r->sent && strcmp(r->body, r->sent) == 0) {
				consul_set_synced(c, r, true);
				start_wait_clear(c, r);
				r->ok_sent = r->op_sent;
				/* A replaced registration keeps its check's status: pass
				 * it now; a new one starts passing. */
				consul_pass_at(c, r, r->op_was_known ? now_ms(c) : r->op_sent + consul_pass_every(c));
				c->h->log(c->ctx, REGENT_LOG_DEBUG, "registered %s (%s)", r->id,
				          r->service);
			}
		} else if (res->status == 400) {
			r->rejected = true;
			start_wait_clear(c, r);
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
		consul_work_add(c, r); /* changed meanwhile, or failed: more to do */
		consul_registered_gauge(c);
		break;
	case OP_DEREGISTER:
		if (ok || res->status == 404) {
			reg_ok(c, r);
			r->known = false;
			c->h->log(c->ctx, REGENT_LOG_DEBUG, "deregistered %s%s", r->id,
			          ok ? "" : " (the agent did not know it)");
		} else if (res->status == 403) {
			reg_fail(c, r, REGENT_LOG_ERROR,
			         "Consul refused to deregister %s: %s (ACL: check the token)", r->id,
			         what);
		} else {
			reg_fail(c, r, REGENT_LOG_WARN, "cannot deregister %s at %s: %s", r->id,
			         c->shown, what);
		}
		consul_work_add(c, r); /* freed there once done */
		break;
	case OP_PASS:
		if (ok) {
			reg_ok(c, r);
			c->write_ok = true;
			r->ok_sent = r->op_sent;
			/* The next one ttl/3 after this one was sent: the agent reset
			 * the TTL no earlier than that. */
			if (consul_pass_wanted(r))
				consul_pass_at(c, r, r->op_sent + consul_pass_every(c));
		} else if (consul_unknown_check(res)) {
			reg_ok(c, r);
			consul_lost_check(c, r);
		} else {
			/* Still due: first in line again once the retry timer fires. */
			if (consul_pass_wanted(r))
				consul_pass_at(c, r, r->op_sent);
			c->pass_hold = true;
			if (res->status == 403) {
				reg_fail(c, r, REGENT_LOG_ERROR,
				         "Consul refused the TTL pass of %s: %s (ACL: check the token)",
				         r->id, what);
				start_failed(c, -EACCES, c->reg_problem);
			} else {
				reg_fail(c, r, REGENT_LOG_WARN, "cannot pass the TTL check of %s at %s: %s",
				         r->id, c->shown, what);
			}
			r->waiting = false; /* the hold, not the entry, waits */
		}
		/* A change (or a removal) that came while the pass was in flight
		 * waited for this answer (reg_step): its register or deregister
		 * goes now (reg_step takes r off again when it needs nothing). */
		consul_work_add(c, r);
		break;
	default:
		break;
	}
	consul_pump(c);
	maybe_started(c);
}

static regent_http_req *reg_send(consul *c, reg *r, reg_op op, const char *path,
                                 const char *body)
{
	int err = 0;
	r->op = op;
	r->op_was_known = r->known;
	r->op_sent = now_ms(c);
	r->req = consul_send(c, "PUT", path, body, c->timeout_ms, on_reg_done, r, &err);
	if (!r->req) {
		r->op = OP_NONE;
		if (op == OP_PASS) {
			consul_pass_at(c, r, r->op_sent);
			c->pass_hold = true;
		}
		reg_fail(c, r, REGENT_LOG_ERROR, "cannot send a request for %s to %s: %s", r->id,
		         c->shown, strerror(-err));
		if (op == OP_PASS)
			r->waiting = false;
		return NULL;
	}
	c->inflight++;
	if (op == OP_PASS)
		c->inflight_pass++;
	int mop = op_metric(op);
	consul_count(c, c->m_req, mop);
	return r->req;
}

/* Starts the register or deregister r needs, if any; takes r off the work
 * list when it needs nothing (or frees it).  Returns whether it sent. */
static bool reg_step(consul *c, reg *r)
{
	if (r->req) {
		consul_work_del(c, r); /* back on it when answered */
		return false;
	}
	if (r->waiting)
		return false;
	if (r->body && !r->synced && !r->rejected) {
		if (!reg_send(c, r, OP_REGISTER, "/v1/agent/service/register", r->body))
			return false;
		free(r->sent);
		r->sent = c->h->xstrdup(r->body);
		r->known = true; /* the agent may hold it from now on */
		consul_work_del(c, r);
		return true;
	}
	if (!r->body && r->known && !r->adopted) {
		if (!reg_send(c, r, OP_DEREGISTER, r->dereg_path, NULL))
			return false;
		consul_work_del(c, r);
		return true;
	}
	if (!r->body && !r->known)
		reg_unlink_free(c, r);
	else
		consul_work_del(c, r); /* in sync, or adopted: passes only */
	return false;
}

static void on_pass_timer(uv_timer_t *t)
{
	consul_pump(t->data);
}

/* Whether a live check's pass is due now (or within PASS_BATCH_MS) and
 * may go (no failed pass holding them all). */
static bool pass_due_now(const consul *c, uint64_t now)
{
	return c->pheap_n && !c->pass_hold && c->pheap[0]->pass_at <= now + PASS_BATCH_MS;
}

/* Registers and deregisters take at most REG_SHARE slots while passes are
 * due, passes the rest: neither starves the other.  Passes go by deadline
 * (the heap), each ttl/3 after the previous one of its check was sent, so
 * when the agent is slower than the passes due, every check is still
 * passed in turn, the oldest first, rather than the same ones again. */
void consul_pump(consul *c)
{
	if (c->stopping || !c->started || c->listing)
		return;
	uint64_t now = now_ms(c);
	size_t reg_cap = pass_due_now(c, now) ? REG_SHARE : MAX_INFLIGHT;
	reg *next;
	for (reg *r = c->whead; r && c->inflight < MAX_INFLIGHT &&
	                        c->inflight - c->inflight_pass < reg_cap;
	     r = next) {
		next = r->wnext;
		reg_step(c, r);
	}
	while (c->inflight < MAX_INFLIGHT && pass_due_now(c, now)) {
		reg *r = c->pheap[0];
		if (r->ok_sent && now >= r->ok_sent + c->ttl_ms) {
			consul_pass_demote(c, r); /* its TTL ran out already */
			continue;
		}
		consul_pass_cancel(c, r);
		if (r->req)
			continue; /* a register in flight: passes resume once it is answered */
		reg_send(c, r, OP_PASS, r->pass_path, NULL);
	}
	/* Spare capacity (no live pass due): the demoted ones, oldest first. */
	while (c->inflight < MAX_INFLIGHT && c->dhead && !c->pass_hold && !pass_due_now(c, now)) {
		reg *r = c->dhead;
		consul_pass_cancel(c, r);
		if (!r->req)
			reg_send(c, r, OP_PASS, r->pass_path, NULL);
	}
	if (c->pheap_n && !c->pass_hold && !pass_due_now(c, now))
		uv_timer_start(c->pass_timer, on_pass_timer, c->pheap[0]->pass_at - now, 0);
	else
		uv_timer_stop(c->pass_timer);
	consul_state_changed(c);
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
	start_wait_clear(c, r); /* a newer body: not waited for */
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
		 * and its place among the passes (or pass it now). */
		r->adopted = false;
		consul_set_synced(c, r, true);
		if (!r->hidx && !r->req)
			consul_pass_at(c, r, now_ms(c));
		r->agent_hash[0] = '\0';
		c->kept_n++;
		c->h->log(c->ctx, REGENT_LOG_DEBUG, "kept %s (%s) as the agent holds it", r->id,
		          r->service);
	} else {
		r->adopted = false;
		r->agent_hash[0] = '\0';
		consul_set_synced(c, r, false);
		consul_pass_cancel(c, r);
	}
	consul_work_add(c, r);
	return true;
}

void consul_register_instance(void *self, const regent_instance *inst)
{
	consul *c = self;
	if (c->stopping)
		return;
	if (want(c, inst))
		consul_pump(c);
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
	start_wait_clear(c, r);
	free(r->body);
	r->body = NULL;
	consul_set_synced(c, r, false);
	r->rejected = false;
	if (!r->adopted)
		consul_pass_cancel(c, r);
	if (r->failed) {
		/* Whatever failed for the registration no longer matters. */
		r->failed = false;
		c->reg_failing--;
		consul_update_health(c);
	}
	if (!r->known && !r->req) {
		reg_unlink_free(c, r);
	} else {
		consul_work_add(c, r);
		consul_pump(c);
	}
	consul_registered_gauge(c);
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
			consul_pass_cancel(c, r);
			consul_work_add(c, r);
			n++;
		}
	if (n)
		c->h->log(c->ctx, REGENT_LOG_INFO,
		          "deregistering %zu service%s this node registered before the start and no "
		          "source reports any more",
		          n, n == 1 ? "" : "s");
	consul_pump(c);
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
	consul_describe(c, res, what, sizeof(what));
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
		consul_outage_note(c, &c->reg_outage, c->reg_failing || c->list_failing, REGENT_LOG_WARN,
		                   "registration", c->reg_problem, CONSUL_REG_THEN);
		c->list_failing = true;
		consul_update_health(c);
		uv_timer_start(c->list_timer, on_list_timer, c->h->backoff_next(&c->reg_bo), 0);
		consul_recover_want(c);
		return;
	}
	c->h->backoff_reset(&c->reg_bo);
	if (c->list_failing) {
		c->list_failing = false;
		if (c->reg_failing == 0)
			reg_works_again(c);
		consul_update_health(c);
	}
	/* What the agent holds is passed from now on.  In a reload the running
	 * instance passed each within the last ttl/3, so each has 2/3 of its
	 * TTL left: the first passes are spread over ttl/6 rather than sent in
	 * one burst on top of the old instance's.  After a restart (nobody
	 * passed them meanwhile) they are all due now, the first is sent first
	 * either way (it proves the token may write). */
	uint64_t now = now_ms(c), spread = c->spread_first ? consul_pass_every(c) / 2 : 0;
	for (size_t i = 0; i < as.n; i++) {
		const consul_agent_service *a = &as.v[i];
		reg *r = c->h->map_get(c->regs, a->cid);
		uint64_t first = now + (as.n > 1 ? spread * i / (as.n - 1) : 0);
		c->adopted_n++;
		if (r && r->body) {
			/* Reported by a source before the agent answered. */
			r->known = true;
			if (strcmp(r->hash, a->hash) == 0) {
				consul_set_synced(c, r, true);
				consul_pass_at(c, r, first);
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
		consul_pass_at(c, r, first);
		snprintf(r->agent_hash, sizeof(r->agent_hash), "%s", a->hash);
	}
	consul_agent_services_free(&as);
	c->listing = false;
	/* The start waits for what is due now, not for what changes later. */
	for (reg *r = c->head; r; r = r->next)
		if (r->body && !r->synced && !r->rejected) {
			r->start_wait = true;
			c->start_todo++;
		}
	if (c->adopted_n)
		c->h->log(c->ctx, REGENT_LOG_INFO,
		          "the agent at %s holds %zu service%s this node registered before: kept "
		          "passing; those no source reports within %" PRIu64 " ms are deregistered",
		          c->shown, c->adopted_n, c->adopted_n == 1 ? "" : "s", c->reconcile_ms);
	uv_timer_start(c->adopt_timer, on_adopt_timer, c->reconcile_ms, 0);
	consul_pump(c);
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
	c->relist_timer = c->h->timer_new(c->ctx, c);
	c->spread_first = consul_state_handover(c);
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
	uv_timer_t *timers[] = {c->pass_timer, c->retry_timer, c->list_timer, c->adopt_timer,
	                        c->relist_timer};
	for (size_t i = 0; i < 5; i++)
		if (timers[i])
			uv_timer_stop(timers[i]);
	if (c->list_req) {
		c->h->http_cancel(c->list_req);
		c->list_req = NULL;
	}
	if (c->relist_req) {
		c->h->http_cancel(c->relist_req);
		c->relist_req = NULL;
	}
	size_t held = 0;
	for (reg *r = c->head; r; r = r->next) {
		req_cancel(c, r);
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
	if (c->relist_req)
		c->h->http_cancel(c->relist_req);
	c->relist_req = NULL;
	while (c->head)
		reg_unlink_free(c, c->head);
	free(c->pheap);
	c->pheap = NULL;
	c->pheap_n = c->pheap_cap = 0;
	free(c->relist_why);
	c->relist_why = NULL;
	c->stop_pending = 0;
	c->h->timer_close(&c->pass_timer);
	c->h->timer_close(&c->retry_timer);
	c->h->timer_close(&c->list_timer);
	c->h->timer_close(&c->adopt_timer);
	c->h->timer_close(&c->relist_timer);
}
