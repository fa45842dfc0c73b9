/*
 * etcd_view.c - the etcd store's discovery view: every key under the
 * prefix (key -> decoded instance, grouped by service, the seed's
 * <prefix>/<svc>/port keys), built by a complete range read or changed by
 * watch events, and what is reported from it to the core (catalog_set
 * per service, catalog_sync_begin/end around a complete read).  A value
 * that is not an instance, or larger than max_value_size, is kept as a
 * bad key (warned once per revision) and never reported.
 *
 * Watch events only mark the keys they touched (per service); the touched
 * keys are reported together on the next loop turn (every event already
 * read joins them), one instance at a time (host->catalog_instance_set /
 * _remove, ABI 1.3: O(log n) each in the core), so a change costs
 * O(change), not O(service).  A service's port key, or a core older than
 * 1.3, reports the whole service (catalog_set, O(its instances)).  One
 * turn reports single instances for about PUB_SLICE_NS (the rest waits in
 * the dirty set), and after a turn that took C the next one waits
 * PUB_DUTY x C, so reporting takes at most 1/(PUB_DUTY+1) of the loop's
 * time, whatever the burst (a small report costs microseconds: no visible
 * delay).
 *
 * The decoded instances are the core's immutable, reference-counted
 * blocks (ABI 1.6): an instance reported without decoration (no port key
 * in its service) is handed as the block itself
 * (catalog_set_decoded / catalog_instance_set_decoded), and the catalog
 * keeps a reference instead of a copy; instance_free drops the view's.
 *
 * Owns: the views' keys, services and (its references to) the decoded
 * instances.
 */
#include "etcd_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void view_init(etcd *e, view *v)
{
	v->keys = (ktab){0};
	v->svcs = e->h->map_new();
}

static void kent_free(etcd *e, kent *k)
{
	if (k->inst)
		e->h->instance_free(k->inst);
	free(k);
}

/* A sane instance key's kent (kent.tail, key "") fits malloc's 64-byte
 * chunk (56 bytes usable). */
_Static_assert(offsetof(kent, key) + 1 <= 56, "a held-by-its-instance key is over 56 bytes");

/* An instance key's id (the decoded instance's: the key's tail, unescaped),
 * NULL for a port or bad key. */
static const char *kent_id(const kent *k)
{
	return k->inst ? k->inst->id : NULL;
}

/* ---- the key table ---- */

/* FNV-1a, the high bits folded into the low ones the table uses. */
static uint32_t key_hash(const char *key)
{
	uint64_t x = 1469598103934665603ull;
	for (const char *c = key; *c; c++)
		x = (x ^ (unsigned char)*c) * 1099511628211ull;
	x ^= x >> 29;
	return (uint32_t)(x ^ (x >> 32));
}

/* Whether k is key: its text, or for a key held by its instance (kent.tail)
 * prefix "/" service "/" id. */
static bool kent_is(const kent *k, const char *prefix, const char *key)
{
	if (!k->tail)
		return strcmp(k->key, key) == 0;
	size_t pl = strlen(prefix), sl = strlen(k->svc->name);
	return strncmp(key, prefix, pl) == 0 && key[pl] == '/' &&
	       strncmp(key + pl + 1, k->svc->name, sl) == 0 && key[pl + 1 + sl] == '/' &&
	       strcmp(key + pl + 1 + sl + 1, k->inst->id) == 0;
}

/* The cell holding key (hash h), or the empty cell where it would go
 * (cap > 0).  A key is read only when its hash matches. */
static size_t kt_slot(const ktab *t, const char *prefix, const char *key, uint32_t h)
{
	size_t mask = t->cap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask)
		if (!t->cell[i] || (t->hash[i] == h && kent_is(t->cell[i], prefix, key)))
			return i;
}

static kent *kt_get_h(const ktab *t, const char *prefix, const char *key, uint32_t h)
{
	return t->cap ? t->cell[kt_slot(t, prefix, key, h)] : NULL;
}

static kent *kt_get(const ktab *t, const char *prefix, const char *key)
{
	return t->cap ? kt_get_h(t, prefix, key, key_hash(key)) : NULL;
}

