/*
 * etcd_call.c - the etcd store's HTTP calls: starting one (headers,
 * timeouts, the require-leader metadata on every request), decoding the
 * answer and its failure kind, endpoint rotation (at once on "no leader"
 * and transport errors, once around the endpoints, then backoff),
 * authentication (user/password -> token, refused tokens), the recovery
 * probe that notices a registry answering again, the raft term of every
 * answer (a new leader: writes sent again, retries resumed), health, and
 * the start handshake (host->started).
 *
 * Owns: the token, the endpoint index, the per-op call slots' requests.
 */
#include "etcd_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const etcd_op_names[OP_N] = {"auth",  "grant", "keepalive", "txn",   "revoke",
                                         "range", "watch", "timetolive", "reconcile", "probe"};

const char *cur_ep(const etcd *e)
{
	return e->eps[e->ep];
}

bool busy(const etcd *e, int op)
{
	return e->calls[op].req != NULL;
}

/* base64 of bytes into a JSON string. */
json_t *b64(const etcd *e, const void *data, size_t len)
{
	char *s = e->h->base64_encode(data, len);
	json_t *j = json_string(s);
	free(s);
	return j;
}

json_t *b64s(const etcd *e, const char *s)
{
	return b64(e, s, strlen(s));
}

/* An int64 as etcd wants it in requests (decimal string). */
json_t *jint64(int64_t v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", (long long)v);
	return json_string(buf);
}


/* ------------------------------------------------------------------ */
/* Health and failure reporting                                       */
/* ------------------------------------------------------------------ */

static const char *const comp_names[COMP_N] = {"authentication", "registration", "discovery"};

/* Health: one part per component (health_part names it in the reason);
 * discovery carries the note (an empty prefix) while it works. */
static void report(etcd *e, int comp)
{
	const char *why = e->err[comp];
	if (!why && comp == COMP_DISC)
		why = e->note;
	e->h->health_part(e->ctx, comp_names[comp], !e->err[comp], why);
}

void health_refresh(etcd *e)
{
	report(e, COMP_DISC);
}

/* A part of the plugin failed: mark it unhealthy with this reason and log
 * it, a repeat quietly (host->failure_note: one warning for a registry away,
 * however many retries and members, and a reminder a minute); comp_ok says
 * when it works again. */
void comp_fail(etcd *e, int comp, regent_log_level level, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	regent_failure *f = &e->failure[comp];
	uint64_t now = e->h->now_ms();
	bool same = e->err[comp] && strcmp(e->err[comp], msg) == 0;
	bool remind;
	regent_log_level at = e->h->failure_note(f, e->err[comp] != NULL, level, same, now, &remind);
	/* logged as the health reason reads ("<component>: <msg>"), so the
	 * core says "unhealthy (the warning above)" instead of repeating it */
	char took[48];
	if (remind)
		e->h->log(e->ctx, at, "%s: %s (still failing after %s)", comp_names[comp], msg,
		          e->h->failure_text(f, now, took, sizeof took));
	else
		e->h->log(e->ctx, at, "%s: %s", comp_names[comp], msg);
	if (!same) {
		free(e->err[comp]);
		e->err[comp] = e->h->xstrdup(msg);
	}
	report(e, comp);
}

void comp_ok(etcd *e, int comp)
{
	e->quiet_refusals = 0;
	if (e->err[comp]) {
		char took[48];
		e->h->log(e->ctx, REGENT_LOG_INFO, "%s works again (through %s) after %s", comp_names[comp],
		          cur_ep(e), e->h->failure_text(&e->failure[comp], e->h->now_ms(), took, sizeof took));
		free(e->err[comp]);
		e->err[comp] = NULL;
	}
	report(e, comp);
}


/* ------------------------------------------------------------------ */
/* HTTP calls                                                         */
/* ------------------------------------------------------------------ */

int failure_kind(const resp *r)
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

/* etcd's "no leader" answer (the member refuses at once because the
 * request carried the require-leader metadata). */
bool no_leader(const resp *r)
{
	return !r->err && (r->code == 14 || r->status == 503);
}

/* The endpoint after `from`, skipping members recently left for not
 * answering (a frozen member accepts connections and never answers: going
 * back to it costs another check) unless every other one is skipped too. */
