/* localset.c - the local set: instance id -> (published instance, the
 * sources that report it).  Reports only real changes: an identical
 * re-report is a no-op, a full resync takes down exactly what its source
 * no longer reports, an id reported by two sources (a reload's new
 * source on trial beside the old one) goes down only when both let go,
 * and a source's claims can be handed to its successor (inherited) to be
 * confirmed by the successor's reports or dropped later. */
#include "localset.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct claim {
	const void *owner;
	regent_inst *inst; /* this owner's version (one reference) */
	bool stale;
	bool inherited;    /* handed over from a predecessor, not reported since */
} claim;

typedef struct entry {
	regent_inst *pub;  /* what on_up last reported (one reference) */
	claim *claims;     /* claims[0] is the one published */
	size_t n;
} entry;

struct regent_localset {
	regent_map *byid;
	regent_localset_ops ops;
	void *arg;
};

regent_localset *regent_localset_new(const regent_localset_ops *ops, void *arg)
{
	regent_localset *ls = regent_xcalloc(1, sizeof(*ls));
	ls->byid = regent_map_new();
	ls->ops = *ops;
	ls->arg = arg;
	return ls;
}

static void free_entry(void *p)
{
	entry *e = p;
	for (size_t i = 0; i < e->n; i++)
		regent_inst_unref(e->claims[i].inst);
	free(e->claims);
	regent_inst_unref(e->pub);
	free(e);
}

void regent_localset_free(regent_localset *ls)
{
	if (!ls)
		return;
	regent_map_free(ls->byid, free_entry);
	free(ls);
}

static claim *find_claim(entry *e, const void *owner)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->claims[i].owner == owner)
			return &e->claims[i];
	return NULL;
}

/* Publishes claims[0]'s version if it differs from what was reported. */
static void publish(regent_localset *ls, entry *e, bool report)
{
	regent_inst *cur = e->claims[0].inst;
	if (e->pub == cur)
		return;
	regent_inst *old = e->pub;
	e->pub = regent_inst_ref(cur);
	if (old && regent_instance_equal(&old->pub, &cur->pub))
		report = false;
	if (report && ls->ops.on_up)
		ls->ops.on_up(ls->arg, cur, old);
	regent_inst_unref(old);
}

int regent_localset_up(regent_localset *ls, const void *owner, regent_inst *inst)
{
	entry *e = regent_map_get(ls->byid, inst->pub.id);
	if (!e) {
		e = regent_xcalloc(1, sizeof(*e));
		e->claims = regent_xcalloc(1, sizeof(*e->claims));
		e->claims[0] = (claim){owner, inst, false, false};
		e->n = 1;
		e->pub = regent_inst_ref(inst);
		regent_map_put(ls->byid, inst->pub.id, e);
		if (ls->ops.on_up)
			ls->ops.on_up(ls->arg, inst, NULL);
		return 0;
	}
	claim *c = find_claim(e, owner);
	if (!c) {
		for (size_t i = 0; i < e->n; i++)
			if (!ls->ops.may_share || !ls->ops.may_share(ls->arg, owner, e->claims[i].owner)) {
				regent_inst_unref(inst);
				return -EEXIST;
			}
		e->claims = regent_xrealloc(e->claims, (e->n + 1) * sizeof(*e->claims));
		e->claims[e->n++] = (claim){owner, inst, false, false};
		return 0; /* a later claim is not published while the first holds */
	}
	c->stale = false;
	c->inherited = false;
	if (regent_instance_equal(&c->inst->pub, &inst->pub)) {
		regent_inst_unref(inst);
		return 0;
	}
	regent_inst_unref(c->inst);
	c->inst = inst;
	if (c == &e->claims[0])
		publish(ls, e, true);
	return 0;
}

/* Removes claims[i]; the entry goes when its last claim does. */
static void drop_claim(regent_localset *ls, entry *e, size_t i, bool report)
{
	regent_inst_unref(e->claims[i].inst);
	memmove(&e->claims[i], &e->claims[i + 1], (e->n - i - 1) * sizeof(*e->claims));
	e->n--;
	if (e->n > 0) {
		if (i == 0)
			publish(ls, e, report);
		return;
	}
	regent_map_del(ls->byid, e->pub->pub.id);
	if (report && ls->ops.on_down)
		ls->ops.on_down(ls->arg, e->pub);
	free_entry(e);
}

int regent_localset_down(regent_localset *ls, const void *owner, const char *id)
{
	entry *e = regent_map_get(ls->byid, id);
	claim *c = e ? find_claim(e, owner) : NULL;
	if (!c)
		return -ENOENT;
	drop_claim(ls, e, (size_t)(c - e->claims), true);
	return 0;
}

void regent_localset_resync_begin(regent_localset *ls, const void *owner)
{
	regent_map_iter it = {0};
	void *v;
	while (regent_map_next(ls->byid, &it, NULL, &v)) {
		claim *c = find_claim(v, owner);
		if (c)
			c->stale = true;
	}
}

enum { ALL, STALE, INHERITED, STALE_OR_INHERITED };

static size_t drop_matching(regent_localset *ls, const void *owner, int which, bool report)
{
	regent_map_iter it = {0};
	void *v;
	size_t n = 0;
	while (regent_map_next(ls->byid, &it, NULL, &v)) {
		entry *e = v;
		claim *c = find_claim(e, owner);
		if (c && (which == ALL || (which != INHERITED && c->stale) ||
		          (which != STALE && c->inherited))) {
			drop_claim(ls, e, (size_t)(c - e->claims), report);
			n++;
		}
	}
	return n;
}

/* A full listing ended: what it did not report goes, inherited claims
 * too (a hand-over in the middle of the listing left them unmarked). */
void regent_localset_resync_end(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, STALE_OR_INHERITED, true);
}

void regent_localset_drop_owner(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, ALL, true);
}

void regent_localset_forget_owner(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, ALL, false);
}

size_t regent_localset_hand_over(regent_localset *ls, const void *from, const void *to)
{
	regent_map_iter it = {0};
	void *v;
	size_t n = 0;
	while (regent_map_next(ls->byid, &it, NULL, &v)) {
		entry *e = v;
		claim *c = find_claim(e, from);
		if (!c)
			continue;
		if (find_claim(e, to)) { /* to reports it already: its own claim stays */
			drop_claim(ls, e, (size_t)(c - e->claims), true);
			continue;
		}
		c->owner = to;
		c->stale = false;
		c->inherited = true;
		n++;
	}
	return n;
}

size_t regent_localset_drop_inherited(regent_localset *ls, const void *owner)
{
	return drop_matching(ls, owner, INHERITED, true);
}

void regent_localset_foreach(regent_localset *ls, void (*fn)(void *arg, regent_inst *inst),
                             void *arg)
{
	size_t n;
	const char **ids = regent_map_sorted_keys(ls->byid, &n);
	for (size_t i = 0; i < n; i++) {
		entry *e = regent_map_get(ls->byid, ids[i]);
		if (e)
			fn(arg, e->pub);
	}
	free(ids);
}

size_t regent_localset_size(const regent_localset *ls)
{
	return regent_map_size(ls->byid);
}