/* Adds k (its key is not in t; k->hash set).  O(1) average. */
static void kt_put(etcd *e, ktab *t, kent *k)
{
	if (4 * (t->n + 1) > 3 * t->cap) { /* load at most 3/4 */
		size_t cap = t->cap ? 2 * t->cap : 64, mask = cap - 1;
		ktab g = {e->h->xcalloc(cap, sizeof(kent *)), e->h->xmalloc(cap * sizeof(uint32_t)),
		          cap, t->n};
		for (size_t i = 0; i < t->cap; i++) {
			if (!t->cell[i])
				continue;
			size_t j = t->hash[i] & mask;
			while (g.cell[j])
				j = (j + 1) & mask;
			g.cell[j] = t->cell[i];
			g.hash[j] = t->hash[i];
		}
		free(t->cell);
		free(t->hash);
		*t = g;
	}
	size_t mask = t->cap - 1, i = k->hash & mask;
	while (t->cell[i])
		i = (i + 1) & mask;
	t->cell[i] = k;
	t->hash[i] = k->hash;
	t->n++;
}

/* Removes k (held by t), shifting back the entries of its cluster that
 * probed past it (no tombstones). */
static void kt_del(ktab *t, const kent *k)
{
	size_t mask = t->cap - 1, i = k->hash & mask;
	while (t->cell[i] != k)
		i = (i + 1) & mask;
	t->cell[i] = NULL;
	t->n--;
	for (size_t j = (i + 1) & mask; t->cell[j]; j = (j + 1) & mask) {
		size_t home = t->hash[j] & mask;
		/* it stays when its home lies cyclically in (i, j] */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			t->cell[i] = t->cell[j];
			t->hash[i] = t->hash[j];
			t->cell[j] = NULL;
			i = j;
		}
	}
}

/* A service touched by watch events and not reported yet: the whole of
 * it, or the keys put (their kents, in the order touched; a slot whose
 * kent went since is NULL) and the ids of the keys dropped (copied, each
 * NUL-terminated, one after the other).  No string map per key: a touched
 * kent knows its slot (kent.dix), a dropped one leaves its id here.
 * Dropped ids are reported before the kents put (see publish_keys). */
typedef struct dsvc {
	char *name;
	bool all;      /* report the whole service (its port key changed) */
	kent **live;
	size_t nlive, live_cap, live_pos; /* reported up to live_pos */
	char *gone;
	size_t gone_len, gone_cap, gone_pos; /* reported up to gone_pos */
} dsvc;

/* Forgets d's touched kents (they are reported whole, or the view goes). */
static void dsvc_release(dsvc *d)
{
	for (size_t i = d->live_pos; i < d->nlive; i++)
		if (d->live[i])
			d->live[i]->dix = 0;
	d->nlive = d->live_pos = 0;
}

static void dsvc_free(etcd *e, view *v, dsvc *d)
{
	dsvc_release(d);
	ksvc *s = v->svcs ? e->h->map_get(v->svcs, d->name) : NULL;
	if (s && s->dirty == d)
		s->dirty = NULL;
	free(d->live);
	free(d->gone);
	free(d->name);
	free(d);
}

static void dirty_free(etcd *e, view *v)
{
	if (!v->dirty)
		return;
	regent_map_iter it = {0};
	void *val;
	while (e->h->map_next(v->dirty, &it, NULL, &val))
		dsvc_free(e, v, val);
	e->h->map_free(v->dirty, NULL);
	v->dirty = NULL;
}

static void pub_schedule(etcd *e);

/* The touched set of service s of the current view (created). */
static dsvc *dsvc_of(etcd *e, ksvc *s)
{
	view *v = &e->cur;
	if (s->dirty)
		return s->dirty;
	if (!v->dirty)
		v->dirty = e->h->map_new();
	dsvc *d = e->h->map_get(v->dirty, s->name);
	if (!d) {
		d = e->h->xcalloc(1, sizeof(*d));
		d->name = e->h->xstrdup(s->name);
		e->h->map_put(v->dirty, d->name, d);
	}
	s->dirty = d;
	pub_schedule(e);
	return d;
}

