/*
 * etcd_reg.c - the etcd store's registration: one lease per agent, kept
 * alive every TTL/3; each local instance is the key <prefix>/<service>/<id>
 * holding the instance's JSON (host->instance_encode), attached to the
 * lease.  The table maps each key to the value wanted and the value
 * written under the current lease; a change puts its entry on the dirty
 * list (O(1)), and only dirty entries are sent, in txns of up to
 * TXN_MAX_OPS operations (and TXN_MAX_BYTES), TXN_PIPE of them in flight.
 *
 * Restarts: the lease id is kept in <state_dir>/<instance>.lease.
 * A starting instance re-attaches to that lease while it lives (lease
 * timetolive), reads which keys are attached to it (reconcile) and
 * writes only what differs; keys of the lease that no source reports
 * within reconcile_grace are deleted.  Stopping for an exit keeps the
 * lease (the containers still run) unless deregister_on_stop; a reload's
 * new instance re-attaches to the running one's lease the same way, and
 * the old one then stops without revoking (etcd_lease.c); a reload that
 * removed the section, or replaced it with another ttl or prefix, revokes
 * it once the new instance holds its keys.
 *
 * Owns: the registration table and dirty list, the lease, the txn
 * slots' batches, reg/ka/kick/grace timers, the stop sequence (the lease
 * file is etcd_lease.c's).
 */
#include "etcd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The registration table                                             */
/* ------------------------------------------------------------------ */

/* Values.  One buffer per value wanted: `sending` (the txn in flight) and
 * `written` (what etcd holds) point to want's buffer while they hold the
 * same value, and own a buffer (sending_own, written_own) only once want
 * changed under them (reg_set_want hands the old buffer over). */
void reg_free(reg *g)
{
	free(g->key);
	if (g->written_own)
		free(g->written);
	if (g->sending_own)
		free(g->sending);
	free(g->want);
	free(g);
}

static bool reg_is_dirty(const reg *g)
{
	if (g->in_txn || g->orphan)
		return false;
	if (g->want)
		return !g->have || (g->written != g->want && strcmp(g->want, g->written) != 0);
	return g->have;
}

static void dirty_unlink(etcd *e, reg *g)
{
	if (!g->on_dirty)
		return;
	if (g->dprev)
		g->dprev->dnext = g->dnext;
	else
		e->dirty_head = g->dnext;
	if (g->dnext)
		g->dnext->dprev = g->dprev;
	else
		e->dirty_tail = g->dprev;
	g->dprev = g->dnext = NULL;
	g->on_dirty = false;
	e->ndirty--;
}

/* Puts g on the dirty list or takes it off, as its state says: O(1). */
static void reg_mark(etcd *e, reg *g)
{
	bool d = reg_is_dirty(g);
	if (d && !g->on_dirty) {
		g->dprev = e->dirty_tail;
		g->dnext = NULL;
		if (e->dirty_tail)
			e->dirty_tail->dnext = g;
		else
			e->dirty_head = g;
		e->dirty_tail = g;
		g->on_dirty = true;
		e->ndirty++;
	} else if (!d) {
		dirty_unlink(e, g);
	}
}

/* v is stolen.  The old buffer goes to written or sending when they use
 * it (to one of them; a copy for the other, which cannot happen: a value
 * equal to the written one is never sent). */
static void reg_set_want(etcd *e, reg *g, char *v)
{
	e->nwant += (v != NULL) - (g->want != NULL);
	char *old = g->want;
	g->want = v;
	if (!old)
		return;
	bool kept = false;
	if (g->written == old && !g->written_own) {
		g->written_own = kept = true;
	}
	if (g->sending == old && !g->sending_own) {
		if (kept)
			g->sending = e->h->xstrdup(old);
		g->sending_own = true;
		kept = true;
	}
	if (!kept)
		free(old);
}

/* written is stolen when own, else it is want's buffer (NULL with have
 * false). */
