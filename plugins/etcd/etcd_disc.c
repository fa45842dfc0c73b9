/*
 * etcd_disc.c - the etcd store's discovery: a paged range read of the
 * prefix at one revision (pages limited by count; a page whose answer
 * exceeds the body limit is asked again at half the count, down to one
 * key; a single value that does not fit is looked up by name and skipped
 * with a warning), then one watch stream from the next revision.  A lost
 * stream resumes from the last revision seen on the next endpoint; a
 * compaction, a cancel or an event too large re-reads.  Retries wait a
 * backoff, cut short as soon as the registry answers anything (the
 * recovery probe runs meanwhile).  A watch line of the usual shape (events
 * or a progress notification) is read by etcd_scan_watch without a JSON
 * tree; any other line (created, canceled, an error, anything unusual)
 * by jansson, into the same event array.  A response's events are
 * applied a bounded slice a loop turn; the rest waits in the view's queue.
 *
 * Owns: the pager of the discovery read, the watch's state, disc_timer,
 * the queue of watch events not applied yet (view.evq, ev_timer).
 */
#include "etcd_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Paged range reads (shared with the registration's reconcile)       */
/* ------------------------------------------------------------------ */

void pager_reset(pager *p)
{
	free(p->next);
	*p = (pager){.limit = RANGE_PAGE};
}

json_t *pager_body(etcd *e, const pager *p)
{
	json_t *b = json_object();
	if (p->next)
		json_object_set_new(b, "key", b64(e, p->next, p->next_len));
	else
		json_object_set_new(b, "key", b64s(e, e->kprefix));
	json_object_set_new(b, "range_end", b64(e, e->kend, e->kend_len));
	json_object_set_new(b, "limit", json_integer(p->find_key ? 1 : p->limit));
	if (p->find_key)
		json_object_set_new(b, "keys_only", json_true());
	if (p->rev)
		json_object_set_new(b, "revision", jint64(p->rev));
	return b;
}

bool pager_too_large(etcd *e, pager *p, const resp *r, const char *what)
{
	if (r->err != -EFBIG || p->find_key)
		return false;
	if (p->limit > 1) {
		p->limit /= 2;
		e->h->log(e->ctx, REGENT_LOG_INFO,
		          "%s of %s/: an answer was larger than %zu bytes; asking %lld keys a page",
		          what, e->prefix, e->max_body, (long long)p->limit);
	} else {
		p->find_key = true; /* one value alone is too large: find its key */
	}
	return true;
}

static void pager_set_next(etcd *e, pager *p, char *key, size_t klen)
{
	free(p->next);
	p->next = e->h->xrealloc(key, klen + 1);
	p->next[klen] = '\0'; /* right after key */
	p->next_len = klen + 1;
}

/* After a page: key (malloc'd, taken; NULL when the page had none or it
 * did not decode) is its last one, more etcd's "more". */
static bool pager_next(etcd *e, pager *p, bool more, char *key, size_t klen, int *skipped)
{
	if (p->find_key) {
		p->find_key = false;
		if (!key)
			return false;
		char *kp = etcd_printable(e->h, key, klen, 300);
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "skipped key %s (revision %lld): its value does not fit in an answer of %zu "
		          "bytes",
		          kp, (long long)p->rev, e->max_body);
		free(kp);
		e->h->metric_add(e->m_skipped, 1);
		if (skipped)
			(*skipped)++;
		pager_set_next(e, p, key, klen);
		return true;
	}
	if (more && key) {
		pager_set_next(e, p, key, klen);
		return true;
	}
	free(key);
	return false;
}

bool pager_after(etcd *e, pager *p, json_t *json, int *skipped)
{
	json_t *kvs = json_object_get(json, "kvs");
	size_t n = json_array_size(kvs);
	const char *k64 = n ? json_string_value(json_object_get(json_array_get(kvs, n - 1), "key"))
	                    : NULL;
	size_t klen = 0;
	char *key = k64 ? e->h->base64_decode(k64, &klen) : NULL;
	return pager_next(e, p, json_is_true(json_object_get(json, "more")), key, klen, skipped);
}