/* Key k of the current view (of a service) was put: reported later. */
static void touch_put(etcd *e, kent *k)
{
	dsvc *d = dsvc_of(e, k->svc);
	if (k->is_port) {
		d->all = true;
	} else if (!d->all && !k->dix) {
		if (d->nlive == d->live_cap) {
			d->live_cap = d->live_cap ? 2 * d->live_cap : 16;
			d->live = e->h->xrealloc(d->live, d->live_cap * sizeof(*d->live));
		}
		d->live[d->nlive++] = k;
		k->dix = (uint32_t)d->nlive;
	}
}

/* Key k of the current view (of a service) goes: its slot is emptied and,
 * when `report`, its id reported removed. */
static void touch_drop(etcd *e, kent *k, bool report)
{
	dsvc *d = k->dix || report ? dsvc_of(e, k->svc) : NULL;
	if (k->dix) {
		d->live[k->dix - 1] = NULL;
		k->dix = 0;
	}
	if (!report)
		return;
	if (k->is_port) {
		d->all = true;
	} else if (!d->all) {
		const char *id = kent_id(k);
		size_t n = strlen(id) + 1;
		if (d->gone_len + n > d->gone_cap) {
			d->gone_cap = d->gone_cap ? 2 * d->gone_cap : 256;
			if (d->gone_cap < d->gone_len + n)
				d->gone_cap = d->gone_len + n;
			d->gone = e->h->xrealloc(d->gone, d->gone_cap);
		}
		memcpy(d->gone + d->gone_len, id, n);
		d->gone_len += n;
	}
}

void view_clear(etcd *e, view *v)
{
	evq_clear(e, v);
	dirty_free(e, v);
	e->h->timer_close(&v->pub_timer);
	v->pub_next_ns = 0;
	for (size_t i = 0; i < v->keys.cap; i++)
		if (v->keys.cell[i])
			kent_free(e, v->keys.cell[i]);
	free(v->keys.cell);
	free(v->keys.hash);
	v->keys = (ktab){0};
	if (!v->svcs)
		return;
	regent_map_iter it = {0};
	void *val;
	while (e->h->map_next(v->svcs, &it, NULL, &val)) {
		ksvc *s = val;
		free(s->name);
		free(s);
	}
	e->h->map_free(v->svcs, NULL);
	v->svcs = NULL;
}

/* Unlinks and frees one key (and its service when that was its last);
 * in the current view, a key of a service is reported removed when
 * `report` (see touch_drop). */
static void view_drop(etcd *e, view *v, kent *k, bool report)
{
	if (v == &e->cur && k->svc)
		touch_drop(e, k, report);
	kt_del(&v->keys, k);
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
			e->h->map_del(v->svcs, s->name);
			free(s->name);
			free(s);
		}
	}
	kent_free(e, k);
}

/* Whether key is held as it is (no byte needs an escape in its printable
 * form, see view_put). */
static bool key_plain(const char *key, size_t klen)
{
	for (size_t i = 0; i < klen; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c < 0x20 || c >= 0x7f || c == '\\')
			return false;
	}
	return true;
}

/* Puts one key/value into v; `old` (may be NULL) is the view that was
 * reported before, so a bad value seen unchanged is not warned again.
 * Keys are held in a printable form (\xNN escapes), which is the key
 * itself for every sane key and still one-to-one for the others.  A sane
 * instance key is held by its decoded instance, whose id is the key's tail
 * (kent.tail: the prefix and the service are known, the id is inst->id),
 * any other key whole in its kent (nothing else allocated but the decoded
 * instance).  At 10,000 keys such as
 * /fleet/fleet0001/fleet-node/i000001/8000 that is 64-byte chunks instead
 * of 96 (the tail held too) or 128 (the whole key): -0.3 MB each step.
 * Returns whether a service was touched. */
