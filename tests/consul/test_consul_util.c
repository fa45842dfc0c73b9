/* test_consul_util.c - unit tests of the Consul plugin's pure helpers
 * (plugins/consul/consul_util.c): addresses, the escaping it relies on, durations,
 * the registration body, the index rules and the decoding of Consul's
 * answers, including hostile ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul_util.h"
#include "host.h" /* the core's host table: its map and URL escaping */

static const regent_host *H = &regent_host_table;

static void test_address(void **st)
{
	(void)st;
	char *b, *u, why[128];
	assert_int_equal(consul_parse_address(H, "http://127.0.0.1:8500/", &b, &u, why, sizeof(why)), 0);
	assert_string_equal(b, "http://127.0.0.1:8500");
	assert_null(u);
	free(b);
	assert_int_equal(consul_parse_address(H, "https://c.example:8501", &b, &u, why, sizeof(why)), 0);
	assert_string_equal(b, "https://c.example:8501");
	free(b);
	assert_int_equal(consul_parse_address(H, "127.0.0.1:8500", &b, &u, why, sizeof(why)), 0);
	assert_string_equal(b, "http://127.0.0.1:8500");
	free(b);
	assert_int_equal(consul_parse_address(H, "unix:///run/consul/http.sock", &b, &u, why,
	                                      sizeof(why)),
	                 0);
	assert_string_equal(b, "http://localhost");
	assert_string_equal(u, "/run/consul/http.sock");
	free(b);
	free(u);
	const char *bad[] = {"", "ftp://x:1", "unix://rel/path", "unix:///", "http://", "http://a b",
	                     "http://x?y", ":8500"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		assert_int_equal(consul_parse_address(H, bad[i], &b, &u, why, sizeof(why)), -EINVAL);
		assert_null(b);
		assert_null(u);
		assert_true(why[0] != '\0');
	}
}

static void test_redact(void **st)
{
	(void)st;
	char *r = consul_redact_url(H, "https://user:pw@c.example:8501/x@y");
	assert_string_equal(r, "https://***@c.example:8501/x@y");
	free(r);
	r = consul_redact_url(H, "http://127.0.0.1:8500");
	assert_string_equal(r, "http://127.0.0.1:8500");
	free(r);
	char *b, *u, why[128];
	assert_int_equal(consul_parse_address(H, "ftp://u:secret@h:1", &b, &u, why, sizeof(why)),
	                 -EINVAL);
	assert_null(strstr(why, "secret"));
}

static void test_escape_duration(void **st)
{
	(void)st;
	/* The plugin escapes path parts with the host's url_escape. */
	char *e = H->url_escape("node-1/abc.def_9:80 x%", 0);
	assert_string_equal(e, "node-1%2Fabc.def_9%3A80%20x%25");
	free(e);
	char b[32];
	consul_duration(15000, b, sizeof(b));
	assert_string_equal(b, "15s");
	consul_duration(60000, b, sizeof(b));
	assert_string_equal(b, "1m");
	consul_duration(300000, b, sizeof(b));
	assert_string_equal(b, "5m");
	consul_duration(1500, b, sizeof(b));
	assert_string_equal(b, "1500ms");
	consul_duration(90000, b, sizeof(b));
	assert_string_equal(b, "90s");
	char *cid = consul_check_id(H, "n:c:80");
	assert_string_equal(cid, "service:n:c:80");
	free(cid);
	/* Consul service ids: no '/', stable, injective enough. */
	char *sid = consul_service_id(H, "backend-1/0123456789ab/80");
	assert_string_equal(sid, "backend-1:0123456789ab:80");
	free(sid);
	sid = consul_service_id(H, "n_1/c.d/53/udp");
	assert_string_equal(sid, "n_1:c.d:53:udp");
	free(sid);
	sid = consul_service_id(H, "a b:%/?#");
	assert_string_equal(sid, "a_20b_3A_25:_3F_23");
	assert_null(strchr(sid, '/'));
	free(sid);
}

