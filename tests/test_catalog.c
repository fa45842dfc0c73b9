/* test_catalog.c - catalog coalescing: the first change after a quiet
 * period goes at once, a burst right after it becomes one snapshot after
 * the debounce, a constant trickle still flushes by the maximum delay,
 * nothing reaches sinks when nothing changed, the union of stores, and a
 * store replaced by a reload swaps views without an empty snapshot.  With
 * test_catalog_views.c (single-instance changes, the merge into the sorted
 * list, held snapshots, the pending table, unknown services), one
 * executable; what both use is catalog_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "metrics.h"
#include "model.h"
#include "util.h"

#include "catalog_fixture.h"

void on_flush(void *arg, const regent_catalog *snap, const char *const *changed, size_t n)
{
	flushes *f = arg;
	if (f->count < 64) {
		f->at_ms[f->count] = uv_now(f->loop);
		f->changed[f->count][0] = '\0';
		for (size_t i = 0; i < n; i++) {
			size_t used = strlen(f->changed[f->count]);
			if (used + strlen(changed[i]) + 2 > sizeof(f->changed[0]))
				break; /* a big first snapshot: only its start */
			strcat(f->changed[f->count], changed[i]);
			strcat(f->changed[f->count], ";");
		}
		f->web[f->count] = regent_catalog_instances(snap, "web", NULL);
	}
	f->count++;
	if (f->last)
		regent_catalog_unref(f->last);
	f->last = regent_catalog_ref(snap);
}

regent_inst *mk(const char *svc, const char *id, uint16_t port)
{
	regent_instance i = {.service = svc, .id = id, .address = "127.0.0.1", .port = port};
	return regent_inst_copy(&i, "n", NULL, 0);
}

void set1(regent_catview *v, const char *svc, const char *id, uint16_t port)
{
	regent_inst *one = mk(svc, id, port);
	regent_cat_view_set(v, svc, &one, 1);
}

/* svc as 1,000 instances: id and 999 others (a big service: the flush
 * spacing holds only services of 1,000 instances or more). */
#define BIG_N 1000
static void setbig(regent_catview *v, const char *svc, const char *id, uint16_t port)
{
	regent_inst *all[BIG_N];
	all[0] = mk(svc, id, port);
	for (int i = 1; i < BIG_N; i++) {
		char o[16];
		snprintf(o, sizeof(o), "f%04d", i);
		all[i] = mk(svc, o, (uint16_t)(3000 + i));
	}
	regent_cat_view_set(v, svc, all, BIG_N);
}

void set2(regent_catview *v, const char *svc, const char *id1, const char *id2)
{
	regent_inst *two[2] = {mk(svc, id1, 1), mk(svc, id2, 2)};
	regent_cat_view_set(v, svc, two, 2);
}

static void stop_cb(uv_timer_t *t)
{
	uv_stop(t->data);
}

