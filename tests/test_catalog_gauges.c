/* test_catalog_gauges.c - the catalog's gauges kept by the flush (the
 * instances, services and owning nodes of each snapshot, and the by-node
 * counts of the current one) against a full recount of the snapshot,
 * after every flush of many random changes made through the public
 * catalog API: joins, leaves, moves between nodes, whole services set
 * and removed, two views holding the same ids, a view going away,
 * entries with and without a node; and the /metrics text they give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "model.h"
#include "util.h"

#define NSVC 24
#define NID 32
#define NOWNER 6

/* Owner names: nodes, and addresses of entries that name no node (one
 * address is also a node's name: both count under it). */
static const char *const nodes[NOWNER] = {"n0", "n1", "n2", "n3", "10.0.0.1", ""};
static const char *const addrs[] = {"10.0.0.1", "10.0.0.2", "127.0.0.1"};

static uint64_t rng = 0x9e3779b97f4a7c15u;

static unsigned roll(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static regent_inst *mk_rand(const char *svc, const char *id)
{
	regent_instance i = {.service = svc,
	                     .id = id,
	                     .address = addrs[roll(REGENT_ARRAY_LEN(addrs))],
	                     .node = nodes[roll(NOWNER)],
	                     .port = (uint16_t)(1000 + roll(4))};
	char why[128];
	regent_inst *in = regent_inst_copy(&i, NULL, why, sizeof(why));
	assert_non_null(in);
	return in;
}

static void svc_name(char *buf, size_t n, unsigned k)
{
	snprintf(buf, n, "s%02u", k);
}

static void id_name(char *buf, size_t n, unsigned k)
{
	snprintf(buf, n, "i%02u", k);
}

/* The snapshot recounted from its instances: total, services, and the
 * by-owner counts (an instance's node, else its address), compared with
 * what the flush kept. */
static void check_recount(const regent_cat *c)
{
	const regent_catalog *cat = regent_cat_current(c);
	const char *const *names;
	size_t n = regent_catalog_services(cat, &names), total = 0;
	regent_map *count = regent_map_new();
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = regent_catalog_instances(cat, names[i], &insts);
		assert_int_equal(regent_catalog_count_at(cat, i), k);
		total += k;
		for (size_t j = 0; j < k; j++) {
			const char *o = insts[j]->node && insts[j]->node[0] ? insts[j]->node
			                                                    : insts[j]->address;
			uintptr_t v = (uintptr_t)regent_map_get(count, o);
			regent_map_put(count, o, (void *)(v + 1));
		}
	}
	assert_int_equal(regent_catalog_total(cat), total);
	const regent_map *kept = regent_cat_nodes(c);
	assert_int_equal(regent_catalog_nodes(cat), regent_map_size(count));
	assert_int_equal(regent_map_size(kept), regent_map_size(count));
	regent_map_iter it = {0};
	const char *key;
	void *val;
	while (regent_map_next(count, &it, &key, &val))
		assert_int_equal((uintptr_t)regent_map_get(kept, key), (uintptr_t)val);
	regent_map_free(count, NULL);
}

/* One random change to view v. */
static void change(regent_catview *v)
{
	char svc[16], id[16];
	svc_name(svc, sizeof(svc), roll(NSVC));
	id_name(id, sizeof(id), roll(NID));
	unsigned what = roll(100);
	if (what < 45) { /* a join, or a move (the same id on another node or address) */
		regent_cat_view_put(v, mk_rand(svc, id));
	} else if (what < 80) { /* a leave */
		regent_cat_view_del(v, svc, id);
	} else if (what < 93) { /* the service set whole (ids may repeat: the first wins) */
		regent_inst *all[12];
		size_t n = roll(13);
		for (size_t i = 0; i < n; i++) {
			id_name(id, sizeof(id), roll(NID));
			all[i] = mk_rand(svc, id);
		}
		regent_cat_view_set(v, svc, all, n);
	} else { /* the service vanishes from this view */
		regent_cat_view_remove(v, svc);
	}
}

/* A catalog without a flush callback (flushed by hand), and its end. */
static regent_cat *cat_new(uv_loop_t *loop)
{
	uv_loop_init(loop);
	return regent_cat_new(loop, 10, 50, NULL, NULL);
}