static size_t next_ep(const etcd *e, size_t from)
{
	uint64_t now = e->h->now_ms();
	for (size_t i = 1; i < e->neps; i++) {
		size_t k = (from + i) % e->neps;
		if (e->suspect_until[k] <= now)
			return k;
	}
	return (from + 1) % e->neps;
}

/* Moves to the next endpoint if the failed call used the current one.
 * Returns true when a retry now goes to another endpoint than the one
 * that failed. */
bool rotate(etcd *e, const call *c, const char *why)
{
	if (e->neps < 2)
		return false;
	if (c->ep != e->ep)
		return true; /* another call moved on already */
	size_t old = e->ep;
	e->ep = next_ep(e, old);
	/* During an election the members say "no leader" one after the
	 * other, many times a second: the first switch is logged at info,
	 * the others until a new leader at debug. */
	bool repeat = e->in_no_leader && e->no_leader_said;
	if (e->in_no_leader)
		e->no_leader_said = true;
	e->h->log(e->ctx, repeat ? REGENT_LOG_DEBUG : REGENT_LOG_INFO, "switching from %s (%s) to %s",
	          e->eps[old], why, e->eps[e->ep]);
	return true;
}

/* The delay before retrying a failed call: at once on another endpoint
 * (twice around the endpoints since the last success), a short fixed
 * delay while the cluster has no leader (an election takes about a
 * second: no need to back off), else the capped exponential backoff. */
uint64_t retry_delay(etcd *e, regent_backoff *bo, const resp *r, bool moved)
{
	if (moved && e->fast_left > 0) {
		e->fast_left--;
		return 1;
	}
	if (r && no_leader(r))
		return NO_LEADER_RETRY_MS;
	return e->h->backoff_next(bo);
}

/* The token the call carried was refused: forget it (once).  Returns
 * true when this looks like an ordinary expiry, to be retried quietly
 * (not more than a few times in a row without any success). */
bool token_refused(etcd *e, const call *c)
{
	if (e->user && e->token && c->token_gen == e->token_gen) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "auth token refused by %s; authenticating again",
		          e->eps[c->ep]);
		free(e->token);
		e->token = NULL;
	}
	return e->user && ++e->quiet_refusals <= 3;
}

/* The host's line about the result, with etcd's gRPC code when the
 * error body carried one; a 200 answer that is not JSON says so. */
void describe(const etcd *e, const resp *r, char *buf, size_t n)
{
	if (r->err && (!r->res || !r->res->error)) {
		snprintf(buf, n, "%s", r->msg && r->msg[0] ? r->msg : strerror(-r->err));
		return;
	}
	e->h->http_describe(r->res, buf, n);
	size_t len = strlen(buf);
	if (!r->err && r->code >= 0 && len < n)
		snprintf(buf + len, n - len, " (code %lld)", (long long)r->code);
}

static const call_handler handlers[OP_N] = {
	[OP_AUTH] = auth_done,       [OP_GRANT] = grant_done,   [OP_KEEPALIVE] = keepalive_done,
	[OP_TXN] = txn_done,         [OP_REVOKE] = revoke_done, [OP_RANGE] = range_done,
	[OP_WATCH] = watch_done,     [OP_TTL] = ttl_done,       [OP_RECON] = recon_done,
	[OP_PROBE] = probe_done,
};

/* Any answer proves the registry is back: whatever waits for a retry
 * goes now instead of after its backoff (even a retry due within
 * NO_LEADER_RETRY_MS when the answer showed a new leader). */
static void answered(etcd *e)
{
	e->answered = true;
	e->fast_left = 2 * e->neps;
	if (e->stopping || !e->started)
		return;
	reg_recovered(e);
	disc_recovered(e);
}

static bool move_calls(etcd *e, size_t bad, bool watch_too, uint64_t before);
static void probe_fast(etcd *e);
static bool probe_needed(const etcd *e);
static void on_probe_timer(uv_timer_t *t);

/* A member failed (no answer, refused connection) or had no leader: an
 * election may be under way.  Until a new term is seen (or for
 * ELECTION_WINDOW_MS), what waits for the registry is checked for every
 * ELECTION_PROBE_MS instead of every STUCK_MS. */
