/* catalog.h - the catalog: every store's view, merged, debounced, snapshotted. */
#ifndef REGENT_CORE_CATALOG_H
#define REGENT_CORE_CATALOG_H

#include "model.h"
#include "util.h"

typedef struct regent_cat regent_cat;
typedef struct regent_catview regent_catview;

/* Called with a new snapshot and the services that changed since the
 * previous one (all of them on the first flush). */
typedef void (*regent_cat_flush_cb)(void *arg, const regent_catalog *snap,
                                    const char *const *changed, size_t nchanged);

regent_cat *regent_cat_new(uv_loop_t *loop, uint64_t debounce_ms, uint64_t max_delay_ms,
                           regent_cat_flush_cb cb, void *arg);
void regent_cat_set_timing(regent_cat *c, uint64_t debounce_ms, uint64_t max_delay_ms);
/* Closes the timer; the object is freed once the loop runs the close. */
void regent_cat_free(regent_cat *c);
/* The last flushed snapshot (borrowed; never NULL). */
const regent_catalog *regent_cat_current(const regent_cat *c);
/* True once every view has completed a first full sync. */
bool regent_cat_ready(const regent_cat *c);
/* True once a first snapshot went to the flush callback. */
bool regent_cat_flushed(const regent_cat *c);
/* Flushes pending changes now (tests; shutdown). */
void regent_cat_flush_now(regent_cat *c);
/* Lowers the origin time (wall ns) of the pending change set. */
void regent_cat_mark(regent_cat *c, uint64_t origin_wall_ns);
uint64_t regent_catalog_origin_ns(const regent_catalog *snap);
/* The catalog's instances by owner (an instance's node, else its
 * address): owner -> count (uintptr_t) for the current snapshot, kept by
 * each flush in proportion to what changed (borrowed; changes at the next
 * flush). */
const regent_map *regent_cat_nodes(const regent_cat *c);
/* Instances, and owners of instances, in the snapshot: O(1). */
size_t regent_catalog_total(const regent_catalog *snap);
size_t regent_catalog_nodes(const regent_catalog *snap);
/* 1, 2, ... in flush order (0: the empty catalog before the first flush). */
uint64_t regent_catalog_seq(const regent_catalog *snap);

/* One per store instance.  A view that only registers (no sink on this
 * host) is created with watching = false and never holds up readiness. */
regent_catview *regent_cat_view_new(regent_cat *c, bool watching);
/* The view of a reload's new store instance on trial: what it reports is
 * kept but not merged into the catalog, and it does not hold up
 * readiness, until regent_cat_view_promote(). */
regent_catview *regent_cat_view_new_candidate(regent_cat *c, bool watching);
/* The candidate v takes over from old (NULL: none), which the catalog
 * owns from now on: once v has completed a full read (at once if it has,
 * or does not watch), v's instances replace old's in one change and old
 * is freed.  Until then old's instances stay in the catalog. */
void regent_cat_view_promote(regent_catview *v, regent_catview *old);
/* Removes the view's contribution (its services become dirty), and that
 * of a view it was promoted to replace. */
void regent_cat_view_free(regent_catview *v);
/* Replaces the view's instances of a service; takes one reference of
 * each inst.  Instances with the same id: the first wins. */
void regent_cat_view_set(regent_catview *v, const char *service, regent_inst **insts, size_t n);
void regent_cat_view_remove(regent_catview *v, const char *service);
/* One instance added to or replaced in the view's service (by id; the
 * service is created, known, when missing); takes one reference of inst.
 * O(log n) plus, when it differs, one comparison. */
void regent_cat_view_put(regent_catview *v, regent_inst *inst);
/* One instance removed by id (the service stays known, maybe empty; an
 * unknown service is left alone). */
void regent_cat_view_del(regent_catview *v, const char *service, const char *id);
/* The registry lists the service but the store could not read it yet:
 * counts as reported during a sync; left alone when the view holds the
 * service already.  regent_cat_view_set/_put make it known, _remove
 * forgets it. */
void regent_cat_view_set_unknown(regent_catview *v, const char *service);
void regent_cat_view_sync_begin(regent_catview *v);
void regent_cat_view_sync_end(regent_catview *v);

size_t regent_catalog_services(const regent_catalog *cat, const char *const **names);
/* The services listed but never read (regent_cat_view_set_unknown) and
 * known to no view, sorted; absent from regent_catalog_services. */
size_t regent_catalog_unknown(const regent_catalog *cat, const char *const **names);
size_t regent_catalog_instances(const regent_catalog *cat, const char *service,
                                const regent_instance *const **insts);
/* The instances of the i-th service (in the order of the names): O(1). */
size_t regent_catalog_count_at(const regent_catalog *cat, size_t i);
const regent_catalog *regent_catalog_ref(const regent_catalog *cat);
void regent_catalog_unref(const regent_catalog *cat);

/* metrics.c: the current snapshot's gauges in the Prometheus text
 * format.  By default a fixed number of series (services, instances,
 * nodes), read from figures the flush keeps: O(1).  With per_service one
 * series per service and one per owning node: O(services + nodes). */
void regent_cat_metrics_write(const regent_cat *c, bool per_service, regent_buf *out);

#endif