static void cat_end(uv_loop_t *loop, regent_cat *c)
{
	regent_cat_free(c);
	uv_run(loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void kept_counts_match_recount(void **state)
{
	(void)state;
	uv_loop_t loop;
	regent_cat *c = cat_new(&loop);
	regent_catview *v1 = regent_cat_view_new(c, false);
	regent_catview *v2 = regent_cat_view_new(c, false);
	regent_cat_flush_now(c);
	check_recount(c);
	size_t flushes = 0, max_total = 0, max_nodes = 0;
	for (int round = 0; round < 4000; round++) {
		unsigned k = 1 + roll(6); /* changes batched into one flush */
		for (unsigned i = 0; i < k; i++)
			change(roll(4) ? v1 : v2);
		if (roll(150) == 0) { /* a store goes: its services leave (or stay by v1) */
			regent_cat_view_free(v2);
			v2 = regent_cat_view_new(c, false);
		}
		uint64_t seq = regent_catalog_seq(regent_cat_current(c));
		regent_cat_flush_now(c);
		flushes += regent_catalog_seq(regent_cat_current(c)) != seq;
		check_recount(c);
		const regent_catalog *cat = regent_cat_current(c);
		if (regent_catalog_total(cat) > max_total)
			max_total = regent_catalog_total(cat);
		if (regent_catalog_nodes(cat) > max_nodes)
			max_nodes = regent_catalog_nodes(cat);
	}
	/* the run did what it is for: many snapshots, a full catalog, every owner */
	assert_true(flushes > 3000);
	assert_true(max_total > NSVC * 8);
	assert_int_equal(max_nodes, 7); /* n0-n3, 10.0.0.1 (node and address), 10.0.0.2, 127.0.0.1 */
	cat_end(&loop, c);
}

/* The /metrics text: the kept figures by default, the services and nodes
 * per service; an entry that names no node counts under its address. */
static void gauges_text(void **state)
{
	(void)state;
	uv_loop_t loop;
	regent_cat *c = cat_new(&loop);
	regent_catview *v = regent_cat_view_new(c, false);
	regent_instance a = {.service = "web", .id = "a", .address = "10.0.0.9", .port = 1,
	                     .node = "h1"};
	regent_instance b = {.service = "web", .id = "b", .address = "10.0.0.9", .port = 2};
	regent_instance d = {.service = "db", .id = "d", .address = "10.0.0.8", .port = 3,
	                     .node = "h1"};
	regent_cat_view_put(v, regent_inst_copy(&a, NULL, NULL, 0));
	regent_cat_view_put(v, regent_inst_copy(&b, NULL, NULL, 0));
	regent_cat_view_put(v, regent_inst_copy(&d, NULL, NULL, 0));
	regent_cat_flush_now(c);
	regent_buf out = {0};
	regent_cat_metrics_write(c, false, &out);
	assert_non_null(strstr(out.data, "\nregent_catalog_instances 3\n"));
	assert_non_null(strstr(out.data, "\nregent_catalog_services 2\n"));
	assert_non_null(strstr(out.data, "\nregent_catalog_nodes 2\n"));
	assert_null(strstr(out.data, "{"));
	regent_buf_free(&out);
	/* b moves to node h2; d leaves (db goes) */
	b.node = "h2";
	regent_cat_view_put(v, regent_inst_copy(&b, NULL, NULL, 0));
	regent_cat_view_del(v, "db", "d");
	regent_cat_flush_now(c);
	regent_cat_metrics_write(c, true, &out);
	assert_string_equal(out.data,
	                    "# HELP regent_catalog_instances Instances in the catalog, by service.\n"
	                    "# TYPE regent_catalog_instances gauge\n"
	                    "regent_catalog_instances{service=\"db\"} 0\n"
	                    "regent_catalog_instances{service=\"web\"} 2\n"
	                    "# HELP regent_catalog_services Services in the catalog.\n"
	                    "# TYPE regent_catalog_services gauge\nregent_catalog_services 2\n"
	                    "# HELP regent_catalog_nodes Hosts owning instances in the catalog.\n"
	                    "# TYPE regent_catalog_nodes gauge\nregent_catalog_nodes 2\n"
	                    "# HELP regent_catalog_node_instances Instances in the catalog, by "
	                    "owning node (the address for entries that name no node).\n"
	                    "# TYPE regent_catalog_node_instances gauge\n"
	                    "regent_catalog_node_instances{node=\"h1\"} 1\n"
	                    "regent_catalog_node_instances{node=\"h2\"} 1\n");
	regent_buf_free(&out);
	cat_end(&loop, c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(kept_counts_match_recount),
		cmocka_unit_test(gauges_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
