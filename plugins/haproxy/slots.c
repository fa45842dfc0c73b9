/* slots.c - the haproxy sink's routed instances and server slots, kept up
 * to date per change (model.h): which instances of a service are routed
 * (the first HX_MAX_INSTANCES valid ones by id: a prefix of the catalog's
 * sorted list, bounded by an id), the counts of their ports, and which
 * instance sits in which slot (a table by instance id, a min-heap of free
 * slots: live ones, the lowest indices, first).
 *
 * A change costs O(k log n) for k changed instances of n: the old and new
 * lists are compared by pointer (an instance unchanged between two
 * snapshots is the same pointer: core/catalog.c shares them), blocks of
 * equal pointers skipped with memcmp; only the changed instances are
 * decoded, the prefix's bound moves by binary search, slots are found by
 * id in O(1).  The first computation of a service (or after its state was
 * lost) walks its list once.
 *
 * It also keeps the dirty lists the runtime path reads instead of walking
 * every slot: a queue of slots that may differ from what haproxy has, the
 * slots draining, and the services whose wanted shape is not installed
 * (model.h). */
#include "model.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 16,000 of them at 10,000 instances (slots = 16): 0.9 MB at this size,
 * 1.0 MB at 64 bytes (drain_since in 64 bits), 1.28 MB at 80 (a view's
 * state and weight share 16 bits). */
_Static_assert(sizeof(slot) == 48, "a slot is 48 bytes");

static size_t id_hash(const char *s)
{
	uint64_t x = 1469598103934665603ull;
	for (; *s; s++)
		x = (x ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)x;
}

/* ------------------------------------------------------------------ */
/* Instance id -> slot                                                */
/* ------------------------------------------------------------------ */

static void idt_insert(uint32_t *t, size_t cap, const svc *v, size_t i)
{
	size_t h = id_hash(v->slots[i].id) & (cap - 1);
	while (t[h])
		h = (h + 1) & (cap - 1);
	t[h] = (uint32_t)(i + 1); /* i < HX_MAX_SLOTS */
}

static void idt_rebuild(svc *v)
{
	size_t cap = 16;
	while (4 * v->nids > 3 * cap) /* filled to 3/4 at most */
		cap *= 2;
	free(v->idt);
	v->idt = v->h->xcalloc(cap, sizeof(*v->idt));
	v->idtcap = cap;
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].id)
			idt_insert(v->idt, cap, v, i);
}

/* Slot i has just taken an id. */
static void idt_add(svc *v, size_t i)
{
	v->nids++;
	if (4 * v->nids > 3 * v->idtcap)
		idt_rebuild(v); /* finds slot i too */
	else
		idt_insert(v->idt, v->idtcap, v, i);
}

/* Slot i is about to lose its id: backward-shift deletion. */
static void idt_del(svc *v, size_t i)
{
	size_t mask = v->idtcap - 1, j;
	if (!v->idtcap)
		return;
	for (j = id_hash(v->slots[i].id) & mask; v->idt[j] && v->idt[j] != i + 1; j = (j + 1) & mask)
		;
	if (!v->idt[j])
		return;
	v->idt[j] = 0;
	v->nids--;
	for (size_t k = (j + 1) & mask; v->idt[k]; k = (k + 1) & mask) {
		size_t h = id_hash(v->slots[v->idt[k] - 1].id) & mask;
		bool stays = j <= k ? (j < h && h <= k) : (j < h || h <= k);
		if (!stays) {
			v->idt[j] = v->idt[k];
			v->idt[k] = 0;
			j = k;
		}
	}
}

