/* test_catalog.c - catalog coalescing: a burst becomes one snapshot after
 * the debounce, a constant trickle still flushes by the maximum delay,
 * nothing reaches sinks when nothing changed, and the union of stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

typedef struct flushes {
	int count;
	uint64_t at_ms[64];
	char changed[64][256];
	const regent_catalog *last;
} flushes;

static void on_flush(void *arg, const regent_catalog *snap, const char *const *changed, size_t n)
{
	flushes *f = arg;
	if (f->count < 64) {
		f->at_ms[f->count] = regent_now_ms();
		f->changed[f->count][0] = '\0';
		for (size_t i = 0; i < n; i++) {
			strcat(f->changed[f->count], changed[i]);
			strcat(f->changed[f->count], ";");
		}
	}
	f->count++;
	if (f->last)
		regent_catalog_unref(f->last);
	f->last = regent_catalog_ref(snap);
}

static regent_inst *mk(const char *svc, const char *id, uint16_t port)
{
	regent_instance i = {.service = svc, .id = id, .address = "127.0.0.1", .port = port};
	return regent_inst_copy(&i, "n", NULL, 0);
}

static void set1(regent_catview *v, const char *svc, const char *id, uint16_t port)
{
	regent_inst *one = mk(svc, id, port);
	regent_cat_view_set(v, svc, &one, 1);
}

static void stop_cb(uv_timer_t *t)
{
	uv_stop(t->data);
}

static void run_ms(uv_loop_t *loop, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	t.data = loop;
	uv_timer_start(&t, stop_cb, ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static void teardown(uv_loop_t *loop, regent_cat *c, flushes *f)
{
	if (f->last)
		regent_catalog_unref(f->last);
	regent_cat_free(c);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void burst_coalesces(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {0};
	regent_cat *c = regent_cat_new(&loop, 50, 500, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	/* not ready until the store's first full sync */
	assert_false(regent_cat_ready(c));
	regent_cat_view_sync_begin(v);
	set1(v, "web", "w1", 1);
	regent_cat_view_sync_end(v);
	assert_true(regent_cat_ready(c));
	run_ms(&loop, 120);
	assert_int_equal(f.count, 1);
	assert_string_equal(f.changed[0], "web;");
	/* a burst of 20 changes over 3 services within 20 ms -> one flush */
	uint64_t t0 = regent_now_ms();
	for (int i = 0; i < 20; i++) {
		char id[8];
		snprintf(id, sizeof(id), "w%d", i);
		set1(v, i % 2 ? "api" : "db", id, (uint16_t)(100 + i));
	}
	run_ms(&loop, 200);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "api;db;");
	assert_true(f.at_ms[1] - t0 >= 45);
	assert_int_equal(regent_catalog_services(f.last, NULL), 3);
	/* the same data again: nothing reaches the sink */
	set1(v, "web", "w1", 1);
	run_ms(&loop, 150);
	assert_int_equal(f.count, 2);
	/* union of two stores by id; removing one store keeps the other's */
	regent_catview *v2 = regent_cat_view_new(c, false);
	set1(v2, "web", "w9", 9);
	run_ms(&loop, 120);
	assert_int_equal(f.count, 3);
	assert_string_equal(f.changed[2], "web;");
	const regent_instance *const *insts;
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 2);
	assert_string_equal(insts[0]->id, "w1");
	assert_string_equal(insts[1]->id, "w9");
	set1(v2, "web", "w1", 1); /* same id in both: counted once */
	run_ms(&loop, 120);
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 1);
	regent_cat_view_free(v2);
	run_ms(&loop, 120);
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 1);
	/* a full sync that omits a service removes it */
	regent_cat_view_sync_begin(v);
	set1(v, "web", "w1", 1);
	regent_cat_view_sync_end(v);
	run_ms(&loop, 120);
	assert_int_equal(regent_catalog_services(f.last, NULL), 1);
	assert_string_equal(f.changed[f.count - 1], "api;db;");
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
	flushes f = {0};
	/* debounce 50 ms, but a change every 20 ms never leaves 50 ms quiet */
	regent_cat *c = regent_cat_new(&loop, 50, 200, on_flush, &f);
	trickle_view = regent_cat_view_new(c, false);
	trickle_n = 0;
	uv_timer_t t;
	uv_timer_init(&loop, &t);
	uint64_t t0 = regent_now_ms();
	uv_timer_start(&t, trickle, 20, 20);
	run_ms(&loop, 700);
	uv_close((uv_handle_t *)&t, NULL);
	/* 40 changes over ~800 ms: flushed every ~200 ms, not once at the end */
	assert_true(f.count >= 2);
	assert_true(f.at_ms[0] - t0 <= 260);
	assert_true(f.at_ms[1] - f.at_ms[0] <= 260);
	teardown(&loop, c, &f);
}

static void not_ready_holds_sinks(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {0};
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_coalesces),
		cmocka_unit_test(trickle_flushes_by_max_delay),
		cmocka_unit_test(not_ready_holds_sinks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