static void election_suspected(etcd *e)
{
	e->electing_until = e->h->now_ms() + ELECTION_WINDOW_MS;
	probe_fast(e);
}

/* Every answer's header carries the raft term.  A newer one than seen
 * before means a new leader: a write sent before (its member may have
 * forwarded it to the old leader, who never answers) is sent again at
 * once to the member that answered (puts and deletes are idempotent),
 * and the retries waiting out a "no leader" go now.  The watch stays
 * where it is: a live member's stream carries on under the new leader. */
static void saw_term(etcd *e, call *c, int64_t term)
{
	if (term <= e->seen_term)
		return;
	int64_t was = e->seen_term;
	e->seen_term = term;
	if (!was)
		return;
	e->electing_until = 0;
	e->no_leader_said = false;
	if (e->stopping || !e->started)
		return;
	if (c->ep != e->ep) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "switching from %s to %s (it has the new leader)",
		          cur_ep(e), e->eps[c->ep]);
		e->ep = c->ep;
	}
	bool moved = false;
	for (size_t k = 0; k < e->neps; k++)
		if (move_calls(e, k, false, k == c->ep ? c->t0 : UINT64_MAX))
			moved = true;
	e->h->log(e->ctx, REGENT_LOG_INFO, "raft term %lld at %s (was %lld): a new leader%s",
	          (long long)term, e->eps[c->ep], (long long)was,
	          moved ? "; writes sent before it sent again" : "");
	e->leader_back = true; /* answered() resumes what waits, however soon due */
}

static void on_call_done(void *arg, const regent_http_result *res)
{
	call *c = arg;
	etcd *e = c->e;
	uint64_t took = e->h->now_ms() - c->t0;
	e->h->metric_observe(e->m_lat[c->op], (double)took / 1000.0);
	resp r = {.err = res->error,
	          .status = res->status,
	          .code = -1,
	          .msg = res->error_msg,
	          .res = res};
	etcd_range rg = {0};
	if (!r.err && res->body && res->body_len) {
		json_error_t jerr;
		if (c->op == OP_TXN && res->status == 200 &&
		    etcd_txn_header_fields(res->body, res->body_len, &r.rev, &r.term)) {
			r.hdr = true;
		} else if (c->op == OP_RANGE && res->status == 200 &&
		           etcd_scan_range(e->h, res->body, res->body_len, &rg)) {
			/* The discovery's pages (2.9 MB for 10,000 keys) without a
			 * JSON tree: ~460 M instructions of jansson's at 10,000. */
			r.range = &rg;
			r.rev = rg.rev;
			r.term = rg.term;
		} else {
			r.json = json_loadb(res->body, res->body_len, JSON_DISABLE_EOF_CHECK, &jerr);
		}
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
	if (!r.err && r.status == 200 && c->op != OP_WATCH && !r.hdr && !r.range &&
	    !json_is_object(r.json)) {
		r.err = -EPROTO;
		r.msg = "response is not a JSON object";
	}
	if (!r.msg)
		r.msg = "";
	if (!r.err)
		e->last_answer = e->h->now_ms();
	if (failure_kind(&r) != F_NONE) {
		e->h->metric_add(e->m_errs[c->op], 1);
		if ((r.err || no_leader(&r)) && !e->stopping)
			election_suspected(e);
	} else if (c->op != OP_WATCH) {
		/* c->req still set: nothing restarts this very call */
		int64_t term = r.term;
		if (r.hdr || (r.range && term > 0) ||
		    etcd_json_int64(json_object_get(json_object_get(r.json, "header"), "raft_term"),
		                    &term))
			saw_term(e, c, term);
		answered(e);
		e->leader_back = false;
	}
	c->req = NULL;
	/* The last call the check watched is over (the handler arms it again
	 * if it starts another): no wake-up for nothing. */
	if (e->probe_timer && !probe_needed(e))
		uv_timer_stop(e->probe_timer);
	json_t *j = r.json;
	/* (the watch learns "no leader" from its stream: watch_noleader) */
	e->in_no_leader = no_leader(&r) || (c->op == OP_WATCH && e->watch_noleader);
	handlers[c->op](e, c, &r); /* may free e (stop finished) */
	json_decref(j);
	free(rg.kvs);
}

/* Starts call `op` in its slot (body is stolen).  Returns 0 or a
 * negative errno (nothing started then). */
int call_start(etcd *e, int op, const char *path, json_t *body, regent_http_data_cb on_data)
{
	return call_start_on(e, &e->calls[op], op, path, body, on_data);
}

/* The same in the slot c (txns have several). */
int call_start_on(etcd *e, call *c, int op, const char *path, json_t *body,
                  regent_http_data_cb on_data)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return -ENOMEM;
	return call_start_text(e, c, op, path, text, on_data);
}