slot *hx_slot_find(svc *v, const char *id)
{
	if (!v->idtcap)
		return NULL;
	size_t mask = v->idtcap - 1;
	for (size_t h = id_hash(id) & mask; v->idt[h]; h = (h + 1) & mask) {
		slot *sl = &v->slots[v->idt[h] - 1];
		if (strcmp(sl->id, id) == 0)
			return sl;
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Free slots: a min-heap of indices, checked when taken              */
/* ------------------------------------------------------------------ */

static bool slot_is_free(const svc *v, size_t i)
{
	return i < v->nslots && v->slots[i].st == ST_FREE && !v->slots[i].id;
}

static void fh_push(svc *v, size_t i)
{
	if (v->nfh == v->fhcap) {
		v->fhcap = v->fhcap ? 2 * v->fhcap : 16;
		v->fh = v->h->xrealloc(v->fh, v->fhcap * sizeof(*v->fh));
	}
	size_t k = v->nfh++;
	while (k && v->fh[(k - 1) / 2] > i) {
		v->fh[k] = v->fh[(k - 1) / 2];
		k = (k - 1) / 2;
	}
	v->fh[k] = (uint32_t)i;
}

static size_t fh_pop(svc *v)
{
	uint32_t top = v->fh[0], last = v->fh[--v->nfh];
	size_t k = 0;
	for (;;) {
		size_t c = 2 * k + 1;
		if (c >= v->nfh)
			break;
		if (c + 1 < v->nfh && v->fh[c + 1] < v->fh[c])
			c++;
		if (v->fh[c] >= last)
			break;
		v->fh[k] = v->fh[c];
		k = c;
	}
	if (v->nfh)
		v->fh[k] = last;
	return top;
}

/* The lowest free slot, or SIZE_MAX.  Stale entries (taken since) are
 * dropped on the way; a heap grown well past the slots is rebuilt. */
static size_t fh_take(svc *v)
{
	if (v->nfh > 2 * v->nslots + 64) {
		v->nfh = 0;
		for (size_t i = 0; i < v->nslots; i++)
			if (slot_is_free(v, i))
				fh_push(v, i);
	}
	while (v->nfh) {
		size_t i = fh_pop(v);
		if (slot_is_free(v, i))
			return i;
	}
	return SIZE_MAX;
}

/* ------------------------------------------------------------------ */
/* Dirty lists                                                        */
/* ------------------------------------------------------------------ */

static void q_link(hx_model *m, svc *v)
{
	if (v->qlinked)
		return;
	v->qlinked = true;
	v->qprev = NULL;
	v->qnext = m->qhead;
	if (m->qhead)
		m->qhead->qprev = v;
	m->qhead = v;
}

void hx_svc_unqueue(hx_model *m, svc *v)
{
	if (!v->qlinked)
		return;
	if (v->qprev)
		v->qprev->qnext = v->qnext;
	else
		m->qhead = v->qnext;
	if (v->qnext)
		v->qnext->qprev = v->qprev;
	v->qprev = v->qnext = NULL;
	v->qlinked = false;
}

static void q_push(const regent_host *h, uint32_t **a, uint32_t *n, uint32_t *cap, size_t i)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 8;
		*a = h->xrealloc(*a, *cap * sizeof(**a));
	}
	(*a)[(*n)++] = (uint32_t)i;
}

void hx_slot_dirty(hx_model *m, svc *v, size_t i)
{
	if (i >= v->nslots || v->slots[i].rq)
		return;
	v->slots[i].rq = true;
	q_push(v->h, &v->rq, &v->nrq, &v->rqcap, i);
	q_link(m, v);
}

void hx_svc_dirty_all(hx_model *m, svc *v)
{
	for (size_t i = 0; i < v->nslots; i++)
		hx_slot_dirty(m, v, i);
}

void hx_slot_set_st(hx_model *m, svc *v, size_t i, slot_state st)
{
	slot *sl = &v->slots[i];
	if (sl->st == st)
		return;
	if (sl->st == ST_DRAIN)
		m->ndrain--;
	if (st == ST_DRAIN) {
		m->ndrain++;
		if (!sl->dq) {
			sl->dq = true;
			q_push(v->h, &v->dq, &v->ndq, &v->dqcap, i);
			q_link(m, v);
		}
	}
	sl->st = st;
	hx_slot_dirty(m, v, i);
}

/* Both lists empty: off the active list, and their room goes too (a
 * cold start or a reload queues every slot, and the room each service
 * kept at that mark was 64 KB at 1,000 services; a change then costs a
 * malloc of 32 bytes and its free, ~0.1 us). */
static void q_maybe_unlink(hx_model *m, svc *v)
{
	if (v->nrq || v->ndq)
		return;
	hx_svc_unqueue(m, v);
	free(v->rq);
	v->rq = NULL;
	v->rqcap = 0;
	free(v->dq);
	v->dq = NULL;
	v->dqcap = 0;
}