void run_ms(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = loop;
	uv_timer_start(&t, stop_cb, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* Runs the loop until `count` flushes happened (at most `ms`). */
void run_until(uv_loop_t *loop, flushes *f, int count, uint64_t ms)
{
	for (uint64_t waited = 0; f->count < count && waited < ms; waited += 5)
		run_ms(loop, 5);
}

/* The loop's clock, brought up to date (changes made outside a loop
 * callback are timed from it, as the catalog does). */
static uint64_t loop_now(uv_loop_t *loop)
{
	uv_update_time(loop);
	return uv_now(loop);
}

void teardown(uv_loop_t *loop, regent_cat *c, flushes *f)
{
	if (f->last)
		regent_catalog_unref(f->last);
	regent_cat_free(c);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

/* Bounds: a timer never fires early on the loop's clock, so lower bounds
 * are exact; upper bounds only say "well before the debounce", which a
 * loaded machine still meets (the debounce here is 300 ms). */
static void leading_edge_then_batch(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	const uint64_t D = 300;
	regent_cat *c = regent_cat_new(&loop, D, 2000, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	/* not ready until the store's first full sync */
	assert_false(regent_cat_ready(c));
	regent_cat_view_sync_begin(v);
	set1(v, "web", "w1", 1);
	uint64_t t0 = loop_now(&loop);
	regent_cat_view_sync_end(v);
	assert_true(regent_cat_ready(c));
	/* the first snapshot goes at once, not after the debounce */
	run_until(&loop, &f, 1, 2 * D);
	assert_int_equal(f.count, 1);
	assert_string_equal(f.changed[0], "web;");
	assert_true(f.at_ms[0] - t0 < D);
	/* a quiet period, then a change: at once again, with whatever the
	 * same callback changed too */
	run_ms(&loop, D + 20);
	uint64_t t1 = loop_now(&loop);
	set1(v, "api", "a1", 10);
	set1(v, "db", "d1", 20);
	run_until(&loop, &f, 2, 2 * D);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "api;db;");
	assert_true(f.at_ms[1] - t1 < D);
	/* changes right after a flush are batched: one snapshot, a debounce
	 * after the last of them */
	uint64_t t2 = loop_now(&loop);
	for (int i = 0; i < 20; i++) {
		char id[8];
		snprintf(id, sizeof(id), "x%d", i);
		set1(v, i % 2 ? "api" : "db", id, (uint16_t)(100 + i));
	}
	run_ms(&loop, D / 3);
	assert_int_equal(f.count, 2); /* still waiting */
	run_until(&loop, &f, 3, 3 * D);
	assert_int_equal(f.count, 3);
	assert_string_equal(f.changed[2], "api;db;");
	assert_true(f.at_ms[2] - t2 >= D);
	assert_int_equal(regent_catalog_services(f.last, NULL), 3);
	run_ms(&loop, 50);
	assert_int_equal(f.count, 3);
	teardown(&loop, c, &f);
}

static void union_of_stores(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 100, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(v);
	set1(v, "web", "w1", 1);
	set1(v, "api", "a1", 2);
	regent_cat_view_sync_end(v);
	run_ms(&loop, 80);
	assert_int_equal(f.count, 1);
	/* the same data again: nothing reaches the sink */
	set1(v, "web", "w1", 1);
	run_ms(&loop, 80);
	assert_int_equal(f.count, 1);
	/* union of two stores by id; removing one store keeps the other's */
	regent_catview *v2 = regent_cat_view_new(c, false);
	set1(v2, "web", "w9", 9);
	run_ms(&loop, 80);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "web;");
	const regent_instance *const *insts;
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 2);
	assert_string_equal(insts[0]->id, "w1");
	assert_string_equal(insts[1]->id, "w9");
	set1(v2, "web", "w1", 1); /* same id in both: counted once */
	run_ms(&loop, 80);
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 1);
	regent_cat_view_free(v2);
	run_ms(&loop, 80);
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 1);
	/* a full sync that omits a service removes it */
	regent_cat_view_sync_begin(v);
	set1(v, "web", "w1", 1);
	regent_cat_view_sync_end(v);
	run_ms(&loop, 80);
	assert_int_equal(regent_catalog_services(f.last, NULL), 1);
	assert_string_equal(f.changed[f.count - 1], "api;");
	teardown(&loop, c, &f);
}

/* The catalog's gauges (issue 17): a fixed set of series by default,
 * whatever the number of services; by service and node on request; an
 * entry that names no node (the seed's "ip:port" values) counted under its
 * address, never under node="". */