static void reg_set_have(etcd *e, reg *g, bool have, char *written, bool own)
{
	e->nhave += (size_t)have - (size_t)g->have;
	g->have = have;
	if (own && written && g->want && written != g->want && strcmp(written, g->want) == 0) {
		free(written); /* the value wanted: share its buffer */
		written = g->want;
		own = false;
	}
	if (g->written_own && g->written != written)
		free(g->written);
	g->written = written;
	g->written_own = written && own;
}

static void reg_set_orphan(etcd *e, reg *g, bool orphan)
{
	e->norphan += (size_t)orphan - (size_t)g->orphan;
	g->orphan = orphan;
}

/* Drops an entry that wants nothing and holds nothing; else marks it. */
static void reg_update(etcd *e, reg *g)
{
	if (!g->want && !g->have && !g->in_txn) {
		dirty_unlink(e, g);
		reg_set_orphan(e, g, false);
		e->h->map_del(e->regs, g->key);
		reg_free(g);
		return;
	}
	reg_mark(e, g);
}

size_t txns_busy(const etcd *e)
{
	size_t n = 0;
	for (size_t i = 0; i < TXN_PIPE; i++)
		n += e->txns[i].req != NULL;
	return n;
}

/* Registration has nothing left to do for now (the start handshake). */
bool reg_settled(const etcd *e)
{
	if (e->adopt || e->rstate != R_IDLE || busy(e, OP_GRANT) || busy(e, OP_TTL))
		return false;
	if (e->nwant == 0)
		return true;
	return e->lease && !e->dirty_head && txns_busy(e) == 0;
}

static void on_reg_timer(uv_timer_t *t)
{
	kick(t->data);
}

static void reg_retry(etcd *e, uint64_t ms)
{
	uv_timer_start(e->reg_timer, on_reg_timer, ms ? ms : 1, 0);
	probe_want(e); /* (the check runs only while something waits) */
}

/* The registry answered: a write waiting out its backoff goes now. */
void reg_recovered(etcd *e)
{
	if (!uv_is_active((uv_handle_t *)e->reg_timer) || uv_timer_get_due_in(e->reg_timer) <= recover_slack(e))
		return;
	uv_timer_stop(e->reg_timer);
	e->h->backoff_reset(&e->reg_bo);
	reg_kick(e);
}

static void on_kick_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (!e->stopping)
		reg_kick(e);
}

/* A change: batch everything reported in this loop turn, then write. */
void reg_kick_soon(etcd *e)
{
	if (!e->stopping && e->started && !uv_is_active((uv_handle_t *)e->kick_timer))
		uv_timer_start(e->kick_timer, on_kick_timer, 0, 0);
}

/* The lease is gone (expired or revoked): everything must be written
 * again under a new one.  O(n), once per lost lease. */
static void lease_lost(etcd *e, const char *why)
{
	regent_map_iter it = {0};
	void *v;
	while (e->h->map_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		reg_set_have(e, g, false, NULL, false);
		reg_set_orphan(e, g, false);
		reg_update(e, g);
	}
	e->h->log(e->ctx, REGENT_LOG_WARN,
	          "lease %llx is gone (%s); granting a new one and registering %zu instance%s again",
	          (unsigned long long)e->lease, why, e->nwant, e->nwant == 1 ? "" : "s");
	e->lease = 0;
	if (e->rstate == R_RECON)
		call_cancel(e, &e->calls[OP_RECON]);
	e->rstate = R_IDLE;
	uv_timer_stop(e->ka_timer);
	uv_timer_stop(e->grace_timer);
	e->h->metric_set(e->m_keys, 0);
}

/* ------------------------------------------------------------------ */
/* Lease: grant, re-attach, keepalive                                 */
/* ------------------------------------------------------------------ */

static void ka_schedule(etcd *e, uint64_t ms);
static void finish_stop(etcd *e);