void hx_rq_filter(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg)
{
	hx_rq_filter_until(m, v, keep, arg, NULL);
}

void hx_rq_filter_until(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg,
                        const bool *stop)
{
	size_t n = 0, k = 0;
	for (; k < v->nrq && !(stop && *stop); k++) {
		size_t i = v->rq[k];
		if (i < v->nslots && v->slots[i].rq && keep(arg, v, i))
			v->rq[n++] = (uint32_t)i;
		else if (i < v->nslots)
			v->slots[i].rq = false;
	}
	if (k < v->nrq && n < k) /* stopped: the rest stays as it is */
		memmove(v->rq + n, v->rq + k, (v->nrq - k) * sizeof(*v->rq));
	v->nrq = n + (v->nrq - k);
	q_maybe_unlink(m, v);
}

void hx_dq_filter(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg)
{
	size_t n = 0;
	for (size_t k = 0; k < v->ndq; k++) {
		size_t i = v->dq[k];
		if (i < v->nslots && v->slots[i].dq && v->slots[i].st == ST_DRAIN &&
		    (!keep || keep(arg, v, i)))
			v->dq[n++] = (uint32_t)i;
		else if (i < v->nslots)
			v->slots[i].dq = false;
	}
	v->ndq = n;
	q_maybe_unlink(m, v);
}

bool hx_shape_eq(const shape *a, const shape *b)
{
	if (!a->listen || !b->listen)
		return !a->listen && !b->listen;
	return strcmp(a->listen, b->listen) == 0 &&
	       (a->srvopts == b->srvopts ||
	        (a->srvopts && b->srvopts && strcmp(a->srvopts, b->srvopts) == 0)) &&
	       a->nslots == b->nslots;
}

void hx_svc_shape_sync(hx_model *m, svc *v)
{
	/* haproxy's descriptors (no strict-limits: the listener only): the
	 * wanted section's, or, through the startup grace, the slots of a
	 * service an earlier run's file gave it and the catalog has not
	 * routed yet (haproxy may run them; counted from hx_model_recovered,
	 * so that the first services computed after a restart do not take
	 * the room those hold) */
	bool counted = v->want.listen || (v->recovered && !m->grace_over);
	size_t nslots = v->want.listen ? v->want.nslots : v->nslots;
	size_t fdn = counted ? (m->fd_loose ? 1 : nslots + 1) : 0;
	m->fd_used = m->fd_used - v->fdn + fdn;
	v->fdn = fdn;
	/* A closed listener (svc.shut) that is wanted again needs the reload. */
	bool d = !hx_shape_eq(&v->want, &v->run) || (v->shut && v->want.listen);
	if (d == v->sdiff)
		return;
	v->sdiff = d;
	if (d)
		m->nsdiff++;
	else
		m->nsdiff--;
}

/* ------------------------------------------------------------------ */
/* Slots                                                              */
/* ------------------------------------------------------------------ */

void hx_svc_grow(hx_model *m, svc *v, size_t n)
{
	if (n <= v->nslots)
		return;
	if (n > v->cap) {
		size_t cap = v->cap ? v->cap : 8;
		while (cap < n)
			cap *= 2;
		v->slots = v->h->xrealloc(v->slots, cap * sizeof(*v->slots));
		v->cap = cap;
	}
	memset(v->slots + v->nslots, 0, (n - v->nslots) * sizeof(*v->slots));
	size_t old = v->nslots;
	v->nslots = n;
	for (size_t i = old; i < n; i++)
		fh_push(v, i);
	hx_svc_moved(m, v);
}

/* The count sits before the text, in the same allocation: 4 + 25 bytes
 * for a 24-byte id fit malloc's 32-byte chunk as a plain copy does. */
typedef struct hx_cstr {
	uint32_t refs;
	char text[];
} hx_cstr;

char *hx_cstr_new(const regent_host *h, const char *id)
{
	if (!id)
		return NULL;
	size_t n = strlen(id) + 1;
	hx_cstr *c = h->xcalloc(1, sizeof(*c) + n); /* the model's helpers: xcalloc, xrealloc */
	c->refs = 1;
	memcpy(c->text, id, n);
	return c->text;
}

char *hx_cstr_ref(char *id)
{
	if (id)
		((hx_cstr *)(void *)(id - offsetof(hx_cstr, text)))->refs++;
	return id;
}