static void catalog_metrics(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 10, 50, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(v);
	char svc[32], id[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(svc, sizeof(svc), "svc%04d", i);
		snprintf(id, sizeof(id), "i%d", i);
		set1(v, svc, id, (uint16_t)(1000 + i));
	}
	regent_instance seed = {.service = "whoami", .id = "3f2a9c1d0b7e", .address = "10.1.2.3",
	                        .port = 32768};
	regent_inst *nodeless = regent_inst_copy(&seed, NULL, NULL, 0);
	assert_string_equal(nodeless->pub.node, "");
	regent_cat_view_set(v, "whoami", &nodeless, 1);
	regent_cat_view_sync_end(v);
	run_ms(&loop, 80);
	assert_int_equal(regent_catalog_services(f.last, NULL), 1001);

	regent_buf b = {0};
	regent_cat_metrics_write(c, false, &b);
	assert_string_equal(b.data,
	                    "# HELP regent_catalog_instances Instances in the catalog (by service "
	                    "with [agent] metrics_per_service = true).\n"
	                    "# TYPE regent_catalog_instances gauge\nregent_catalog_instances 1001\n"
	                    "# HELP regent_catalog_services Services in the catalog.\n"
	                    "# TYPE regent_catalog_services gauge\nregent_catalog_services 1001\n"
	                    "# HELP regent_catalog_nodes Hosts owning instances in the catalog.\n"
	                    "# TYPE regent_catalog_nodes gauge\nregent_catalog_nodes 2\n");
	regent_buf_free(&b);

	regent_cat_metrics_write(c, true, &b);
	size_t per_svc = 0;
	for (const char *p = b.data; (p = strstr(p, "regent_catalog_instances{service=\"")); p++)
		per_svc++;
	assert_int_equal(per_svc, 1001);
	assert_non_null(strstr(b.data, "regent_catalog_instances{service=\"whoami\"} 1\n"));
	assert_non_null(strstr(b.data, "regent_catalog_node_instances{node=\"10.1.2.3\"} 1\n"));
	assert_non_null(strstr(b.data, "regent_catalog_node_instances{node=\"n\"} 1000\n"));
	assert_null(strstr(b.data, "node=\"\""));
	regent_buf_free(&b);
	/* A Unix time keeps its seconds (not rounded to 9 digits). */
	regent_metrics *m = regent_metrics_new();
	regent_metric_set(regent_metrics_get(m, REGENT_METRIC_GAUGE, "t", "a time", NULL),
	                  1796031870.5);
	regent_metrics_write(m, &b);
	assert_non_null(strstr(b.data, "\nt 1796031870.5\n"));
	regent_buf_free(&b);
	regent_metrics_free(m);
	teardown(&loop, c, &f);
}

static int trickle_n;
static regent_catview *trickle_view;

static void trickle(uv_timer_t *t)
{
	char id[16];
	snprintf(id, sizeof(id), "t%d", trickle_n++);
	set1(trickle_view, "web", id, (uint16_t)(1000 + trickle_n));
	if (trickle_n >= 40)
		uv_timer_stop(t);
}

static void trickle_flushes_by_max_delay(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	/* debounce 50 ms, but a change every 20 ms never leaves 50 ms quiet */
	regent_cat *c = regent_cat_new(&loop, 50, 200, on_flush, &f);
	trickle_view = regent_cat_view_new(c, false);
	trickle_n = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, trickle, 20, 20);
	run_ms(&loop, 1000);
	uv_close((uv_handle_t *)&t, NULL);
	/* 40 changes over ~800 ms: the first at once, then one snapshot per
	 * max delay at most, not one per change and not one at the end */
	assert_true(f.count >= 3);
	assert_true(f.count <= 20); /* 40 changes: batched, even with stalls */
	for (int i = 2; i < f.count && i < 64; i++)
		assert_true(f.at_ms[i] - f.at_ms[i - 1] >= 50);
	teardown(&loop, c, &f);
}

/* A flush that costs C (here its sinks' callback: 5 ms) spaces the next
 * one of the same service by 200 x C, at most the maximum delay: a change
 * every 30 ms after a debounce of 20 ms got a snapshot of its own; now one
 * per 300 ms (the maximum delay), and every change still goes out. */
static void trickle_big(uv_timer_t *t)
{
	char id[16];
	snprintf(id, sizeof(id), "t%d", trickle_n++);
	setbig(trickle_view, "web", id, (uint16_t)(1000 + trickle_n));
	if (trickle_n >= 40)
		uv_timer_stop(t);
}

/* The loop thread's CPU time (ns): what the catalog measures a flush by. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* 5 ms of CPU, not of the wall clock: on a loaded machine a 5 ms wall-clock
 * spin may get a fraction of that on a core, and the catalog (which spaces
 * by CPU time) then rightly spaces the flushes less than the test expects. */
static void on_slow_flush(void *arg, const regent_catalog *snap, const char *const *changed,
                          size_t n)
{
	uint64_t until = thread_cpu_ns() + 5 * 1000000ull;
	while (thread_cpu_ns() < until)
		;
	on_flush(arg, snap, changed, n);
}

