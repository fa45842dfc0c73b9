/* agent_mem.c - the agent's heap: malloc_trim(0) once quiet after a burst
 * (a snapshot, a sink's apply, the slow path), spaced by what the last
 * one cost, and the look at glibc's free heap that brings one after a big
 * free outside any apply (a big page of the stats sink).  Owns the trim
 * timer, the look's check handle and timer, and their figures in
 * regent_agent (host.h); agent.c calls regent_agent_mem_init/_close and
 * regent_agent_trim_when_quiet, the host's `applied` calls
 * regent_agent_applied. */
#include "host.h"
#include "log.h"
#include "util.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdbool.h>
#include <stdlib.h>

/* glibc keeps what is freed for reuse; after a burst (the cold start's
 * full read, a reload's render) much of the heap is free but resident.
 * Once the agent has been quiet for TRIM_QUIET_MS after a snapshot or a
 * sink's apply, malloc_trim(0) gives the free pages back, right after an
 * apply that took the slow path (regent_agent_applied), and once more
 * TRIM_LATE_MS later for what the sinks freed after their own delayed
 * work.  Off the hot path: a few per quiet period, none per fast change.
 * A trim walks the whole heap and each page it gives back costs a TLB
 * shootdown on every CPU running the agent's threads: after a 100,000-key
 * delete ~100 ms.  So trims are spaced: one due sooner than TRIM_GAP_MS,
 * or than TRIM_DUTY times the last one's cost (at most TRIM_LATE_MS),
 * after the last one ended waits until then (a burst of slow applies gets
 * one trim, not one per apply; a trim of a usual heap costs well under a
 * ms: a second apart); none is dropped. */
#define TRIM_QUIET_MS 1000
#define TRIM_LATE_MS 30000
#define TRIM_GAP_MS 1000
#define TRIM_DUTY 300

/* What is freed outside any apply (the stats sink's status page or
 * /v1/catalog: 1.3 and 1.6 MB at 8,000 instances, read by a person or a
 * tool) stayed resident until the next apply's trim: in a fleet without
 * changes, for good.  So the loop asks glibc how much of the heap is free
 * (mallinfo2: a walk of its free lists, tens of us) at most every
 * HEAP_CHECK_MS, and when that grew since the last trim by HEAP_FREED_MIN
 * and by a quarter of what is in use (a buffer a regular scrape of
 * /metrics frees and takes again is no reason: trimming it each time
 * would only cost its page faults again), a trim follows once quiet
 * (spaced as above; one already due, such as the late one, is brought
 * forward).  The free bytes are compared with those right after the last
 * trim, not with zero: a trim gives the pages of free chunks back but the
 * chunks stay free, so a fragmented heap would otherwise be trimmed at
 * every look.  No wakeup of its own while
 * the agent is busy or idle: the look rides on a loop turn that happens
 * anyway (a uv_check_t after each poll), and only a loop that went quiet
 * after some activity is woken once, HEAP_CHECK_MS after its last turn
 * (a timer pushed back at every turn, not holding the loop alive); that
 * wakeup does not push it again, so an idle agent is not woken again. */
#define HEAP_CHECK_MS 10000
#define HEAP_FREED_MIN (1024u * 1024u)

/* The heap's free and in-use bytes (glibc 2.33+: mallinfo2); false where
 * the allocator cannot tell (then no look is made). */
static bool heap_bytes(size_t *free_bytes, size_t *used_bytes)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 mi = mallinfo2();
	*free_bytes = mi.fordblks;
	*used_bytes = mi.uordblks;
	return mi.fordblks || mi.uordblks;
#else
	*free_bytes = *used_bytes = 0;
	return false;
#endif
}

/* ms until a trim may run (0: now). */
static uint64_t trim_wait_ms(const regent_agent *a, uint64_t now)
{
	if (!a->trim_end_ns)
		return 0;
	uint64_t gap = (uint64_t)TRIM_GAP_MS * 1000000u;
	if (TRIM_DUTY * a->trim_cost_ns > gap)
		gap = TRIM_DUTY * a->trim_cost_ns;
	if (gap > (uint64_t)TRIM_LATE_MS * 1000000u)
		gap = (uint64_t)TRIM_LATE_MS * 1000000u;
	uint64_t due = a->trim_end_ns + gap;
	return now >= due ? 0 : (due - now + 999999u) / 1000000u;
}