void hx_cstr_put(char *id)
{
	if (!id)
		return;
	hx_cstr *c = (hx_cstr *)(void *)(id - offsetof(hx_cstr, text));
	if (--c->refs == 0)
		free(c);
}

static void slot_set_id(hx_model *m, svc *v, size_t i, const char *id)
{
	v->slots[i].id = hx_cstr_new(v->h, id);
	v->slots[i].rdirty = true;
	v->slots[i].pend_id = v->slots[i].file_id = false;
	idt_add(v, i);
	if (i + 1 > v->hi)
		v->hi = i + 1;
	hx_svc_moved(m, v);
}

void hx_slot_take(hx_model *m, svc *v, size_t i, const char *id)
{
	if (i >= v->nslots || v->slots[i].id)
		return;
	slot_set_id(m, v, i, id);
	hx_slot_dirty(m, v, i);
	m->gen++;
}

void hx_slot_free_id(hx_model *m, svc *v, size_t i)
{
	slot *sl = &v->slots[i];
	if (sl->id) {
		idt_del(v, i);
		hx_cstr_put(sl->id);
		sl->id = NULL;
	}
	hx_slot_set_st(m, v, i, ST_FREE);
	hx_slot_dirty(m, v, i);
	sl->rdirty = true;
	fh_push(v, i);
	hx_svc_moved(m, v);
	m->gen++;
}

void hx_svc_slots_free(svc *v)
{
	for (size_t i = 0; i < v->nslots; i++)
		hx_cstr_put(v->slots[i].id);
	free(v->slots);
	free(v->rq);
	free(v->dq);
	free(v->idt);
	free(v->fh);
	free(v->bound);
	free(v->sport.keys);
	free(v->sport.cnt);
	free(v->mport.keys);
	free(v->mport.cnt);
}

/* An instance leaves its slot: drained where haproxy runs it, else free at
 * once. */
static void leave(hx_model *m, svc *v, size_t i, uint64_t now)
{
	slot *sl = &v->slots[i];
	if (hx_slot_live(v, i) && sl->ap.st != AP_MAINT) {
		if (sl->st != ST_DRAIN) {
			hx_slot_set_st(m, v, i, ST_DRAIN);
			sl->drain_since = (uint32_t)now;
			sl->rdirty = true;
			hx_svc_moved(m, v);
		}
	} else {
		hx_slot_free_id(m, v, i);
	}
}

/* The instance's meta "weight" (0-256, e.g. from the docker label
 * regent.weight) + 1, or 0 when it has none or it is not such a number. */
