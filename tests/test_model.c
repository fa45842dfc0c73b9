/* test_model.c - instance validation, copies, JSON form and the seed's
 * plain ip:port values; the limits on one instance, strict numbers and
 * durations, and the escaping of log lines (util.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

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
	/* meta in canonical order (by key) */
	assert_string_equal(a->pub.meta[0].key, "team");
	assert_string_equal(a->pub.meta[1].value, "1.2");
	assert_ptr_not_equal(a->pub.service, src.service);
	src.node = "node-a";
	assert_true(regent_instance_equal(&a->pub, &src));
	src.port = 18001;
	assert_false(regent_instance_equal(&a->pub, &src));
	/* The service and node names are held once for every copy (model.c,
	 * shared names); each copy's own id and address are its own, and a
	 * name outlives the copies that let go of it. */
	char svc[] = "whoami", node[] = "node-a";
	src.service = svc;
	src.node = node;
	regent_inst *b = regent_inst_copy(&src, "other", why, sizeof(why));
	assert_non_null(b);
	assert_ptr_equal(b->pub.service, a->pub.service);
	assert_ptr_equal(b->pub.node, a->pub.node);
	assert_ptr_not_equal(b->pub.id, a->pub.id);
	src.node = NULL; /* the default node, "other": a name of its own */
	regent_inst *c = regent_inst_copy(&src, "other", why, sizeof(why));
	assert_string_equal(c->pub.node, "other");
	assert_ptr_not_equal(c->pub.node, a->pub.node);
	regent_inst_unref(a);
	svc[0] = node[0] = 'X'; /* the copies hold no pointer into the source */
	assert_string_equal(b->pub.service, "whoami");
	assert_string_equal(b->pub.node, "node-a");
	regent_inst_unref(b);
	regent_inst *d = regent_inst_copy(&c->pub, "", why, sizeof(why));
	assert_ptr_equal(d->pub.service, c->pub.service);
	assert_string_equal(d->pub.node, "other");
	regent_inst_unref(c);
	regent_inst_unref(d);
	src = sample();
	src.node = ""; /* no owner and no default: "" */
	regent_inst *e = regent_inst_copy(&src, NULL, why, sizeof(why));
	assert_string_equal(e->pub.node, "");
	regent_inst_unref(e);
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
	/* ids: [A-Za-z0-9._:/@-], 255 bytes at most */
	char id[258];
	memset(id, 'a', 255);
	id[255] = '\0';
	i = sample();
	i.id = id;
	regent_inst *ok = regent_inst_copy(&i, "n", why, sizeof(why));
	assert_non_null(ok);
	regent_inst_unref(ok);
	id[255] = 'a';
	id[256] = '\0';
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	i.id = "Node-1.x_y:80/a@b";
	ok = regent_inst_copy(&i, "n", why, sizeof(why));
	assert_non_null(ok);
	regent_inst_unref(ok);
	i.id = "a#b";
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
	i.id = "a\x80" "b";
	assert_null(regent_inst_copy(&i, "n", why, sizeof(why)));
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

/* What the encoder wrote with a jansson tree for every instance (its
 * fallback): the fast path must write exactly the same text. */
static char *encode_by_tree(const regent_instance *inst)
{
	json_t *o = json_object();
	json_object_set_new(o, "address", json_string(inst->address));
	json_object_set_new(o, "port", json_integer(inst->port));
	json_object_set_new(o, "proto", json_string(regent_proto_name(inst->proto)));
	json_object_set_new(o, "service_port", json_integer(inst->service_port));
	json_t *tg = json_array();
	for (size_t t = 0; t < inst->ntags; t++)
		json_array_append_new(tg, json_string(inst->tags[t]));
	json_object_set_new(o, "tags", tg);
	json_t *mt = json_object();
	for (size_t m = 0; m < inst->nmeta; m++)
		json_object_set_new(mt, inst->meta[m].key, json_string(inst->meta[m].value));
	json_object_set_new(o, "meta", mt);
	json_object_set_new(o, "node", json_string(inst->node ? inst->node : ""));
	char *txt = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return txt;
}