bool view_put(etcd *e, view *v, const view *old, const char *key, size_t klen, const char *val,
              size_t vlen, int64_t mod_rev)
{
	bool plain = key_plain(key, klen); /* key is NUL-terminated (see apply_events) */
	char *esc = plain ? NULL : etcd_printable(e->h, key, klen, klen);
	const char *kp = plain ? key : esc;
	uint32_t hash = key_hash(kp);
	kent *prevk = kt_get_h(&v->keys, e->prefix, kp, hash);
	bool touched = prevk && prevk->svc;
	const kent *seen = old && old->keys.cap ? kt_get_h(&old->keys, e->prefix, kp, hash) : NULL;
	bool quiet = seen && seen->bad && seen->mod_rev == mod_rev;
	size_t so, sl, io;
	etcd_key_kind kind = etcd_split_key_at(key, klen, e->prefix, &so, &sl, &io);
	char svc[64] = ""; /* a valid name has at most 63 bytes */
	if (kind != ETCD_KEY_BAD && sl < sizeof(svc))
		memcpy(svc, key + so, sl), svc[sl] = '\0';
	/* the id: the key's tail (sane key), else a copy */
	char *id_copy = kind == ETCD_KEY_INSTANCE && !plain ? e->h->xstrndup(key + io, klen - io) : NULL;
	const char *id = kind != ETCD_KEY_INSTANCE ? NULL : plain ? key + io : id_copy;
	const char *why = NULL;
	int port = 0;
	regent_instance *inst = NULL;
	if (kind == ETCD_KEY_BAD) {
		why = "not of the form <prefix>/<service>/<id>";
	} else if (sl >= sizeof(svc) || !e->h->valid_service(svc)) {
		why = "invalid service name (allowed: [A-Za-z0-9][A-Za-z0-9._-]{0,62})";
	} else if (vlen > e->max_value) {
		why = "the value is larger than max_value_size";
	} else if (kind == ETCD_KEY_PORT) {
		port = etcd_parse_port(val, vlen);
		if (!port)
			why = "the listen port is not a number in 1..65535";
	} else {
		int rc = e->h->instance_decode(val, vlen, svc, id, &inst);
		if (rc != 0 || !inst) {
			inst = NULL;
			why = rc == -E2BIG ? "over a per-instance limit (64 KiB of JSON, 64 tags, 64 meta pairs)"
			                   : "the value is neither an instance's JSON nor ip:port (or has an "
			                     "invalid field)";
		}
	}
	/* held by its instance, whose id is the key's tail: a sane instance
	 * key with a service (a bad one whole) */
	bool tail = !why && plain && kind == ETCD_KEY_INSTANCE;
	const char *text = tail ? "" : kp;
	size_t tl = strlen(text);
	/* the fixed part's padding holds the text's first bytes (never less
	 * than the struct) */
	size_t size = offsetof(kent, key) + tl + 1;
	kent *k = e->h->xcalloc(1, size > sizeof(kent) ? size : sizeof(kent));
	memcpy(k->key, text, tl + 1);
	k->tail = tail;
	k->inst = inst;
	k->mod_rev = mod_rev;
	k->hash = hash;
	if (prevk) /* the same key: the same service and id; its report is k's now, unless k is bad */
		view_drop(e, v, prevk, why != NULL);
	kt_put(e, &v->keys, k);
	if (why) {
		k->bad = true;
		if (!quiet) {
			e->h->metric_add(e->m_skipped, 1);
			char *vp = etcd_printable(e->h, val, vlen, 80);
			e->h->log(e->ctx, REGENT_LOG_WARN,
			          "skipped key %.300s (mod revision %lld): %s; value (%zu bytes): \"%s\"",
			          kp, (long long)mod_rev, why, vlen, vp);
			free(vp);
		}
		free(id_copy);
		free(esc);
		return touched;
	}
	free(esc);
	ksvc *s = e->h->map_get(v->svcs, svc);
	if (!s) {
		s = e->h->xcalloc(1, sizeof(*s));
		s->name = e->h->xstrdup(svc);
		e->h->map_put(v->svcs, s->name, s);
	}
	k->svc = s;
	free(id_copy); /* the instance holds its own copy (kent_id) */
	k->is_port = kind == ETCD_KEY_PORT;
	if (k->is_port)
		s->port = port;
	k->next = s->head;
	if (s->head)
		s->head->prev = k;
	s->head = k;
	s->nkeys++;
	if (v == &e->cur)
		touch_put(e, k);
	return true;
}