static uint16_t meta_weight(const regent_instance *in)
{
	for (size_t i = 0; i < in->nmeta; i++) {
		if (strcmp(in->meta[i].key, "weight") != 0)
			continue;
		const char *v = in->meta[i].value;
		char *end;
		long w = v && v[0] >= '0' && v[0] <= '9' ? strtol(v, &end, 10) : -1;
		return w >= 0 && w <= 256 && *end == '\0' ? (uint16_t)(w + 1) : 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Port counts                                                        */
/* ------------------------------------------------------------------ */

static void pc_clear(port_count *pc)
{
	free(pc->keys);
	free(pc->cnt);
	memset(pc, 0, sizeof(*pc));
}

static void pc_rescan(port_count *pc)
{
	pc->best = 0;
	pc->best_n = 0;
	for (size_t i = 0; i < pc->cap; i++) {
		long p = (long)pc->keys[i] - 1;
		if (pc->keys[i] && pc->cnt[i] &&
		    (pc->cnt[i] > pc->best_n || (pc->cnt[i] == pc->best_n && p < pc->best))) {
			pc->best = p;
			pc->best_n = pc->cnt[i];
		}
	}
}

/* Adds d (+1 or -1) to port's count (0: not counted).  O(1), except when
 * the most common port loses one: O(distinct ports). */
static void pc_add(const regent_host *host, port_count *pc, long port, int d)
{
	if (port <= 0 || port > 65535)
		return;
	if (2 * (pc->used + 1) > pc->cap) {
		size_t cap = pc->cap ? 2 * pc->cap : 8;
		uint32_t *k = host->xcalloc(cap, sizeof(*k)), *c = host->xcalloc(cap, sizeof(*c));
		for (size_t i = 0; i < pc->cap; i++) {
			if (!pc->keys[i])
				continue;
			size_t h = (pc->keys[i] * 2654435761u) & (cap - 1);
			while (k[h])
				h = (h + 1) & (cap - 1);
			k[h] = pc->keys[i];
			c[h] = pc->cnt[i];
		}
		free(pc->keys);
		free(pc->cnt);
		pc->keys = k;
		pc->cnt = c;
		pc->cap = cap;
	}
	uint32_t key = (uint32_t)port + 1;
	size_t h = (key * 2654435761u) & (pc->cap - 1);
	while (pc->keys[h] && pc->keys[h] != key)
		h = (h + 1) & (pc->cap - 1);
	if (!pc->keys[h]) {
		if (d < 0)
			return;
		pc->keys[h] = key;
		pc->used++;
	}
	if (d > 0) {
		if (pc->cnt[h]++ == 0)
			pc->distinct++;
		if (pc->cnt[h] > pc->best_n || (pc->cnt[h] == pc->best_n && port < pc->best)) {
			pc->best = port;
			pc->best_n = pc->cnt[h];
		}
	} else if (pc->cnt[h]) {
		if (--pc->cnt[h] == 0)
			pc->distinct--;
		if (port == pc->best)
			pc_rescan(pc);
	}
}

/* The instance's meta "port" (the seed's /port key), or 0. */
static long meta_port(const regent_instance *in)
{
	for (size_t k = 0; k < in->nmeta; k++)
		if (strcmp(in->meta[k].key, "port") == 0) {
			uint16_t mp;
			return hx_parse_port(in->meta[k].value, &mp) ? mp : 0;
		}
	return 0;
}

static void count_ports(svc *v, const regent_instance *in, int d)
{
	pc_add(v->h, &v->sport, in->service_port, d);
	if (!in->service_port)
		pc_add(v->h, &v->mport, meta_port(in), d);
}

/* ------------------------------------------------------------------ */
/* The plan: what a snapshot changes in the routed set                */
/* ------------------------------------------------------------------ */

/* Instance warnings per computation of a service (the rest are counted). */
#define WARN_INSTANCES 5

/* A dotted quad as inet_pton(AF_INET) takes it (four decimal parts of
 * 0-255, none with a leading zero) other than 0.0.0.0: its own canonical
 * form (what inet_ntop writes).  The common address checked in ~40
 * instructions instead of inet_pton's ~350 (a snapshot of a service of
 * 100,000 instances checks each changed one); false only says "not this
 * form": hx_valid_ip decides then. */
static bool quad_ok(const char *s)
{
	unsigned any = 0;
	for (int part = 0; part < 4; part++) {
		if (part && *s++ != '.')
			return false;
		if (*s < '0' || *s > '9')
			return false;
		unsigned x = (unsigned)(*s++ - '0');
		for (int k = 0; k < 2 && x && *s >= '0' && *s <= '9'; k++)
			x = 10 * x + (unsigned)(*s++ - '0');
		if (x > 255 || (*s >= '0' && *s <= '9'))
			return false; /* past 255, a fourth digit, or a leading zero */
		any |= x;
	}
	return *s == '\0' && any;
}

/* Whether haproxy can route the instance (TCP, an IP literal and a port):
 * addr (NULL: only checked) gets its canonical address.  An invalid one
 * is warned about when warn is set. */
static bool inst_valid(hx_model *m, svc *v, const regent_instance *in, char *addr, bool warn)
{
	bool v6;
	if (in->proto != REGENT_PROTO_TCP)
		return false; /* haproxy proxies TCP only */
	bool quad = in->port && in->address && quad_ok(in->address);
	if (quad && addr)
		memcpy(addr, in->address, strlen(in->address) + 1); /* at most 16 bytes */
	if (!quad && (!hx_valid_ip(in->address, addr, &v6) || in->port == 0)) {
		if (warn && v->plan->nwarned++ < WARN_INSTANCES)
			hx_svc_warn(m, v,
			            "service %s: instance %s skipped: address \"%.80s\" port %u is not an "
			            "IP literal and port (haproxy needs both)",
			            v->name, in->id, in->address ? in->address : "", in->port);
		return false;
	}
	return true;
}

static plan_op *op_push(hx_plan *p, bool route, const regent_instance *in, const char *id)
{
	if (p->nops == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->ops = p->h->xrealloc(p->ops, p->cap * sizeof(*p->ops));
	}
	plan_op *o = &p->ops[p->nops++];
	o->route = route;
	o->in = in;
	o->id = id;
	o->addr[0] = '\0';
	return o;
}

static size_t ptr_hash(const void *p)
{
	uint64_t x = (uint64_t)(uintptr_t)p * 11400714819323198485ull;
	return (size_t)(x ^ (x >> 29) ^ (x >> 47));
}

/* ROUTE ops of this plan by instance pointer (incremental plans): an
 * instance routed and then pushed out again by the bound, in one plan, has
 * its op turned into an UNROUTE. */
static void rix_put(hx_plan *p, const regent_instance *in, size_t op)
{
	if (2 * (p->nrix + 1) > p->rixcap) {
		size_t cap = p->rixcap ? 2 * p->rixcap : 16;
		size_t *t = p->h->xcalloc(cap, sizeof(*t));
		for (size_t i = 0; i < p->rixcap; i++) {
			if (!p->rix[i])
				continue;
			size_t h = ptr_hash(p->ops[p->rix[i] - 1].in) & (cap - 1);
			while (t[h])
				h = (h + 1) & (cap - 1);
			t[h] = p->rix[i];
		}
		free(p->rix);
		p->rix = t;
		p->rixcap = cap;
	}
	size_t h = ptr_hash(in) & (p->rixcap - 1);
	while (p->rix[h])
		h = (h + 1) & (p->rixcap - 1);
	p->rix[h] = op + 1;
	p->nrix++;
}

static plan_op *rix_find(hx_plan *p, const regent_instance *in)
{
	if (!p->rixcap)
		return NULL;
	size_t h = ptr_hash(in) & (p->rixcap - 1);
	for (; p->rix[h]; h = (h + 1) & (p->rixcap - 1))
		if (p->ops[p->rix[h] - 1].in == in)
			return &p->ops[p->rix[h] - 1];
	return NULL;
}

static void plan_route(hx_model *m, svc *v, const regent_instance *in, const char *addr)
{
	hx_plan *p = v->plan;
	plan_op *o = op_push(p, true, in, in->id);
	snprintf(o->addr, sizeof(o->addr), "%s", addr);
	if (!p->full)
		rix_put(p, in, p->nops - 1);
	v->nin++;
	count_ports(v, in, +1);
	(void)m;
}

static void plan_unroute(svc *v, const regent_instance *in)
{
	hx_plan *p = v->plan;
	v->nin--;
	count_ports(v, in, -1);
	plan_op *o = rix_find(p, in);
	if (o) {
		o->route = false; /* it keeps no slot (or gives back the one it had) */
		return;
	}
	op_push(p, false, NULL, in->id);
}

/* Entries of the list with id <= bound. */
static size_t upper_bound(const regent_instance *const *l, size_t n, const char *bound)
{
	if (!bound)
		return 0;
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(l[mid]->id, bound) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void set_bound(svc *v, const regent_instance *const *l, size_t P)
{
	free(v->bound);
	v->bound = P ? v->h->xstrdup(l[P - 1]->id) : NULL;
}

/* The whole list: the first HX_MAX_INSTANCES valid instances are routed. */
static void plan_full(hx_model *m, svc *v, const regent_instance *const *l, size_t n)
{
	hx_plan *p = v->plan;
	p->full = true;
	v->nin = v->nvalid = 0;
	pc_clear(&v->sport);
	pc_clear(&v->mport);
	size_t P = n;
	char addr[HX_ADDR_MAX];
	for (size_t j = 0; j < n; j++) {
		if (!inst_valid(m, v, l[j], NULL, true))
			continue;
		v->nvalid++;
		if (v->nin < HX_MAX_INSTANCES && inst_valid(m, v, l[j], addr, false)) {
			plan_route(m, v, l[j], addr);
			if (v->nin == HX_MAX_INSTANCES)
				P = j + 1;
		}
	}
	p->P = P;
	set_bound(v, l, P);
}

/* One side of a changed entry: in the routed prefix (id <= bound) or not. */
static bool in_prefix(const svc *v, const regent_instance *in)
{
	return v->bound && strcmp(in->id, v->bound) <= 0;
}

static void diff_old(hx_model *m, svc *v, const regent_instance *o)
{
	if (!inst_valid(m, v, o, NULL, false))
		return;
	v->nvalid--;
	if (in_prefix(v, o))
		plan_unroute(v, o);
}

static void diff_new(hx_model *m, svc *v, const regent_instance *x)
{
	if (!inst_valid(m, v, x, NULL, true))
		return;
	v->nvalid++;
	char addr[HX_ADDR_MAX]; /* canonical only when routed: most of a big service is not */
	if (in_prefix(v, x) && inst_valid(m, v, x, addr, false))
		plan_route(m, v, x, addr);
}

/* The same id, a new version: a routed instance keeps its slot (one ROUTE
 * op updates it). */
static void diff_mod(hx_model *m, svc *v, const regent_instance *o, const regent_instance *x)
{
	char addr[HX_ADDR_MAX];
	bool vo = inst_valid(m, v, o, NULL, false), vx = inst_valid(m, v, x, addr, true);
	v->nvalid = v->nvalid - vo + vx;
	if (!in_prefix(v, x))
		return;
	if (vo && vx) {
		count_ports(v, o, -1);
		v->nin--;
		plan_route(m, v, x, addr);
	} else if (vo) {
		plan_unroute(v, o);
	} else if (vx) {
		plan_route(m, v, x, addr);
	}
}

/* From the previous list to the new one: only the changed entries. */
static void plan_diff(hx_model *m, svc *v, const regent_instance *const *o, size_t no,
                      const regent_instance *const *l, size_t n)
{
	enum { BLOCK = 64 };
	size_t i = 0, j = 0;
	while (i < no || j < n) {
		if (i < no && j < n && o[i] == l[j]) {
			while (i + BLOCK <= no && j + BLOCK <= n &&
			       memcmp(&o[i], &l[j], BLOCK * sizeof(*o)) == 0) {
				i += BLOCK;
				j += BLOCK;
			}
			while (i < no && j < n && o[i] == l[j]) {
				i++;
				j++;
			}
			continue;
		}
		int c = i >= no ? 1 : j >= n ? -1 : strcmp(o[i]->id, l[j]->id);
		if (c < 0)
			diff_old(m, v, o[i++]);
		else if (c > 0)
			diff_new(m, v, l[j++]);
		else
			diff_mod(m, v, o[i++], l[j++]);
	}
	/* The bound moves: routed instances over the limit leave (the highest
	 * ids), or the next valid ones come in. */
	size_t P = upper_bound(l, n, v->bound);
	char addr[HX_ADDR_MAX];
	while (v->nin > HX_MAX_INSTANCES && P > 0) {
		P--;
		if (inst_valid(m, v, l[P], NULL, false))
			plan_unroute(v, l[P]);
	}
	while (v->nin < HX_MAX_INSTANCES && P < n) {
		if (inst_valid(m, v, l[P], addr, false))
			plan_route(m, v, l[P], addr);
		P++;
	}
	v->plan->P = P;
	set_bound(v, l, P);
}

void hx_plan_compute(hx_model *m, svc *v, const regent_instance *const *old, size_t nold,
                     const regent_instance *const *l, size_t n, bool full)
{
	hx_plan *p = v->plan;
	p->insts = l;
	p->n = n;
	if (full || !v->synced)
		plan_full(m, v, l, n);
	else
		plan_diff(m, v, old, nold, l, n);
	v->synced = true;
	if (p->nwarned > WARN_INSTANCES)
		hx_svc_warn(m, v, "service %s: %zu more instances skipped (not an IP literal and port)",
		            v->name, p->nwarned - WARN_INSTANCES);
}

/* ------------------------------------------------------------------ */
/* The plan applied to the slots                                      */
/* ------------------------------------------------------------------ */

/* Puts the instance of a ROUTE op in its slot (the one it has, else the
 * lowest free one, else a new one).  False when no slot is left. */
static bool route(hx_model *m, svc *v, const plan_op *o)
{
	slot *sl = hx_slot_find(v, o->id);
	if (!sl) {
		size_t i = fh_take(v);
		if (i == SIZE_MAX) {
			if (v->nslots >= HX_MAX_SLOTS || v->nslots >= v->slot_max)
				return false;
			hx_svc_grow(m, v, v->nslots + 1);
			i = fh_take(v);
		}
		slot_set_id(m, v, i, o->id);
		sl = &v->slots[i];
	}
	sl->seen = true;
	uint16_t w = meta_weight(o->in);
	hx_ip ip;
	hx_ip_parse(o->addr, &ip); /* canonical already (inst_valid) */
	if (sl->st != ST_READY || sl->port != o->in->port || sl->weight != w ||
	    !hx_ip_eq(&sl->addr, &ip)) {
		sl->addr = ip; /* a move, or the same */
		sl->port = o->in->port;
		sl->weight = w;
		hx_slot_set_st(m, v, (size_t)(sl - v->slots), ST_READY);
		hx_slot_dirty(m, v, (size_t)(sl - v->slots)); /* a move at the same state */
		sl->rdirty = true;
		hx_svc_moved(m, v);
	}
	return true;
}

static void warn_no_slot(hx_model *m, svc *v, size_t n)
{
	v->noslot = n;
	if (n && v->slot_max < HX_MAX_SLOTS)
		hx_svc_warn(m, v,
		            "service %s: %zu joining instances find no server slot (%u slots: "
		            "haproxy's open-file limit); they wait for draining ones",
		            v->name, n, (unsigned)v->nslots);
	else if (n)
		hx_svc_warn(m, v,
		            "service %s: %zu joining instances find no server slot (at most %d "
		            "slots per service); they wait for draining ones",
		            v->name, n, HX_MAX_SLOTS);
}

/* The routed set of a service whose slots were not kept in step (a first
 * computation, or it was not routed): every slot reconciled, O(slots + n).
 * Instances keep the slot they have; leaving ones go before joining ones
 * take the free slots. */
static void apply_full(hx_model *m, svc *v)
{
	hx_plan *p = v->plan;
	uint64_t now = m->h->now_ms();
	if (!p->full) {
		/* it was not routed: every routed instance, from the list */
		p->nops = 0;
		char addr[HX_ADDR_MAX];
		for (size_t j = 0; j < p->P && j < p->n; j++)
			if (inst_valid(m, v, p->insts[j], addr, false)) {
				plan_op *o = op_push(p, true, p->insts[j], p->insts[j]->id);
				snprintf(o->addr, sizeof(o->addr), "%s", addr);
			}
	}
	for (size_t i = 0; i < v->nslots; i++)
		v->slots[i].seen = false;
	size_t nfresh = 0, nofree = 0;
	for (size_t k = 0; k < p->nops; k++) {
		plan_op *o = &p->ops[k];
		if (!o->route)
			continue;
		if (hx_slot_find(v, o->id))
			route(m, v, o);
		else
			p->ops[nfresh++] = *o; /* k >= nfresh: compacted in place */
	}
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].id && !v->slots[i].seen)
			leave(m, v, i, now);
	for (size_t k = 0; k < nfresh; k++)
		if (!route(m, v, &p->ops[k]))
			nofree++;
	warn_no_slot(m, v, nofree);
}

void hx_plan_apply(hx_model *m, svc *v)
{
	hx_plan *p = v->plan;
	if (!v->routing || p->full) {
		apply_full(m, v);
		v->routing = true;
		return;
	}
	uint64_t now = m->h->now_ms();
	/* leaving first, so that a joining instance may take a freed slot */
	for (size_t k = 0; k < p->nops; k++) {
		if (p->ops[k].route)
			continue;
		slot *sl = hx_slot_find(v, p->ops[k].id);
		if (sl)
			leave(m, v, (size_t)(sl - v->slots), now);
	}
	size_t nofree = 0;
	for (size_t k = 0; k < p->nops; k++)
		if (p->ops[k].route && !route(m, v, &p->ops[k]))
			nofree++;
	warn_no_slot(m, v, nofree);
}

void hx_plan_unroute_all(hx_model *m, svc *v)
{
	v->routing = false;
	if (!v->nids)
		return;
	uint64_t now = m->h->now_ms();
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].id)
			leave(m, v, i, now);
}

void hx_plan_free(svc *v)
{
	if (!v->plan)
		return;
	free(v->plan->ops);
	free(v->plan->rix);
	free(v->plan);
	v->plan = NULL;
}
