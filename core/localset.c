/* localset.c - the local set: instance id -> (instance, owning source).
 * Reports only real changes: an identical re-report is a no-op, and a full
 * resync takes down exactly what its source no longer reports. */
#include "localset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	regent_inst *inst;
	const void *owner;
	bool stale;
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
	regent_inst_unref(e->inst);
	free(e);
}

void regent_localset_free(regent_localset *ls)
{
	if (!ls)
		return;
	regent_map_free(ls->byid, free_entry);
	free(ls);
}

int regent_localset_up(regent_localset *ls, const void *owner, regent_inst *inst)
{
	entry *e = regent_map_get(ls->byid, inst->pub.id);
	if (e && e->owner != owner) {
		regent_inst_unref(inst);
		return -EEXIST;
	}
	if (e) {
		e->stale = false;
		if (regent_instance_equal(&e->inst->pub, &inst->pub)) {
			regent_inst_unref(inst);
			return 0;
		}
		regent_inst *old = e->inst;
		e->inst = inst;
		if (ls->ops.on_up)
			ls->ops.on_up(ls->arg, inst, old);
		regent_inst_unref(old);
		return 0;
	}
	e = regent_xcalloc(1, sizeof(*e));
	e->inst = inst;
	e->owner = owner;
	regent_map_put(ls->byid, inst->pub.id, e);
	if (ls->ops.on_up)
		ls->ops.on_up(ls->arg, inst, NULL);
	return 0;
}

static void take_down(regent_localset *ls, entry *e, bool report)
{
	regent_map_del(ls->byid, e->inst->pub.id);
	if (report && ls->ops.on_down)
		ls->ops.on_down(ls->arg, e->inst);
	free_entry(e);
}

int regent_localset_down(regent_localset *ls, const void *owner, const char *id)
{
	entry *e = regent_map_get(ls->byid, id);
	if (!e || e->owner != owner)
		return -ENOENT;
	take_down(ls, e, true);
	return 0;
}

void regent_localset_resync_begin(regent_localset *ls, const void *owner)
{
	regent_map_iter it = {0};
	void *v;
	while (regent_map_next(ls->byid, &it, NULL, &v)) {
		entry *e = v;
		if (e->owner == owner)
			e->stale = true;
	}
}

static void drop_matching(regent_localset *ls, const void *owner, bool only_stale, bool report)
{
	regent_map_iter it = {0};
	void *v;
	while (regent_map_next(ls->byid, &it, NULL, &v)) {
		entry *e = v;
		if (e->owner == owner && (!only_stale || e->stale))
			take_down(ls, e, report);
	}
}

void regent_localset_resync_end(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, true, true);
}

void regent_localset_drop_owner(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, false, true);
}

void regent_localset_forget_owner(regent_localset *ls, const void *owner)
{
	drop_matching(ls, owner, false, false);
}

void regent_localset_foreach(regent_localset *ls, void (*fn)(void *arg, regent_inst *inst),
                             void *arg)
{
	size_t n;
	const char **ids = regent_map_sorted_keys(ls->byid, &n);
	for (size_t i = 0; i < n; i++) {
		entry *e = regent_map_get(ls->byid, ids[i]);
		if (e)
			fn(arg, e->inst);
	}
	free(ids);
}

size_t regent_localset_size(const regent_localset *ls)
{
	return regent_map_size(ls->byid);
}