void grant_done(etcd *e, call *c, resp *r)
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
		describe(e, r, d, sizeof(d));
		bool quiet = fk == F_AUTH && token_refused(e, c);
		bool moved = fk == F_ROTATE && rotate(e, c, d);
		if (!quiet)
			comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot get a lease from %s: %s",
			          e->eps[c->ep], d);
		reg_retry(e, retry_delay(e, &e->reg_bo, r, moved));
		return;
	}
	e->lease = id;
	e->lease_ttl = ttl;
	e->h->metric_add(e->m_leases, 1);
	e->h->log(e->ctx, REGENT_LOG_INFO, "lease %llx granted by %s (TTL %lld s)",
	          (unsigned long long)id, e->eps[c->ep], (long long)ttl);
	lease_file_write(e, id);
	e->h->backoff_reset(&e->reg_bo);
	ka_schedule(e, (uint64_t)ttl * 1000 / 3);
	reg_kick(e);
}

static void recon_page(etcd *e)
{
	if (call_start(e, OP_RECON, "/v3/kv/range", pager_body(e, &e->recon), NULL) < 0)
		reg_retry(e, e->h->backoff_next(&e->reg_bo));
}

static void ttl_start(etcd *e)
{
	json_t *b = json_pack("{s:o}", "ID", jint64(e->adopt));
	if (call_start(e, OP_TTL, "/v3/lease/timetolive", b, NULL) < 0)
		reg_retry(e, e->h->backoff_next(&e->reg_bo));
}

void ttl_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	int64_t ttl = -1, granted = 0;
	if (fk == F_NONE) {
		etcd_json_int64(json_object_get(r->json, "TTL"), &ttl);
		etcd_json_int64(json_object_get(r->json, "grantedTTL"), &granted);
	}
	if (fk == F_LEASE || (fk == F_NONE && ttl <= 0)) {
		e->h->log(e->ctx, REGENT_LOG_INFO,
		          "lease %llx of the previous run has expired; granting a new one",
		          (unsigned long long)e->adopt);
		e->adopt = 0;
		reg_kick(e);
		return;
	}
	if (fk != F_NONE) {
		char d[512];
		describe(e, r, d, sizeof(d));
		bool quiet = fk == F_AUTH && token_refused(e, c);
		bool moved = fk == F_ROTATE && rotate(e, c, d);
		if (!quiet)
			comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot look up lease %llx at %s: %s",
			          (unsigned long long)e->adopt, e->eps[c->ep], d);
		reg_retry(e, retry_delay(e, &e->reg_bo, r, moved));
		return;
	}
	e->lease = e->adopted = e->adopt;
	e->adopt = 0;
	e->lease_ttl = granted > 0 ? granted : e->ttl_s;
	e->h->log(e->ctx, REGENT_LOG_INFO,
	          "re-attached to lease %llx of the previous run (%lld s left); reconciling its keys",
	          (unsigned long long)e->lease, (long long)ttl);
	ka_schedule(e, 1); /* refresh it at once */
	e->rstate = R_RECON;
	pager_reset(&e->recon);
	recon_page(e);
}

static void on_grace_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (!e->norphan)
		return;
	size_t n = 0;
	regent_map_iter it = {0};
	void *v;
	while (e->h->map_next(e->regs, &it, NULL, &v)) {
		reg *g = v;
		if (!g->orphan)
			continue;
		reg_set_orphan(e, g, false);
		n++;
		e->h->log(e->ctx, REGENT_LOG_INFO, "deleting %s: no source reported it since the start",
		          g->key);
		reg_update(e, g);
	}
	(void)n;
	reg_kick(e);
}

