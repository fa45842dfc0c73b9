/* test_model_dirty.c - unit tests of the dirty lists (plugins/haproxy/
 * slots.c) the runtime path reads instead of every slot, on test_model.c's
 * fake catalog and host (model_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "model_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the dirty lists (slots.c) the runtime path reads instead of every slot ---- */

/* What haproxy should have for a slot (runtime.c's slot_target). */
static srv_view target_of(const slot *sl)
{
	srv_view t = {.st = AP_MAINT};
	if (sl->st != ST_FREE) {
		t.st = sl->st == ST_READY ? AP_READY : AP_DRAIN;
		t.addr = sl->addr;
		t.port = sl->port;
		t.weight = sl->weight;
	}
	return t;
}

static bool view_eq(const srv_view *a, const srv_view *b)
{
	return a->st == b->st && (a->st == AP_MAINT || (a->port == b->port && a->weight == b->weight &&
	                                                hx_ip_eq(&a->addr, &b->addr)));
}

/* The runtime path, as runtime.c runs it: only the queued slots are set
 * (ap = target) and dropped; counts them. */
static size_t nset;
static bool set_one(void *arg, svc *v, size_t i)
{
	(void)arg;
	if (hx_slot_live(v, i)) {
		v->slots[i].ap = target_of(&v->slots[i]);
		nset++;
	}
	return false;
}

/* A walk that drops `left` entries, then ends (hx_rq_filter_until). */
typedef struct drop_some {
	size_t left;
	bool stop;
} drop_some;

static bool drop_until(void *arg, svc *v, size_t i)
{
	drop_some *d = arg;
	(void)v;
	(void)i;
	if (--d->left == 0)
		d->stop = true;
	return false;
}

static size_t runtime_pass(hx_model *m)
{
	nset = 0;
	for (svc *v = m->qhead, *next; v; v = next) {
		next = v->qnext;
		hx_rq_filter(m, v, set_one, NULL);
	}
	for (svc *v = m->qhead; v; v = v->qnext) /* left listed: draining slots only */
		assert_true(v->ndq && !v->nrq);
	return nset;
}

/* The oracle: every slot haproxy can reach, walked, is in step. */
static void assert_in_step(hx_model *m)
{
	size_t ndrain = 0;
	for (svc *v = m->svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			ndrain += v->slots[i].st == ST_DRAIN;
			if (!hx_slot_live(v, i))
				continue;
			srv_view t = target_of(&v->slots[i]);
			if (!view_eq(&v->slots[i].ap, &t))
				fail_msg("%s/s%zu (%s) is not in step: the dirty list missed it", v->name,
				         i + 1, v->slots[i].id ? v->slots[i].id : "free");
		}
	assert_int_equal(ndrain, m->ndrain);
}

/* A reload as pipeline.c's install_done and runtime.c's hx_ap_from_file
 * run it: the wanted shapes run, every slot of a changed one is queued. */
static void install_queued(hx_model *m)
{
	for (svc *v = m->svcs; v; v = v->next) {
		bool moved = !hx_shape_eq(&v->run, &v->want);
		run_wanted(v);
		if (moved)
			hx_svc_dirty_all(m, v);
		hx_svc_shape_sync(m, v);
	}
}

/* Every change reaches the runtime path through the dirty lists, and only
 * the changed slots do: a join, a move, a weight, a leave (draining, in
 * the drain list), the drain's end, a new service (a reload), settings
 * that change a shape.  Fails when a path changes a slot without queuing
 * it (the oracle walks every slot). */
