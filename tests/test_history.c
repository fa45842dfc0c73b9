/* test_history.c - the status page's memory (core/history.c): catalog
 * changes described instance by instance (added, removed, moved, changed,
 * the first snapshot as one "loaded" line), each sink's apply time, at most
 * REGENT_HISTORY_CHANGES kept with a "more" line for a mass change, and the
 * hour of 10 s intervals: latency once per sink and snapshot, the catalog
 * size carried forward, never more than REGENT_HISTORY_POINTS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

typedef struct fixture {
	uv_loop_t loop;
	regent_cat *cat;
	regent_catview *view;
	regent_history *h;
	const regent_catalog *last;
	uint64_t now_ms, wall_ns;
	const char *sinks[2];
	size_t nsinks;
} fixture;

static void on_flush(void *arg, const regent_catalog *snap, const char *const *changed, size_t n)
{
	fixture *f = arg;
	regent_history_flush(f->h, snap, changed, n, f->sinks, f->nsinks, f->now_ms, f->wall_ns);
	if (f->last)
		regent_catalog_unref(f->last);
	f->last = regent_catalog_ref(snap);
}

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	uv_loop_init(&f->loop);
	f->cat = regent_cat_new(&f->loop, 0, 0, on_flush, f);
	f->view = regent_cat_view_new(f->cat, false);
	f->h = regent_history_new();
	f->now_ms = 1000000;
	f->wall_ns = 1700000000ull * 1000000000ull;
	f->sinks[0] = "haproxy";
	f->sinks[1] = "stats";
	f->nsinks = 2;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	regent_history_free(f->h);
	if (f->last)
		regent_catalog_unref(f->last);
	regent_cat_view_free(f->view);
	regent_cat_free(f->cat);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_loop_close(&f->loop);
	free(f);
	return 0;
}

static regent_inst *mk(const char *id, const char *addr, uint16_t port, const char *tag)
{
	const char *tags[1] = {tag};
	regent_instance i = {.service = "web", .id = id, .address = addr, .port = port,
	                     .tags = tags, .ntags = tag ? 1 : 0};
	return regent_inst_copy(&i, "n1", NULL, 0);
}

/* Sets "web" to the n instances and flushes. */
static void set_web(fixture *f, regent_inst **v, size_t n)
{
	regent_cat_view_set(f->view, "web", v, n);
	regent_cat_flush_now(f->cat);
}

typedef struct seen {
	size_t n;
	char line[64][200];
	uint64_t applied[64][2];
	size_t nsinks[64];
} seen;

static void collect(void *arg, const regent_change *c)
{
	seen *s = arg;
	assert_int_equal(c->size, sizeof(*c));
	if (s->n < 64) {
		snprintf(s->line[s->n], sizeof(s->line[0]), "%s %s %s: %s", c->what, c->service, c->id,
		         c->detail);
		s->nsinks[s->n] = c->nsinks;
		for (size_t i = 0; i < c->nsinks && i < 2; i++)
			s->applied[s->n][i] = c->applied_ns[i];
	}
	s->n++;
}

static void test_changes(void **state)
{
	fixture *f = *state;
	regent_inst *a[2] = {mk("w1", "10.0.0.1", 80, NULL), mk("w2", "10.0.0.2", 80, NULL)};
	set_web(f, a, 2);
	regent_inst *b[3] = {mk("w1", "10.0.0.1", 81, NULL), mk("w3", "10.0.0.3", 80, NULL),
	                     mk("w4", "::1", 80, "blue")};
	set_web(f, b, 3);
	/* w3 moves to another address on the same port: moved, not a meta change */
	regent_inst *c[3] = {mk("w1", "10.0.0.1", 81, NULL), mk("w3", "10.0.0.9", 80, NULL),
	                     mk("w4", "::1", 80, "green")};
	set_web(f, c, 3);

	seen s = {0};
	regent_history_changes(f->h, collect, &s);
	assert_int_equal(s.n, 7);
	assert_string_equal(s.line[0], "changed web w4: tags");
	assert_string_equal(s.line[1], "moved web w3: 10.0.0.3:80/tcp -> 10.0.0.9:80/tcp");
	assert_string_equal(s.line[2], "added web w4: [::1]:80/tcp on n1");
	assert_string_equal(s.line[3], "added web w3: 10.0.0.3:80/tcp on n1");
	assert_string_equal(s.line[4], "removed web w2: was 10.0.0.2:80/tcp");
	assert_string_equal(s.line[5], "moved web w1: 10.0.0.1:80/tcp -> 10.0.0.1:81/tcp");
	assert_string_equal(s.line[6], "loaded  : 1 service, 2 instances");

	/* haproxy applies the newest snapshot: every change gets its time;
	 * stats has applied nothing; a sink that did not run gets nothing. */
	uint64_t t = f->wall_ns + 7000000;
	regent_history_applied(f->h, "haproxy", f->last, f->now_ms + 7, t);
	regent_history_applied(f->h, "late", f->last, f->now_ms + 7, t);
	memset(&s, 0, sizeof(s));
	regent_history_changes(f->h, collect, &s);
	assert_int_equal(s.n, 7);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(s.nsinks[i], 2);
		assert_int_equal(s.applied[i][0], t);
		assert_int_equal(s.applied[i][1], 0);
	}
}