void recon_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	if (fk != F_NONE) {
		if (pager_too_large(e, &e->recon, r, "reconcile")) {
			recon_page(e);
			return;
		}
		char d[512];
		describe(e, r, d, sizeof(d));
		bool quiet = fk == F_AUTH && token_refused(e, c);
		bool moved = fk == F_ROTATE && rotate(e, c, d);
		if (!quiet)
			comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot read the keys of lease %llx at %s: %s",
			          (unsigned long long)e->lease, e->eps[c->ep], d);
		pager_reset(&e->recon); /* start over (the revision may be compacted) */
		reg_retry(e, retry_delay(e, &e->reg_bo, r, moved));
		return;
	}
	if (!e->recon.rev)
		etcd_json_int64(json_object_get(json_object_get(r->json, "header"), "revision"),
		                &e->recon.rev);
	json_t *kvs = json_object_get(r->json, "kvs");
	size_t i;
	json_t *kv;
	if (!e->recon.find_key)
		json_array_foreach(kvs, i, kv)
		{
			int64_t lease = 0;
			if (!etcd_json_int64(json_object_get(kv, "lease"), &lease) || lease != e->lease)
				continue;
			char *key, *val;
			size_t klen = 0, vlen = 0;
			int64_t mr;
			if (!decode_kv(e, kv, &key, &klen, &val, &vlen, &mr))
				continue;
			char *kt = etcd_printable(e->h, key, klen, klen);
			free(key);
			reg *g = e->h->map_get(e->regs, kt);
			if (!g) {
				g = e->h->xcalloc(1, sizeof(*g));
				g->key = kt;
				e->h->map_put(e->regs, g->key, g);
				reg_set_orphan(e, g, true);
			} else {
				free(kt);
			}
			reg_set_have(e, g, true, val, true);
			g->rev = mr;
			reg_update(e, g);
		}
	if (pager_after(e, &e->recon, r->json, NULL)) {
		recon_page(e);
		return;
	}
	pager_reset(&e->recon);
	e->rstate = R_IDLE;
	size_t todo = e->ndirty;
	e->h->log(e->ctx, REGENT_LOG_INFO,
	          "lease %llx holds %zu keys: %zu to write now, %zu not reported (yet) by a source "
	          "(deleted after %llu ms unless reported)",
	          (unsigned long long)e->lease, e->nhave, todo, e->norphan,
	          (unsigned long long)e->grace_ms);
	e->h->metric_set(e->m_keys, (double)e->nhave);
	lease_file_write(e, e->lease);
	if (e->norphan)
		uv_timer_start(e->grace_timer, on_grace_timer, e->grace_ms ? e->grace_ms : 1, 0);
	comp_ok(e, COMP_REG);
	reg_kick(e);
	check_started(e);
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

void keepalive_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	if (e->stopping) {
		/* The refresh on the way out (a stop that keeps the lease). */
		e->h->log(e->ctx, fk == F_NONE ? REGENT_LOG_DEBUG : REGENT_LOG_INFO,
		          "lease %llx %s before exiting", (unsigned long long)e->lease,
		          fk == F_NONE ? "refreshed" : "could not be refreshed");
		finish_stop(e);
		return;
	}
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
			if (e->lease && !uv_is_active((uv_handle_t *)e->ka_timer))
				ka_schedule(e, (uint64_t)e->lease_ttl * 1000 / 3);
			return;
		}
		if (!etcd_json_int64(json_object_get(res, "TTL"), &ttl) || ttl <= 0) {
			lease_lost(e, "keepalive found no TTL: it expired");
			reg_kick(e);
			return;
		}
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "lease %llx kept alive (TTL %lld s)",
		          (unsigned long long)id, (long long)ttl);
		e->lease_ttl = ttl;
		if (txns_busy(e) == 0 && !uv_is_active((uv_handle_t *)e->reg_timer))
			e->h->backoff_reset(&e->reg_bo);
		/* The lease lives: registration works unless a txn is failing. */
		if (!uv_is_active((uv_handle_t *)e->reg_timer))
			comp_ok(e, COMP_REG);
		ka_schedule(e, (uint64_t)ttl * 1000 / 3);
		return;
	}
	if (fk == F_LEASE) {
		lease_lost(e, "keepalive: lease not found");
		reg_kick(e);
		return;
	}
	char d[512];
	describe(e, r, d, sizeof(d));
	bool quiet = fk == F_AUTH && token_refused(e, c);
	bool moved = fk != F_AUTH && rotate(e, c, d);
	if (!quiet)
		comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot keep lease %llx alive through %s: %s",
		          (unsigned long long)e->lease, e->eps[c->ep], d);
	uint64_t next = retry_delay(e, &e->reg_bo, r, moved);
	uint64_t third = (uint64_t)(e->lease_ttl > 0 ? e->lease_ttl : e->ttl_s) * 1000 / 3;
	ka_schedule(e, next < third ? next : third);
	if (fk == F_AUTH)
		kick(e);
}