static void encode_same_as_tree(void **state)
{
	(void)state;
	static const char *const tg0[] = {"web", "v2", ""};
	static const char *const tg1[] = {"caf\xc3\xa9", "a\"b"};
	static const regent_kv m0[] = {{"a", "1"}, {"b", ""}, {"zz", "x y/z"}};
	static const regent_kv m1[] = {{"b", "1"}, {"a", "2"}};            /* not sorted */
	static const regent_kv m2[] = {{"a", "1"}, {"a", "2"}};            /* a duplicate */
	static const regent_kv m3[] = {{"k", "back\\slash"}, {"l", "\x7f"}}; /* escaped */
	static const regent_kv m4[] = {{"k", "line\nbreak"}};
	regent_instance v[12];
	size_t n = 0;
	v[n++] = sample();
	v[n] = sample(), v[n].node = "node-a", v[n].proto = REGENT_PROTO_UDP, n++;
	v[n] = sample(), v[n].ntags = 0, v[n].nmeta = 0, v[n].port = 0, v[n].service_port = 65535, n++;
	v[n] = sample(), v[n].tags = tg0, v[n].ntags = 3, v[n].meta = m0, v[n].nmeta = 3, n++;
	v[n] = sample(), v[n].tags = tg1, v[n].ntags = 2, n++;
	v[n] = sample(), v[n].meta = m1, v[n].nmeta = 2, n++;
	v[n] = sample(), v[n].meta = m2, v[n].nmeta = 2, n++;
	v[n] = sample(), v[n].meta = m3, v[n].nmeta = 2, n++;
	v[n] = sample(), v[n].meta = m4, v[n].nmeta = 1, n++;
	v[n] = sample(), v[n].address = "fe80::1%eth0", v[n].node = "", n++;
	v[n] = sample(), v[n].address = "tab\there", n++;
	for (size_t k = 0; k < n; k++) {
		char *want = encode_by_tree(&v[k]);
		char *got = regent_instance_encode(&v[k]);
		assert_non_null(want);
		assert_non_null(got);
		if (strcmp(want, got) != 0)
			fail_msg("instance %zu: encoded as\n%s\nnot as\n%s", k, got, want);
		free(want);
		free(got);
	}
}

/* ABI 1.6: a decoded block is the core's reference-counted copy, so the
 * catalog can share it (host->catalog_set_decoded): it outlives the
 * decoder's instance_free while referenced, and anything else (a struct
 * that is not such a block, a block already freed) is refused. */