void test_dirty_lists(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	cat_set("a", 5, 0, sp_8080);
	cat_set("b", 3, 0, NULL);
	fs("b")->port = 7001;
	cat_indiv("a");
	cat_indiv("b");
	model_update(&m, NULL, 0, true);
	assert_int_equal(m.nsdiff, 2); /* two shapes wanted, none installed */
	install_queued(&m);
	assert_int_equal(m.nsdiff, 0);
	assert_int_equal(runtime_pass(&m), 2 * 8); /* every slot of both, once */
	assert_in_step(&m);
	svc *a = hx_svc_find(&m, "a"), *b = hx_svc_find(&m, "b");

	/* a join: one slot queued, in service a only */
	cat_put1("a", "a-1000000", "10.9.0.1", 9001, 8080);
	update(&m, "a");
	assert_true(a->qlinked);
	assert_false(b->qlinked);
	assert_int_equal(a->nrq, 1);
	assert_int_equal(m.nsdiff, 0); /* the fast path: no reload */
	assert_int_equal(runtime_pass(&m), 1);
	assert_in_step(&m);

	/* a move (same id, new address), then a weight */
	cat_put1("a", "a-1000000", "10.9.0.2", 9002, 8080);
	update(&m, "a");
	assert_int_equal(a->nrq, 1);
	assert_int_equal(runtime_pass(&m), 1);
	assert_in_step(&m);
	regent_kv wmeta = {.key = "weight", .value = "7"};
	fsvc *f = fs("a");
	const regent_instance **np = calloc(f->n + 1, sizeof(*np)); /* a new snapshot's list */
	memcpy(np, f->ptrs, f->n * sizeof(*np));
	bury(f->ptrs);
	f->ptrs = np;
	for (size_t k = 0; k < f->n; k++)
		if (strcmp(f->ptrs[k]->id, "a-1000000") == 0) {
			regent_instance *in = calloc(1, sizeof(*in));
			*in = *f->ptrs[k];
			in->id = strdup(in->id);
			in->meta = &wmeta;
			in->nmeta = 1;
			bury((char *)f->ptrs[k]->id);
			bury((void *)f->ptrs[k]);
			f->ptrs[k] = in;
		}
	update(&m, "a");
	assert_int_equal(hx_slot_find(a, "a-1000000")->weight, 8);
	assert_int_equal(runtime_pass(&m), 1);
	assert_in_step(&m);

	/* a leave: draining, counted, in the drain list */
	cat_del1("a", "a-0000002");
	update(&m, "a");
	slot *sl = hx_slot_find(a, "a-0000002");
	assert_non_null(sl);
	assert_int_equal(sl->st, ST_DRAIN);
	assert_int_equal(m.ndrain, 1);
	assert_int_equal(a->ndq, 1);
	assert_int_equal(a->dq[0], (size_t)(sl - a->slots));
	nset = 0;
	hx_rq_filter(&m, a, set_one, NULL);
	assert_int_equal(nset, 1);
	assert_true(a->qlinked); /* still: its drain list */
	assert_in_step(&m);
	/* the drain ends: free, queued (maintenance), off the drain list */
	hx_slot_free_id(&m, a, (size_t)(sl - a->slots));
	assert_int_equal(m.ndrain, 0);
	hx_dq_filter(&m, a, NULL, NULL);
	assert_int_equal(a->ndq, 0);
	assert_int_equal(runtime_pass(&m), 1);
	assert_in_step(&m);

	/* a new service: a shape to install (no slot reachable before) */
	cat_set("c", 2, 7002, NULL);
	update(&m, "c");
	assert_int_equal(m.nsdiff, 1);
	assert_int_equal(runtime_pass(&m), 0); /* not live yet: dropped */
	install_queued(&m);
	assert_int_equal(m.nsdiff, 0);
	assert_int_equal(runtime_pass(&m), 8);
	assert_in_step(&m);

	/* settings that change a shape (more slots): a reload is wanted */
	fs("b")->slots = 16;
	update(&m, "b");
	assert_int_equal(m.nsdiff, 1);
	install_queued(&m);
	assert_int_equal(m.nsdiff, 0);
	assert_int_equal(runtime_pass(&m), 16);
	assert_in_step(&m);

	/* a walk that ends early (a full batch): the entries it did not reach
	 * stay queued, in their order, and a later walk finds them */
	hx_svc_dirty_all(&m, b);
	assert_int_equal(b->nrq, 16);
	uint32_t was[16]; /* v->rq holds uint32_t slot indices */
	memcpy(was, b->rq, sizeof(was));
	drop_some d = {.left = 3};
	hx_rq_filter_until(&m, b, drop_until, &d, &d.stop);
	assert_true(d.stop);
	assert_int_equal(b->nrq, 13);
	for (size_t k = 0; k < 13; k++) {
		assert_int_equal(b->rq[k], was[k + 3]);
		assert_true(b->slots[b->rq[k]].rq);
	}
	for (size_t k = 0; k < 3; k++)
		assert_false(b->slots[was[k]].rq);
	assert_true(b->qlinked);
	runtime_pass(&m);
	assert_int_equal(b->nrq, 0);
	assert_in_step(&m);

	/* a service gone for good: off every list, the counters agree */
	cat_del1("a", "a-1000000");
	update(&m, "a");
	assert_int_equal(m.ndrain, 1);
	cat_drop("c");
	update(&m, "c");
	install_queued(&m);
	runtime_pass(&m);
	assert_in_step(&m);
	hx_model_free(&m);
	cat_clear();
}

