/* test_catalog_views.c - the catalog's views and snapshots: single-instance
 * changes (put, del) merged in id order, dirty services merged into the
 * sorted service list of the last snapshot, snapshots held across flushes,
 * the pending table of single changes (catpend.c) against a model, and
 * unknown services (ABI 1.9).  Part of the test_catalog executable (its
 * fixture: catalog_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "catpend.h"
#include "model.h"
#include "util.h"

#include "catalog_fixture.h"

/* The ids of svc in cat, joined with ';', are want. */
static void expect_ids(const regent_catalog *cat, const char *svc, const char *want)
{
	const regent_instance *const *insts;
	size_t n = regent_catalog_instances(cat, svc, &insts);
	char got[512] = "";
	for (size_t i = 0; i < n; i++) {
		strcat(got, insts[i]->id);
		strcat(got, ";");
	}
	assert_string_equal(got, want);
}

/* The unknown names of a snapshot, joined with ';'. */
static char *unknown_of(const regent_catalog *cat)
{
	static char buf[256];
	const char *const *names;
	size_t n = regent_catalog_unknown(cat, &names);
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		strcat(buf, names[i]);
		strcat(buf, ";");
	}
	return buf;
}

/* ABI 1.9: a service the store lists but cannot read (set_unknown) ends a
 * full read without holding the first snapshot; it is absent from the
 * services and listed as unknown until set, forgotten by a removal or a
 * read that no longer lists it; a view that knows the service ignores it;
 * a store's replacement that reports it unknown keeps the old one's
 * instances. */
void unknown_services(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 10, 50, on_flush, &f);
	regent_catview *a = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(a);
	set1(a, "web", "w1", 1);
	regent_cat_view_set_unknown(a, "wide");
	regent_cat_view_set_unknown(a, "api");
	regent_cat_view_set_unknown(a, "api"); /* twice: once */
	regent_cat_view_sync_end(a);
	run_until(&loop, &f, 1, 500);
	assert_int_equal(f.count, 1);
	assert_string_equal(f.changed[0], "web;");
	assert_int_equal(regent_catalog_services(f.last, NULL), 1);
	assert_string_equal(unknown_of(f.last), "api;wide;");
	assert_int_equal(regent_catalog_instances(f.last, "wide", NULL), 0);
	/* wide read: known, in the changes, no longer unknown */
	set2(a, "wide", "x1", "x2");
	run_until(&loop, &f, 2, 500);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "wide;");
	assert_string_equal(unknown_of(f.last), "api;");
	/* a known service is not made unknown (its last instances stay) */
	regent_cat_view_set_unknown(a, "wide");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	/* api removed from the registry: a snapshot without it, nothing changed */
	regent_cat_view_remove(a, "api");
	run_until(&loop, &f, 3, 500);
	assert_int_equal(f.count, 3);
	assert_string_equal(f.changed[2], "");
	assert_string_equal(unknown_of(f.last), "");
	assert_int_equal(regent_catalog_unknown(f.last, NULL), 0);
	/* one unknown put by instance: known at once */
	regent_cat_view_set_unknown(a, "db");
	run_until(&loop, &f, 4, 500);
	assert_string_equal(unknown_of(f.last), "db;");
	regent_cat_view_put(a, mk("db", "d1", 7));
	run_until(&loop, &f, 5, 500);
	assert_string_equal(f.changed[4], "db;");
	assert_string_equal(unknown_of(f.last), "");
	/* another store knows a service this one cannot read: known, its instances */
	regent_catview *b = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(b);
	regent_cat_view_set_unknown(b, "web");
	regent_cat_view_set_unknown(b, "gone");
	regent_cat_view_sync_end(b);
	run_until(&loop, &f, 6, 500);
	assert_string_equal(unknown_of(f.last), "gone;");
	assert_int_equal(regent_catalog_instances(f.last, "web", NULL), 1);
	/* a full read that no longer lists it forgets it */
	regent_cat_view_sync_begin(b);
	regent_cat_view_sync_end(b);
	run_until(&loop, &f, 7, 500);
	assert_string_equal(unknown_of(f.last), "");
	regent_cat_view_free(b);
	run_ms(&loop, 60);
	/* a reload's store that cannot read wide keeps the old one's wide */
	int n0 = f.count;
	regent_catview *cand = regent_cat_view_new_candidate(c, true);
	regent_cat_view_sync_begin(cand);
	set1(cand, "web", "w9", 9);
	regent_cat_view_set_unknown(cand, "wide");
	regent_cat_view_set_unknown(cand, "new");
	regent_cat_view_sync_end(cand);
	regent_cat_view_promote(cand, a);
	run_until(&loop, &f, n0 + 1, 500);
	assert_int_equal(f.count, n0 + 1);
	expect_ids(f.last, "wide", "x1;x2;");
	expect_ids(f.last, "web", "w9;");
	assert_int_equal(regent_catalog_instances(f.last, "db", NULL), 0); /* gone with a */
	assert_string_equal(unknown_of(f.last), "new;");
	teardown(&loop, c, &f);
}