static void on_trim(uv_timer_t *t)
{
	regent_agent *a = t->data;
	uint64_t t0 = uv_hrtime(), wait = trim_wait_ms(a, t0);
	if (wait) { /* too soon after the last one: this one later */
		uv_timer_start(t, on_trim, wait, 0);
		return;
	}
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	a->trim_end_ns = uv_hrtime();
	a->trim_cost_ns = a->trim_end_ns - t0;
	size_t used;
	heap_bytes(&a->heap_free_after, &used);
	regent_log(REGENT_LOG_DEBUG, NULL, "memory: free heap pages returned to the system (%.2f ms)",
	           (double)a->trim_cost_ns / 1e6);
	if (!a->trim_late) {
		a->trim_late = true;
		uv_timer_start(t, on_trim, TRIM_LATE_MS, 0);
	}
}

static void heap_look(regent_agent *a)
{
	a->heap_checked_ms = uv_now(a->loop);
	size_t free_now, used;
	if (!heap_bytes(&free_now, &used))
		return;
	size_t min = used / 4 > HEAP_FREED_MIN ? used / 4 : HEAP_FREED_MIN;
	if (free_now >= a->heap_free_after + min) {
		regent_log(REGENT_LOG_DEBUG, NULL,
		           "memory: %zu KiB of the heap free (%zu KiB after the last trim, %zu KiB in "
		           "use): a trim once quiet",
		           free_now / 1024, a->heap_free_after / 1024, used / 1024);
		regent_agent_trim_when_quiet(a);
	}
}

static void on_heap_check(uv_timer_t *t)
{
	heap_look(t->data);
}

/* After each poll of the loop.  A poll that ended because the timer is due
 * is left to the timer (libuv runs check handles before the next turn's
 * timers): pushing it back then would make every expiry a turn, and wake
 * an idle loop every HEAP_CHECK_MS for good. */
static void on_heap_turn(uv_check_t *c)
{
	regent_agent *a = c->data;
	if (uv_is_active((uv_handle_t *)a->heap_check) && uv_timer_get_due_in(a->heap_check) == 0)
		return;
	if (uv_now(a->loop) - a->heap_checked_ms >= HEAP_CHECK_MS)
		heap_look(a);
	uv_timer_start(a->heap_check, on_heap_check, HEAP_CHECK_MS, 0);
}

void regent_agent_trim_when_quiet(regent_agent *a)
{
	if (!a->trim_timer || a->stopping)
		return;
	a->trim_late = false;
	uv_timer_start(a->trim_timer, on_trim, TRIM_QUIET_MS, 0);
}

/* A sink applied a snapshot (host->applied).  One that took longer than
 * TRIM_QUIET_MS went through the slow path (a haproxy reload: a render, a
 * check, answers read back), whose buffers are freed by the next loop
 * turn: trimmed then, not one quiet second later (the agent may not be
 * quiet for a while, and whatever reads its RSS right after the change
 * would count the garbage).  A quick apply only moves the quiet trim. */
void regent_agent_applied(regent_agent *a, uint64_t origin_wall_ns, uint64_t now_wall_ns)
{
	if (!a->trim_timer || a->stopping)
		return;
	if (origin_wall_ns && now_wall_ns > origin_wall_ns &&
	    now_wall_ns - origin_wall_ns > (uint64_t)TRIM_QUIET_MS * 1000000u) {
		a->trim_late = false;
		uv_timer_start(a->trim_timer, on_trim, 0, 0);
	} else {
		regent_agent_trim_when_quiet(a);
	}
}

void regent_agent_mem_init(regent_agent *a)
{
	uv_loop_t *loop = a->loop;
	a->trim_timer = regent_xcalloc(1, sizeof(*a->trim_timer));
	uv_timer_init(loop, a->trim_timer);
	a->trim_timer->data = a;
	a->heap_check = regent_xcalloc(1, sizeof(*a->heap_check));
	uv_timer_init(loop, a->heap_check);
	a->heap_check->data = a;
	uv_unref((uv_handle_t *)a->heap_check);
	a->heap_turn = regent_xcalloc(1, sizeof(*a->heap_turn));
	uv_check_init(loop, a->heap_turn);
	a->heap_turn->data = a;
	uv_unref((uv_handle_t *)a->heap_turn);
	a->heap_checked_ms = uv_now(loop);
	size_t free_now, used;
	if (heap_bytes(&free_now, &used)) /* the look can tell */
		uv_check_start(a->heap_turn, on_heap_turn);
}

void regent_agent_mem_close(regent_agent *a)
{
	if (a->trim_timer)
		uv_close((uv_handle_t *)a->trim_timer, (uv_close_cb)free);
	a->trim_timer = NULL;
	if (a->heap_check)
		uv_close((uv_handle_t *)a->heap_check, (uv_close_cb)free);
	a->heap_check = NULL;
	if (a->heap_turn)
		uv_close((uv_handle_t *)a->heap_turn, (uv_close_cb)free);
	a->heap_turn = NULL;
}