/* The same for a page read by etcd_scan_range. */
static bool pager_after_scanned(etcd *e, pager *p, const etcd_range *rg)
{
	const etcd_wev *last = rg->n ? &rg->kvs[rg->n - 1] : NULL;
	size_t klen = 0;
	char *key = NULL;
	if (last) {
		key = e->h->xmalloc(last->key_len / 4 * 3 + 4);
		if (!etcd_b64_decode(last->key, last->key_len, key, &klen)) {
			free(key);
			key = NULL;
		}
	}
	return pager_next(e, p, rg->more, key, klen, NULL);
}

bool decode_kv(etcd *e, json_t *kv, char **key, size_t *klen, char **val, size_t *vlen,
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
		*val = e->h->xstrdup("");
		*vlen = 0;
	}
	return true;
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
	probe_want(e); /* (the check runs only while something waits) */
}

bool disc_waiting(const etcd *e)
{
	return e->want && uv_is_active((uv_handle_t *)e->disc_timer);
}

/* The registry answered something: a read or watch waiting out its
 * backoff goes now. */
void disc_recovered(etcd *e)
{
	if (!disc_waiting(e))
		return;
	uint64_t due = uv_timer_get_due_in(e->disc_timer);
	if (due <= recover_slack(e))
		return;
	e->h->backoff_reset(&e->disc_bo);
	uv_timer_stop(e->disc_timer);
	e->h->log(e->ctx, REGENT_LOG_INFO, "%s answers again: resuming discovery now", cur_ep(e));
	on_disc_timer(e->disc_timer);
}

static void range_page(etcd *e)
{
	if (call_start(e, OP_RANGE, "/v3/kv/range", pager_body(e, &e->range), NULL) < 0) {
		view_clear(e, &e->pending);
		e->dstate = D_IDLE;
		disc_retry(e, e->h->backoff_next(&e->disc_bo));
	}
}

static void range_start(etcd *e)
{
	view_clear(e, &e->pending);
	view_init(e, &e->pending);
	pager_reset(&e->range);
	e->dstate = D_RANGE;
	range_page(e);
}

static void range_fail(etcd *e, call *c, resp *r)
{
	int fk = failure_kind(r);
	char d[512];
	describe(e, r, d, sizeof(d));
	view_clear(e, &e->pending);
	e->dstate = D_IDLE;
	if (fk == F_COMPACTED) {
		/* A later page's revision was compacted meanwhile: start over. */
		e->h->log(e->ctx, REGENT_LOG_INFO, "read of %s/ at revision %lld: %s; reading again",
		          e->prefix, (long long)e->range.rev, d);
		disc_retry(e, 1);
		return;
	}
	bool quiet = fk == F_AUTH && token_refused(e, c);
	bool moved = false;
	if (fk == F_ROTATE)
		moved = rotate(e, c, d);
	if (!quiet)
		comp_fail(e, COMP_DISC, REGENT_LOG_WARN,
		          "cannot read %s/ from %s: %s; the catalog keeps its last known state",
		          e->prefix, e->eps[c->ep], d);
	disc_retry(e, retry_delay(e, &e->disc_bo, r, moved));
}

static void undecodable(etcd *e, int ep)
{
	e->h->log(e->ctx, REGENT_LOG_WARN, "skipped an undecodable entry of %s/ from %s", e->prefix,
	          e->eps[ep]);
}

/* A page's entries into the view being read: parsed by jansson ... */
static void put_json(etcd *e, json_t *kvs, int ep)
{
	size_t i;
	json_t *kv;
	json_array_foreach(kvs, i, kv)
	{
		char *key, *val;
		size_t klen = 0, vlen = 0;
		int64_t mr;
		if (!decode_kv(e, kv, &key, &klen, &val, &vlen, &mr)) {
			undecodable(e, ep);
			continue;
		}
		view_put(e, &e->pending, e->have_view ? &e->cur : NULL, key, klen, val, vlen, mr);
		free(key);
		free(val);
	}
}