/* ABI 1.3: a store reports single instances (put, del); they land in the
 * snapshots sorted by id, mixed with whole-service sets, one flush per
 * batch, nothing when nothing changed, and a sync keeps a service that was
 * only reported instance by instance. */
void single_instance_changes(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 100, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	regent_cat_view_sync_begin(v);
	set2(v, "web", "w2", "w4");
	regent_cat_view_sync_end(v);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 1);
	expect_ids(f.last, "web", "w2;w4;");
	/* added around and between the existing ones, and a new service */
	regent_cat_view_put(v, mk("web", "w3", 3));
	regent_cat_view_put(v, mk("web", "w1", 1));
	regent_cat_view_put(v, mk("web", "w5", 5));
	regent_cat_view_put(v, mk("api", "a1", 1));
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "api;web;");
	expect_ids(f.last, "web", "w1;w2;w3;w4;w5;");
	expect_ids(f.last, "api", "a1;");
	assert_int_equal(regent_catalog_total(f.last), 6);
	/* the same instance again, and removals of unknown ids or services:
	 * no snapshot */
	regent_cat_view_put(v, mk("web", "w3", 3));
	regent_cat_view_del(v, "web", "w9");
	regent_cat_view_del(v, "web", "w0");
	regent_cat_view_del(v, "web", "w25"); /* between two ids: settled, finds nothing */
	regent_cat_view_del(v, "nosuch", "x");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	assert_int_equal(regent_catalog_services(f.last, NULL), 2);
	/* replaced (new port), removed, removed then added again, added then
	 * removed before any flush */
	regent_cat_view_put(v, mk("web", "w2", 22));
	regent_cat_view_del(v, "web", "w1");
	regent_cat_view_del(v, "web", "w5");
	regent_cat_view_put(v, mk("web", "w5", 55));
	regent_cat_view_put(v, mk("web", "w6", 6));
	regent_cat_view_del(v, "web", "w6");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 3);
	assert_string_equal(f.changed[2], "web;");
	expect_ids(f.last, "web", "w2;w3;w4;w5;");
	const regent_instance *const *insts;
	assert_int_equal(regent_catalog_instances(f.last, "web", &insts), 4);
	assert_int_equal(insts[0]->port, 22);
	assert_int_equal(insts[3]->port, 55);
	/* an older snapshot keeps what it had */
	const regent_catalog *old = regent_catalog_ref(f.last);
	regent_cat_view_del(v, "web", "w2");
	regent_cat_view_del(v, "web", "w3");
	regent_cat_view_del(v, "web", "w4");
	regent_cat_view_del(v, "web", "w5");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 4);
	expect_ids(old, "web", "w2;w3;w4;w5;");
	regent_catalog_unref(old);
	/* emptied: the service stays known, empty */
	assert_int_equal(regent_catalog_services(f.last, NULL), 2);
	expect_ids(f.last, "web", "");
	/* a whole-service set after single changes replaces them */
	regent_cat_view_put(v, mk("web", "w7", 7));
	set2(v, "web", "w8", "w9");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 5);
	expect_ids(f.last, "web", "w8;w9;");
	/* a full read that reports api instance by instance keeps it, and
	 * drops web (not reported) */
	regent_cat_view_sync_begin(v);
	regent_cat_view_put(v, mk("api", "a2", 2));
	regent_cat_view_sync_end(v);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 6);
	assert_int_equal(regent_catalog_services(f.last, NULL), 1);
	expect_ids(f.last, "api", "a1;a2;");
	regent_cat_view_free(v);
	run_ms(&loop, 60);
	assert_int_equal(regent_catalog_services(f.last, NULL), 0);
	teardown(&loop, c, &f);
}

/* A flush places the dirty services into the previous snapshot's sorted
 * list in one merge walk: added before, between and after the others,
 * removed, replaced; the services that did not change keep their lists
 * (shared with the older snapshot) and the total follows. */
