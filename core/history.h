/* history.h - what the agent remembers of its recent past for people to
 * look at (history.c): the last catalog changes, instance by instance,
 * with the time each sink applied them, and the last hour in fixed
 * intervals (propagation latency, catalog size).  Fixed memory. */
#ifndef REGENT_CORE_HISTORY_H
#define REGENT_CORE_HISTORY_H

#include "catalog.h"

#define REGENT_HISTORY_CHANGES 50     /* changes kept */
#define REGENT_HISTORY_SINKS 8        /* sinks followed per change */
#define REGENT_HISTORY_STEP_MS 10000  /* one point per 10 s ... */
#define REGENT_HISTORY_POINTS 360     /* ... for an hour */

typedef struct regent_history regent_history;

regent_history *regent_history_new(void);
void regent_history_free(regent_history *h);

/* A new snapshot went to the sinks (named, the ones that run): its
 * changed services are compared with the previous snapshot, instance by
 * instance.  The first snapshot is one "loaded" line.  At most
 * REGENT_HISTORY_CHANGES - 1 lines per snapshot, then one "more" line. */
void regent_history_flush(regent_history *h, const regent_catalog *snap,
                          const char *const *changed, size_t nchanged, const char *const *sinks,
                          size_t nsinks, uint64_t now_ms, uint64_t now_wall_ns);
/* A sink applied snap at now_wall_ns: the changes it carries (and older
 * ones that sink had not applied) get that time; the interval's latency
 * records it once per sink and snapshot (a sink applying a snapshot again,
 * or one made before it started, is not a propagation). */
void regent_history_applied(regent_history *h, const char *sink, const regent_catalog *snap,
                            uint64_t now_ms, uint64_t now_wall_ns);

/* Newest first. */
void regent_history_changes(const regent_history *h,
                            void (*fn)(void *arg, const regent_change *c), void *arg);
/* The last hour up to now_ms, oldest first (intervals before the first
 * record are left out; empty ones carry the catalog size forward). */
void regent_history_points(regent_history *h, uint64_t now_ms, uint64_t now_wall_ns,
                           void (*fn)(void *arg, const regent_history_point *p), void *arg);

#endif