static void test_register_body(void **st)
{
	(void)st;
	const char *tags[] = {"v1", "blue"};
	regent_kv meta[] = {{"team", "a"},     {"with.dot", "x"}, {"consul-x", "y"},
	                    {"node", "spoof"}, {"ok_key-2", "z"}};
	regent_instance in = {.service = "web", .id = "backend-1/abc/80", .address = "10.0.0.5",
	                      .port = 32768, .proto = REGENT_PROTO_UDP, .service_port = 80,
	                      .tags = tags, .ntags = 2, .meta = meta, .nmeta = 5,
	                      .node = "backend-1"};
	char dropped[64], hash[CONSUL_HASH_LEN];
	char *body = consul_register_body(H, &in, "other", 15000, 60000, dropped, sizeof(dropped), hash);
	assert_string_equal(dropped, "with.dot,consul-x,node");
	json_error_t err;
	json_t *o = json_loads(body, 0, &err);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "ID")), "backend-1:abc:80");
	assert_string_equal(json_string_value(json_object_get(o, "Name")), "web");
	assert_string_equal(json_string_value(json_object_get(o, "Address")), "10.0.0.5");
	assert_int_equal(json_integer_value(json_object_get(o, "Port")), 32768);
	assert_int_equal(json_array_size(json_object_get(o, "Tags")), 2);
	json_t *m = json_object_get(o, "Meta");
	assert_string_equal(json_string_value(json_object_get(m, "proto")), "udp");
	assert_string_equal(json_string_value(json_object_get(m, "service_port")), "80");
	assert_string_equal(json_string_value(json_object_get(m, "node")), "backend-1");
	assert_string_equal(json_string_value(json_object_get(m, "team")), "a");
	assert_string_equal(json_string_value(json_object_get(m, "ok_key-2")), "z");
	assert_string_equal(json_string_value(json_object_get(m, "regent-id")), "backend-1/abc/80");
	assert_string_equal(json_string_value(json_object_get(m, "regent-hash")), hash);
	assert_int_equal(strlen(hash), 16);
	assert_int_equal(json_object_size(m), 7);
	json_t *c = json_object_get(o, "Check");
	assert_string_equal(json_string_value(json_object_get(c, "CheckID")),
	                    "service:backend-1:abc:80");
	char notes[32];
	snprintf(notes, sizeof(notes), "regent %s", hash);
	assert_string_equal(json_string_value(json_object_get(c, "Notes")), notes);
	assert_string_equal(json_string_value(json_object_get(c, "TTL")), "15s");
	assert_string_equal(json_string_value(json_object_get(c, "Status")), "passing");
	assert_string_equal(json_string_value(json_object_get(c, "DeregisterCriticalServiceAfter")),
	                    "1m");
	/* No field Consul would reject inside a service's check. */
	assert_null(json_object_get(c, "ID"));
	json_decref(o);
	/* Deterministic: the same instance gives the same text. */
	char *again = consul_register_body(H, &in, "other", 15000, 60000, NULL, 0, NULL);
	assert_string_equal(body, again);
	free(again);
	free(body);
	/* No node on the instance: the agent's. */
	in.node = NULL;
	in.nmeta = 0;
	body = consul_register_body(H, &in, "agent-node", 2000, 1500, dropped, sizeof(dropped), NULL);
	assert_string_equal(dropped, "");
	assert_non_null(strstr(body, "\"node\":\"agent-node\""));
	assert_non_null(strstr(body, "\"DeregisterCriticalServiceAfter\":\"1500ms\""));
	free(body);
	/* Any change of the registration changes the hash. */
	char h2[CONSUL_HASH_LEN];
	in.port = 32769;
	free(consul_register_body(H, &in, "agent-node", 2000, 1500, NULL, 0, h2));
	char h3[CONSUL_HASH_LEN];
	in.port = 32768;
	free(consul_register_body(H, &in, "agent-node", 2000, 1500, NULL, 0, h3));
	assert_string_not_equal(h2, h3);
}

static void test_meta_limit(void **st)
{
	(void)st;
	regent_kv meta[70];
	char keys[70][8];
	for (int i = 0; i < 70; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		meta[i].key = keys[i];
		meta[i].value = "v";
	}
	regent_instance in = {.service = "s", .id = "i", .address = "a", .port = 1,
	                      .meta = meta, .nmeta = 70};
	char dropped[256];
	char *body = consul_register_body(H, &in, "n", 1000, 1000, dropped, sizeof(dropped), NULL);
	json_t *o = json_loads(body, 0, NULL);
	assert_int_equal(json_object_size(json_object_get(o, "Meta")), CONSUL_META_MAX);
	assert_non_null(strstr(dropped, "k69"));
	json_decref(o);
	free(body);
}

