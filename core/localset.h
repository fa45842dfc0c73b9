/* localset.h - this host's instances as reported by its sources. */
#ifndef REGENT_CORE_LOCALSET_H
#define REGENT_CORE_LOCALSET_H

#include "model.h"

typedef struct regent_localset regent_localset;

typedef struct regent_localset_ops {
	/* inst is new or changed; old is the previous version (NULL if new). */
	void (*on_up)(void *arg, regent_inst *inst, regent_inst *old);
	void (*on_down)(void *arg, regent_inst *inst);
	/* Optional: may `owner` report an id that `other` reports too?  (A
	 * reload's new instance of a source and the old one it replaces.)
	 * NULL: never, an id belongs to one source. */
	bool (*may_share)(void *arg, const void *owner, const void *other);
} regent_localset_ops;

regent_localset *regent_localset_new(const regent_localset_ops *ops, void *arg);
void regent_localset_free(regent_localset *ls);
/* Takes over the caller's reference to inst.  Returns 0, or -EEXIST when
 * another source owns that id and may not share it (inst is released).
 * An id reported by several owners is counted once: what the consumers
 * see is the version of its first owner (the oldest claim); when that
 * owner lets go, the next owner's version takes over (reported as a
 * change only when it differs), and the id goes down only when its last
 * owner lets go. */
int regent_localset_up(regent_localset *ls, const void *owner, regent_inst *inst);
/* -ENOENT when the owner does not report that id. */
int regent_localset_down(regent_localset *ls, const void *owner, const char *id);
void regent_localset_resync_begin(regent_localset *ls, const void *owner);
/* Takes down what the owner did not report since resync_begin. */
void regent_localset_resync_end(regent_localset *ls, const void *owner);
/* Takes down everything the owner reported (ids other owners still report
 * stay up). */
void regent_localset_drop_owner(regent_localset *ls, const void *owner);
/* Forgets the owner's instances without reporting them down (shutdown). */
void regent_localset_forget_owner(regent_localset *ls, const void *owner);
/* Gives every claim of `from` to `to` as inherited (a reload's new
 * instance of a source: core/agent.c, inherit()): nothing is reported,
 * the instances stay up.  A claim `to` reports again (local_up) is its own;
 * one it does not report in its next full resync goes at that
 * resync_end, like any other (a hand-over during that resync too).  Where `to` has a claim already, `from`'s
 * goes.  Returns the number handed over. */
size_t regent_localset_hand_over(regent_localset *ls, const void *from, const void *to);
/* Takes down the owner's inherited claims it has not reported again;
 * returns how many. */
size_t regent_localset_drop_inherited(regent_localset *ls, const void *owner);
void regent_localset_foreach(regent_localset *ls, void (*fn)(void *arg, regent_inst *inst),
                             void *arg);
size_t regent_localset_size(const regent_localset *ls);

#endif
