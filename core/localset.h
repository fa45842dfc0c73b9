/* localset.h - this host's instances as reported by its sources. */
#ifndef REGENT_CORE_LOCALSET_H
#define REGENT_CORE_LOCALSET_H

#include "core.h"

typedef struct regent_localset regent_localset;

typedef struct regent_localset_ops {
	/* inst is new or changed; old is the previous version (NULL if new). */
	void (*on_up)(void *arg, regent_inst *inst, regent_inst *old);
	void (*on_down)(void *arg, regent_inst *inst);
} regent_localset_ops;

regent_localset *regent_localset_new(const regent_localset_ops *ops, void *arg);
void regent_localset_free(regent_localset *ls);
/* Takes over the caller's reference to inst.  Returns 0, or -EEXIST when
 * another source owns that id (inst is released). */
int regent_localset_up(regent_localset *ls, const void *owner, regent_inst *inst);
/* -ENOENT when the id is unknown or owned by someone else. */
int regent_localset_down(regent_localset *ls, const void *owner, const char *id);
void regent_localset_resync_begin(regent_localset *ls, const void *owner);
/* Takes down what the owner did not report since resync_begin. */
void regent_localset_resync_end(regent_localset *ls, const void *owner);
/* Takes down everything the owner reported. */
void regent_localset_drop_owner(regent_localset *ls, const void *owner);
/* Forgets the owner's instances without reporting them down (shutdown). */
void regent_localset_forget_owner(regent_localset *ls, const void *owner);
void regent_localset_foreach(regent_localset *ls, void (*fn)(void *arg, regent_inst *inst),
                             void *arg);
size_t regent_localset_size(const regent_localset *ls);

#endif
