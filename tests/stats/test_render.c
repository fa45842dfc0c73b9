/* test_render.c - unit tests of the stats plugin's pure helpers
 * (plugins/stats/render.c): listen address and loopback rule, HTML
 * escaping, JSON of instances and odd bytes, the route table; and the
 * status page's charts (plugins/stats/plot.c): bars and step lines scaled
 * to the largest value, gaps, no data, escaping, durations for people. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "plot.h"
#include "render.h"
#include "helpers.h" /* the ADDRESS parser behind host->cfg_address */
#include "host.h"    /* the core's host table: the buffer under stats_buf */

#include <jansson.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const regent_host *H = &regent_host_table;

static int parse(const char *text, struct sockaddr_storage *ss)
{
	socklen_t len = 0;
	char why[320] = "";
	regent_address a;
	int rc = regent_address_parse(text, &a, why, sizeof(why)); /* host->cfg_address's */
	if (rc == 0)
		rc = stats_listen_addr(&a, ss, &len, why, sizeof(why));
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
	stats_buf b = {.h = H};
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
	stats_buf b = {.h = H};
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	stats_buf_printf(&b, "<%s|%d>", big, 42);
	assert_int_equal(b.b.len, 2999 + 5);
	assert_int_equal(b.b.data[0], '<');
	assert_string_equal(b.b.data + 3000, "|42>");
	for (int i = 0; i < 1000; i++)
		stats_buf_puts(&b, "abc");
	assert_int_equal(b.b.len, 3004 + 3000);
	assert_false(b.oom);
	size_t len;
	char *d = stats_buf_take(&b, &len);
	assert_int_equal(len, 6004);
	assert_int_equal(strlen(d), 6004);
	assert_null(b.b.data);
	free(d);
	stats_buf_free(&b);
}

static char *jstr(const char *in)
{
	stats_buf b = {.h = H};
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
	assert_string_equal(s, "\"tab\\tnl\\n\\u0001\\u001F del\x7f\""); /* jansson's escapes */
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
	stats_buf b = {.h = H};
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

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static char *plot(const stats_plot *p)
{
	stats_buf b = {.h = H};
	stats_svg_plot(&b, p);
	assert_false(b.oom);
	char *out = stats_buf_take(&b, NULL);
	/* Well formed enough: one svg, closed; no script, nothing loaded. */
	assert_int_equal(count(out, "<svg"), 1);
	assert_non_null(strstr(out, "</svg>"));
	assert_null(strstr(out, "<script"));
	assert_null(strstr(out, "href"));
	return out;
}

static void test_plot_bars(void **state)
{
	(void)state;
	/* An hour of 10 s slots, three intervals known: none, 10 ms, 40 ms. */
	double v[3] = {-1, 0.010, 0.040};
	stats_plot p = {"lat", "latency <b>&", STATS_PLOT_BARS, true, v, 3, 360, "-1 h", "now"};
	char *out = plot(&p);
	assert_non_null(strstr(out, "<title>latency &lt;b&gt;&amp;: largest 40.0 ms, latest 40.0 "
	                            "ms</title>"));
	assert_int_equal(count(out, "<g class=\"bars\""), 1);
	/* Two bars at the right edge (slots 358 and 359 of 360), scaled to the
	 * largest: 40 ms fills the 80 units, 10 ms a quarter. */
	assert_non_null(strstr(out, "<rect x=\"415.0\" y=\"6.0\" width=\"1.0\" height=\"80.0\"/>"));
	assert_non_null(strstr(out, "<rect x=\"414.0\" y=\"66.0\" width=\"1.0\" height=\"20.0\"/>"));
	assert_int_equal(count(out, "<rect"), 3); /* the frame and two bars */
	assert_non_null(strstr(out, "class=\"ymax\">40.0 ms</text>"));
	assert_non_null(strstr(out, ">-1 h</text>"));
	free(out);
}

static void test_plot_line(void **state)
{
	(void)state;
	/* Five slots of 72 units; a gap in the fourth. */
	double v[5] = {1, 1, 3, -1, 2};
	stats_plot p = {"size", "instances", STATS_PLOT_LINE, false, v, 5, 5, "a", "b"};
	char *out = plot(&p);
	assert_non_null(strstr(out, " d=\"M56.0 59.3H128.0V59.3H200.0V6.0H272.0M344.0 32.7H416.0\""));
	assert_non_null(strstr(out, "class=\"ymax\">3</text>"));
	assert_non_null(strstr(out, ": largest 3, latest 2</title>"));
	free(out);

	/* More values than slots: the axis holds them all, nothing drawn
	 * past the right edge (416). */
	double many[720];
	for (size_t i = 0; i < 720; i++)
		many[i] = (double)i;
	stats_plot q = {"size", "instances", STATS_PLOT_LINE, false, many, 720, 360, "", ""};
	out = plot(&q);
	assert_non_null(strstr(out, "H416.0\"/>"));
	assert_null(strstr(out, "H416.5"));
	assert_null(strstr(out, "H417"));
	free(out);

	/* All zero: a flat line on the axis, no division by zero. */
	double zero[2] = {0, 0};
	stats_plot z = {"size", "instances", STATS_PLOT_LINE, false, zero, 2, 2, "", ""};
	out = plot(&z);
	assert_non_null(strstr(out, " d=\"M56.0 86.0H236.0V86.0H416.0\""));
	free(out);
}

static void test_plot_empty(void **state)
{
	(void)state;
	double v[4] = {-1, -1, -1, -1};
	stats_plot p = {"lat", "latency", STATS_PLOT_BARS, true, v, 4, 360, "-1 h", "now"};
	char *out = plot(&p);
	assert_int_equal(count(out, "no data yet"), 2); /* title and picture */
	assert_null(strstr(out, "class=\"bars\""));
	free(out);
	stats_plot none = {"lat", "latency", STATS_PLOT_BARS, true, NULL, 0, 0, NULL, NULL};
	out = plot(&none);
	assert_int_equal(count(out, "no data yet"), 2);
	free(out);
}

static void test_fmt_seconds(void **state)
{
	(void)state;
	char out[48];
	const struct {
		double s;
		const char *want;
	} cases[] = {
		{0.00085, "850 µs"}, {0.005, "5.00 ms"}, {0.0123, "12.3 ms"}, {1.25, "1.25 s"},
		{125, "2 min 5 s"},  {-1, "?"},          {NAN, "?"},          {INFINITY, "?"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		stats_fmt_seconds(cases[i].s, out, sizeof(out));
		assert_string_equal(out, cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_listen), cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_html_escape),  cmocka_unit_test(test_buf),
		cmocka_unit_test(test_json_string),  cmocka_unit_test(test_instance_json),
		cmocka_unit_test(test_routes),       cmocka_unit_test(test_plot_bars),
		cmocka_unit_test(test_plot_line),    cmocka_unit_test(test_plot_empty),
		cmocka_unit_test(test_fmt_seconds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