static void costly_flushes_spaced(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 300, on_slow_flush, &f);
	trickle_view = regent_cat_view_new(c, false);
	trickle_n = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, trickle_big, 30, 30); /* 40 changes over ~1.2 s */
	run_ms(&loop, 2000);
	uv_close((uv_handle_t *)&t, NULL);
	assert_int_equal(trickle_n, 40);
	assert_true(f.count >= 2);
	assert_true(f.count <= 8); /* ~1.2 s / 300 ms + the first and the last */
	for (int i = 2; i < f.count && i < 64; i++)
		assert_true(f.at_ms[i] - f.at_ms[i - 1] >= 250);
	/* the last change went out (each replaces "web"'s first instance) */
	const regent_instance *const *li = NULL;
	size_t n = regent_catalog_instances(f.last, "web", &li);
	assert_int_equal(n, BIG_N);
	bool last = false;
	for (size_t i = 0; i < n; i++)
		last = last || strcmp(li[i]->id, "t39") == 0;
	assert_true(last);
	teardown(&loop, c, &f);
}

/* A big service is spaced by its size even when its flushes cost little
 * CPU (the sinks' later work is not in it): 20,000 instances count as
 * 2 ms a snapshot (100 ns each), so 400 ms apart; a change every 30 ms
 * after a debounce of 20 ms (cheap flushes: each got a snapshot of its
 * own, ~40) goes out about every 400 ms, the last one too. */
#define HUGE_N 20000
static void trickle_huge(uv_timer_t *t)
{
	char id[16];
	snprintf(id, sizeof(id), "t%02d", trickle_n++);
	regent_cat_view_put(trickle_view, mk("web", id, (uint16_t)(1000 + trickle_n)));
	if (trickle_n >= 40)
		uv_timer_stop(t);
}

/* A catalog (debounce 20 ms, maximum delay 300 ms) whose view
 * (trickle_view) holds "web" with n instances, its first snapshot out. */
static regent_cat *huge_cat(uv_loop_t *loop, flushes *f, int n)
{
	regent_cat *c = regent_cat_new(loop, 20, 300, on_flush, f);
	trickle_view = regent_cat_view_new(c, false);
	regent_inst **all = malloc((size_t)n * sizeof(*all));
	assert_non_null(all);
	for (int i = 0; i < n; i++) {
		char o[16];
		snprintf(o, sizeof(o), "h%05d", i);
		all[i] = mk("web", o, (uint16_t)(1 + i % 60000));
	}
	regent_cat_view_set(trickle_view, "web", all, (size_t)n);
	free(all);
	run_ms(loop, 50);
	assert_int_equal(f->count, 1);
	return c;
}

static void big_service_spaced_by_size(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = huge_cat(&loop, &f, HUGE_N);
	trickle_n = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uv_timer_start(&t, trickle_huge, 30, 30); /* 40 changes over ~1.2 s */
	run_ms(&loop, 2000);
	uv_close((uv_handle_t *)&t, NULL);
	assert_int_equal(trickle_n, 40);
	assert_true(f.count >= 3);
	assert_true(f.count <= 7); /* ~1.2 s / 400 ms + the set, the first and the last */
	for (int i = 2; i < f.count && i < 64; i++)
		assert_true(f.at_ms[i] - f.at_ms[i - 1] >= 360);
	assert_int_equal(regent_catalog_instances(f.last, "web", NULL), HUGE_N + 40);
	teardown(&loop, c, &f);
}

/* A service of 20,000 instances or more may be spaced past the maximum
 * delay (FLUSH_LONG_MIN): 25,000 count as 2.5 ms a snapshot (100 ns each),
 * so 500 ms apart with a maximum delay of 300 ms; a change every 30 ms
 * goes out about every 500 ms, the last one too.  A change of another
 * service meanwhile is not held by it: out within its maximum delay. */
#define LONG_N 25000
static regent_catview *other_view;
static uint64_t other_at;
static void put_other(uv_timer_t *t)
{
	other_at = uv_now(t->loop);
	set1(other_view, "api", "b", 1001);
}