static void test_index(void **st)
{
	(void)st;
	assert_int_equal(consul_parse_index("42"), 42);
	assert_int_equal(consul_parse_index(" 7 "), 7);
	assert_int_equal(consul_parse_index("18446744073709551615"), UINT64_MAX);
	assert_int_equal(consul_parse_index("18446744073709551616"), 0);
	assert_int_equal(consul_parse_index("-1"), 0);
	assert_int_equal(consul_parse_index("12abc"), 0);
	assert_int_equal(consul_parse_index(NULL), 0);
	bool reset;
	assert_int_equal(consul_next_index(0, 10, &reset), 10);
	assert_false(reset);
	assert_int_equal(consul_next_index(10, 10, &reset), 10); /* timeout: same index */
	assert_false(reset);
	assert_int_equal(consul_next_index(10, 12, &reset), 12);
	assert_int_equal(consul_next_index(12, 5, &reset), 0); /* went backwards */
	assert_true(reset);
	assert_int_equal(consul_next_index(12, 0, &reset), 0); /* 0: restart */
	assert_true(reset);
}

static void test_services(void **st)
{
	(void)st;
	const char *j = "{\"consul\":[],\"web\":[\"v1\",\"Blue\"],\"odd\":null,\"x\":[1,\"t\"]}";
	consul_services s;
	char why[128];
	assert_int_equal(consul_parse_services(H, j, strlen(j), &s, why, sizeof(why)), 0);
	assert_int_equal(s.n, 4);
	bool found = false;
	for (size_t i = 0; i < s.n; i++) {
		if (strcmp(s.v[i].name, "web") == 0) {
			found = true;
			const char *want1[] = {"blue"};
			const char *want2[] = {"blue", "v2"};
			assert_true(consul_tags_match(s.v[i].tags, s.v[i].ntags, want1, 1));
			assert_false(consul_tags_match(s.v[i].tags, s.v[i].ntags, want2, 2));
		}
		if (strcmp(s.v[i].name, "x") == 0)
			assert_int_equal(s.v[i].ntags, 1);
	}
	assert_true(found);
	consul_services_free(&s);
	assert_int_equal(consul_parse_services(H, "[]", 2, &s, why, sizeof(why)), -EINVAL);
	assert_int_equal(consul_parse_services(H, "{", 1, &s, why, sizeof(why)), -EINVAL);
	assert_int_equal(consul_parse_services(H, "", 0, &s, why, sizeof(why)), -EINVAL);
}

static const char *health_json =
	"["
	/* regent's own registration, address set */
	"{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
	" \"Service\":{\"ID\":\"backend-1/abc/80\",\"Service\":\"web\",\"Tags\":[\"v1\"],"
	"  \"Address\":\"10.0.0.5\",\"Port\":32768,"
	"  \"Meta\":{\"proto\":\"udp\",\"service_port\":\"80\",\"node\":\"backend-1\",\"team\":\"a\"}},"
	" \"Checks\":[]},"
	/* foreign registration: no meta, empty address -> node address */
	"{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
	" \"Service\":{\"ID\":\"web\",\"Service\":\"web\",\"Tags\":[],\"Address\":\"\","
	"  \"Port\":8080,\"Meta\":null},\"Checks\":[]},"
	/* Port omitted (0): skipped */
	"{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
	" \"Service\":{\"ID\":\"noport\",\"Service\":\"web\",\"Tags\":[],\"Address\":\"x\"}},"
	/* bad service_port meta: skipped */
	"{\"Node\":{\"Node\":\"n2\",\"Address\":\"10.0.0.2\"},"
	" \"Service\":{\"ID\":\"bad\",\"Service\":\"web\",\"Port\":1,"
	"  \"Meta\":{\"service_port\":\"99999\",\"node\":\"n\"}}},"
	/* bad proto: skipped */
	"{\"Service\":{\"ID\":\"bad2\",\"Service\":\"web\",\"Port\":1,\"Meta\":{\"proto\":\"sctp\"}}},"
	/* not an object at all */
	"17"
	"]";