/* ... or read by etcd_scan_range: keys and values decoded into one buffer
 * reused for the page (view_put copies what it keeps). */
static void put_scanned(etcd *e, const etcd_range *rg, int ep)
{
	size_t kmax = 0, vmax = 0;
	for (size_t i = 0; i < rg->n; i++) {
		if (rg->kvs[i].key_len > kmax)
			kmax = rg->kvs[i].key_len;
		if (rg->kvs[i].value_len > vmax)
			vmax = rg->kvs[i].value_len;
	}
	size_t kroom = kmax / 4 * 3 + 4;
	char *buf = e->h->xmalloc(kroom + vmax / 4 * 3 + 4);
	char *key = buf, *val = buf + kroom;
	for (size_t i = 0; i < rg->n; i++) {
		const etcd_wev *kv = &rg->kvs[i];
		size_t klen = 0, vlen = 0;
		if (!etcd_b64_decode(kv->key, kv->key_len, key, &klen) ||
		    (kv->value && !etcd_b64_decode(kv->value, kv->value_len, val, &vlen))) {
			undecodable(e, ep);
			continue;
		}
		if (!kv->value)
			val[0] = '\0';
		view_put(e, &e->pending, e->have_view ? &e->cur : NULL, key, klen, val, vlen,
		         kv->mod_rev);
	}
	free(buf);
}

void range_done(etcd *e, call *c, resp *r)
{
	if (failure_kind(r) != F_NONE) {
		if (pager_too_large(e, &e->range, r, "read")) {
			range_page(e);
			return;
		}
		range_fail(e, c, r);
		return;
	}
	const etcd_range *rg = r->range;
	json_t *hdr = json_object_get(r->json, "header");
	int64_t rev = 0;
	if (rg ? (rev = rg->rev) <= 0
	       : !etcd_json_int64(json_object_get(hdr, "revision"), &rev) || rev <= 0) {
		r->err = -EPROTO;
		r->msg = "range answer without header.revision";
		range_fail(e, c, r);
		return;
	}
	if (!e->range.rev)
		e->range.rev = rev;
	/* (copied now: the answer is gone once the next page is asked for) */
	char *cid = NULL;
	if (rg && rg->cid)
		cid = e->h->xstrndup(rg->cid, rg->cid_len);
	else if (!rg && json_string_value(json_object_get(hdr, "cluster_id")))
		cid = e->h->xstrdup(json_string_value(json_object_get(hdr, "cluster_id")));
	json_t *kvs = json_object_get(r->json, "kvs");
	int ep = c->ep; /* the slot is the next page's once that is asked for */
	bool keys = !e->range.find_key;
	/* The next page is asked for before this one is decoded: etcd prepares
	 * it while the agent decodes (each on its own core), instead of one
	 * waiting for the other page after page.  Answers come one at a time,
	 * in order (one call slot), on later loop turns. */
	bool more = rg ? pager_after_scanned(e, &e->range, rg) : pager_after(e, &e->range, r->json, NULL);
	if (more) {
		range_page(e);
		if (e->dstate != D_RANGE) {
			free(cid);
			return; /* could not ask: the read starts over after a backoff */
		}
	}
	if (keys && rg)
		put_scanned(e, rg, ep);
	else if (keys)
		put_json(e, kvs, ep);
	if (more) {
		free(cid);
		return;
	}
	/* Complete: this read replaces the view. */
	view_clear(e, &e->cur);
	e->cur = e->pending;
	e->pending = (view){0};
	e->have_view = true;
	e->wrev = e->range.rev;
	pager_reset(&e->range);
	free(e->cluster_id);
	e->cluster_id = cid;
	e->h->log(e->ctx, REGENT_LOG_INFO, "read %s/ at revision %lld from %s: %zu services, %zu keys",
	          e->prefix, (long long)e->wrev, e->eps[ep], e->h->map_size(e->cur.svcs),
	          view_nkeys(&e->cur));
	e->h->mark_change(e->ctx, e->h->wall_ns());
	publish_all(e);
	disc_empty_check(e);
	comp_ok(e, COMP_DISC);
	e->dstate = D_WATCH;
	watch_start(e);
	check_started(e);
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
	e->watch_err = e->h->xstrdup(msg);
	return 1;
}