/* ------------------------------------------------------------------ */
/* Batched, pipelined txns                                            */
/* ------------------------------------------------------------------ */

static void batch_release(etcd *e, reg **batch, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		reg *g = batch[i];
		g->in_txn = false;
		if (g->sending_own)
			free(g->sending);
		g->sending = NULL;
		g->sending_own = false;
		reg_update(e, g);
	}
	free(batch);
}

/* The txn body is rendered straight into one host buffer (no JSON tree:
 * base64 text needs no escaping), one append per field. */

/* Standard base64 (with padding) of s, appended in chunks: no copy per
 * field. */
static void sb_b64(etcd *e, regent_buffer *b, const char *s, size_t n)
{
	static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *u = (const unsigned char *)s;
	char chunk[256];
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)u[i] << 16 | (uint32_t)u[i + 1] << 8 | u[i + 2];
		chunk[o++] = tb[v >> 18];
		chunk[o++] = tb[(v >> 12) & 63];
		chunk[o++] = tb[(v >> 6) & 63];
		chunk[o++] = tb[v & 63];
		if (o + 4 > sizeof(chunk)) {
			e->h->buf_add(b, chunk, o);
			o = 0;
		}
	}
	if (i < n) {
		uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0);
		chunk[o++] = tb[v >> 18];
		chunk[o++] = tb[(v >> 12) & 63];
		chunk[o++] = i + 1 < n ? tb[(v >> 6) & 63] : '=';
		chunk[o++] = '=';
	}
	e->h->buf_add(b, chunk, o);
}

/* Sends the head of the dirty list in slot c.  Returns false when
 * nothing was started.  O(entries sent). */
static bool txn_start(etcd *e, call *c)
{
	size_t cap = e->txn_limit ? e->txn_limit : TXN_MAX_OPS;
	if (cap > e->ndirty)
		cap = e->ndirty; /* one change: one slot, not TXN_MAX_OPS zeroed */
	if (cap == 0)
		return false;
	reg **batch = e->h->xcalloc(cap, sizeof(*batch));
	size_t n = 0, bytes = 0;
	char lease[40];
	snprintf(lease, sizeof(lease), "\",\"lease\":\"%lld\"}}", (long long)e->lease);
	const regent_host *h = e->h;
	regent_buffer b = {0};
	h->buf_puts(&b, "{\"success\":[");
	while (n < cap && e->dirty_head) {
		reg *g = e->dirty_head;
		size_t klen = strlen(g->key), vlen = g->want ? strlen(g->want) : 0;
		size_t cost = (klen + vlen) * 4 / 3 + 128;
		if (n > 0 && bytes + cost > TXN_MAX_BYTES)
			break;
		bytes += cost;
		if (n > 0)
			h->buf_add(&b, ",", 1);
		if (g->want) {
			h->buf_puts(&b, "{\"request_put\":{\"key\":\"");
			sb_b64(e, &b, g->key, klen);
			h->buf_puts(&b, "\",\"value\":\"");
			sb_b64(e, &b, g->want, vlen);
			h->buf_puts(&b, lease);
		} else {
			h->buf_puts(&b, "{\"request_delete_range\":{\"key\":\"");
			sb_b64(e, &b, g->key, klen);
			h->buf_puts(&b, "\"}}");
		}
		dirty_unlink(e, g);
		g->in_txn = true;
		g->sending = g->want; /* want's buffer: no copy (see Values) */
		g->sending_own = false;
		batch[n++] = g;
	}
	if (n == 0) {
		h->buf_free(&b);
		free(batch);
		return false;
	}
	h->buf_puts(&b, "]}");
	c->batch = batch;
	c->nbatch = n;
	c->lease = e->lease;
	if (call_start_text(e, c, OP_TXN, "/v3/kv/txn", b.data, NULL) < 0) {
		c->batch = NULL;
		c->nbatch = 0;
		batch_release(e, batch, n);
		reg_retry(e, e->h->backoff_next(&e->reg_bo));
		return false;
	}
	return true;
}

