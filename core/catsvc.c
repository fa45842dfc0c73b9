/* catsvc.c - the catalog's immutable parts (see catsvc.h): service lists
 * (built, sorted, settled from a view's pending changes, found,
 * released, and what a new one moves in the by-node counts), and
 * snapshots with the plugins' reads of them (regent_catalog_*).  The
 * flush that builds snapshots, the by-node counts it keeps, and the views
 * are catalog.c's. */
#include "catsvc.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

svc_list *regent_svc_new(const char *name, size_t n)
{
	svc_list *s = regent_xcalloc(1, sizeof(*s));
	s->refs = 1;
	s->name = regent_xstrdup(name);
	s->n = n;
	s->pubs = regent_xmalloc((n + 1) * sizeof(*s->pubs)); /* filled by the caller */
	return s;
}

void regent_svc_unref(void *p)
{
	svc_list *s = p;
	while (s && --s->refs == 0) { /* a loop, not recursion: chains may be long */
		svc_list *next = s->next;
		if (next) {
			for (size_t i = 0; i < s->nown; i++)
				regent_inst_unref(s->own[i]);
		} else {
			for (size_t i = 0; i < s->n; i++)
				regent_inst_unref(regent_svc_at(s, i));
		}
		free(s->own);
		free(s->added);
		free(s->pubs);
		free(s->name);
		free(s);
		s = next;
	}
}

/* Who owns an instance, for the by-node counts: its node, or (the seed's
 * "ip:port" values) the address it was registered with, the host's. */
static const char *owner_of(const regent_instance *inst)
{
	return inst->node && inst->node[0] ? inst->node : inst->address;
}

static void owners_add(regent_map *m, const char *owner, intptr_t d)
{
	uintptr_t c = (uintptr_t)regent_map_get(m, owner) + (uintptr_t)d;
	if (c)
		regent_map_put(m, owner, (void *)c);
	else
		regent_map_del(m, owner);
}

/* Count moves are gathered by the owner's pointer before they reach the
 * map: a node's name is one string shared by every instance on it
 * (model.c), so a flush that walks n instances costs n pointer probes and
 * one map update per owner, not two string-hashed lookups per instance.
 * (An address is not shared: each copy of one is its own entry, the sum
 * is the same.) */
void regent_tally_init(svc_tally *t)
{
	memset(t->local, 0, sizeof(t->local));
	t->slots = t->local;
	t->cap = REGENT_ARRAY_LEN(t->local);
	t->used = 0;
}

static svc_tally_slot *tally_slot_of(svc_tally_slot *slots, size_t cap, const char *owner)
{
	uint64_t h = (uint64_t)(uintptr_t)owner * 0x9e3779b97f4a7c15u;
	size_t i = (size_t)(h ^ (h >> 32)) & (cap - 1);
	while (slots[i].owner && slots[i].owner != owner)
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static void tally_add(svc_tally *t, const regent_instance *in, intptr_t d)
{
	const char *o = owner_of(in);
	svc_tally_slot *sl = tally_slot_of(t->slots, t->cap, o);
	if (!sl->owner) {
		if (2 * (t->used + 1) > t->cap) {
			size_t cap = t->cap * 2;
			svc_tally_slot *n = regent_xcalloc(cap, sizeof(*n));
			for (size_t i = 0; i < t->cap; i++)
				if (t->slots[i].owner)
					*tally_slot_of(n, cap, t->slots[i].owner) = t->slots[i];
			if (t->slots != t->local)
				free(t->slots);
			t->slots = n;
			t->cap = cap;
			sl = tally_slot_of(n, cap, o);
		}
		sl->owner = o;
		t->used++;
	}
	sl->d += d;
}

void regent_tally_apply(svc_tally *t, regent_map *nodes)
{
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].owner && t->slots[i].d)
			owners_add(nodes, t->slots[i].owner, t->slots[i].d);
	if (t->slots != t->local)
		free(t->slots);
}