/* The same with the body already rendered (text: malloc'd, taken). */
int call_start_text(etcd *e, call *c, int op, const char *path, char *text,
                    regent_http_data_cb on_data)
{
	/* endpoint + path without a formatted print (every change's txn) */
	char ubuf[512], *uheap = NULL, *url = ubuf;
	size_t elen = strlen(cur_ep(e)), plen = strlen(path);
	if (elen + plen < sizeof(ubuf)) {
		memcpy(ubuf, cur_ep(e), elen);
		memcpy(ubuf + elen, path, plen + 1);
	} else {
		url = uheap = e->h->xasprintf("%s%s", cur_ep(e), path);
	}
	char *auth = e->token && e->token[0] ? e->h->xasprintf("Authorization: %s", e->token) : NULL;
	const char *headers[4];
	size_t nh = 0;
	headers[nh++] = "Content-Type: application/json";
	if (auth)
		headers[nh++] = auth;
	/* Refuse at once on a member without a leader (instead of waiting
	 * for an election or the timeout): we move to the next member. */
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
		o.max_body = e->max_body; /* the longest line */
	} else if (op == OP_RANGE || op == OP_RECON) {
		o.timeout_ms = to * 3;
		o.max_body = e->max_body;
	} else if (op == OP_PROBE && e->check_ms) {
		o.timeout_ms = e->check_ms < to ? e->check_ms : to;
		o.connect_timeout_ms = o.timeout_ms;
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
	free(uheap);
	free(auth); /* the token is in the core's copy only */
	free(text);
	if (!c->req) {
		e->h->log(e->ctx, REGENT_LOG_ERROR, "cannot start %s request to %s%s: %s",
		          etcd_op_names[op], cur_ep(e), path, strerror(err ? -err : EIO));
		return err ? err : -EIO;
	}
	/* Counted when sent: a watch stream is counted while it is open,
	 * not when it ends. */
	e->h->metric_add(e->m_ops[op], 1);
	if (e->started)
		probe_want(e); /* the check looks after the calls in flight */
	return 0;
}

