/* catalog_fixture.h - what test_catalog.c shares with test_catalog_views.c:
 * the flushes a test's sink saw (on_flush records them), instances made
 * and set into a view, and running the loop for a time or until a number
 * of flushes. */
#ifndef REGENT_TEST_CATALOG_FIXTURE_H
#define REGENT_TEST_CATALOG_FIXTURE_H

#include "catalog.h"
#include "model.h"

#include <stdint.h>

typedef struct flushes {
	uv_loop_t *loop;
	int count;
	uint64_t at_ms[64];      /* the loop's clock, the one the catalog's timers use */
	char changed[64][256];
	size_t web[64];          /* instances of "web" in each snapshot */
	const regent_catalog *last;
} flushes;

/* The sink's apply: records the flush in arg (a flushes). */
void on_flush(void *arg, const regent_catalog *snap, const char *const *changed, size_t n);
/* One instance of svc on 127.0.0.1:port, node "n". */
regent_inst *mk(const char *svc, const char *id, uint16_t port);
/* svc as that one instance, or as two (ports 1 and 2). */
void set1(regent_catview *v, const char *svc, const char *id, uint16_t port);
void set2(regent_catview *v, const char *svc, const char *id1, const char *id2);
/* Runs the loop for ms, or until `count` flushes happened (at most ms). */
void run_ms(uv_loop_t *loop, uint64_t ms);
void run_until(uv_loop_t *loop, flushes *f, int count, uint64_t ms);
/* Frees the last snapshot and the catalog, closes the loop (asserted). */
void teardown(uv_loop_t *loop, regent_cat *c, flushes *f);

/* test_catalog_views.c */
void unknown_services(void **state);
void single_instance_changes(void **state);
void flush_merges_into_sorted_list(void **state);
void held_snapshots_chain(void **state);
void pending_table(void **state);

#endif
