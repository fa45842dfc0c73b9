/* test_render.c - unit tests of the stats plugin's pure helpers
 * (plugins/stats/render.c): listen address and loopback rule, HTML
 * escaping, JSON of instances and odd bytes, the route table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "render.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *text, struct sockaddr_storage *ss)
{
	socklen_t len = 0;
	char why[256] = "";
	int rc = stats_parse_listen(text, ss, &len, why, sizeof(why));
	if (rc == 0)
		assert_int_equal(len, ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
		                                                : sizeof(struct sockaddr_in6));
	else
		assert_true(why[0] != '\0');
	return rc;
}

static void fmt(const char *text, const char *expect)
{
	struct sockaddr_storage ss;
	assert_int_equal(parse(text, &ss), 0);
	char out[80];
	stats_format_sockaddr((struct sockaddr *)&ss, out, sizeof(out));
	assert_string_equal(out, expect);
}

static void test_parse_listen(void **state)
{
	(void)state;
	fmt("127.0.0.1:9150", "127.0.0.1:9150");
	fmt("localhost:80", "127.0.0.1:80");
	fmt("[::1]:9150", "[::1]:9150");
	fmt("0.0.0.0:1", "0.0.0.0:1");
	fmt("[::]:65535", "[::]:65535");
	struct sockaddr_storage ss;
	const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
	                     "127.0.0.1:12x", ":9150", "example.com:9150", "::1:9150",
	                     "[::1:9150", "[]:9150", "[127.0.0.1]:9150", "1.2.3:80", "", NULL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse(bad[i], &ss), -EINVAL);
}

static bool loop_of(const char *text)
{
	struct sockaddr_storage ss;
	assert_int_equal(parse(text, &ss), 0);
	return stats_is_loopback((struct sockaddr *)&ss);
}

static void test_loopback(void **state)
{
	(void)state;
	assert_true(loop_of("127.0.0.1:1"));
	assert_true(loop_of("127.255.3.4:1"));
	assert_true(loop_of("localhost:1"));
	assert_true(loop_of("[::1]:1"));
	assert_true(loop_of("[::ffff:127.0.0.1]:1"));
	assert_false(loop_of("0.0.0.0:1"));
	assert_false(loop_of("10.0.0.1:1"));
	assert_false(loop_of("128.0.0.1:1"));
	assert_false(loop_of("[::]:1"));
	assert_false(loop_of("[::2]:1"));
	assert_false(loop_of("[::ffff:10.0.0.1]:1"));
	assert_false(loop_of("[fe80::1]:1"));
}

static char *html(const char *in)
{
	stats_buf b = {0};
	stats_buf_html(&b, in);
	return stats_buf_take(&b, NULL);
}

static void test_html_escape(void **state)
{
	(void)state;
	char *s = html("<script>alert('x')</script> & \"q\"");
	assert_string_equal(s, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
	free(s);
	s = html("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3"); /* valid UTF-8 stays */
	assert_string_equal(s, "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb3");
	free(s);
	s = html("a\x01" "b\x7f" "c\td\ne"); /* control bytes -> U+FFFD; tab/newline kept */
	assert_string_equal(s, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\td\ne");
	free(s);
	s = html("x\xff" "y\xc3" "z\xed\xa0\x80" "w\xc0\xaf"); /* invalid, surrogate, overlong */
	assert_string_equal(s, "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	                       "w\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	s = html(NULL);
	assert_string_equal(s, "");
	free(s);
}

static void test_buf(void **state)
{
	(void)state;
	stats_buf b = {0};
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	stats_buf_printf(&b, "<%s|%d>", big, 42);
	assert_int_equal(b.len, 2999 + 5);
	assert_int_equal(b.data[0], '<');
	assert_string_equal(b.data + 3000, "|42>");
	for (int i = 0; i < 1000; i++)
		stats_buf_puts(&b, "abc");
	assert_int_equal(b.len, 3004 + 3000);
	assert_false(b.oom);
	size_t len;
	char *d = stats_buf_take(&b, &len);
	assert_int_equal(len, 6004);
	assert_int_equal(strlen(d), 6004);
	assert_null(b.data);
	free(d);
	stats_buf_free(&b);
}

static char *jstr(const char *in)
{
	stats_buf b = {0};
	stats_buf_json_string(&b, in);
	return stats_buf_take(&b, NULL);
}

/* The text parses as JSON and gives back want (when want is not NULL). */
static void assert_json_roundtrip(const char *text, const char *want)
{
	json_error_t err;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
	if (!j)
		fail_msg("not JSON (%s): %s", err.text, text);
	if (want)
		assert_string_equal(json_string_value(j), want);
	json_decref(j);
}

static void test_json_string(void **state)
{
	(void)state;
	char *s = jstr("ok \xc3\xa9 \"q\" back\\slash");
	assert_string_equal(s, "\"ok \xc3\xa9 \\\"q\\\" back\\\\slash\"");
	assert_json_roundtrip(s, "ok \xc3\xa9 \"q\" back\\slash");
	free(s);
	s = jstr("tab\tnl\n\x01\x1f del\x7f");
	assert_string_equal(s, "\"tab\\u0009nl\\u000a\\u0001\\u001f del\x7f\"");
	assert_json_roundtrip(s, "tab\tnl\n\x01\x1f del\x7f");
	free(s);
	s = jstr("bad \xff\xfe end \xed\xa0\x80"); /* invalid bytes, a surrogate */
	assert_json_roundtrip(s, "bad \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	s = jstr(NULL);
	assert_string_equal(s, "\"\"");
	free(s);
}

static char *inst_json(const regent_instance *in, const char *default_node)
{
	stats_buf b = {0};
	stats_buf_instance_json(&b, in, default_node);
	return stats_buf_take(&b, NULL);
}

static void test_instance_json(void **state)
{
	(void)state;
	const char *tags[] = {"a", "<b>"};
	regent_kv meta[] = {{"zone", "eu-1"}, {"note", "say \"hi\""}};
	regent_instance in = {.service = "web", .id = "n1/abc/80", .address = "10.0.0.1",
	                      .port = 32768, .proto = REGENT_PROTO_UDP, .service_port = 80,
	                      .tags = tags, .ntags = 2, .meta = meta, .nmeta = 2, .node = NULL};
	char *text = inst_json(&in, "here");
	assert_string_equal(text, "{\"id\":\"n1/abc/80\",\"service\":\"web\",\"address\":\"10.0.0.1\","
	                          "\"port\":32768,\"proto\":\"udp\",\"service_port\":80,"
	                          "\"node\":\"here\",\"tags\":[\"a\",\"<b>\"],"
	                          "\"meta\":{\"zone\":\"eu-1\",\"note\":\"say \\\"hi\\\"\"},"
	                          "\"health\":\"passing\"}");
	json_t *o = json_loads(text, 0, NULL);
	assert_non_null(o);
	assert_int_equal(json_integer_value(json_object_get(o, "port")), 32768);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "meta"), "note")),
	                    "say \"hi\"");
	json_decref(o);
	free(text);
	in.node = "n2";
	in.ntags = 0;
	in.nmeta = 0;
	in.proto = REGENT_PROTO_TCP;
	text = inst_json(&in, "here");
	o = json_loads(text, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "node")), "n2");
	assert_string_equal(json_string_value(json_object_get(o, "proto")), "tcp");
	assert_int_equal(json_array_size(json_object_get(o, "tags")), 0);
	assert_int_equal(json_object_size(json_object_get(o, "meta")), 0);
	json_decref(o);
	free(text);
	in.node = "";
	text = inst_json(&in, NULL);
	o = json_loads(text, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "node")), "");
	json_decref(o);
	free(text);
}

static void test_routes(void **state)
{
	(void)state;
	assert_int_equal(stats_route_of("/"), STATS_ROUTE_INDEX);
	assert_int_equal(stats_route_of("/metrics"), STATS_ROUTE_METRICS);
	assert_int_equal(stats_route_of("/v1/catalog"), STATS_ROUTE_CATALOG);
	assert_int_equal(stats_route_of("/v1/local"), STATS_ROUTE_LOCAL);
	assert_int_equal(stats_route_of("/healthz"), STATS_ROUTE_HEALTHZ);
	const char *none[] = {"/metrics/", "/METRICS", "/v1", "/v1/catalog/web", "", "//", NULL};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		assert_int_equal(stats_route_of(none[i]), STATS_ROUTE_NONE);
	assert_string_equal(stats_route_name(STATS_ROUTE_METRICS), "/metrics");
	assert_string_equal(stats_route_name(STATS_ROUTE_NONE), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_listen), cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_html_escape),  cmocka_unit_test(test_buf),
		cmocka_unit_test(test_json_string),  cmocka_unit_test(test_instance_json),
		cmocka_unit_test(test_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