void call_cancel(etcd *e, call *c)
{
	if (c->req) {
		e->h->http_cancel(c->req);
		c->req = NULL;
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

void auth_start(etcd *e)
{
	json_t *b = json_pack("{s:s,s:s}", "name", e->user, "password", e->password);
	if (call_start(e, OP_AUTH, "/v3/auth/authenticate", b, NULL) < 0)
		uv_timer_start(e->auth_timer, on_auth_timer, e->h->backoff_next(&e->auth_bo), 0);
}

/* True when calls may go out now (no auth, or a token in hand); else
 * makes sure an authentication is under way. */
bool have_token(etcd *e)
{
	if (!e->user || e->token)
		return true;
	if (!busy(e, OP_AUTH) && !uv_is_active((uv_handle_t *)e->auth_timer))
		auth_start(e);
	return false;
}

void auth_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	const char *tok = json_string_value(json_object_get(r->json, "token"));
	if (fk == F_NONE && tok) {
		free(e->token);
		e->token = e->h->xstrdup(tok);
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
		e->token = e->h->xstrdup("");
		e->token_gen++;
		comp_ok(e, COMP_AUTH);
	} else {
		char d[512];
		describe(e, r, d, sizeof(d));
		uint64_t delay;
		if (fk == F_ROTATE) {
			bool moved = rotate(e, c, d);
			comp_fail(e, COMP_AUTH, REGENT_LOG_WARN, "cannot authenticate at %s: %s",
			          e->eps[c->ep], d);
			delay = retry_delay(e, &e->auth_bo, r, moved);
		} else {
			/* Wrong user or password, or the user lacks a role: the
			 * operator must act; keep retrying slowly. */
			comp_fail(e, COMP_AUTH, REGENT_LOG_ERROR,
			          "user \"%s\" refused by %s: %s; check username and "
			          "password in [store %s]",
			          e->user, e->eps[c->ep], r->msg && r->msg[0] ? r->msg : d,
			          e->h->instance_name(e->ctx));
			if (e->auth_bo.current_ms < e->auth_bo.max_ms / 2)
				e->auth_bo.current_ms = e->auth_bo.max_ms / 2;
			delay = e->h->backoff_next(&e->auth_bo);
			/* A first start with wrong credentials is a misconfiguration:
			 * a reload's new instance fails its trial. */
			char why[600];
			snprintf(why, sizeof(why), "authentication as user \"%s\" refused: %s", e->user,
			         r->msg && r->msg[0] ? r->msg : d);
			fail_start(e, -EACCES, why);
		}
		uv_timer_start(e->auth_timer, on_auth_timer, delay, 0);
		return;
	}
	if (e->stopping)
		stop_continue(e);
	else
		kick(e);
}


/* ------------------------------------------------------------------ */
/* Recovery probe                                                     */
/* ------------------------------------------------------------------ */

/* Every check_interval, one cheap request (maintenance status, with the
 * require-leader metadata) to the current endpoint:
 *  - while the watch or the registration waits out a backoff, its answer
 *    resumes them at once (answered());
 *  - while a watch or a write is open there, a member that froze (no
 *    answer within check_interval) or lost its leader is left at once:
 *    the calls waiting on it move to the next endpoint instead of
 *    waiting for their timeout (a watch has none; an open watch stays on
 *    a live member without a leader);
 *  - while an election may be under way (a member failed or had no
 *    leader) and a write or a read waits, every ELECTION_PROBE_MS: the
 *    first answer with a new raft term (saw_term) sends the waiting
 *    writes again and resumes the waiting retries, so regent adds about
 *    one check interval to etcd's own election.
 * The timer behind these runs only while one of them can apply
 * (probe_needed): an agent with nothing in flight and nothing waiting is
 * not woken (a register-only agent between changes and keepalives).  It
 * fires every STUCK_MS (ELECTION_PROBE_MS while electing) only while a
 * write or a read is in flight or waits; with only the watch open it
 * fires when the watch's check is due (probe_delay): an idle watching
 * agent wakes once per check_interval, not four times. */
/* A write (txn, keepalive) at the current endpoint older than this is
 * suspect: it may have been forwarded to a leader that is gone. */
#define STUCK_MS 250u
/* The loop's timers and now_ms() read different clocks: a check due
 * within this is due now. */
#define PROBE_SLACK_MS 5u

static bool write_stuck(const etcd *e, uint64_t now)
{
	const call *k = &e->calls[OP_KEEPALIVE];
	if (k->req && now - k->t0 >= STUCK_MS)
		return true;
	for (size_t i = 0; i < TXN_PIPE; i++)
		if (e->txns[i].req && now - e->txns[i].t0 >= STUCK_MS)
			return true;
	return false;
}

static bool move_calls(etcd *e, size_t bad, bool watch_too, uint64_t before);

/* The check has not been answered within HEDGE_MS: the same check goes to
 * the next member.  If that one answers first (even "no leader"), the
 * current member accepts connections without answering (frozen, or its
 * loop stuck) and is left at once instead of after check_interval; if the
 * current one answers first, the hedge is dropped. */
static void on_hedge_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	call *p = &e->calls[OP_PROBE];
	if (e->stopping || !p->req || p->ep != e->ep || e->hedge.req)
		return;
	size_t cur = e->ep, to = next_ep(e, cur);
	if (to == cur)
		return;
	e->ep = to; /* call_start_on sends to the current endpoint */
	call_start_on(e, &e->hedge, OP_PROBE, "/v3/maintenance/status", json_object(), NULL);
	e->ep = cur;
}

void probe_cancel(etcd *e)
{
	if (e->hedge_timer)
		uv_timer_stop(e->hedge_timer);
	call_cancel(e, &e->hedge);
}