static void test_added_between(void **state)
{
	fixture *f = *state;
	regent_inst *a[1] = {mk("w2", "10.0.0.2", 80, NULL)};
	set_web(f, a, 1);
	regent_inst *b[3] = {mk("w1", "10.0.0.1", 80, NULL), mk("w2", "10.0.0.2", 80, NULL),
	                     mk("w3", "10.0.0.3", 80, NULL)};
	set_web(f, b, 3);
	seen s = {0};
	regent_history_changes(f->h, collect, &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.line[0], "added web w3: 10.0.0.3:80/tcp on n1");
	assert_string_equal(s.line[1], "added web w1: 10.0.0.1:80/tcp on n1");
}

static void test_mass_change(void **state)
{
	fixture *f = *state;
	set_web(f, NULL, 0);
	regent_inst *v[120];
	char id[16];
	for (size_t i = 0; i < 120; i++) {
		snprintf(id, sizeof(id), "w%03zu", i);
		v[i] = mk(id, "10.0.0.1", (uint16_t)(1000 + i), NULL);
	}
	set_web(f, v, 120);
	seen s = {0};
	regent_history_changes(f->h, collect, &s);
	assert_int_equal(s.n, REGENT_HISTORY_CHANGES);
	assert_string_equal(s.line[0], "more  : 71 more changes in this snapshot");
	assert_string_equal(s.line[1], "added web w048: 10.0.0.1:1048/tcp on n1");
}

typedef struct pts {
	size_t n;
	regent_history_point p[REGENT_HISTORY_POINTS + 2];
} pts;

static void collect_pt(void *arg, const regent_history_point *p)
{
	pts *s = arg;
	assert_int_equal(p->size, sizeof(*p));
	if (s->n < REGENT_HISTORY_POINTS + 2)
		s->p[s->n] = *p;
	s->n++;
}

static void test_points(void **state)
{
	fixture *f = *state;
	f->now_ms = 1000000; /* the start of an interval */
	regent_inst *a[2] = {mk("w1", "10.0.0.1", 80, NULL), mk("w2", "10.0.0.2", 80, NULL)};
	set_web(f, a, 2);
	uint64_t origin = regent_catalog_origin_ns(f->last);
	/* haproxy: 40 ms; stats: 2 ms; stats again (an apply of the same
	 * snapshot, e.g. after a reload): not a propagation. */
	regent_history_applied(f->h, "haproxy", f->last, f->now_ms + 40, origin + 40000000);
	regent_history_applied(f->h, "stats", f->last, f->now_ms + 2, origin + 2000000);
	regent_history_applied(f->h, "stats", f->last, f->now_ms + 3, origin + 9000000000ull);
	/* A sink that did not run when the snapshot was made. */
	regent_history_applied(f->h, "late", f->last, f->now_ms + 3, origin + 9000000000ull);

	pts s = {0};
	regent_history_points(f->h, f->now_ms + 25000, f->wall_ns + 25000000000ull, collect_pt, &s);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.p[0].applies, 2);
	assert_true(s.p[0].latency_max > 0.0399 && s.p[0].latency_max < 0.0401);
	assert_true(s.p[0].latency_mean > 0.0209 && s.p[0].latency_mean < 0.0211);
	assert_int_equal(s.p[0].instances, 2);
	assert_int_equal(s.p[0].services, 1);
	assert_int_equal(s.p[2].applies, 0);
	assert_int_equal(s.p[2].instances, 2); /* carried forward */
	assert_int_equal(s.p[1].wall_ns + REGENT_HISTORY_STEP_MS * 1000000ull, s.p[2].wall_ns);
	assert_int_equal(s.p[0].interval_ms, REGENT_HISTORY_STEP_MS);

	/* Two hours later: one hour of points, the newest with the size. */
	f->now_ms += 7200000;
	f->wall_ns += 7200000000000ull;
	regent_inst *b[1] = {mk("w1", "10.0.0.1", 80, NULL)};
	set_web(f, b, 1);
	memset(&s, 0, sizeof(s));
	regent_history_points(f->h, f->now_ms, f->wall_ns, collect_pt, &s);
	assert_int_equal(s.n, REGENT_HISTORY_POINTS);
	assert_int_equal(s.p[REGENT_HISTORY_POINTS - 1].instances, 1);
	assert_int_equal(s.p[0].instances, 2);
	for (size_t i = 0; i < REGENT_HISTORY_POINTS; i++)
		assert_int_equal(s.p[i].applies, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_added_between, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mass_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_points, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
