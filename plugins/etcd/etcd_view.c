/*
 * etcd_view.c - the etcd store's discovery view: every key under the
 * prefix (key -> decoded instance, grouped by service, the seed's
 * <prefix>/<svc>/port keys), built by a complete range read or changed by
 * watch events, and what is reported from it to the core (catalog_set
 * per service, catalog_sync_begin/end around a complete read).  A value
 * that is not an instance, or larger than max_value_size, is kept as a
 * bad key (warned once per revision) and never reported.
 *
 * Watch events only mark services touched; the touched services are
 * reported together on the next loop turn (every event already read
 * joins them).  Reporting a service costs O(its instances), so a burst of
 * events into one huge service would cost O(events x instances): after a
 * report that took C, the next one waits PUB_DUTY x C, so reporting takes
 * at most 1/(PUB_DUTY+1) of the loop's time, whatever the burst (a small
 * service's report costs microseconds: no visible delay).
 *
 * Owns: the views' keys, services and decoded instances.
 */
#include "etcd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void view_init(view *v)
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

static void dirty_free(view *v)
{
	if (!v->dirty)
		return;
	esmap_iter it = {0};
	void *val;
	while (esmap_next(v->dirty, &it, NULL, &val))
		free(val);
	esmap_free(v->dirty);
	v->dirty = NULL;
}

void view_clear(etcd *e, view *v)
{
	dirty_free(v);
	timer_close(&v->pub_timer);
	v->pub_next_ns = 0;
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
char *view_put(etcd *e, view *v, const view *old, const char *key, size_t klen,
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
	} else if (vlen > e->max_value) {
		why = "the value is larger than max_value_size";
	} else if (kind == ETCD_KEY_PORT) {
		port = etcd_parse_port(val, vlen);
		if (!port)
			why = "the listen port is not a number in 1..65535";
	} else {
		int rc = e->h->instance_decode(val, vlen, svc, id, &k->inst);
		if (rc != 0 || !k->inst) {
			k->inst = NULL;
			why = rc == -E2BIG ? "over a per-instance limit (64 KiB of JSON, 64 tags, 64 meta pairs)"
			                   : "the value is neither an instance's JSON nor ip:port (or has an "
			                     "invalid field)";
		}
	}
	if (why) {
		k->bad = true;
		if (!quiet) {
			e->h->metric_add(e->m_skipped, 1);
			char *vp = etcd_printable(val, vlen, 80);
			e->h->log(e->ctx, REGENT_LOG_WARN,
			          "skipped key %.300s (mod revision %lld): %s; value (%zu bytes): \"%s\"",
			          kp, (long long)mod_rev, why, vlen, vp);
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
char *view_del(etcd *e, view *v, const char *key, size_t klen)
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
void publish_service(etcd *e, const char *name)
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

#define PUB_DUTY 10

static void on_pub_timer(uv_timer_t *t)
{
	etcd *e = t->data;
	view *v = &e->cur;
	esmap *d = v->dirty;
	v->dirty = NULL;
	if (!d)
		return;
	uint64_t t0 = uv_hrtime();
	esmap_iter it = {0};
	void *val;
	while (esmap_next(d, &it, NULL, &val)) {
		if (!e->stopping)
			publish_service(e, val);
		free(val);
	}
	esmap_free(d);
	uint64_t t1 = uv_hrtime();
	v->pub_next_ns = t1 + PUB_DUTY * (t1 - t0);
}

void view_touch(etcd *e, char *name)
{
	view *v = &e->cur;
	if (!v->dirty)
		v->dirty = esmap_new();
	if (esmap_get(v->dirty, name))
		free(name);
	else
		esmap_put(v->dirty, name, name);
	if (!v->pub_timer)
		v->pub_timer = timer_new(e);
	if (timer_active(v->pub_timer))
		return;
	uint64_t now = uv_hrtime();
	uint64_t wait_ms = v->pub_next_ns > now ? (v->pub_next_ns - now) / 1000000 : 0;
	uv_timer_start(v->pub_timer, on_pub_timer, wait_ms, 0);
}

void publish_all(etcd *e)
{
	e->h->catalog_sync_begin(e->ctx);
	esmap_iter it = {0};
	const char *name;
	while (esmap_next(e->cur.svcs, &it, &name, NULL))
		publish_service(e, name);
	e->h->catalog_sync_end(e->ctx);
}
