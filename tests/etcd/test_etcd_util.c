/* test_etcd_util.c - unit tests of the etcd plugin's pure helpers
 * (plugins/etcd/etcd_util.c): key layout, range end, numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "etcd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void split_ok(const char *key, const char *prefix, etcd_key_kind kind, const char *svc,
                     const char *id)
{
	char *s, *i;
	assert_int_equal(etcd_split_key(key, strlen(key), prefix, &s, &i), kind);
	assert_string_equal(s, svc);
	if (id)
		assert_string_equal(i, id);
	else
		assert_null(i);
	free(s);
	free(i);
}

static void split_bad(const char *key, size_t len, const char *prefix)
{
	char *s, *i;
	assert_int_equal(etcd_split_key(key, len, prefix, &s, &i), ETCD_KEY_BAD);
	assert_null(s);
	assert_null(i);
}

static void test_split(void **st)
{
	(void)st;
	split_ok("/backends/web/n1/abc/80", "/backends", ETCD_KEY_INSTANCE, "web", "n1/abc/80");
	split_ok("/backends/web/0123456789ab", "/backends", ETCD_KEY_INSTANCE, "web",
	         "0123456789ab");
	split_ok("/backends/web/port", "/backends", ETCD_KEY_PORT, "web", NULL);
	split_ok("/backends/web/n1/port", "/backends", ETCD_KEY_INSTANCE, "web", "n1/port");
	split_ok("/web/x", "", ETCD_KEY_INSTANCE, "web", "x");
	split_bad("/backends/web", 13, "/backends");
	split_bad("/backends/web/", 14, "/backends");
	split_bad("/backends//x", 12, "/backends");
	split_bad("/backendsX/web/x", 16, "/backends");
	split_bad("/other/web/x", 12, "/backends");
	split_bad("/backends/w\neb/x", 16, "/backends");
	split_bad("/backends/web/a\0b", 17, "/backends");
}

static void test_prefix(void **st)
{
	(void)st;
	size_t n;
	char *end = etcd_prefix_end("/backends/", 10, &n);
	assert_int_equal(n, 10);
	assert_memory_equal(end, "/backends0", 10);
	free(end);
	end = etcd_prefix_end("a\xff\xff", 3, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(end, "b", 1);
	free(end);
	end = etcd_prefix_end("\xff", 1, &n);
	assert_int_equal(n, 1);
	assert_int_equal(end[0], 0);
	free(end);

	char *p = etcd_normalize_prefix("/backends/");
	assert_string_equal(p, "/backends");
	free(p);
	p = etcd_normalize_prefix("/");
	assert_string_equal(p, "");
	free(p);
	p = etcd_normalize_prefix("");
	assert_string_equal(p, "");
	free(p);
	assert_null(etcd_normalize_prefix("backends"));
	assert_null(etcd_normalize_prefix("/a b"));
	assert_null(etcd_normalize_prefix(NULL));
}

static void test_numbers(void **st)
{
	(void)st;
	int64_t v = 0;
	json_t *j = json_loads("{\"a\":\"7587867\",\"b\":42,\"c\":\"x\",\"d\":\"\",\"e\":true,"
	                       "\"f\":\"-1\",\"g\":\"9223372036854775807\",\"h\":\"99999999999999999999\"}",
	                       0, NULL);
	assert_true(etcd_json_int64(json_object_get(j, "a"), &v));
	assert_int_equal(v, 7587867);
	assert_true(etcd_json_int64(json_object_get(j, "b"), &v));
	assert_int_equal(v, 42);
	assert_false(etcd_json_int64(json_object_get(j, "c"), &v));
	assert_false(etcd_json_int64(json_object_get(j, "d"), &v));
	assert_false(etcd_json_int64(json_object_get(j, "e"), &v));
	assert_false(etcd_json_int64(json_object_get(j, "zz"), &v));
	assert_true(etcd_json_int64(json_object_get(j, "f"), &v));
	assert_int_equal(v, -1);
	assert_true(etcd_json_int64(json_object_get(j, "g"), &v));
	assert_int_equal(v, INT64_MAX);
	assert_false(etcd_json_int64(json_object_get(j, "h"), &v));
	json_decref(j);

	assert_int_equal(etcd_parse_port("8000", 4), 8000);
	assert_int_equal(etcd_parse_port(" 80\n", 4), 80);
	assert_int_equal(etcd_parse_port("0", 1), 0);
	assert_int_equal(etcd_parse_port("65536", 5), 0);
	assert_int_equal(etcd_parse_port("80a", 3), 0);
	assert_int_equal(etcd_parse_port("", 0), 0);
	assert_int_equal(etcd_parse_port("123456", 6), 0);
}

static void test_printable(void **st)
{
	(void)st;
	char *p = etcd_printable("/a/b\n\"c\\", 8, 100);
	assert_string_equal(p, "/a/b\\x0a\"c\\x5c");
	free(p);
	p = etcd_printable("abcdef", 6, 3);
	assert_string_equal(p, "abc...");
	free(p);
	p = etcd_printable("a\0b", 3, 3);
	assert_string_equal(p, "a\\x00b");
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_printable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