/* Removes a key; returns whether a service was touched. */
bool view_del(etcd *e, view *v, const char *key, size_t klen)
{
	/* The key as held (printable): the decoded key itself, NUL-terminated,
	 * unless a byte needs an escape. */
	char *kp = key_plain(key, klen) ? NULL : etcd_printable(e->h, key, klen, klen);
	kent *k = kt_get(&v->keys, e->prefix, kp ? kp : key);
	free(kp);
	if (!k)
		return false;
	bool touched = k->svc != NULL;
	view_drop(e, v, k, true);
	return touched;
}

/* The instance of key k as reported, in *out (borrowing k's strings): the
 * seed's <prefix>/<svc>/port as meta on every instance, unless the
 * instance says otherwise itself.  Returns the meta array to free (or
 * NULL). */
static regent_kv *decorate(const etcd *e, const ksvc *s, const kent *k, const char *portbuf,
                           regent_instance *out)
{
	*out = *k->inst;
	out->service = s->name;
	if (!s->port)
		return NULL;
	for (size_t m = 0; m < k->inst->nmeta; m++)
		if (strcmp(k->inst->meta[m].key, META_LISTEN_PORT) == 0)
			return NULL;
	regent_kv *meta = e->h->xcalloc(k->inst->nmeta + 1, sizeof(regent_kv));
	if (k->inst->nmeta)
		memcpy(meta, k->inst->meta, k->inst->nmeta * sizeof(regent_kv));
	meta[k->inst->nmeta].key = META_LISTEN_PORT;
	meta[k->inst->nmeta].value = portbuf;
	out->meta = meta;
	out->nmeta = k->inst->nmeta + 1;
	return meta;
}

/* Whether the core has the ABI 1.3 entries (instance by instance). */
static bool has_instance_ops(const etcd *e)
{
	return e->h->size >= offsetof(regent_host, catalog_instance_remove) +
	                         sizeof(e->h->catalog_instance_remove);
}

/* Whether the core shares decoded instances (ABI 1.6) instead of copying
 * them: then the catalog and this view hold each instance once. */
static bool has_shared_ops(const etcd *e)
{
	return REGENT_HOST_HAS(e->h, catalog_instance_set_decoded);
}

/* Reports the touched keys of one service, instance by instance, until
 * `deadline` (uv_hrtime): the ids of the keys dropped first, then the
 * keys put (a key dropped after it was put is in the first part only, a
 * key put again after it was dropped in both: its removal goes first).
 * Returns false when keys are left (they stay in d), true when d is done. */
static bool publish_keys(etcd *e, dsvc *d, uint64_t deadline)
{
	ksvc *s = e->h->map_get(e->cur.svcs, d->name);
	if (!s || d->all || !has_instance_ops(e)) {
		publish_service(e, d->name);
		return true;
	}
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%d", s->port);
	size_t set = 0, removed = 0, n = 0;
	bool done = true;
	while (d->gone_pos < d->gone_len) {
		if (++n % 16 == 0 && uv_hrtime() > deadline) {
			done = false;
			goto out;
		}
		const char *id = d->gone + d->gone_pos;
		d->gone_pos += strlen(id) + 1;
		e->h->catalog_instance_remove(e->ctx, d->name, id);
		removed++;
	}
	d->gone_len = d->gone_pos = 0;
	while (d->live_pos < d->nlive) {
		if (++n % 16 == 0 && uv_hrtime() > deadline) {
			done = false;
			goto out;
		}
		kent *k = d->live[d->live_pos++];
		if (!k)
			continue; /* dropped since: its id is reported above */
		k->dix = 0;
		int rc = -1;
		if (k->inst) {
			regent_instance one;
			regent_kv *meta = decorate(e, s, k, portbuf, &one);
			/* undecorated: the catalog shares the decoded block (ABI 1.6) */
			if (!meta && has_shared_ops(e))
				rc = e->h->catalog_instance_set_decoded(e->ctx, k->inst);
			else
				rc = e->h->catalog_instance_set(e->ctx, &one);
			free(meta);
		}
		if (rc == 0) {
			set++;
		} else { /* refused by the core: not in the catalog */
			e->h->catalog_instance_remove(e->ctx, d->name, kent_id(k));
			removed++;
		}
	}
	d->nlive = d->live_pos = 0;
out:
	if (e->h->log_enabled(e->ctx, REGENT_LOG_DEBUG))
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "service %s: %zu instance%s set, %zu removed%s%s",
		          d->name, set, set == 1 ? "" : "s", removed, s->port ? ", listen port " : "",
		          s->port ? portbuf : "");
	return done;
}

