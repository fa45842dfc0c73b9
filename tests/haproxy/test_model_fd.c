/* test_model_fd.c - unit tests of the haproxy model's open-file budget
 * (plugins/haproxy/model.c, hx_model_fd_budget): a service growing past
 * what haproxy's limit leaves is capped and reported, strict_limits = false
 * budgets listeners + 2 x maxconn; on test_model.c's fake catalog and host
 * (model_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* haproxy's open-file limit (issue 14 point 1): a service growing past what
 * the limit leaves is capped and reported; the others keep changing and a
 * new one still gets its slots; the cap lifts when the instances go. */
void test_fd_cap(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.fd_limit = 1000;
	m.ncpu = 1;
	size_t budget = hx_model_fd_budget(&m);
	assert_int_equal(budget, 1000 - HX_FD_RESERVE - 3 - 1000 * HX_FD_MARGIN_PCT / 100);
	cat_set("big", 1, 9000, NULL);
	cat_set("small", 1, 9001, NULL);
	model_update(&m, NULL, 0, true);
	install(&m);
	svc *b = hx_svc_find(&m, "big"), *sm = hx_svc_find(&m, "small");
	assert_int_equal(m.fd_used, 2 * (8 + 1));
	assert_int_equal(m.ncapped, 0);

	/* big grows far past the budget: capped, routing what fits */
	nwarn = 0;
	all_warn[0] = 0;
	cat_set("big", 2000, 9000, NULL);
	update(&m, "big");
	print_message("limit 1000: budget %zu, big %zu slots (%zu used), fds %zu\n", budget,
	              b->want.nslots, used_slots(b), m.fd_used);
	assert_true(m.fd_used <= budget);
	assert_true(b->want.nslots >= 8 && b->want.nslots < 2000);
	assert_int_equal(used_slots(b), b->want.nslots);
	assert_non_null(b->capped);
	assert_int_equal(m.ncapped, 1);
	assert_non_null(strstr(all_warn, "service big: server slots capped at"));
	assert_non_null(strstr(all_warn, "haproxy's open-file limit is 1000"));
	char *note = hx_model_excluded_note(&m);
	assert_non_null(note);
	assert_non_null(strstr(note, "service big: server slots capped at"));
	free(note);
	install(&m);

	/* the same snapshot again: logged once */
	size_t before = strlen(all_warn);
	cat_set("big", 2001, 9000, NULL);
	update(&m, "big");
	assert_true(m.fd_used <= budget);
	assert_non_null(b->capped);
	assert_null(strstr(all_warn + before, "capped at"));

	/* another service still changes, and a new one gets its slots */
	cat_set("small", 5, 9001, NULL);
	update(&m, "small");
	assert_int_equal(used_slots(sm), 5);
	cat_set("second", 3, 9002, NULL);
	update(&m, "second");
	svc *s2 = hx_svc_find(&m, "second");
	assert_non_null(s2->want.listen);
	assert_int_equal(s2->want.nslots, 8);
	assert_int_equal(used_slots(s2), 3);
	assert_null(s2->capped);
	assert_true(m.fd_used <= budget);
	install(&m);

	/* big shrinks: its slots fit, the cap and the note go */
	cat_set("big", 10, 9000, NULL);
	update(&m, "big");
	assert_null(b->capped);
	assert_int_equal(m.ncapped, 0);
	assert_null(hx_model_excluded_note(&m));
	assert_int_equal(m.fd_used, (b->want.nslots + 1) + 2 * (8 + 1));
	hx_model_free(&m);
	cat_clear();
}

/* After a restart the slots an earlier run's file gave each service count
 * in the budget from the start (hx_model_recovered): the first services the
 * catalog routes do not take the room the others' kept slots hold (they
 * never shrink), so the sum stays within haproxy's limit.  (Counted only
 * once computed, the first service grew into that room and the file needed
 * more descriptors than haproxy may open: every reload refused.) */