static void huge_service_spaced_past_max_delay(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = huge_cat(&loop, &f, LONG_N);
	other_view = trickle_view;
	trickle_n = 0;
	uv_timer_t t, o;
	uv_timer_init(&loop, &t);
	uv_timer_init(&loop, &o);
	uv_timer_start(&t, trickle_huge, 30, 30); /* 40 changes over ~1.2 s */
	uv_timer_start(&o, put_other, 650, 0);
	run_ms(&loop, 2600);
	uv_close((uv_handle_t *)&t, NULL);
	uv_close((uv_handle_t *)&o, NULL);
	assert_int_equal(trickle_n, 40);
	int webs = 0, apis = 0;
	uint64_t prev = f.at_ms[0];
	for (int i = 1; i < f.count && i < 64; i++) {
		if (strstr(f.changed[i], "api;")) {
			apis++;
			assert_true(f.at_ms[i] - other_at <= 300 + 40); /* its own maximum delay */
		}
		if (!strstr(f.changed[i], "web;"))
			continue;
		if (webs++ > 0)
			assert_true(f.at_ms[i] - prev >= 450); /* past the 300 ms maximum delay */
		prev = f.at_ms[i];
	}
	assert_int_equal(apis, 1);
	assert_true(webs >= 2);
	assert_true(webs <= 5); /* ~1.2 s / 500 ms + the first and the last */
	assert_int_equal(regent_catalog_instances(f.last, "web", NULL), LONG_N + 40);
	assert_int_equal(regent_catalog_instances(f.last, "api", NULL), 1);
	teardown(&loop, c, &f);
}

/* The spacing holds only the costly flush's big service: after a flush of
 * "web" (1,000 instances) that cost 5 ms (spacing 1 s, capped at the 300 ms maximum delay),
 * a lone change of another service 100 ms later (quiet for longer than
 * the 20 ms debounce) goes out on the next loop turn; one of "web" waits
 * for the spacing. */
static void lone_change_after_costly_flush(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 300, on_slow_flush, &f);
	regent_catview *v = regent_cat_view_new(c, false);
	setbig(v, "web", "a", 1000);
	run_ms(&loop, 100);
	assert_int_equal(f.count, 1);
	uv_update_time(&loop);
	uint64_t t0 = uv_now(&loop);
	setbig(v, "web", "c", 1002); /* the costly one again, ~100 ms after its flush */
	run_ms(&loop, 400);
	assert_int_equal(f.count, 2);
	assert_true(f.at_ms[1] - t0 >= 100); /* held until ~300 ms after that flush */
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	set1(v, "api", "b", 1001); /* another service, ~200 ms after "web"'s flush */
	run_ms(&loop, 150);
	assert_int_equal(f.count, 3);
	assert_true(f.at_ms[2] - t0 < 40); /* at once (5 ms callback), not ~100 ms later */
	/* A small service is never held, even by its own costly flush. */
	run_ms(&loop, 60);
	uv_update_time(&loop);
	t0 = uv_now(&loop);
	set1(v, "api", "b2", 1003);
	run_ms(&loop, 150);
	assert_int_equal(f.count, 4);
	assert_true(f.at_ms[3] - t0 < 40);
	teardown(&loop, c, &f);
}

/* A callback that keeps the loop busy longer than the debounce while it
 * adds changes (a big watch answer applied in slices, one a loop turn):
 * the debounce runs from the last change on the real clock, so the turns
 * are batched instead of each getting a snapshot of its own. */
static regent_catview *slow_view;
static int slow_n;

static void slow_turn(uv_idle_t *h)
{
	/* 70 ms of work (longer than the 50 ms debounce), a change every 10 ms */
	for (int j = 0; j < 7; j++) {
		uint64_t until = uv_hrtime() + 10 * 1000000ull;
		while (uv_hrtime() < until)
			;
		char name[16];
		snprintf(name, sizeof(name), "s%d-%d", slow_n, j);
		set1(slow_view, name, "i1", (uint16_t)(2000 + slow_n * 7 + j));
	}
	if (++slow_n >= 8)
		uv_idle_stop(h);
}

static void slow_turns_batched(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 50, 2000, on_flush, &f);
	slow_view = regent_cat_view_new(c, false);
	slow_n = 0;
	uv_idle_t idle;
	uv_idle_init(&loop, &idle);
	uv_idle_start(&idle, slow_turn);
	run_ms(&loop, 900); /* 8 turns of 70 ms, then the debounce */
	uv_close((uv_handle_t *)&idle, NULL);
	assert_int_equal(slow_n, 8);
	/* the first turn at once (leading edge), the other 7 in one snapshot
	 * after the last of them (each turn on its own: 8 snapshots); one more
	 * only if the process lost its core for over the debounce between two
	 * turns (a loaded machine: the changes really were 50 ms quiet) */
	assert_true(f.count >= 2);
	assert_true(f.count <= 3);
	assert_int_equal(regent_catalog_services(f.last, NULL), 56);
	teardown(&loop, c, &f);
}