static void decode_shared_block(void **state)
{
	(void)state;
	regent_instance *d = NULL;
	const char *v = "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"a\"]}";
	assert_int_equal(regent_instance_decode(v, strlen(v), "web", "i1", &d), 0);
	regent_inst *held = regent_inst_of_decoded(d);
	assert_non_null(held);
	assert_ptr_equal(&held->pub, d);
	assert_int_equal(held->refs, 2);
	regent_instance_free(d); /* the decoder lets go: the catalog's reference stays */
	assert_int_equal(held->refs, 1);
	assert_string_equal(held->pub.service, "web");
	assert_string_equal(held->pub.id, "i1");
	assert_string_equal(held->pub.tags[0], "a");
	assert_string_equal(held->pub.node, "");
	/* the same block as the copy catalog_set would have made */
	regent_instance src = {.service = "web", .id = "i1", .address = "10.0.0.1", .port = 80,
	                       .tags = (const char *const[]){"a"}, .ntags = 1};
	char why[128];
	regent_inst *copy = regent_inst_copy(&src, "", why, sizeof(why));
	assert_true(regent_instance_equal(&copy->pub, &held->pub));
	regent_inst_unref(copy);
	regent_inst_unref(held);
	/* not a decoded block: refused (the core then copies it) */
	struct {
		regent_instance i;
		unsigned pad[2];
	} fake = {.i = src};
	assert_null(regent_inst_of_decoded(&fake.i));
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

/* Issue 14.2: one value with 60,000 meta pairs (~1 MB) re-put unchanged
 * stalled the loop 26.8 s in a quadratic compare. */
static void limits_and_big_meta(void **state)
{
	(void)state;
	enum { N = 60000 };
	regent_kv *m1 = calloc(N, sizeof(*m1)), *m2 = calloc(N, sizeof(*m2));
	char *keys = calloc(N, 16);
	assert_non_null(m1);
	assert_non_null(m2);
	assert_non_null(keys);
	regent_buf json = {0};
	regent_buf_printf(&json, "{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{");
	for (size_t k = 0; k < N; k++) {
		snprintf(keys + 16 * k, 16, "k%zu", k);
		m1[k].key = keys + 16 * k;
		m1[k].value = "value";
		/* the same map in the reverse order */
		m2[N - 1 - k] = m1[k];
		regent_buf_printf(&json, "%s\"%s\":\"value\"", k ? "," : "", m1[k].key);
	}
	regent_buf_printf(&json, "}}");
	assert_true(json.len > 900000);
	/* Decoding refuses it before parsing (64 KiB at most). */
	regent_instance *out = (regent_instance *)1;
	assert_int_equal(regent_instance_decode(json.data, json.len, "svc", "id", &out), -E2BIG);
	assert_null(out);
	/* A copy refuses it with one reason naming the instance. */
	regent_instance big = sample();
	big.meta = m1;
	big.nmeta = N;
	char why[256];
	assert_null(regent_inst_copy(&big, "n", why, sizeof(why)));
	assert_string_equal(why, "instance n1/abcdef123456/8000: 60000 meta pairs (at most 64)");
	/* Equality itself is O(n log n): two orders of the same 60,000 pairs
	 * compare equal (the quadratic loop took tens of seconds here). */
	regent_instance other = big;
	other.meta = m2;
	assert_true(regent_instance_equal(&big, &other));
	m2[7].value = "w";
	assert_false(regent_instance_equal(&big, &other));
	regent_buf_free(&json);

	/* Under the size limit but over the pair limit: refused too. */
	regent_buf_printf(&json, "{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{");
	for (size_t k = 0; k < REGENT_MAX_META + 1; k++)
		regent_buf_printf(&json, "%s\"k%zu\":\"v\"", k ? "," : "", k);
	regent_buf_printf(&json, "}}");
	assert_int_equal(regent_instance_decode(json.data, json.len, "svc", "id", &out), -E2BIG);
	regent_buf_free(&json);
	regent_buf_printf(&json, "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[");
	for (size_t k = 0; k < REGENT_MAX_TAGS + 1; k++)
		regent_buf_printf(&json, "%s\"t%zu\"", k ? "," : "", k);
	regent_buf_printf(&json, "]}");
	assert_int_equal(regent_instance_decode(json.data, json.len, "svc", "id", &out), -E2BIG);
	regent_buf_free(&json);
	const char **many = calloc(REGENT_MAX_TAGS + 1, sizeof(*many));
	for (size_t k = 0; k <= REGENT_MAX_TAGS; k++)
		many[k] = "t";
	big = sample();
	big.tags = many;
	big.ntags = REGENT_MAX_TAGS + 1;
	assert_null(regent_inst_copy(&big, "n", why, sizeof(why)));
	assert_string_equal(why, "instance n1/abcdef123456/8000: 65 tags (at most 64)");
	/* At the limits: accepted, meta in canonical order, equal to its
	 * source whatever the source's order. */
	big.ntags = REGENT_MAX_TAGS;
	big.meta = m2 + N - REGENT_MAX_META; /* keys in descending order */
	big.nmeta = REGENT_MAX_META;
	regent_inst *in = regent_inst_copy(&big, "n", why, sizeof(why));
	assert_non_null(in);
	for (size_t k = 1; k < in->pub.nmeta; k++)
		assert_true(strcmp(in->pub.meta[k - 1].key, in->pub.meta[k].key) < 0);
	big.node = "n";
	assert_true(regent_instance_equal(&in->pub, &big));
	assert_true(regent_instance_equal(&big, &in->pub));
	regent_inst_unref(in);
	free(many);
	free(m1);
	free(m2);
	free(keys);
}

/* Issue 14.4: a port is digits only. */
static void decode_strict_ports(void **state)
{
	(void)state;
	regent_instance *i = (regent_instance *)1;
	const char *bad[] = {
		"127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:-80", "127.0.0.1:0x50",
		"127.0.0.1:8e1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:\t80", "127.0.0.1:80\n",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		assert_int_equal(regent_instance_decode(bad[k], strlen(bad[k]), "svc", "id", &i), -22);
		assert_null(i);
	}
	const char *ok = "127.0.0.1:080";
	assert_int_equal(regent_instance_decode(ok, strlen(ok), "svc", "id", &i), 0);
	assert_int_equal(i->port, 80);
	regent_instance_free(i);
}

static void strict_number_helpers(void **state)
{
	(void)state;
	uint64_t v;
	uint16_t p;
	assert_int_equal(regent_parse_uint("123", 3, 1000, &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(regent_parse_uint("1234", 4, 1000, &v), -ERANGE);
	assert_int_equal(regent_parse_uint("99999999999999999999999", 23, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(regent_parse_uint("18446744073709551615", 20, UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(regent_parse_uint("18446744073709551616", 20, UINT64_MAX, &v), -ERANGE);
	const char *bad[] = {"", "+1", "-1", " 1", "1 ", "0x1", "1e3", "1.0", "\n1", "1\r"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		assert_int_equal(regent_parse_uint(bad[k], strlen(bad[k]), UINT64_MAX, &v), -EINVAL);
	/* the length bounds the text: "80" of "8080" */
	assert_int_equal(regent_parse_port("8080", 2, &p), 0);
	assert_int_equal(p, 80);
	assert_int_equal(regent_parse_port("0", 1, &p), -EINVAL);
	assert_int_equal(regent_parse_port("65536", 5, &p), -EINVAL);
	assert_int_equal(regent_parse_port(" 27816", 6, &p), -EINVAL);
	assert_int_equal(regent_parse_port("65535", 5, &p), 0);

	int64_t ms, unit;
	assert_int_equal(regent_parse_duration("15", &ms, &unit), 0);
	assert_int_equal(ms, 15000);
	assert_int_equal(unit, 1000);
	assert_int_equal(regent_parse_duration("250ms", &ms, &unit), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(unit, 1);
	assert_int_equal(regent_parse_duration("2m", &ms, NULL), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(regent_parse_duration("3h", &ms, NULL), 0);
	assert_int_equal(ms, 10800000);
	const char *bd[] = {"0x10", "1e3", "1.5s", "-1s", "+1s", " 1s", "1s ", "1 s", "s", "", "1S",
	                    "1sec", "1d", "99999999999999999999h"};
	for (size_t k = 0; k < sizeof(bd) / sizeof(bd[0]); k++)
		assert_int_not_equal(regent_parse_duration(bd[k], &ms, NULL), 0);
	char buf[32];
	regent_format_duration(2000, 1, buf, sizeof(buf));
	assert_string_equal(buf, "2s");
	regent_format_duration(3600000, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "1h");
	regent_format_duration(90000, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "90s");
	regent_format_duration(1500, 1000, buf, sizeof(buf));
	assert_string_equal(buf, "1500ms");
	regent_format_duration(0, 60000, buf, sizeof(buf));
	assert_string_equal(buf, "0m");
	regent_format_duration(0, 1, buf, sizeof(buf));
	assert_string_equal(buf, "0ms");
}

static void log_escaping(void **state)
{
	(void)state;
	char out[64];
	const char *in = "a\nb\r\x1b[31m\x7f\"q\" \\ caf\xc3\xa9 \xff\xc3";
	size_t n = regent_log_escape(in, strlen(in), out, sizeof(out));
	/* quotes, backslash and UTF-8 kept; control bytes, DEL and bytes that
	 * are not UTF-8 (a lone 0xff, a cut sequence) as \xNN */
	assert_string_equal(out, "a\\x0ab\\x0d\\x1b[31m\\x7f\"q\" \\ caf\xc3\xa9 \\xff\\xc3");
	assert_int_equal(n, strlen(out));
	/* a NUL inside the given length is a control byte too */
	assert_int_equal(regent_log_escape("a\0b", 3, out, sizeof(out)), 6);
	assert_string_equal(out, "a\\x00b");
	/* cut with "..." and never beyond the buffer */
	char small[8];
	regent_log_escape("abcdefghijkl", 12, small, sizeof(small));
	assert_string_equal(small, "abcd...");
	regent_log_escape("\n\n\n\n", 4, small, sizeof(small));
	assert_string_equal(small, "\\x0a...");
	regent_log_escape("abcdefg", 7, small, sizeof(small));
	assert_string_equal(small, "abcdefg");
	/* plain text one byte too long for the buffer: cut too */
	assert_int_equal(regent_log_escape("abcdefgh", 8, small, sizeof(small)), 7);
	assert_string_equal(small, "abcd...");
	/* surrogates and overlong forms are not UTF-8 */
	regent_log_escape("\xed\xa0\x80\xc0\xaf", 5, out, sizeof(out));
	assert_string_equal(out, "\\xed\\xa0\\x80\\xc0\\xaf");
	regent_log_escape("\xf0\x9f\x98\x80", 4, out, sizeof(out));
	assert_string_equal(out, "\xf0\x9f\x98\x80");
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

/* The reader of the common shape must decode exactly what jansson's path
 * decodes, and leave everything else to it. */
static void fast_same(const char *v, bool fast_accepts)
{
	regent_instance *a = NULL, *b = NULL, *f = NULL;
	int ra = regent_instance_decode_ex(v, strlen(v), "web", "n/1", &a, true);
	int rb = regent_instance_decode_ex(v, strlen(v), "web", "n/1", &b, false);
	assert_int_equal(ra, rb);
	if (ra == 0)
		assert_true(regent_instance_equal(a, b));
	else
		assert_true(a == NULL && b == NULL);
	int rf = regent_instance_decode_fast(v, strlen(v), "web", "n/1", &f);
	assert_int_equal(rf, fast_accepts ? 0 : 1);
	if (fast_accepts)
		assert_true(regent_instance_equal(f, b));
	else
		assert_null(f);
	regent_instance_free(a);
	regent_instance_free(b);
	regent_instance_free(f);
}

static void decode_fast_path(void **st)
{
	(void)st;
	fast_same("{\"address\":\"10.0.0.1\",\"port\":8080}", true);
	fast_same("{\"address\":\"127.3.0.1\",\"port\":10000,\"proto\":\"tcp\",\"service_port\":9000,"
	          "\"node\":\"hostile-node\",\"tags\":[],\"meta\":{}}", true);
	fast_same("{\n \"address\" : \"::1\" , \"port\" : 1, \"proto\":\"udp\", \"tags\" : [\"a\", "
	          "\"b=c\"], \"meta\" : {\"z\":\"1\", \"a\":\"x y\", \"m\":\"\"}, \"node\":\"\"} ", true);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":65535,\"service_port\":0}", true);
	/* left to jansson: the same answer, valid or not */
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"extra\":{\"a\":[1,2]}}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"node\":\"n\\u0041\"}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{\"k\":\"\xc3\xa9\"}}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"port\":81}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{\"k\":\"1\",\"k\":\"2\"}}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80.0}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":080}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":0}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":65536}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":1234567890123}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":-1}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"service_port\":70000}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"proto\":\"sctp\"}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"node\":null}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[1]}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{\"k\":1}}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[\"a b\"]}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80} x", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,}", false);
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80", false);
	fast_same("{\"port\":80}", false);
	fast_same("{}", false);
	fast_same("{\"address\":\"bad address!\",\"port\":80}", false);
	char big[4096];
	size_t o = (size_t)snprintf(big, sizeof(big), "{\"address\":\"10.0.0.1\",\"port\":80,\"tags\":[");
	for (int t = 0; t < REGENT_MAX_TAGS + 1; t++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"t%d\"", t ? "," : "", t);
	snprintf(big + o, sizeof(big) - o, "]}");
	fast_same(big, false); /* over the limit: jansson's -E2BIG */
	o = (size_t)snprintf(big, sizeof(big), "{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{");
	for (int m = 0; m < REGENT_MAX_META; m++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"k%d\":\"v\"", m ? "," : "", m);
	snprintf(big + o, sizeof(big) - o, "}}");
	fast_same(big, true); /* at the limit */
	/* each byte a plain string may not hold, at every place of a 21-byte meta value (the
	 * reader takes 8 bytes at a time, then byte by byte): left to jansson; a plain one is read */
	static const char bad[] = {'\\', 0x01, 0x1f, 0x7f, (char)0x80, (char)0xc3, (char)0xff};
	for (size_t b = 0; b < sizeof(bad); b++) {
		for (int at = 0; at < 21; at++) {
			char val[22];
			memset(val, 'a', 21);
			val[21] = '\0';
			val[at] = bad[b];
			snprintf(big, sizeof(big),
			         "{\"address\":\"10.0.0.1\",\"port\":80,\"meta\":{\"k\":\"%s\"}}", val);
			fast_same(big, false);
		}
	}
	fast_same("{\"address\":\"10.0.0.1\",\"port\":80,\"node\":\"aaaaaaaaaaaaaaaaaaaaa\","
	          "\"meta\":{\"k\":\" ~!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}\"}}",
	          true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(service_names),   cmocka_unit_test(addresses),
		cmocka_unit_test(copy_and_equal),  cmocka_unit_test(copy_refuses_bad_input),
		cmocka_unit_test(json_round_trip), cmocka_unit_test(encode_same_as_tree),
		cmocka_unit_test(decode_seed_values),
		cmocka_unit_test(decode_refuses_garbage), cmocka_unit_test(base64),
		cmocka_unit_test(backoff),         cmocka_unit_test(limits_and_big_meta),
		cmocka_unit_test(decode_strict_ports), cmocka_unit_test(strict_number_helpers),
		cmocka_unit_test(log_escaping),    cmocka_unit_test(decode_fast_path),
		cmocka_unit_test(decode_shared_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