void txn_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	reg **batch = c->batch;
	size_t n = c->nbatch;
	c->batch = NULL;
	c->nbatch = 0;
	bool current = c->lease == e->lease && e->lease != 0;
	size_t puts = 0, dels = 0, tried_puts = 0;
	for (size_t i = 0; i < n; i++)
		tried_puts += batch[i]->sending != NULL;
	int64_t rev = r->rev;
	if (!r->hdr)
		etcd_json_int64(json_object_get(json_object_get(r->json, "header"), "revision"), &rev);
	bool debug = e->h->log_enabled(e->ctx, REGENT_LOG_DEBUG);
	for (size_t i = 0; i < n && fk == F_NONE && current; i++) {
		reg *g = batch[i];
		if (g->sending) {
			reg_set_have(e, g, true, g->sending, g->sending_own);
			g->sending = NULL;
			g->sending_own = false;
			g->rev = rev;
			puts++;
			if (debug)
				e->h->log(e->ctx, REGENT_LOG_DEBUG, "put %s (txn answered %llu ms after it was sent)",
				          g->key, (unsigned long long)(e->h->now_ms() - c->t0));
		} else {
			reg_set_have(e, g, false, NULL, false);
			dels++;
			if (debug)
				e->h->log(e->ctx, REGENT_LOG_DEBUG, "deleted %s", g->key);
		}
	}
	const char *key0 = n == 1 ? batch[0]->key : "";
	char k0[320];
	snprintf(k0, sizeof(k0), "%s", key0);
	batch_release(e, batch, n);
	if (fk == F_NONE) {
		e->h->metric_add(e->m_put, (double)puts);
		e->h->metric_add(e->m_del, (double)dels);
		e->h->metric_set(e->m_keys, (double)e->nhave);
		e->h->backoff_reset(&e->reg_bo);
		e->txn_limit = 0;
		comp_ok(e, COMP_REG);
		reg_kick(e);
		check_started(e);
		return;
	}
	e->h->metric_add(e->m_put_err, (double)tried_puts);
	e->h->metric_add(e->m_del_err, (double)(n - tried_puts));
	char d[512];
	describe(e, r, d, sizeof(d));
	if (fk == F_LEASE && c->lease == e->lease && e->lease) {
		lease_lost(e, "a put was refused: lease not found");
		reg_kick(e);
		return;
	}
	bool quiet = fk == F_AUTH && token_refused(e, c);
	bool moved = fk == F_ROTATE && rotate(e, c, d);
	if (quiet) {
		/* an expired token: authenticate and retry */
	} else if (fk == F_OTHER) {
		if (n == 1)
			comp_fail(e, COMP_REG, REGENT_LOG_ERROR, "etcd %s refused to write key %s: %s",
			          e->eps[c->ep], k0, d);
		else
			comp_fail(e, COMP_REG, REGENT_LOG_WARN,
			          "etcd %s refused a batch of %zu writes: %s; retrying one by one",
			          e->eps[c->ep], n, d);
		e->txn_limit = 1; /* find the key it objects to */
	} else {
		comp_fail(e, COMP_REG, REGENT_LOG_WARN, "cannot write %zu key%s through %s: %s", n,
		          n == 1 ? "" : "s", e->eps[c->ep], d);
	}
	if (!uv_is_active((uv_handle_t *)e->reg_timer))
		reg_retry(e, retry_delay(e, &e->reg_bo, r, moved));
}

/* Cancels the txns in flight; their entries become dirty again. */
void txns_abandon(etcd *e)
{
	for (size_t i = 0; i < TXN_PIPE; i++) {
		call *c = &e->txns[i];
		call_cancel(e, c);
		if (c->batch) {
			reg **b = c->batch;
			size_t n = c->nbatch;
			c->batch = NULL;
			c->nbatch = 0;
			batch_release(e, b, n);
		}
	}
}

/* The txns in flight at endpoint bad_ep (started before `before`) are
 * cancelled and sent again to the current endpoint.  Returns true when
 * there were some. */