static void not_ready_holds_sinks(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 10, 50, on_flush, &f);
	regent_catview *a = regent_cat_view_new(c, true);
	regent_catview *b = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(a);
	set1(a, "web", "w1", 1);
	regent_cat_view_sync_end(a);
	run_ms(&loop, 100);
	/* b (registry down, say) has not read yet: sinks get nothing */
	assert_int_equal(f.count, 0);
	regent_cat_view_sync_begin(b);
	regent_cat_view_sync_end(b);
	run_ms(&loop, 100);
	assert_int_equal(f.count, 1);
	assert_string_equal(f.changed[0], "web;");
	teardown(&loop, c, &f);
}

static void candidate_views_swap(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 10, 50, on_flush, &f);
	regent_catview *old = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(old);
	set2(old, "web", "w1", "w2");
	regent_cat_view_sync_end(old);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 1);
	assert_int_equal(f.web[0], 2);
	/* a candidate reads w1, w3: kept aside, the catalog does not change */
	regent_catview *cand = regent_cat_view_new_candidate(c, true);
	assert_true(regent_cat_ready(c)); /* it does not hold the catalog up */
	regent_cat_view_sync_begin(cand);
	set2(cand, "web", "w1", "w3");
	set1(cand, "api", "a1", 5);
	regent_cat_view_sync_end(cand);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 1);
	/* the running store's changes still flow during the trial */
	set1(old, "db", "d1", 6);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "db;");
	/* promoted after its read: one snapshot with its view instead of the
	 * old one (web w1,w3; api new; db gone), never an empty web */
	regent_cat_view_promote(cand, old);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 3);
	assert_string_equal(f.changed[2], "api;db;web;");
	const regent_instance *const *insts;
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 2);
	assert_string_equal(insts[1]->id, "w3");
	/* promoted before its first read: the old view's instances stay until
	 * the read, then one swap */
	regent_catview *cand2 = regent_cat_view_new_candidate(c, true);
	regent_cat_view_promote(cand2, cand);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 3);
	assert_true(regent_cat_ready(c));
	regent_cat_view_sync_begin(cand2);
	set1(cand2, "web", "w4", 4);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 3); /* half a read shows nothing */
	regent_cat_view_sync_end(cand2);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 4);
	assert_string_equal(f.changed[3], "api;web;");
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 1);
	assert_string_equal(insts[0]->id, "w4");
	/* a candidate that fails its trial leaves no trace */
	regent_catview *bad = regent_cat_view_new_candidate(c, true);
	regent_cat_view_sync_begin(bad);
	regent_cat_view_sync_end(bad); /* it read an empty registry */
	set1(bad, "zzz", "z1", 1);
	regent_cat_view_free(bad);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 4);
	/* promoted, not read, then itself removed: both views go */
	regent_catview *cand3 = regent_cat_view_new_candidate(c, true);
	regent_cat_view_promote(cand3, cand2);
	regent_cat_view_free(cand3);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 5);
	assert_int_equal(regent_catalog_services(f.last, NULL), 0);
	for (int i = 0; i < f.count; i++)
		assert_true(i == f.count - 1 || f.web[i] > 0);
	teardown(&loop, c, &f);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(leading_edge_then_batch),
		cmocka_unit_test(costly_flushes_spaced),
		cmocka_unit_test(lone_change_after_costly_flush),
		cmocka_unit_test(big_service_spaced_by_size),
		cmocka_unit_test(huge_service_spaced_past_max_delay),
		cmocka_unit_test(slow_turns_batched),
		cmocka_unit_test(union_of_stores),
		cmocka_unit_test(trickle_flushes_by_max_delay),
		cmocka_unit_test(not_ready_holds_sinks),
		cmocka_unit_test(candidate_views_swap),
		cmocka_unit_test(catalog_metrics),
		cmocka_unit_test(single_instance_changes),
		cmocka_unit_test(flush_merges_into_sorted_list),
		cmocka_unit_test(held_snapshots_chain),
		cmocka_unit_test(pending_table),
		cmocka_unit_test(unknown_services),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