/* The hedge answered while the check at the current member had not. */
static void hedge_done(etcd *e, call *c, resp *r)
{
	call *p = &e->calls[OP_PROBE];
	/* (The raft term it carried was noted by saw_term: a write moved to
	 * this member may yet be forwarded to the frozen leader and lost; the
	 * first answer with a newer term sends it again.) */
	if (r->err || !p->req || p->ep == c->ep)
		return; /* it learned nothing, or the check was answered meanwhile */
	size_t bad = p->ep;
	uint64_t silent = e->h->now_ms() - p->t0;
	call_cancel(e, p);
	e->suspect_until[bad] = e->h->now_ms() + SUSPECT_MS;
	e->ep = c->ep;
	election_suspected(e); /* a silent member may be the leader */
	e->h->log(e->ctx, REGENT_LOG_INFO,
	          "switching from %s (no answer to its check within %llu ms, while %s answered) to "
	          "%s",
	          e->eps[bad], (unsigned long long)silent, e->eps[c->ep], e->eps[c->ep]);
	if (move_calls(e, bad, true, UINT64_MAX))
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s did not answer its check: its calls moved to %s",
		          e->eps[bad], cur_ep(e));
}

/* A write or a read waits for the registry (not the keepalive: the
 * lease has TTL/3 to spare, and a new leader extends every lease). */
static bool something_waits(const etcd *e)
{
	return txns_busy(e) > 0 || uv_is_active((uv_handle_t *)e->reg_timer) || disc_waiting(e);
}

static bool electing(const etcd *e, uint64_t now)
{
	return e->electing_until > now;
}

/* The check has something to look at: a write or a read waits out a
 * retry or is in flight, or a watch is open (each of the conditions below
 * needs one of these).  Otherwise the timer is stopped (an idle agent
 * wakes for nothing) and armed again by probe_want() when a call starts
 * or a retry is scheduled. */
static bool probe_needed(const etcd *e)
{
	if (e->stopping)
		return false;
	return something_waits(e) ||
	       (e->check_ms && (busy(e, OP_KEEPALIVE) || busy(e, OP_WATCH)));
}

/* How long until the timer has something to look at (while probe_needed):
 * every ELECTION_PROBE_MS while electing, every STUCK_MS while a write or
 * a read is in flight or waits (a write may get stuck, a retry may be
 * resumed), else (only the watch open) when its check is due. */
static uint64_t probe_delay(const etcd *e, uint64_t now)
{
	if (electing(e, now))
		return ELECTION_PROBE_MS;
	if (something_waits(e) || busy(e, OP_KEEPALIVE) || !e->check_ms)
		return STUCK_MS;
	uint64_t due = e->last_check + e->check_ms;
	/* (due now, or the check still in flight: look again in STUCK_MS) */
	return due > now + PROBE_SLACK_MS ? due - now : STUCK_MS;
}

/* The timer fires within ms from now (sooner if it was due sooner). */
static void probe_arm(etcd *e, uint64_t ms)
{
	if (uv_is_active((uv_handle_t *)e->probe_timer) &&
	    uv_timer_get_due_in(e->probe_timer) <= ms)
		return;
	uv_timer_start(e->probe_timer, on_probe_timer, ms, 0);
}

static void probe_check(etcd *e, uint64_t now)
{
	bool fast = electing(e, now);
	if (busy(e, OP_PROBE))
		return;
	uint64_t since = now - e->last_check;
	bool recovering = disc_waiting(e) || uv_is_active((uv_handle_t *)e->reg_timer);
	/* (a few ms of slack: the timer fires about every ELECTION_PROBE_MS,
	 * or when the check is due by the loop's clock) */
	/* (no fast checks while no member answers at all: an outage, not an
	 * election; PROBE_MS then) */
	bool answering = e->last_answer && now - e->last_answer < 1000;
	bool due = (fast && answering && something_waits(e) &&
	            since + PROBE_SLACK_MS >= ELECTION_PROBE_MS) ||
	           (recovering && since >= PROBE_MS) ||
	           (e->check_ms && write_stuck(e, now) && since >= STUCK_MS) ||
	           (e->check_ms && busy(e, OP_WATCH) && since + PROBE_SLACK_MS >= e->check_ms);
	if (!due)
		return;
	if (e->user && !e->token)
		return; /* the authentication is the probe */
	e->last_check = now;
	if (call_start(e, OP_PROBE, "/v3/maintenance/status", json_object(), NULL) == 0 &&
	    e->neps > 1 && e->check_ms > HEDGE_MS)
		uv_timer_start(e->hedge_timer, on_hedge_timer, HEDGE_MS, 0);
}