#define EV_SLICE_NS 50000000ull /* 50 ms */
#define EV_SLICE_MAX 4096        /* events */

/* Applies events to the view, in order, until `deadline` (uv_hrtime; at
 * least one event, at most EV_SLICE_MAX): returns how many.  The keys
 * they touched are reported on a later loop turn (see etcd_view.c);
 * `origin_ns` is when they came.
 * Keys and values are decoded into one buffer reused for every event. */
static size_t apply_events(etcd *e, const etcd_wev *evs, size_t n, uint64_t origin_ns,
                           uint64_t deadline)
{
	size_t kmax = 0, vmax = 0;
	for (size_t i = 0; i < n; i++) {
		if (evs[i].key_len > kmax)
			kmax = evs[i].key_len;
		if (evs[i].value_len > vmax)
			vmax = evs[i].value_len;
	}
	size_t kroom = kmax / 4 * 3 + 4;
	char *buf = e->h->xmalloc(kroom + vmax / 4 * 3 + 4);
	char *key = buf, *val = buf + kroom;
	bool any = false;
	size_t i;
	for (i = 0; i < n; i++) {
		if (i == EV_SLICE_MAX || (i > 0 && i % 16 == 0 && uv_hrtime() > deadline))
			break;
		const etcd_wev *ev = &evs[i];
		size_t klen = 0, vlen = 0;
		if (!ev->key || !etcd_b64_decode(ev->key, ev->key_len, key, &klen) ||
		    (ev->value && !etcd_b64_decode(ev->value, ev->value_len, val, &vlen))) {
			e->h->log(e->ctx, REGENT_LOG_WARN, "skipped an undecodable watch event");
			continue;
		}
		if (!ev->value)
			val[0] = '\0';
		if (ev->del && e->regs && e->h->map_size(e->regs)) /* a client registers nothing */
			own_key_deleted(e, key, klen, ev->mod_rev);
		bool t = ev->del ? view_del(e, &e->cur, key, klen)
		                 : view_put(e, &e->cur, NULL, key, klen, val, vlen, ev->mod_rev);
		if (t && !any)
			e->h->mark_change(e->ctx, origin_ns);
		any = any || t;
	}
	free(buf);
	return i;
}

/* ---- Watch events not applied yet ----
 * A watch response of thousands of events (a delete of 10,000 keys in one
 * request) is applied a slice a loop turn (EV_SLICE_NS or EV_SLICE_MAX
 * events, whichever comes first), so
 * /healthz and everything else keep being served: the rest waits in the
 * view's queue (keys and values copied out of the line), later responses
 * behind it, so events keep their order.  The revision already counts
 * them: a stream resumed meanwhile does not ask them again. */
typedef struct evbatch {
	struct evbatch *next;
	etcd_wev *evs; /* point into text */
	size_t n, done;
	uint64_t origin_ns;
	char *text;
} evbatch;

void evq_clear(etcd *e, view *v)
{
	while (v->evq) {
		evbatch *b = v->evq;
		v->evq = b->next;
		free(b->evs);
		free(b->text);
		free(b);
	}
	v->evq_tail = NULL;
	e->h->timer_close(&v->ev_timer);
}