static void test_health(void **st)
{
	(void)st;
	consul_instances in;
	size_t skipped;
	char why[256];
	assert_int_equal(consul_parse_health(H, health_json, strlen(health_json), "web", CONSUL_STATE_PASSING, &in, &skipped,
	                                     why, sizeof(why)),
	                 0);
	assert_int_equal(in.n, 2);
	assert_int_equal(skipped, 4);
	assert_non_null(strstr(why, "noport"));
	const regent_instance *a = in.ptrs[0], *b = in.ptrs[1];
	assert_string_equal(a->id, "backend-1/abc/80");
	assert_string_equal(a->service, "web");
	assert_string_equal(a->address, "10.0.0.5");
	assert_int_equal(a->port, 32768);
	assert_int_equal(a->proto, REGENT_PROTO_UDP);
	assert_int_equal(a->service_port, 80);
	assert_string_equal(a->node, "backend-1");
	assert_int_equal(a->ntags, 1);
	assert_string_equal(a->tags[0], "v1");
	assert_int_equal(a->nmeta, 1);
	assert_string_equal(a->meta[0].key, "team");
	assert_string_equal(b->id, "n2/web");
	assert_string_equal(b->address, "10.0.0.2");
	assert_int_equal(b->port, 8080);
	assert_int_equal(b->service_port, 8080);
	assert_int_equal(b->proto, REGENT_PROTO_TCP);
	assert_string_equal(b->node, "n2");
	assert_int_equal(b->nmeta, 0);
	consul_instances_free(&in);

	assert_int_equal(consul_parse_health(H, "[]", 2, "web", CONSUL_STATE_PASSING, &in, &skipped, why, sizeof(why)), 0);
	assert_int_equal(in.n, 0);
	consul_instances_free(&in);
	assert_int_equal(consul_parse_health(H, "{}", 2, "web", CONSUL_STATE_PASSING, &in, &skipped, why, sizeof(why)),
	                 -EINVAL);
	assert_int_equal(consul_parse_health(H, "nope", 4, "web", CONSUL_STATE_PASSING, &in, &skipped, why, sizeof(why)),
	                 -EINVAL);
	/* Read one element at a time (array_each): JSON's whitespace and
	 * punctuation between elements, a bare value among them (the whole
	 * tree instead: skipped as before), and what is not JSON. */
	const char *ws = " \n[ {\"Service\":{\"ID\":\"a\",\"Port\":1},\"Node\":{\"Address\":\"10.0.0.1\"}} ,\r\n"
	                 "\t{\"Service\":{\"ID\":\"b\",\"Port\":2,\"Tags\":[\"x\",\"y\"],"
	                 "\"Meta\":{\"k\":\"v\"}},\"Node\":{\"Node\":\"n\",\"Address\":\"10.0.0.2\"}} ] \n";
	assert_int_equal(consul_parse_health(H, ws, strlen(ws), "web", CONSUL_STATE_PASSING, &in, &skipped, why,
	                                     sizeof(why)),
	                 0);
	assert_int_equal(in.n, 2);
	assert_string_equal(in.ptrs[1]->id, "n/b");
	assert_string_equal(in.ptrs[1]->address, "10.0.0.2");
	assert_int_equal(in.ptrs[1]->ntags, 2);
	assert_string_equal(in.ptrs[1]->tags[1], "y");
	assert_int_equal(in.ptrs[1]->nmeta, 1);
	assert_string_equal(in.ptrs[1]->meta[0].value, "v");
	consul_instances_free(&in);
	const char *bare = "[1, \"s\", {\"Service\":{\"ID\":\"a\",\"Port\":1}}]";
	assert_int_equal(consul_parse_health(H, bare, strlen(bare), "web", CONSUL_STATE_PASSING, &in, &skipped, why,
	                                     sizeof(why)),
	                 0);
	assert_int_equal(in.n, 1);
	assert_int_equal(skipped, 2);
	consul_instances_free(&in);
	const char *bad[] = {"[{} {}]", "[{}]x", "[{},]", "[{}", "[", " ", "[{\"a\":}]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(consul_parse_health(H, bad[i], strlen(bad[i]), "web", CONSUL_STATE_PASSING, &in,
		                                     &skipped, why, sizeof(why)),
		                 -EINVAL);
		assert_int_equal(in.n, 0);
		assert_true(strncmp(why, "not JSON", 8) == 0 || strncmp(why, "not a JSON", 10) == 0);
	}
	/* A different service's entry is not taken. */
	const char *other = "[{\"Service\":{\"ID\":\"x\",\"Service\":\"db\",\"Port\":1}}]";
	assert_int_equal(consul_parse_health(H, other, strlen(other), "web", CONSUL_STATE_PASSING, &in, &skipped, why,
	                                     sizeof(why)),
	                 0);
	assert_int_equal(in.n, 0);
	assert_int_equal(skipped, 1);
	consul_instances_free(&in);
}