void test_fd_recovered(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.fd_limit = 1000;
	m.ncpu = 1;
	m.grace_over = false; /* a start: the startup grace keeps the file's services */
	size_t budget = hx_model_fd_budget(&m);
	assert_int_equal(budget, 435);
	/* the file: "a" held 8 slots (capped then), ten others 38 each */
	const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
	for (size_t i = 0; i < 11; i++) {
		svc *v = hx_svc_get(&m, names[i]);
		size_t n = i ? 38 : 8;
		hx_svc_grow(&m, v, n);
		v->want.nslots = n;
	}
	hx_model_sort(&m);
	hx_model_recovered(&m);
	assert_int_equal(m.fd_used, 8 + 10 * 38 + 11);
	/* the catalog: 30 instances each; "a" is computed first */
	for (size_t i = 0; i < 11; i++)
		cat_set(names[i], 30, 9000 + (long)i, NULL);
	model_update(&m, NULL, 0, true);
	svc *a = hx_svc_find(&m, "a");
	print_message("limit 1000: budget %zu, a %zu slots, fds %zu\n", budget, a->want.nslots,
	              m.fd_used);
	assert_true(m.fd_used <= budget);
	assert_non_null(a->capped);
	for (size_t i = 1; i < 11; i++)
		assert_int_equal(used_slots(hx_svc_find(&m, names[i])), 30);
	install(&m);
	assert_true(m.fd_used <= budget);
	hx_model_free(&m);
	cat_clear();
}

/* The budget with a global maxconn and strict_limits = false: 2
 * descriptors per connection come off it; without strict-limits a slot
 * costs none (a check's socket exists only while it runs), only the
 * listeners are kept within the budget, and a service whose listener no
 * longer fits is capped at no slots and reported. */
void test_fd_loose(void **st)
{
	(void)st;
	/* limit - 512 - 3 per CPU - 5 % - 2 x maxconn */
	assert_int_equal(hx_fd_budget(20000, 2, 0), 18482);
	assert_int_equal(hx_fd_budget(20000, 2, 4000), 10482);
	assert_int_equal(hx_fd_budget(1000, 1, 210), 15);
	assert_int_equal(hx_fd_budget(1000, 1, 300), 0);
	assert_int_equal(hx_fd_budget(0, 2, 4000), SIZE_MAX);

	/* strict, with maxconn: slots count, within the smaller budget */
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.fd_limit = 1000;
	m.ncpu = 1;
	m.maxconn = 100;
	assert_int_equal(hx_model_fd_budget(&m), 235);
	cat_set("big", 2000, 9000, NULL);
	model_update(&m, NULL, 0, true);
	svc *b = hx_svc_find(&m, "big");
	assert_true(m.fd_used <= 235);
	assert_true(b->want.nslots < 235);
	assert_non_null(b->capped);
	assert_non_null(strstr(b->capped, "(listeners + slots at most 235"));
	hx_model_free(&m);
	cat_clear();

	/* no strict-limits: the same service gets every slot it wants */
	model_new(&m);
	m.fd_limit = 1000;
	m.ncpu = 1;
	m.maxconn = 210;
	m.fd_loose = true;
	size_t budget = hx_model_fd_budget(&m);
	assert_int_equal(budget, 15);
	cat_set("big", 2000, 9000, NULL);
	model_update(&m, NULL, 0, true);
	install(&m);
	b = hx_svc_find(&m, "big");
	assert_int_equal(used_slots(b), 2000);
	assert_true(b->want.nslots >= 2000);
	assert_null(b->capped);
	assert_int_equal(m.ncapped, 0);
	assert_int_equal(m.fd_used, 1); /* its listener */

	/* 19 more services: 15 listeners fit, the last 5 are capped at no
	 * slots and reported */
	nwarn = 0;
	all_warn[0] = 0;
	char name[16];
	for (int i = 1; i < 20; i++) {
		snprintf(name, sizeof(name), "s%02d", i);
		cat_set(name, 2, 9000 + i, NULL);
		update(&m, name);
	}
	size_t routed = 0, capped = 0;
	for (int i = 1; i < 20; i++) {
		snprintf(name, sizeof(name), "s%02d", i);
		svc *v = hx_svc_find(&m, name);
		assert_non_null(v);
		if (v->capped) {
			capped++;
			assert_int_equal(used_slots(v), 0);
		} else {
			routed++;
			assert_int_equal(used_slots(v), 2);
		}
	}
	print_message("no strict-limits, budget %zu: %zu services routed beside big, %zu capped\n",
	              budget, routed, capped);
	assert_int_equal(routed, budget - 1);
	assert_int_equal(capped, 19 - (budget - 1));
	assert_int_equal(m.ncapped, capped);
	assert_non_null(strstr(all_warn, "(no strict-limits: listeners at most 15, the other "
	                                 "services hold 15)"));
	assert_int_equal(used_slots(b), 2000); /* big kept every slot */
	hx_model_free(&m);
	cat_clear();
}
