/* test_model.c - instance validation, copies, JSON form and the seed's
 * plain ip:port values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static void service_names(void **state)
{
	(void)state;
	assert_true(regent_valid_service("whoami"));
	assert_true(regent_valid_service("a"));
	assert_true(regent_valid_service("web-1.v2_x"));
	char max[64];
	memset(max, 'a', 63);
	max[63] = '\0';
	assert_true(regent_valid_service(max));
	char over[65];
	memset(over, 'a', 64);
	over[64] = '\0';
	assert_false(regent_valid_service(over));
	assert_false(regent_valid_service(""));
	assert_false(regent_valid_service(NULL));
	assert_false(regent_valid_service("-web"));
	assert_false(regent_valid_service(".web"));
	assert_false(regent_valid_service("x/../../y"));
	assert_false(regent_valid_service("a b"));
	assert_false(regent_valid_service("a\nb"));
	assert_false(regent_valid_service("web;rm"));
}

static void addresses(void **state)
{
	(void)state;
	assert_true(regent_valid_address("127.0.0.1"));
	assert_true(regent_valid_address("::1"));
	assert_true(regent_valid_address("backend-1.example.org"));
	assert_false(regent_valid_address(""));
	assert_false(regent_valid_address("1.2.3.4 check"));
	assert_false(regent_valid_address("1.2.3.4\nserver x"));
	assert_false(regent_valid_address("-x"));
}

static const char *tags[] = {"prod", "blue"};
static const regent_kv meta[] = {{"version", "1.2"}, {"team", "core"}};

static regent_instance sample(void)
{
	regent_instance i = {.service = "whoami", .id = "n1/abcdef123456/8000",
	                     .address = "127.0.0.2", .port = 18000, .proto = REGENT_PROTO_TCP,
	                     .service_port = 8000, .tags = tags, .ntags = 2, .meta = meta,
	                     .nmeta = 2, .node = NULL};
	return i;
}

static void copy_and_equal(void **state)
{
	(void)state;
	regent_instance src = sample();
	char why[256];
	regent_inst *a = regent_inst_copy(&src, "node-a", why, sizeof(why));
	assert_non_null(a);
	assert_string_equal(a->pub.node, "node-a");
	assert_string_equal(a->pub.tags[1], "blue");
	assert_string_equal(a->pub.meta[0].value, "1.2");
	assert_ptr_not_equal(a->pub.service, src.service);
	src.node = "node-a";
	assert_true(regent_instance_equal(&a->pub, &src));
	src.port = 18001;
	assert_false(regent_instance_equal(&a->pub, &src));
	regent_inst_unref(a);
}

static void copy_refuses_bad_input(void **state)
{
	(void)state;
	char why[256];
	regent_instance i = sample();
	i.service = "x/../../y";
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "invalid service name \"x/../../y\""));
	i = sample();
	i.address = "1.2.3.4 backup";
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "invalid address"));
	i = sample();
	i.port = 0;
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "port 0"));
	static const char *badtags[] = {"ok", "two words"};
	i = sample();
	i.tags = badtags;
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "invalid tag \"two words\""));
	static const regent_kv badmeta[] = {{"k", "line\nbreak"}};
	i = sample();
	i.meta = badmeta;
	i.nmeta = 1;
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "invalid value for meta key k"));
	i = sample();
	i.id = "id with space";
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	assert_non_null(strstr(why, "invalid instance id"));
}

static void json_round_trip(void **state)
{
	(void)state;
	regent_instance src = sample();
	src.node = "node-a";
	src.proto = REGENT_PROTO_UDP;
	char *json = regent_instance_encode(&src);
	assert_non_null(strstr(json, "\"proto\":\"udp\""));
	assert_non_null(strstr(json, "\"address\":\"127.0.0.2\""));
	regent_instance *back = NULL;
	assert_int_equal(regent_instance_decode(json, strlen(json), "whoami", src.id, &back), 0);
	assert_non_null(back);
	assert_true(regent_instance_equal(back, &src));
	regent_instance_free(back);
	free(json);
}

static void decode_seed_values(void **state)
{
	(void)state;
	regent_instance *i = NULL;
	const char *v = "10.170.71.10:32768";
	assert_int_equal(regent_instance_decode(v, strlen(v), "whoami", "abc", &i), 0);
	assert_string_equal(i->address, "10.170.71.10");
	assert_int_equal(i->port, 32768);
	assert_int_equal(i->proto, REGENT_PROTO_TCP);
	regent_instance_free(i);
	v = "[::1]:80";
	assert_int_equal(regent_instance_decode(v, strlen(v), "whoami", "abc", &i), 0);
	assert_string_equal(i->address, "::1");
	regent_instance_free(i);
}

static void decode_refuses_garbage(void **state)
{
	(void)state;
	regent_instance *i = (regent_instance *)1;
	const char *bad[] = {
		"", "nonsense", "1.2.3.4:99999", "1.2.3.4:", "{\"address\":\"1.2.3.4\"}",
		"{\"address\":\"1.2.3.4 x\",\"port\":80}", "{\"address\":\"h\",\"port\":\"80\"}",
		"{\"address\":\"h\",\"port\":80,\"proto\":\"sctp\"}", "{broken",
		"{\"address\":\"h\",\"port\":80,\"tags\":[1]}",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		assert_int_equal(regent_instance_decode(bad[k], strlen(bad[k]), "svc", "id", &i),
		                 -22);
		assert_null(i);
	}
	/* Valid JSON, invalid service name given by the key. */
	const char *ok = "{\"address\":\"h\",\"port\":80}";
	assert_int_equal(regent_instance_decode(ok, strlen(ok), "a b", "id", &i), -22);
}

static void base64(void **state)
{
	(void)state;
	char *e = regent_base64_encode("/backends/", 10);
	assert_string_equal(e, "L2JhY2tlbmRzLw==");
	size_t n;
	char *d = regent_base64_decode(e, &n);
	assert_int_equal(n, 10);
	assert_memory_equal(d, "/backends/", 10);
	free(d);
	free(e);
	assert_null(regent_base64_decode("a*b=", &n));
}

static void backoff(void **state)
{
	(void)state;
	regent_backoff b = {.initial_ms = 100, .max_ms = 1000};
	uint64_t d1 = regent_backoff_next(&b);
	assert_in_range(d1, 80, 120);
	regent_backoff_next(&b);
	regent_backoff_next(&b);
	regent_backoff_next(&b);
	uint64_t d5 = regent_backoff_next(&b);
	assert_in_range(d5, 800, 1200); /* capped at 1000 +-20% */
	regent_backoff_reset(&b);
	assert_in_range(regent_backoff_next(&b), 80, 120);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(service_names),   cmocka_unit_test(addresses),
		cmocka_unit_test(copy_and_equal),  cmocka_unit_test(copy_refuses_bad_input),
		cmocka_unit_test(json_round_trip), cmocka_unit_test(decode_seed_values),
		cmocka_unit_test(decode_refuses_garbage), cmocka_unit_test(base64),
		cmocka_unit_test(backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