void flush_merges_into_sorted_list(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 100, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	char name[32];
	regent_cat_view_sync_begin(v);
	for (int i = 0; i < 400; i += 2) { /* s000, s002, ... s398 */
		snprintf(name, sizeof(name), "s%03d", i);
		set1(v, name, "i1", (uint16_t)(i + 1));
	}
	regent_cat_view_sync_end(v);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 1);
	assert_int_equal(regent_catalog_services(f.last, NULL), 200);
	const regent_catalog *old = regent_catalog_ref(f.last);
	set1(v, "a", "i1", 1);       /* before all */
	set1(v, "s001", "i1", 1);    /* between */
	set1(v, "s201", "i1", 1);
	set1(v, "z", "i1", 1);       /* after all */
	regent_cat_view_remove(v, "s000");
	regent_cat_view_remove(v, "s200");
	regent_cat_view_remove(v, "s398");
	set2(v, "s100", "i1", "i2"); /* replaced */
	set1(v, "s300", "i1", 301);  /* the same again: no change */
	regent_cat_view_remove(v, "nosuch");
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	assert_string_equal(f.changed[1], "a;s000;s001;s100;s200;s201;s398;z;");
	const char *const *names;
	size_t n = regent_catalog_services(f.last, &names);
	assert_int_equal(n, 200 + 4 - 3);
	assert_null(names[n]);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(names[i - 1], names[i]) < 0);
	assert_string_equal(names[0], "a");
	assert_string_equal(names[1], "s001");
	assert_string_equal(names[2], "s002");
	assert_string_equal(names[n - 1], "z");
	assert_string_equal(names[n - 2], "s396");
	assert_int_equal(regent_catalog_instances(f.last, "s000", NULL), 0);
	assert_int_equal(regent_catalog_instances(f.last, "s200", NULL), 0);
	expect_ids(f.last, "s100", "i1;i2;");
	expect_ids(f.last, "s201", "i1;");
	assert_int_equal(regent_catalog_total(f.last), 200 + 4 - 3 + 1);
	/* unchanged services: the same list, shared with the older snapshot */
	const regent_instance *const *a, *const *b;
	regent_catalog_instances(old, "s300", &a);
	regent_catalog_instances(f.last, "s300", &b);
	assert_ptr_equal(a, b);
	regent_catalog_instances(old, "s002", &a);
	regent_catalog_instances(f.last, "s002", &b);
	assert_ptr_equal(a, b);
	expect_ids(old, "s000", "i1;");
	assert_int_equal(regent_catalog_total(old), 200);
	regent_catalog_unref(old);
	/* only changes that are no change: no snapshot */
	set1(v, "a", "i1", 1);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 2);
	regent_cat_view_free(v);
	run_ms(&loop, 60);
	assert_int_equal(f.count, 3);
	assert_int_equal(regent_catalog_services(f.last, NULL), 0);
	assert_int_equal(regent_catalog_total(f.last), 0);
	teardown(&loop, c, &f);
}

/* A snapshot's services as "name:port,port;..." (every service). */
static char *render_snap(const regent_catalog *cat)
{
	char *out = regent_xcalloc(1, 8192);
	const char *const *names;
	size_t n = regent_catalog_services(cat, &names);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = regent_catalog_instances(cat, names[i], &insts);
		size_t used = strlen(out);
		snprintf(out + used, 8192 - used, "%s:", names[i]);
		for (size_t j = 0; j < k; j++) {
			used = strlen(out);
			snprintf(out + used, 8192 - used, "%u,", (unsigned)insts[j]->port);
		}
		strcat(out, ";");
	}
	return out;
}

/* A snapshot hands the next one the references of the lists both have
 * and keeps those of the places that flush re-merged: snapshots held by
 * sinks across several flushes and released in any order (some after the
 * catalog is freed) each keep reading what they had (ASan: nothing freed
 * early, nothing leaked). */
