/* test_helpers.h - the fixture the test_helpers executable's files share
 * (test_helpers.c, test_helpers_spawn.c): a loop, an agent and a context
 * for the host helpers, a scratch directory, and memory the fixture owns
 * for whatever a pending callback may still write (freed by the teardown
 * only after its loop ran, so a failed assertion never leaves a callback
 * pointing into a finished test's stack). */
#ifndef REGENT_TEST_HELPERS_H
#define REGENT_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host.h"

static const regent_host *const H = &regent_host_table;

#define FX_KEEP_MAX 16

typedef struct fixture {
	uv_loop_t loop;
	regent_agent agent;
	regent_ctx ctx;
	char dir[64];
	void *keep[FX_KEEP_MAX];
	size_t nkeep;
} fixture;

int helpers_setup(void **state);
int helpers_teardown(void **state);
/* Runs the loop until *flag is set or ms pass; returns the flag. */
bool run_until(fixture *f, const bool *flag, uint64_t ms);
/* Zeroed memory the fixture frees after the teardown's loop run. */
void *fx_keep(fixture *f, size_t size);
/* A file's first 4 KiB as a string (malloc'd), or NULL. */
char *slurp(const char *path);

void test_spawn(void **state);
void test_spawn_deadline(void **state);
void test_spawn_child_state(void **state);
void test_process(void **state);

#endif