/* Reports one service of the current view to the core. */
void publish_service(etcd *e, const char *name)
{
	ksvc *s = e->h->map_get(e->cur.svcs, name);
	if (!s) {
		e->h->catalog_remove(e->ctx, name);
		e->h->log(e->ctx, REGENT_LOG_DEBUG, "service %s: gone from %s/", name, e->prefix);
		return;
	}
	size_t n = 0;
	for (kent *k = s->head; k; k = k->next)
		n += k->inst != NULL;
	if (!s->port && has_shared_ops(e)) {
		/* nothing to decorate: the decoded blocks themselves, shared */
		const regent_instance **list = e->h->xcalloc(n, sizeof(*list));
		size_t i = 0;
		for (kent *k = s->head; k; k = k->next)
			if (k->inst)
				list[i++] = k->inst;
		e->h->catalog_set_decoded(e->ctx, name, list, n);
		free(list);
		if (e->h->log_enabled(e->ctx, REGENT_LOG_DEBUG))
			e->h->log(e->ctx, REGENT_LOG_DEBUG, "service %s: %zu instance%s", name, n,
			          n == 1 ? "" : "s");
		return;
	}
	regent_instance *copies = e->h->xcalloc(n, sizeof(*copies));
	const regent_instance **list = e->h->xcalloc(n, sizeof(*list));
	regent_kv **metas = e->h->xcalloc(n, sizeof(*metas));
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%d", s->port);
	size_t i = 0;
	for (kent *k = s->head; k; k = k->next) {
		if (!k->inst)
			continue;
		metas[i] = decorate(e, s, k, portbuf, &copies[i]);
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

#define PUB_DUTY 2                /* reporting takes at most 1/3 of the loop's time */
#define PUB_SLICE_NS 10000000ull  /* single-instance reports per turn: about 10 ms */

static void on_pub_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	view *v = &e->cur;
	regent_map *d = v->dirty;
	if (!d)
		return;
	uint64_t t0 = uv_hrtime();
	regent_map_iter it = {0};
	void *val;
	while (e->h->map_next(d, &it, NULL, &val)) {
		dsvc *ds = val;
		if (!e->stopping && !publish_keys(e, ds, t0 + PUB_SLICE_NS))
			break; /* the slice is spent: the rest on a later turn */
		e->h->map_del(d, ds->name);
		dsvc_free(e, v, ds);
		if (uv_hrtime() > t0 + PUB_SLICE_NS)
			break;
	}
	uint64_t t1 = uv_hrtime();
	v->pub_next_ns = t1 + PUB_DUTY * (t1 - t0);
	if (e->h->map_size(d) == 0) {
		e->h->map_free(d, NULL);
		v->dirty = NULL;
	} else {
		uv_timer_start(v->pub_timer, on_pub_timer, PUB_DUTY * (t1 - t0) / 1000000, 0);
	}
}

/* Reports the touched services on the next loop turn, or later when the
 * last report was costly. */
static void pub_schedule(etcd *e)
{
	view *v = &e->cur;
	if (!v->pub_timer)
		v->pub_timer = e->h->timer_new(e->ctx, e);
	if (uv_is_active((uv_handle_t *)v->pub_timer))
		return;
	uint64_t now = uv_hrtime();
	uint64_t wait_ms = v->pub_next_ns > now ? (v->pub_next_ns - now) / 1000000 : 0;
	uv_timer_start(v->pub_timer, on_pub_timer, wait_ms, 0);
}

void publish_all(etcd *e)
{
	e->h->catalog_sync_begin(e->ctx);
	regent_map_iter it = {0};
	const char *name;
	while (e->h->map_next(e->cur.svcs, &it, &name, NULL))
		publish_service(e, name);
	e->h->catalog_sync_end(e->ctx);
}