static void on_ev_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	view *v = &e->cur;
	uint64_t deadline = uv_hrtime() + EV_SLICE_NS;
	size_t budget = EV_SLICE_MAX;
	while (v->evq && budget && uv_hrtime() <= deadline) {
		evbatch *b = v->evq;
		size_t k = b->n - b->done < budget ? b->n - b->done : budget;
		size_t did = apply_events(e, b->evs + b->done, k, b->origin_ns, deadline);
		b->done += did;
		budget -= did;
		if (b->done < b->n)
			break;
		v->evq = b->next;
		if (!v->evq)
			v->evq_tail = NULL;
		free(b->evs);
		free(b->text);
		free(b);
	}
	if (v->evq)
		uv_timer_start(t, on_ev_timer, 1, 0); /* 1 ms: after the loop polled */
	else if (e->note)
		disc_empty_check(e); /* keys came: the note goes */
}

/* Queues events (copied: they point into a line or a tree that goes). */
static void evq_push(etcd *e, const etcd_wev *evs, size_t n, uint64_t origin_ns)
{
	view *v = &e->cur;
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += evs[i].key_len + evs[i].value_len;
	evbatch *b = e->h->xcalloc(1, sizeof(*b));
	b->evs = e->h->xmalloc(n * sizeof(*b->evs));
	b->text = e->h->xmalloc(bytes + 1);
	b->n = n;
	b->origin_ns = origin_ns;
	char *p = b->text;
	for (size_t i = 0; i < n; i++) {
		b->evs[i] = evs[i];
		if (evs[i].key) {
			memcpy(p, evs[i].key, evs[i].key_len);
			b->evs[i].key = p;
			p += evs[i].key_len;
		}
		if (evs[i].value) {
			memcpy(p, evs[i].value, evs[i].value_len);
			b->evs[i].value = p;
			p += evs[i].value_len;
		}
	}
	if (v->evq_tail)
		v->evq_tail->next = b;
	else
		v->evq = b;
	v->evq_tail = b;
	if (!v->ev_timer)
		v->ev_timer = e->h->timer_new(e->ctx, e);
	if (!uv_is_active((uv_handle_t *)v->ev_timer))
		uv_timer_start(v->ev_timer, on_ev_timer, 0, 0);
}

/* One watch response's events: applied now for a slice (when none wait),
 * the rest queued. */
static void watch_events(etcd *e, const etcd_wev *evs, size_t n)
{
	uint64_t now = e->h->wall_ns();
	for (size_t i = 0; i < n; i++)
		if (evs[i].mod_rev > e->wrev)
			e->wrev = evs[i].mod_rev;
	e->h->metric_add(e->m_events, (double)n);
	size_t done = 0;
	if (!e->cur.evq) {
		done = apply_events(e, evs, n, now, uv_hrtime() + EV_SLICE_NS);
		if (done < n)
			e->h->log(e->ctx, REGENT_LOG_INFO,
			          "watch of %s/: a response of %zu events is applied over several loop "
			          "turns (%zu wait)",
			          e->prefix, n, n - done);
	}
	if (done < n)
		evq_push(e, evs + done, n - done, now);
	else if (e->note)
		disc_empty_check(e); /* keys came: the note goes */
}

#define WEV_KEEP 1024 /* events: watch_line's buffer is kept up to this (48 KiB) */

static int watch_line(void *arg, const char *data, size_t len)
{
	call *c = arg;
	etcd *e = c->e;
	if (len == 0)
		return 0;
	size_t nev;
	int64_t frev;
	/* the common case, no tree; the event buffer is kept for the next line
	 * (a fresh one per line was a large malloc, and glibc consolidates its
	 * fast bins on each), unless a big response grew it */
	bool scanned = etcd_scan_watch_buf(e->h, data, len, &e->wev, &e->wev_cap, &nev, &frev);
	if (scanned) {
		if (nev > 0)
			watch_events(e, e->wev, nev);
		else if (frev > e->wrev)
			e->wrev = frev; /* progress notification */
	}
	if (e->wev_cap > WEV_KEEP) {
		free(e->wev);
		e->wev = NULL;
		e->wev_cap = 0;
	}
	if (scanned)
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
		if (code == 14)
			e->watch_noleader = true;
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
			e->answered = true;
			comp_ok(e, COMP_DISC);
		}
		json_decref(j);
		return rc;
	}
	json_t *events = json_object_get(res, "events");
	if (json_array_size(events) > 0) {
		size_t njev;
		etcd_wev *jevs = etcd_json_events(e->h, events, &njev);
		watch_events(e, jevs, njev);
		free(jevs);
	} else if (hrev > e->wrev)
		e->wrev = hrev; /* progress notification */
	json_decref(j);
	return 0;
}