void regent_svc_count_nodes(svc_tally *t, const svc_list *was, const svc_list *now)
{
	if (was == now)
		return;
	if (was && now && was->next == now) { /* settled: what it dropped out, what it added in */
		for (size_t i = 0; i < was->nown; i++)
			tally_add(t, &was->own[i]->pub, -1);
		for (size_t i = 0; i < now->nadded; i++)
			tally_add(t, &now->added[i]->pub, +1);
		return;
	}
	/* Both sorted by id, unique: one walk, a count moved only for an id
	 * on one side, or on both with another owner. */
	size_t na = was ? was->n : 0, nb = now ? now->n : 0, i = 0, j = 0;
	while (i < na || j < nb) {
		const regent_instance *a = i < na ? was->pubs[i] : NULL;
		const regent_instance *b = j < nb ? now->pubs[j] : NULL;
		int r = !a ? 1 : !b ? -1 : a == b ? 0 : strcmp(a->id, b->id);
		if (r <= 0)
			i++;
		if (r >= 0)
			j++;
		if (r == 0 && (a == b || owner_of(a) == owner_of(b) ||
		               strcmp(owner_of(a), owner_of(b)) == 0))
			continue;
		if (r <= 0)
			tally_add(t, a, -1);
		if (r >= 0)
			tally_add(t, b, +1);
	}
}