void held_snapshots_chain(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	flushes f = {.loop = &loop};
	regent_cat *c = regent_cat_new(&loop, 20, 100, on_flush, &f);
	regent_catview *v = regent_cat_view_new(c, true);
	char name[32];
	regent_cat_view_sync_begin(v);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "s%02d", i);
		set1(v, name, "i1", (uint16_t)(i + 1));
	}
	regent_cat_view_sync_end(v);
	run_ms(&loop, 60);
	enum { ROUNDS = 7 };
	const regent_catalog *held[ROUNDS];
	char *seen[ROUNDS];
	held[0] = regent_catalog_ref(f.last);
	seen[0] = render_snap(held[0]);
	for (int r = 1; r < ROUNDS; r++) {
		snprintf(name, sizeof(name), "s%02d", r);
		set2(v, name, "i1", "i2");                     /* replaced */
		snprintf(name, sizeof(name), "s%02d", r + 7);
		set1(v, name, "i1", (uint16_t)(100 * r));      /* replaced */
		snprintf(name, sizeof(name), "s%02d", r + 20);
		regent_cat_view_remove(v, name);               /* gone */
		snprintf(name, sizeof(name), "n%d", r);
		set1(v, name, "i1", (uint16_t)r);              /* new */
		set1(v, "s40", "i1", 41);                      /* the same: shared */
		run_ms(&loop, 60);
		assert_int_equal(f.count, r + 1);
		held[r] = regent_catalog_ref(f.last);
		seen[r] = render_snap(held[r]);
		assert_string_not_equal(seen[r], seen[r - 1]);
	}
	assert_int_equal(regent_catalog_services(held[ROUNDS - 1], NULL), 50 - 6 + 6);
	const int order[ROUNDS] = {3, 0, 5, 1, 6, 2, 4};
	for (int k = 0; k < ROUNDS; k++) {
		int r = order[k];
		if (k == 4) { /* the rest outlive the catalog */
			regent_catview *gone = v;
			v = NULL;
			regent_cat_view_free(gone);
			run_ms(&loop, 60);
			teardown(&loop, c, &f);
		}
		for (int j = 0; j < ROUNDS; j++) {
			if (!held[j])
				continue;
			char *now = render_snap(held[j]);
			assert_string_equal(now, seen[j]);
			free(now);
		}
		regent_catalog_unref(held[r]);
		held[r] = NULL;
		free(seen[r]);
	}
}

/* The pending table (catpend.c) against a plain model: random puts,
 * removals and forgets of 600 ids (its index grows, and shifts cells back
 * on each forget), then the settled entries sorted by id, each id once,
 * with the last change made to it; arrival in id order settles the same. */
#define PEND_IDS 600
void pending_table(void **state)
{
	(void)state;
	for (int round = 0; round < 2; round++) {
		regent_pend *p = regent_pend_new();
		int model[PEND_IDS]; /* 0 none, -1 removed, else the port put */
		memset(model, 0, sizeof(model));
		char id[16];
		srand(7 + round);
		for (int op = 0; op < 6000; op++) {
			/* round 1: ids in order, each touched once (a bulk write or a range delete) */
			int k = round ? op : rand() % PEND_IDS;
			if (round && k >= PEND_IDS)
				break;
			snprintf(id, sizeof(id), "i%04d", k);
			int what = rand() % 4;
			if (what <= 1) {
				uint16_t port = (uint16_t)(1 + rand() % 60000);
				regent_pend_put(p, mk("web", id, port));
				model[k] = port;
			} else if (what == 2) {
				regent_pend_remove(p, id);
				model[k] = -1;
			} else {
				regent_pend_forget(p, id);
				model[k] = 0;
			}
			regent_inst *in = (regent_inst *)1;
			bool has = regent_pend_get(p, id, &in);
			assert_int_equal(has, model[k] != 0);
			assert_true(model[k] > 0 ? in && in->pub.port == model[k] : in == NULL);
		}
		size_t want = 0;
		for (int k = 0; k < PEND_IDS; k++)
			want += model[k] != 0;
		assert_int_equal(regent_pend_size(p), want);
		size_t n;
		const regent_pend_ent *e = regent_pend_sorted(p, &n);
		assert_int_equal(n, want);
		size_t i = 0;
		for (int k = 0; k < PEND_IDS; k++) {
			if (!model[k])
				continue;
			snprintf(id, sizeof(id), "i%04d", k);
			assert_string_equal(e[i].id, id);
			if (model[k] > 0) {
				assert_non_null(e[i].inst);
				assert_int_equal(e[i].inst->pub.port, model[k]);
				regent_inst_unref(e[i].inst); /* handed over */
			} else {
				assert_null(e[i].inst);
			}
			i++;
		}
		regent_pend_free(p, false);
	}
	/* freed with its references (nothing settled) */
	regent_pend *p = regent_pend_new();
	regent_pend_put(p, mk("web", "a", 1));
	regent_pend_remove(p, "b");
	regent_pend_put(p, mk("web", "b", 2)); /* a removal replaced: b is put */
	regent_inst *in;
	assert_true(regent_pend_get(p, "b", &in) && in && in->pub.port == 2);
	regent_pend_remove(p, "a"); /* a put replaced: a is removed, its instance released */
	assert_true(regent_pend_get(p, "a", &in) && in == NULL);
	assert_false(regent_pend_get(p, "c", &in));
	assert_false(regent_pend_get(NULL, "c", &in));
	assert_int_equal(regent_pend_size(p), 2);
	regent_pend_free(p, true);
}