static void on_probe_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (!probe_needed(e))
		return; /* (a one-shot timer: stopped) */
	uint64_t now = e->h->now_ms();
	probe_check(e, now);
	if (probe_needed(e))
		uv_timer_start(t, on_probe_timer, probe_delay(e, now), 0);
}

/* A call started or a retry was scheduled: the timer fires soon enough
 * for it (STUCK_MS), or when the watch's check is due. */
void probe_want(etcd *e)
{
	if (e->stopping || !e->probe_timer || !probe_needed(e))
		return;
	probe_arm(e, probe_delay(e, e->h->now_ms()));
}

/* The checks go every ELECTION_PROBE_MS from now on (while electing). */
static void probe_fast(etcd *e)
{
	if (e->stopping || !e->started || !e->probe_timer)
		return;
	probe_arm(e, ELECTION_PROBE_MS);
}

/* Moves the calls waiting at endpoint bad (all of them, or only the
 * writes started before `before`) to the current endpoint. */
static bool move_calls(etcd *e, size_t bad, bool watch_too, uint64_t before)
{
	bool moved = false;
	if (watch_too && busy(e, OP_WATCH) && e->calls[OP_WATCH].ep == bad) {
		call_cancel(e, &e->calls[OP_WATCH]);
		watch_moved(e, "its member failed a check");
		moved = true;
	}
	if (txns_move(e, bad, before))
		moved = true;
	call *k = &e->calls[OP_KEEPALIVE];
	if (k->req && k->ep == bad && k->t0 < before) {
		call_cancel(e, k);
		keepalive_moved(e);
		moved = true;
	}
	return moved;
}

void probe_done(etcd *e, call *c, resp *r)
{
	if (c == &e->hedge) {
		hedge_done(e, c, r);
		return;
	}
	probe_cancel(e); /* the current member answered (or failed) first */
	int fk = failure_kind(r);
	if (fk == F_NONE) {
		/* (a new raft term: saw_term sent the writes again) */
		check_started(e); /* answered() resumed what waited */
		return;
	}
	char d[512];
	describe(e, r, d, sizeof(d));
	if (fk == F_AUTH) {
		token_refused(e, c);
		return;
	}
	if (fk != F_ROTATE)
		return;
	size_t bad = c->ep;
	if (r->err) /* no answer at all: skip it for a while */
		e->suspect_until[bad] = e->h->now_ms() + SUSPECT_MS;
	rotate(e, c, d);
	if (e->ep == bad)
		return; /* one endpoint: nowhere to go */
	/* Calls still waiting on the failed member go elsewhere now; an open
	 * watch stays on a member that answered "no leader": its stream
	 * carries on once a leader is elected (and etcd ends it with "no
	 * leader" if the member stays without one for three election
	 * timeouts), while moving it during an election would only meet
	 * another member without a leader. */
	bool watch_too = !no_leader(r) || !e->watch_created;
	if (move_calls(e, bad, watch_too, UINT64_MAX))
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s did not pass its check (%s): its calls moved to %s",
		          e->eps[bad], d, cur_ep(e));
}

/* ------------------------------------------------------------------ */
/* The start handshake                                                */
/* ------------------------------------------------------------------ */

/* Tells the core this instance works once the registry answered, the
 * registration holds its lease with nothing left to write (when it has
 * anything to register) and the first read is complete (when it
 * watches). */
void check_started(etcd *e)
{
	if (e->proven || e->start_told || e->stopping || !e->answered)
		return;
	if (!reg_settled(e))
		return;
	if (e->want && !e->have_view)
		return;
	e->proven = e->start_told = true;
	e->h->started(e->ctx, 0, NULL);
}

void fail_start(etcd *e, int err, const char *reason)
{
	if (e->proven || e->start_told)
		return;
	e->start_told = true;
	e->h->started(e->ctx, err, reason);
}