typedef struct ranked {
	regent_inst *inst;
	size_t rank; /* position in the input: the first of equal ids wins */
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
	const ranked *x = a, *y = b;
	int r = strcmp(x->inst->pub.id, y->inst->pub.id);
	if (r)
		return r;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Sorts by id, drops later duplicates of an id (first wins). */
void regent_svc_finish(svc_list *s)
{
	size_t n = s->n;
	if (n > 1) {
		ranked *r = regent_xmalloc(sizeof(*r) * n);
		for (size_t i = 0; i < n; i++)
			r[i] = (ranked){regent_svc_at(s, i), i};
		qsort(r, n, sizeof(*r), cmp_ranked);
		size_t w = 0;
		for (size_t i = 0; i < n; i++) {
			if (w > 0 && strcmp(s->pubs[w - 1]->id, r[i].inst->pub.id) == 0) {
				regent_inst_unref(r[i].inst);
				continue;
			}
			s->pubs[w++] = &r[i].inst->pub;
		}
		s->n = w;
		free(r);
	}
}

/* The first index in [lo, hi) whose id is >= id (hi if none). */
static size_t svc_lower_in(const svc_list *s, size_t lo, size_t hi, const char *id)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(s->pubs[mid]->id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether id may be in the list: within its first and last ids (an id
 * past the end, the usual new one, is known absent without a search). */
bool regent_svc_may_hold(const svc_list *s, const char *id)
{
	return s->n && strcmp(s->pubs[0]->id, id) <= 0 && strcmp(s->pubs[s->n - 1]->id, id) >= 0;
}

regent_inst *regent_svc_find(const svc_list *s, const char *id)
{
	if (!regent_svc_may_hold(s, id))
		return NULL;
	size_t i = svc_lower_in(s, 0, s->n, id);
	return i < s->n && strcmp(s->pubs[i]->id, id) == 0 ? regent_svc_at(s, i) : NULL;
}

/* svc_lower_in from `from` to the end, by doubling steps first: O(log d)
 * comparisons when the answer is d entries on, so settling k sorted
 * changes into n costs O(k log(n/k)), not O(k log n), and reads near the
 * last place. */
static size_t svc_gallop(const svc_list *s, size_t from, const char *id)
{
	size_t lo = from, step = 1;
	while (lo < s->n && strcmp(s->pubs[lo]->id, id) < 0) {
		/* pubs[lo] < id: the answer is past lo */
		size_t next = lo + step;
		if (next >= s->n || strcmp(s->pubs[next]->id, id) >= 0)
			return svc_lower_in(s, lo + 1, next < s->n ? next : s->n, id);
		lo = next + 1;
		step *= 2;
	}
	return lo;
}

vsvc *regent_vsvc_new(svc_list *list)
{
	vsvc *vs = regent_xcalloc(1, sizeof(*vs));
	vs->list = list;
	return vs;
}

void regent_vsvc_free(void *p)
{
	vsvc *vs = p;
	if (!vs)
		return;
	regent_pend_free(vs->pend, true);
	regent_svc_unref(vs->list);
	free(vs);
}

/* Settles the pending changes into a new sorted list: O(k log k +
 * k log(n/k)) comparisons (O(k + k log(n/k)) when they came in id order)
 * and one copy of the n pointers; the old list hands its references over
 * (see svc_list). */
svc_list *regent_vsvc_list(vsvc *vs)
{
	if (!vs->pend)
		return vs->list;
	size_t k;
	const regent_pend_ent *ids = regent_pend_sorted(vs->pend, &k);
	svc_list *o = vs->list;
	svc_list *s = regent_svc_new(o->name, o->n + k);
	o->own = regent_xcalloc(k + 1, sizeof(*o->own));
	s->added = regent_xcalloc(k + 1, sizeof(*s->added));
	size_t w = 0, r = 0;
	for (size_t i = 0; i < k; i++) {
		size_t pos = svc_gallop(o, r, ids[i].id);
		memcpy(s->pubs + w, o->pubs + r, (pos - r) * sizeof(*s->pubs));
		w += pos - r;
		r = pos;
		if (r < o->n && strcmp(o->pubs[r]->id, ids[i].id) == 0) {
			o->own[o->nown++] = regent_svc_at(o, r); /* replaced or removed: stays o's */
			r++;
		}
		regent_inst *val = ids[i].inst;
		if (val) {
			s->pubs[w++] = &val->pub; /* the pending table's reference moves */
			s->added[s->nadded++] = val;
		}
	}
	memcpy(s->pubs + w, o->pubs + r, (o->n - r) * sizeof(*s->pubs));
	w += o->n - r;
	s->n = w;
	regent_pend_free(vs->pend, false);
	vs->pend = NULL;
	o->next = s; /* o keeps what both have alive through s */
	s->refs++;
	regent_svc_unref(o);
	vs->list = s;
	return s;
}

regent_catalog *regent_snap_new(size_t n)
{
	regent_catalog *c = regent_xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->n = n;
	/* Not zeroed: filled up to c->n by the caller, which ends both with
	 * NULL (flush_snap); zeroing S pointers per flush is the flush's own
	 * biggest cost after the copy. */
	c->svcs = regent_xmalloc((n + 1) * sizeof(*c->svcs));
	c->names = regent_xmalloc((n + 1) * sizeof(*c->names));
	c->svcs[n] = NULL;
	c->names[n] = NULL;
	return c;
}

const regent_catalog *regent_catalog_ref(const regent_catalog *cat)
{
	((regent_catalog *)cat)->refs++;
	return cat;
}

void regent_catalog_unref(const regent_catalog *cc)
{
	regent_catalog *c = (regent_catalog *)cc;
	if (c && c->refs == 2 && c->linked && c->next) { /* only the link left */
		c->refs--;
		free(c->svcs);
		free(c->names);
		c->svcs = NULL;
		c->names = NULL;
		c->n = 0;
		regent_snap_unknown_free(c);
		return;
	}
	while (c && --c->refs == 0) { /* a loop, not recursion: chains may be long */
		regent_catalog *next = c->next;
		svc_list **held = next ? c->own : c->svcs;
		size_t nheld = next ? c->nown : c->n;
		for (size_t i = 0; i < nheld; i++)
			regent_svc_unref(held[i]);
		free(c->own);
		free(c->svcs);
		free(c->names);
		regent_snap_unknown_free(c);
		free(c);
		if (next)
			next->linked = false; /* the reference dropped next is that link */
		c = next;
	}
}

/* The first index in [from, c->n) whose service name is >= name. */
size_t regent_snap_lower(const regent_catalog *c, size_t from, const char *name)
{
	size_t lo = from, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->svcs[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

svc_list *regent_snap_find(const regent_catalog *c, const char *name)
{
	size_t i = regent_snap_lower(c, 0, name);
	return i < c->n && strcmp(c->svcs[i]->name, name) == 0 ? c->svcs[i] : NULL;
}

size_t regent_catalog_services(const regent_catalog *cat, const char *const **names)
{
	if (names)
		*names = cat->names;
	return cat->n;
}

void regent_snap_unknown_free(regent_catalog *c)
{
	for (size_t i = 0; i < c->nunknown; i++)
		free(c->unknown[i]);
	free(c->unknown);
	c->unknown = NULL;
	c->nunknown = 0;
}

size_t regent_catalog_unknown(const regent_catalog *cat, const char *const **names)
{
	if (names)
		*names = (const char *const *)cat->unknown;
	return cat->nunknown;
}

size_t regent_catalog_instances(const regent_catalog *cat, const char *service,
                                const regent_instance *const **insts)
{
	svc_list *s = regent_snap_find(cat, service);
	if (insts)
		*insts = s ? s->pubs : NULL;
	return s ? s->n : 0;
}

size_t regent_catalog_count_at(const regent_catalog *cat, size_t i)
{
	return i < cat->n ? cat->svcs[i]->n : 0;
}

uint64_t regent_catalog_origin_ns(const regent_catalog *snap)
{
	return snap->origin_ns;
}

size_t regent_catalog_total(const regent_catalog *snap)
{
	return snap->total;
}

size_t regent_catalog_nodes(const regent_catalog *snap)
{
	return snap->nodes;
}

uint64_t regent_catalog_seq(const regent_catalog *snap)
{
	return snap->seq;
}