bool txns_move(etcd *e, size_t bad_ep, uint64_t before)
{
	bool any = false;
	for (size_t i = 0; i < TXN_PIPE; i++) {
		call *c = &e->txns[i];
		if (!c->req || c->ep != bad_ep || c->t0 >= before)
			continue;
		call_cancel(e, c);
		reg **b = c->batch;
		size_t n = c->nbatch;
		c->batch = NULL;
		c->nbatch = 0;
		batch_release(e, b, n);
		any = true;
	}
	if (any)
		reg_kick(e);
	return any;
}

void keepalive_moved(etcd *e)
{
	if (e->lease)
		ka_schedule(e, 1);
}

static void grant_start(etcd *e)
{
	json_t *b = json_pack("{s:o,s:i}", "TTL", jint64(e->ttl_s), "ID", 0);
	if (call_start(e, OP_GRANT, "/v3/lease/grant", b, NULL) < 0)
		reg_retry(e, e->h->backoff_next(&e->reg_bo));
}

void reg_kick(etcd *e)
{
	if (e->stopping || !e->started || uv_is_active((uv_handle_t *)e->reg_timer) || busy(e, OP_GRANT) ||
	    busy(e, OP_TTL) || busy(e, OP_RECON))
		return;
	if (!e->lease && !e->adopt && e->nwant == 0)
		return;
	if (!have_token(e))
		return;
	if (!e->lease) {
		if (e->adopt)
			ttl_start(e);
		else
			grant_start(e);
		return;
	}
	if (e->rstate == R_RECON) {
		recon_page(e); /* resumes after a failure */
		return;
	}
	for (size_t i = 0; i < TXN_PIPE && e->dirty_head; i++)
		if (!e->txns[i].req && !txn_start(e, &e->txns[i]))
			break;
}

/* ------------------------------------------------------------------ */
/* What the core reports                                              */
/* ------------------------------------------------------------------ */

/* <prefix>/<service>/<id>, malloc'd (copies, not a formatted print:
 * once per change). */
static char *reg_key(etcd *e, const regent_instance *inst)
{
	size_t pl = strlen(e->prefix), sl = strlen(inst->service), il = strlen(inst->id);
	char *k = e->h->xmalloc(pl + sl + il + 3);
	memcpy(k, e->prefix, pl);
	k[pl] = '/';
	memcpy(k + pl + 1, inst->service, sl);
	k[pl + 1 + sl] = '/';
	memcpy(k + pl + sl + 2, inst->id, il + 1);
	return k;
}

void register_instance(void *self, const regent_instance *inst)
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
	reg *g = e->h->map_get(e->regs, key);
	if (!g) {
		g = e->h->xcalloc(1, sizeof(*g));
		g->key = key;
		e->h->map_put(e->regs, g->key, g);
	} else {
		free(key);
	}
	char *v = e->h->instance_encode(inst);
	if (!v)
		e->h->log(e->ctx, REGENT_LOG_ERROR, "cannot encode instance %s", inst->id);
	reg_set_want(e, g, v);
	reg_set_orphan(e, g, false);
	reg_update(e, g);
	reg_kick_soon(e);
}

void deregister_instance(void *self, const regent_instance *inst)
{
	etcd *e = self;
	char *key = reg_key(e, inst);
	reg *g = e->h->map_get(e->regs, key);
	free(key);
	if (!g)
		return;
	reg_set_want(e, g, NULL);
	reg_set_orphan(e, g, false);
	reg_update(e, g);
	reg_kick_soon(e);
}

/* Someone else deleted a key this agent holds: write it again. */
void own_key_deleted(etcd *e, const char *key, size_t klen, int64_t mod_rev)
{
	char *k = etcd_printable(e->h, key, klen, klen);
	reg *g = e->h->map_get(e->regs, k);
	free(k);
	if (!g || !g->have || g->in_txn || mod_rev <= g->rev)
		return;
	if (g->want)
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "key %s of this agent was deleted at revision %lld; writing it again", g->key,
		          (long long)mod_rev);
	reg_set_have(e, g, false, NULL, false);
	reg_set_orphan(e, g, false);
	reg_update(e, g);
	reg_kick_soon(e);
}