void watch_start(etcd *e)
{
	if (!have_token(e))
		return; /* kick() comes back */
	e->watch_created = e->watch_reread = e->watch_rotate = e->watch_noleader = false;
	free(e->watch_err);
	e->watch_err = NULL;
	json_t *b = json_pack("{s:{s:o,s:o,s:o,s:b}}", "create_request", "key", b64s(e, e->kprefix),
	                      "range_end", b64(e, e->kend, e->kend_len), "start_revision",
	                      jint64(e->wrev + 1), "progress_notify", 1);
	e->watch_t0 = e->h->now_ms();
	if (call_start(e, OP_WATCH, "/v3/watch", b, watch_line) < 0)
		disc_retry(e, e->h->backoff_next(&e->disc_bo));
}

void watch_done(etcd *e, call *c, resp *r)
{
	uint64_t up = e->h->now_ms() - e->watch_t0;
	e->h->metric_add(e->m_reconnects, 1);
	if (up >= STABLE_WATCH_MS)
		e->h->backoff_reset(&e->disc_bo);
	char d[512];
	if (e->watch_err)
		snprintf(d, sizeof(d), "%s", e->watch_err);
	else if (r->err || r->status != 200)
		describe(e, r, d, sizeof(d));
	else
		snprintf(d, sizeof(d), "%s closed the stream", e->eps[c->ep]);
	int fk = failure_kind(r);
	if (!e->watch_err && fk == F_AUTH)
		token_refused(e, c);
	if (r->err == -EFBIG && !e->watch_err) {
		/* An event too large for one line: a full read skips that key. */
		snprintf(d, sizeof(d), "a watch event from %s is larger than %zu bytes", e->eps[c->ep],
		         e->max_body);
		e->watch_reread = true;
	}
	if (e->watch_reread) {
		/* Compaction or cancel: the only way on is a full read. */
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s", d);
		e->dstate = D_IDLE;
		disc_retry(e, e->watch_created ? 1 : e->h->backoff_next(&e->disc_bo));
		return;
	}
	bool moved = false;
	if (e->watch_rotate || !e->watch_err)
		moved = rotate(e, c, d);
	resp nl = {.code = e->watch_noleader ? 14 : -1, .status = 200};
	uint64_t delay = retry_delay(e, &e->disc_bo, e->watch_noleader ? &nl : r, moved);
	comp_fail(e, COMP_DISC, REGENT_LOG_WARN,
	          "watch of %s/ lost (%s); resuming from revision %lld on %s", e->prefix, d,
	          (long long)e->wrev + 1, cur_ep(e));
	/* Stream loss: resume from the last revision seen. */
	e->dstate = D_WATCH;
	disc_retry(e, delay);
}

/* The watch was cancelled because its member failed a check: resume
 * from the last revision seen on the current endpoint, at once. */
void watch_moved(etcd *e, const char *why)
{
	e->h->metric_add(e->m_reconnects, 1);
	comp_fail(e, COMP_DISC, REGENT_LOG_WARN,
	          "watch of %s/ left its member (%s); resuming from revision %lld on %s", e->prefix,
	          why, (long long)e->wrev + 1, cur_ep(e));
	e->dstate = D_WATCH;
	disc_retry(e, 1);
}

