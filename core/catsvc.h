/* catsvc.h - the catalog's immutable parts (catalog.c's own, not the
 * plugins'): a service's sorted instance list, shared by the snapshots
 * and a view's service, and the snapshot itself.  catsvc.c builds,
 * settles, finds and releases them, counts what a changed list moves
 * between nodes, and answers the plugins' snapshot reads
 * (regent_catalog_*, catalog.h); catalog.c decides when to flush. */
#ifndef REGENT_CATSVC_H
#define REGENT_CATSVC_H

#include "catalog.h"
#include "catpend.h"
#include "model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A service's instances, immutable once built (snapshots share it).  A
 * list holds one reference of each of its instances, until a newer list
 * is settled from it: the newer one then takes over the references of the
 * instances both have, and the older one keeps a reference to the newer
 * one (`next`) plus its own references of the instances the newer one
 * dropped (`own`).  So settling a change never touches the instances kept
 * (no write into n instances, which a fork, haproxy's, has made
 * copy-on-write), and each instance is freed once no list holds it. */
typedef struct svc_list {
	unsigned refs;
	char *name;
	size_t n;
	const regent_instance **pubs;   /* sorted by id; each the `pub` of a regent_inst (regent_svc_at) */
	struct svc_list *next;          /* settled into this one: holds what both have */
	regent_inst **own;              /* then: the instances only this one holds */
	size_t nown;
	/* Settled from an older list (whose `next` is this one): the instances
	 * this one added (borrowed: it holds them), so this one's by-node
	 * counts are the older one's minus its `own` plus these: O(changes). */
	regent_inst **added;
	size_t nadded;
} svc_list;

struct regent_catalog {
	unsigned refs;
	size_t n;
	svc_list **svcs;      /* sorted by name */
	const char **names;
	uint64_t origin_ns;
	size_t total;
	size_t nodes;         /* owners (regent_svc_count_nodes) of its instances */
	uint64_t seq;         /* 1, 2, ... per flush; 0 for the initial empty one */
	/* It holds a reference of each list in svcs until a newer one is
	 * flushed from it: that one (`next`, referenced) takes over those of
	 * the lists both have; this one keeps those it re-merged (`own`).
	 * `linked`: an older one's `next` is this one; when that link is all
	 * that holds it, its arrays go (nobody reads them). */
	struct regent_catalog *next;
	svc_list **own;
	size_t nown;
	bool linked;
	/* Services listed but never read (host->catalog_set_unknown), sorted,
	 * its own copies; NULL when none (the usual case). */
	char **unknown;
	size_t nunknown;
};

/* A view's service: its sorted list and the single changes not settled
 * into it yet. */
typedef struct vsvc {
	svc_list *list;       /* sorted by id, unique; shared with snapshots */
	regent_pend *pend;    /* id -> instance (added or replaced) or removal; NULL when none */
} vsvc;


/* The core's instance behind the i-th entry: `pub` is regent_inst's first
 * member, so the public pointer converts back (one array serves both). */
static inline regent_inst *regent_svc_at(const svc_list *s, size_t i)
{
	return (regent_inst *)s->pubs[i];
}

/* A list of `name` for n instances, one reference; pubs not filled: the
 * caller fills all n (and calls regent_svc_finish when unsorted). */
svc_list *regent_svc_new(const char *name, size_t n);
/* Drops a reference (void * for maps' free callbacks). */
void regent_svc_unref(void *p);
/* Sorts pubs by id and drops later duplicates of an id (the first wins,
 * the others' references released). */
void regent_svc_finish(svc_list *s);
/* Whether id may be in the list (within its first and last ids). */
bool regent_svc_may_hold(const svc_list *s, const char *id);
/* The instance of that id, or NULL: O(log n). */
regent_inst *regent_svc_find(const svc_list *s, const char *id);

/* The by-owner counts a flush moves (an owner is the instance's node,
 * else its address), gathered by the owner string's pointer, then applied
 * to a map of owner -> count (uintptr_t) at one update per owner. */
typedef struct svc_tally_slot {
	const char *owner;
	intptr_t d;
} svc_tally_slot;

typedef struct svc_tally {
	svc_tally_slot *slots;
	size_t cap, used;        /* cap: a power of two, at most half used */
	svc_tally_slot local[32];
} svc_tally;

void regent_tally_init(svc_tally *t);
/* Gathers the counts moved from list `was` to list `now` (either NULL:
 * none): O(changes) when `now` was settled from `was`, else one walk of
 * both (O(n) comparisons, a probe per instance that differs). */
void regent_svc_count_nodes(svc_tally *t, const svc_list *was, const svc_list *now);
/* Applies the gathered moves to `nodes` (an owner at 0 goes) and frees
 * what the tally holds. */
void regent_tally_apply(svc_tally *t, regent_map *nodes);

/* A view's service over `list` (the reference moves in). */
vsvc *regent_vsvc_new(svc_list *list);
void regent_vsvc_free(void *p);
/* The view's service's list with its pending changes settled. */
svc_list *regent_vsvc_list(vsvc *vs);

/* A snapshot of n services, one reference; svcs and names not zeroed:
 * the caller fills them up to n. */
regent_catalog *regent_snap_new(size_t n);
/* The first index in [from, c->n) whose service name is >= name. */
size_t regent_snap_lower(const regent_catalog *c, size_t from, const char *name);
/* Frees the snapshot's unknown names (and empties the list). */
void regent_snap_unknown_free(regent_catalog *c);
/* The snapshot's list of that service, or NULL. */
svc_list *regent_snap_find(const regent_catalog *c, const char *name);

#endif
