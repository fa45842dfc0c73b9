/* catpend.h - a catalog view's pending single changes of one service
 * (catalog.c): instance id -> the instance put (the table holds its
 * reference) or a removal, kept in arrival order with a hash index beside
 * them.  Settling hands them over sorted by id, and sorts only when they
 * did not come in id order (a writer's bulk or a range delete comes in
 * key order: one pass instead of O(k log k) comparisons).  No allocation
 * per change but the id copied for a removal (into chunks). */
#ifndef REGENT_CATPEND_H
#define REGENT_CATPEND_H

#include "model.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct regent_pend regent_pend;

/* One pending change: inst NULL for a removal. */
typedef struct regent_pend_ent {
	const char *id;
	regent_inst *inst;
	unsigned hash;
	bool live; /* false: forgotten (regent_pend_forget) */
} regent_pend_ent;

regent_pend *regent_pend_new(void);
/* Frees the table; `refs`: drop the references it still holds (false
 * after regent_pend_sorted handed them over). */
void regent_pend_free(regent_pend *p, bool refs);
/* Pending changes held. */
size_t regent_pend_size(const regent_pend *p);
/* Whether id has a pending change; then *inst is the instance put, NULL
 * for a removal. */
bool regent_pend_get(const regent_pend *p, const char *id, regent_inst **inst);
/* Puts `in` (the reference moves to the table), replacing (and
 * releasing) a pending change of its id. */
void regent_pend_put(regent_pend *p, regent_inst *in);
/* Records the removal of id (copied), replacing a pending put. */
void regent_pend_remove(regent_pend *p, const char *id);
/* Forgets id's pending change (its instance released). */
void regent_pend_forget(regent_pend *p, const char *id);
/* The pending changes sorted by id, in a array the table owns (valid
 * until regent_pend_free): *n entries, all live.  The instance
 * references are the caller's from now on (free the table with refs =
 * false); the ids stay valid until then. */
const regent_pend_ent *regent_pend_sorted(regent_pend *p, size_t *n);

#endif
