/* model_fixture.h - the fake catalog and host that tests/haproxy/test_model.c
 * builds for the haproxy model's tests, shared with test_model_dirty.c and
 * test_model_fd.c.
 *
 * Each test keeps its hx_model in a static variable, not on its stack: a
 * failed assertion leaves the test before hx_model_free, and the model
 * stays registered with the sink's address table (plugins/haproxy/addr.c).
 * On the stack, the next test's model took the dead one's place and the
 * next address collection walked a list through it without end; static,
 * the failed model stays valid and the next tests run (and report). */
#ifndef REGENT_TEST_MODEL_FIXTURE_H
#define REGENT_TEST_MODEL_FIXTURE_H

#include "model.h"

/* ---- a fake catalog: services sorted by name, instances by id ---- */

typedef struct fsvc {
	char name[64];
	regent_instance *insts;
	const regent_instance **ptrs;
	size_t n;
	long port; /* [service] port, 0: none */
	int64_t slots;
	uint64_t grace; /* [service] empty_grace, 0: not set */
} fsvc;

struct regent_catalog {
	fsvc svcs[64];
	const char *names[64];
	size_t n;
};


void bury(void *p);
void cat_clear(void);
void cat_del1(const char *name, const char *id);
void cat_drop(const char *name);
void cat_indiv(const char *name);
void cat_put1(const char *name, const char *id, const char *addr, uint16_t port,
              uint16_t sport);
void cat_set(const char *name, size_t n, long port, uint16_t (*sp)(size_t));
fsvc *fs(const char *name);
bool run_wanted(svc *v);
void install(hx_model *m);
void model_new(hx_model *m);
void model_update(hx_model *m, const char *const *names, size_t n, bool all);
void update(hx_model *m, const char *name);
uint16_t sp_8080(size_t k);
size_t used_slots(const svc *v);
extern int nwarn;           /* warnings the fake host logged */
extern char all_warn[4096]; /* their texts, one a line */

/* test_model_dirty.c */
void test_dirty_lists(void **st);

/* test_model_fd.c */
void test_fd_cap(void **st);
void test_fd_loose(void **st);
void test_fd_recovered(void **st);

#endif