/* checkless: an entry with only the node's check (a registration without
 * a check), whether it is taken or not. */
static void test_health_checkless(void **st)
{
	(void)st;
	const char *checked =
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
		" \"Service\":{\"ID\":\"a\",\"Service\":\"web\",\"Port\":1},"
		" \"Checks\":[{\"CheckID\":\"serfHealth\",\"ServiceID\":\"\",\"Status\":\"passing\"},"
		"            {\"CheckID\":\"service:a\",\"ServiceID\":\"a\",\"Status\":\"passing\"}]}]";
	const char *mixed =
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
		" \"Service\":{\"ID\":\"a\",\"Service\":\"web\",\"Port\":1},"
		" \"Checks\":[{\"CheckID\":\"service:a\",\"ServiceID\":\"a\",\"Status\":\"critical\"}]},"
		"{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
		" \"Service\":{\"ID\":\"b\",\"Service\":\"web\"},"
		" \"Checks\":[{\"CheckID\":\"serfHealth\",\"ServiceID\":\"\",\"Status\":\"passing\"}]}]";
	consul_instances in;
	size_t skipped;
	char why[128];
	assert_int_equal(consul_parse_health(H, checked, strlen(checked), "web", CONSUL_STATE_PASSING,
	                                     &in, &skipped, why, sizeof(why)),
	                 0);
	assert_int_equal(in.n, 1);
	assert_false(in.checkless);
	consul_instances_free(&in);
	/* a not serving (critical), b skipped (no port) but without a check */
	assert_int_equal(consul_parse_health(H, mixed, strlen(mixed), "web", CONSUL_STATE_PASSING,
	                                     &in, &skipped, why, sizeof(why)),
	                 0);
	assert_int_equal(in.n, 0);
	assert_int_equal(skipped, 1);
	assert_true(in.checkless);
	consul_instances_free(&in);
	assert_int_equal(consul_parse_health(H, "[]", 2, "web", CONSUL_STATE_PASSING, &in, &skipped,
	                                     why, sizeof(why)),
	                 0);
	assert_false(in.checkless);
	consul_instances_free(&in);
}

static void test_health_states_and_rid(void **st)
{
	(void)st;
	const char *j =
		"[{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
		" \"Service\":{\"ID\":\"b:c:80\",\"Service\":\"web\",\"Port\":1,"
		"  \"Meta\":{\"node\":\"b\",\"regent-id\":\"b/c/80\",\"regent-hash\":\"x\"}},"
		" \"Checks\":[{\"CheckID\":\"serfHealth\",\"Status\":\"passing\"},"
		"            {\"CheckID\":\"service:b:c:80\",\"Status\":\"warning\"}]},"
		"{\"Node\":{\"Node\":\"n1\",\"Address\":\"10.0.0.1\"},"
		" \"Service\":{\"ID\":\"d\",\"Service\":\"web\",\"Port\":2},"
		" \"Checks\":[{\"CheckID\":\"x\",\"Status\":\"critical\"}]}]";
	consul_instances in;
	size_t skipped;
	char why[128];
	assert_int_equal(consul_parse_health(H, j, strlen(j), "web", CONSUL_STATE_PASSING, &in,
	                                     &skipped, why, sizeof(why)),
	                 0);
	assert_int_equal(in.n, 0); /* warning and critical: not serving */
	assert_int_equal(skipped, 0);
	consul_instances_free(&in);
	assert_int_equal(consul_parse_health(H, j, strlen(j), "web",
	                                     CONSUL_STATE_PASSING | CONSUL_STATE_WARNING, &in,
	                                     &skipped, why, sizeof(why)),
	                 0);
	assert_int_equal(in.n, 1);
	assert_string_equal(in.ptrs[0]->id, "b/c/80"); /* back to the regent id */
	assert_int_equal(in.ptrs[0]->nmeta, 0);       /* regent-* meta is not the instance's */
	consul_instances_free(&in);
}