void disc_kick(etcd *e)
{
	if (!e->want || e->stopping || uv_is_active((uv_handle_t *)e->disc_timer))
		return;
	if (e->dstate == D_IDLE) {
		if (have_token(e))
			range_start(e);
	} else if (e->dstate == D_WATCH && !busy(e, OP_WATCH)) {
		watch_start(e);
	}
}


/* ------------------------------------------------------------------ */
/* An empty prefix: a note, and a look for the seed's v2 keys          */
/* ------------------------------------------------------------------ */

static void set_note(etcd *e, char *note)
{
	free(e->note);
	e->note = note;
	health_refresh(e);
}

/* Leaves (keys, not directories) of a v2 listing, depth-first. */
static size_t v2_leaves(json_t *node)
{
	json_t *nodes = json_object_get(node, "nodes");
	if (!json_is_array(nodes))
		return json_is_true(json_object_get(node, "dir")) ? 0 : 1;
	size_t n = 0, i;
	json_t *c;
	json_array_foreach(nodes, i, c)
		n += v2_leaves(c);
	return n;
}

static void on_v2(void *arg, const regent_http_result *res)
{
	etcd *e = arg;
	e->v2req = NULL;
	if (e->stopping || !e->note || res->error || res->status != 200 || !res->body)
		return; /* no v2 (etcd 3.6, or 3.4 without --enable-v2): nothing to hint */
	json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
	json_t *top = json_object_get(j, "node");
	size_t n = json_is_object(top) ? v2_leaves(top) : 0;
	json_decref(j);
	if (!n)
		return;
	e->h->log(e->ctx, REGENT_LOG_WARN,
	          "%s/ is empty in etcd's v3 keyspace, but the same etcd holds %zu entr%s under it "
	          "in the v2 keyspace: they were written through the v2 API (the seed's "
	          "docker-register does), which v3 never sees; run a regent with [source docker] "
	          "on the backends first (docs/demo.md, moving from docker-register)",
	          e->prefix, n, n == 1 ? "y" : "ies");
	set_note(e, e->h->xasprintf("%s/ holds no key: nothing to route; the same etcd holds %zu v2 "
	                      "entr%s under it (written through the v2 API, which v3 never sees: "
	                      "see docs/demo.md)",
	                      e->prefix, n, n == 1 ? "y" : "ies"));
}

void disc_empty_cancel(etcd *e)
{
	if (e->v2req) {
		e->h->http_cancel(e->v2req);
		e->v2req = NULL;
	}
}

void disc_empty_check(etcd *e)
{
	bool empty = view_nkeys(&e->cur) == 0;
	if (!empty) {
		if (e->note) {
			e->h->log(e->ctx, REGENT_LOG_INFO, "%s/ holds keys again", e->prefix);
			disc_empty_cancel(e);
			set_note(e, NULL);
		}
		return;
	}
	if (e->note)
		return; /* said already */
	e->h->log(e->ctx, REGENT_LOG_WARN,
	          "%s/ holds no key at revision %lld: nothing to route (an empty fleet is legal; "
	          "check the prefix and that the backends run a regent writing to this etcd)",
	          e->prefix, (long long)e->wrev);
	set_note(e, e->h->xasprintf("%s/ holds no key: nothing to route", e->prefix));
	/* The seed wrote through v2: a GET of the prefix there tells.  A v2
	 * key is a path, so the prefix is used as it is (validated at load). */
	char *url = e->h->xasprintf("%s/v2/keys%s?recursive=true", cur_ep(e), e->prefix);
	regent_http_opts o = {
		.size = sizeof(o),
		.url = url,
		.ca_file = e->ca,
		.cert_file = e->cert,
		.key_file = e->key,
		.timeout_ms = e->timeout_ms,
		.on_done = on_v2,
		.arg = e,
		.max_body = 1 << 20,
	};
	int err = 0;
	e->v2req = e->h->http_request(e->ctx, &o, &err);
	free(url);
}