/* ------------------------------------------------------------------ */
/* Stop: keep the lease for a restart, or revoke it                   */
/* ------------------------------------------------------------------ */

static void finish_stop(etcd *e)
{
	if (e->stop_done)
		return;
	e->stop_done = true;
	call_cancel(e, &e->calls[OP_REVOKE]);
	call_cancel(e, &e->calls[OP_AUTH]);
	call_cancel(e, &e->calls[OP_KEEPALIVE]);
	uv_timer_stop(e->stop_timer);
	uv_timer_stop(e->auth_timer);
	e->h->stopped(e->ctx); /* the core may destroy us right here */
}

static void on_stop_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	if (e->stop_done)
		return;
	if (e->stop_keep) {
		finish_stop(e); /* the refresh did not answer in time: the lease stays anyway */
		return;
	}
	if (e->h->now_ms() + 5 >= e->stop_deadline) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "could not revoke lease %llx in time; its %zu keys expire within %lld s",
		          (unsigned long long)e->lease, e->nhave, (long long)e->lease_ttl);
		finish_stop(e);
		return;
	}
	stop_continue(e);
}

void revoke_done(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	if (fk == F_NONE || fk == F_LEASE) {
		e->h->log(e->ctx, REGENT_LOG_INFO, "lease %llx revoked at %s: %zu keys removed",
		          (unsigned long long)e->lease, e->eps[c->ep], e->nhave);
		e->lease = 0;
		finish_stop(e);
		return;
	}
	char d[512];
	describe(e, r, d, sizeof(d));
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
void stop_continue(etcd *e)
{
	if (!e->stop_done && !stop_step(e))
		finish_stop(e);
}

/* stop(): 0 when done, REGENT_PENDING while revoking. */
int reg_stop(etcd *e)
{
	regent_stop_reason why = e->h->stop_reason(e->ctx);
	txns_abandon(e);
	uv_timer_stop(e->reg_timer);
	uv_timer_stop(e->ka_timer);
	uv_timer_stop(e->kick_timer);
	uv_timer_stop(e->grace_timer);
	bool revoke = why != REGENT_STOP_EXIT || e->dereg_on_stop;
	if (lease_file_on_stop(e, why, revoke)) {
		/* Shared with the instance that goes on (lease_file_on_stop):
		 * it keeps the lease alive; nothing is revoked or deleted. */
		e->h->log(e->ctx, REGENT_LOG_INFO,
		          why == REGENT_STOP_REPLACED
		              ? "lease %llx and its %zu keys are the new instance's now (it re-attached): "
		                "not revoked"
		              : "lease %llx and its %zu keys stay with the running instance",
		          (unsigned long long)e->lease, e->nhave);
		call_cancel(e, &e->calls[OP_AUTH]);
		uv_timer_stop(e->auth_timer);
		e->stop_done = true;
		return 0;
	}
	if (!e->lease || !revoke) {
		call_cancel(e, &e->calls[OP_AUTH]);
		uv_timer_stop(e->auth_timer);
		if (!e->lease) {
			e->stop_done = true;
			return 0;
		}
		e->h->log(e->ctx, REGENT_LOG_INFO,
		          "keeping lease %llx and its %zu keys (the containers still run): a "
		          "restart within %lld s re-attaches to it, else they expire",
		          (unsigned long long)e->lease, e->nhave, (long long)e->lease_ttl);
		/* One last keepalive, so a restart has the whole TTL. */
		e->stop_keep = true;
		e->stop_deadline = e->h->now_ms() + e->revoke_ms;
		json_t *b = json_pack("{s:o}", "ID", jint64(e->lease));
		if ((e->user && !e->token) ||
		    call_start(e, OP_KEEPALIVE, "/v3/lease/keepalive", b, NULL) < 0) {
			e->stop_done = true;
			return 0;
		}
		uv_timer_start(e->stop_timer, on_stop_timer, e->revoke_ms, 0);
		return REGENT_PENDING;
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