static void test_state_and_agent_services(void **st)
{
	(void)st;
	const char *a = "[{\"Node\":\"n\",\"CheckID\":\"serfHealth\",\"Status\":\"passing\","
	                "\"ServiceName\":\"\",\"ModifyIndex\":5},"
	                "{\"Node\":\"n\",\"CheckID\":\"service:a\",\"Status\":\"passing\","
	                "\"ServiceName\":\"web\",\"ModifyIndex\":7},"
	                "{\"Node\":\"n\",\"CheckID\":\"service:b\",\"Status\":\"passing\","
	                "\"ServiceName\":\"db\",\"ModifyIndex\":8}]";
	const char *b = "[{\"Node\":\"n\",\"CheckID\":\"service:b\",\"Status\":\"passing\","
	                "\"ServiceName\":\"db\",\"ModifyIndex\":8},"
	                "{\"Node\":\"n\",\"CheckID\":\"serfHealth\",\"Status\":\"passing\","
	                "\"ServiceName\":\"\",\"ModifyIndex\":5},"
	                "{\"Node\":\"n\",\"CheckID\":\"service:a\",\"Status\":\"critical\","
	                "\"ServiceName\":\"web\",\"ModifyIndex\":9}]";
	regent_map *m1 = H->map_new(), *m2 = H->map_new();
	uint64_t n1, n2;
	char why[64];
	assert_int_equal(consul_parse_state(H, a, strlen(a), m1, &n1, why, sizeof(why)), 3);
	assert_int_equal(consul_parse_state(H, b, strlen(b), m2, &n2, why, sizeof(why)), 3);
	assert_int_equal(n1, n2);
	assert_true(H->map_get(m1, "db") == H->map_get(m2, "db")); /* order does not matter */
	assert_true(H->map_get(m1, "web") != H->map_get(m2, "web"));
	assert_non_null(H->map_get(m1, "web"));
	assert_int_equal(consul_parse_state(H, "{}", 2, m1, &n1, why, sizeof(why)), -EINVAL);
	/* a bare value among the checks: the whole tree, the same sums */
	regent_map *m3 = H->map_new();
	uint64_t n3;
	char *b3 = malloc(strlen(b) + 8);
	snprintf(b3, strlen(b) + 8, "[7,%s", b + 1);
	assert_int_equal(consul_parse_state(H, b3, strlen(b3), m3, &n3, why, sizeof(why)), 4);
	/* (the bare value counts as a node-level check, as it always did) */
	assert_true(H->map_get(m3, "web") == H->map_get(m2, "web"));
	assert_true(H->map_get(m3, "db") == H->map_get(m2, "db"));
	free(b3);
	H->map_free(m3, NULL);
	assert_int_equal(consul_parse_state(H, "[{},{}", 6, m1, &n1, why, sizeof(why)), -EINVAL);
	H->map_free(m1, NULL);
	H->map_free(m2, NULL);

	const char *svcs = "{\"b:c:80\":{\"ID\":\"b:c:80\",\"Service\":\"web\","
	                   "\"Meta\":{\"node\":\"b\",\"proto\":\"tcp\",\"regent-id\":\"b/c/80\","
	                   "\"regent-hash\":\"h\"}},"
	                   "\"b/old/80\":{\"ID\":\"b/old/80\",\"Service\":\"web\","
	                   "\"Meta\":{\"node\":\"b\",\"proto\":\"tcp\"}},"
	                   "\"other\":{\"ID\":\"other\",\"Service\":\"web\","
	                   "\"Meta\":{\"node\":\"c\",\"proto\":\"tcp\"}},"
	                   "\"foreign\":{\"ID\":\"foreign\",\"Service\":\"x\",\"Meta\":{}}}";
	consul_agent_services as;
	assert_int_equal(consul_parse_agent_services(H, svcs, strlen(svcs), "b", &as, why, sizeof(why)), 0);
	assert_int_equal(as.n, 2);
	for (size_t i = 0; i < as.n; i++) {
		if (strcmp(as.v[i].cid, "b:c:80") == 0) {
			assert_string_equal(as.v[i].rid, "b/c/80");
			assert_string_equal(as.v[i].hash, "h");
		} else {
			assert_string_equal(as.v[i].cid, "b/old/80");
			assert_string_equal(as.v[i].rid, "b/old/80");
			assert_string_equal(as.v[i].hash, "");
		}
	}
	consul_agent_services_free(&as);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_escape_duration), cmocka_unit_test(test_register_body),
		cmocka_unit_test(test_meta_limit),    cmocka_unit_test(test_index),
		cmocka_unit_test(test_services),      cmocka_unit_test(test_health),
		cmocka_unit_test(test_redact),        cmocka_unit_test(test_health_states_and_rid),
		cmocka_unit_test(test_health_checkless),
		cmocka_unit_test(test_state_and_agent_services),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
