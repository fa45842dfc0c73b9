/* test_etcd_util.c - unit tests of the etcd plugin's pure helpers
 * (plugins/etcd/etcd_util.c): key layout, range end, numbers, the watch
 * response scanner (against jansson's reading) and base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "etcd_util.h"
#include "host.h" /* the core's host table: etcd_util.c allocates through it */

static const regent_host *H = &regent_host_table;

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void split_ok(const char *key, const char *prefix, etcd_key_kind kind, const char *svc,
                     const char *id)
{
	char *s, *i;
	assert_int_equal(etcd_split_key(H, key, strlen(key), prefix, &s, &i), kind);
	assert_string_equal(s, svc);
	/* in place: the same service and id, as offsets into the key */
	size_t so = 99, sl = 99, io = 99;
	assert_int_equal(etcd_split_key_at(key, strlen(key), prefix, &so, &sl, &io), kind);
	assert_int_equal(sl, strlen(svc));
	assert_memory_equal(key + so, svc, sl);
	if (id)
		assert_string_equal(key + io, id);
	else
		assert_int_equal(io, 0);
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
	assert_int_equal(etcd_split_key(H, key, len, prefix, &s, &i), ETCD_KEY_BAD);
	assert_null(s);
	assert_null(i);
	size_t so = 99, sl = 99, io = 99;
	assert_int_equal(etcd_split_key_at(key, len, prefix, &so, &sl, &io), ETCD_KEY_BAD);
	assert_true(so == 0 && sl == 0 && io == 0);
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
	char *end = etcd_prefix_end(H, "/backends/", 10, &n);
	assert_int_equal(n, 10);
	assert_memory_equal(end, "/backends0", 10);
	free(end);
	end = etcd_prefix_end(H, "a\xff\xff", 3, &n);
	assert_int_equal(n, 1);
	assert_memory_equal(end, "b", 1);
	free(end);
	end = etcd_prefix_end(H, "\xff", 1, &n);
	assert_int_equal(n, 1);
	assert_int_equal(end[0], 0);
	free(end);

	char *p = etcd_normalize_prefix(H, "/backends/");
	assert_string_equal(p, "/backends");
	free(p);
	p = etcd_normalize_prefix(H, "/");
	assert_string_equal(p, "");
	free(p);
	p = etcd_normalize_prefix(H, "");
	assert_string_equal(p, "");
	free(p);
	assert_null(etcd_normalize_prefix(H, "backends"));
	assert_null(etcd_normalize_prefix(H, "/a b"));
	assert_null(etcd_normalize_prefix(H, NULL));
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
	char *p = etcd_printable(H, "/a/b\n\"c\\", 8, 100);
	assert_string_equal(p, "/a/b\\x0a\"c\\x5c");
	free(p);
	p = etcd_printable(H, "abcdef", 6, 3);
	assert_string_equal(p, "abc...");
	free(p);
	p = etcd_printable(H, "a\0b", 3, 3);
	assert_string_equal(p, "a\\x00b");
	free(p);
}

/* What the jansson path reads from a line (etcd_disc.c, through etcd_json_events)
 * must be what the scanner reads, for every line the scanner accepts. */
static void scan_same_as_jansson(const char *line, size_t want_n, int64_t want_rev)
{
	etcd_wev *evs;
	size_t n;
	int64_t rev;
	assert_true(etcd_scan_watch(H, line, strlen(line), &evs, &n, &rev));
	assert_int_equal(n, want_n);
	assert_int_equal(rev, want_rev);
	json_error_t jerr;
	json_t *j = json_loads(line, 0, &jerr);
	assert_non_null(j);
	json_t *res = json_object_get(j, "result");
	int64_t jrev = 0;
	etcd_json_int64(json_object_get(json_object_get(res, "header"), "revision"), &jrev);
	assert_int_equal(rev, jrev);
	size_t jn;
	etcd_wev *jevs = etcd_json_events(H, json_object_get(res, "events"), &jn);
	assert_int_equal(jn, n);
	for (size_t i = 0; i < n; i++)
		assert_true(etcd_wev_equal(&evs[i], &jevs[i]));
	free(jevs);
	json_decref(j);
	free(evs);
}

static void scan_declines(const char *line)
{
	etcd_wev *evs = (etcd_wev *)1;
	size_t n = 7;
	int64_t rev = 7;
	assert_false(etcd_scan_watch(H, line, strlen(line), &evs, &n, &rev));
	assert_null(evs);
	assert_int_equal(n, 0);
	assert_int_equal(rev, 0);
}

#define HDR "\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":\"10276657743932975437\"," \
            "\"revision\":\"2000\",\"raft_term\":\"2\"}"
#define PUT1 "{\"kv\":{\"key\":\"L2EvYi9j\",\"create_revision\":\"1999\",\"mod_revision\":\"1999\"," \
             "\"version\":\"1\",\"value\":\"eyJhIjoxfQ==\"}}"
#define DEL1 "{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2EvYi9k\",\"mod_revision\":\"2000\"}}"

static void test_scan_watch(void **st)
{
	(void)st;
	scan_same_as_jansson("{\"result\":{" HDR ",\"events\":[" PUT1 "," DEL1 "]}}", 2, 2000);
	scan_same_as_jansson(" { \"result\" : { \"events\" : [ " PUT1 " ] , " HDR " } } \n", 1, 2000);
	scan_same_as_jansson("{\"result\":{" HDR "}}", 0, 2000); /* progress notification */
	scan_same_as_jansson("{\"result\":{" HDR ",\"events\":[],\"watch_id\":\"3\"}}", 0, 2000);
	scan_same_as_jansson("{\"result\":{\"header\":{\"revision\":17},\"events\":[{\"type\":\"PUT\","
	                     "\"kv\":{\"key\":\"eA==\",\"mod_revision\":-5,\"lease\":12}}]}}",
	                     1, 17);
	scan_same_as_jansson("{\"result\":{\"header\":{\"revision\":\"999999999999999999\"}}}", 0,
	                     999999999999999999LL);
	/* what the jansson path handles */
	scan_declines("{\"result\":{" HDR ",\"created\":true}}");
	scan_declines("{\"result\":{" HDR ",\"canceled\":true,\"compact_revision\":\"5\"}}");
	scan_declines("{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[" PUT1 "]},\"error\":{}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"L2Ev\\u0041\"}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"\xc3\xa9\"}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"a\",\"key\":\"b\"}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"a\"},\"prev_kv\":{}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"a\",\"x\":1}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"value\":\"a\"}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"type\":\"PUT\"}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"type\":\"NOPE\",\"kv\":{\"key\":\"a\"}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"a\",\"mod_revision\":1.5}}]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"a\",\"mod_revision\":01}}]}}");
	scan_declines("{\"result\":{\"header\":{\"revision\":\"9999999999999999999\"}}}");
	scan_declines("{\"result\":{\"header\":{\"revision\":\" 12\"}}}");
	scan_declines("{\"result\":{\"header\":{\"revision\":\"1\",\"revision\":\"2\"}}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[" PUT1 "]}} x");
	scan_declines("{\"result\":{" HDR ",\"events\":[" PUT1 ",]}}");
	scan_declines("{\"result\":{" HDR ",\"events\":[" PUT1 "]}");
	scan_declines("{\"result\":{" HDR ",\"events\":[" PUT1);
	scan_declines("{\"result\":{}}");
	scan_declines("{}");
	scan_declines("");
	scan_declines("{\"result\":{" HDR ",\"fragment\":true}}");
	/* every byte a plain string may not hold, at every place of a 21-byte key (the scanner
	 * reads 8 bytes at a time, then byte by byte): declined; the plain key is read */
	static const char bad[] = {'"', '\\', 0x01, 0x1f, 0x7f, (char)0x80, (char)0xc3, (char)0xff};
	for (size_t b = 0; b < sizeof(bad); b++) {
		for (int at = 0; at < 21; at++) {
			char line[160], key[22];
			memset(key, 'A', 21);
			key[21] = '\0';
			key[at] = bad[b];
			snprintf(line, sizeof(line), "{\"result\":{\"events\":[{\"kv\":{\"key\":\"%s\"}}]}}",
			         key);
			scan_declines(line);
		}
	}
	scan_same_as_jansson("{\"result\":{\"events\":[{\"kv\":{\"key\":\"AAAAAAAAAAAAAAAAAAAAA\","
	                     "\"value\":\" ~!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}\"}}]}}",
	                     1, 0);
}

/* A range answer: what the jansson path reads (etcd_disc.c range_done:
 * header revision, raft_term, cluster_id, each kv, more) must be what the
 * scanner reads, for every answer the scanner accepts. */
static void range_same_as_jansson(const char *body, size_t want_n, bool want_more)
{
	etcd_range rg;
	assert_true(etcd_scan_range(H, body, strlen(body), &rg));
	assert_int_equal(rg.n, want_n);
	assert_int_equal(rg.more, want_more);
	json_error_t jerr;
	json_t *j = json_loads(body, 0, &jerr);
	assert_non_null(j);
	json_t *hdr = json_object_get(j, "header");
	int64_t jrev = 0, jterm = 0;
	etcd_json_int64(json_object_get(hdr, "revision"), &jrev);
	etcd_json_int64(json_object_get(hdr, "raft_term"), &jterm);
	assert_int_equal(rg.rev, jrev);
	assert_int_equal(rg.term, jterm);
	const char *cid = json_string_value(json_object_get(hdr, "cluster_id"));
	if (cid) {
		assert_non_null(rg.cid);
		assert_int_equal(rg.cid_len, strlen(cid));
		assert_memory_equal(rg.cid, cid, rg.cid_len);
	} else {
		assert_null(rg.cid);
	}
	assert_int_equal(rg.more, json_is_true(json_object_get(j, "more")));
	json_t *kvs = json_object_get(j, "kvs");
	assert_int_equal(json_array_size(kvs), rg.n);
	for (size_t i = 0; i < rg.n; i++) {
		etcd_wev w = etcd_json_kv(json_array_get(kvs, i));
		assert_true(etcd_wev_equal(&rg.kvs[i], &w));
	}
	json_decref(j);
	free(rg.kvs);
}

static void range_declines(const char *body)
{
	etcd_range rg;
	assert_false(etcd_scan_range(H, body, strlen(body), &rg));
	assert_null(rg.kvs);
	assert_int_equal(rg.n, 0);
	assert_int_equal(rg.rev, 0);
}

#define KV1 "{\"key\":\"L2EvYi9j\",\"create_revision\":\"1999\",\"mod_revision\":\"1999\"," \
            "\"version\":\"1\",\"value\":\"eyJhIjoxfQ==\"}"
#define KV2 "{\"key\":\"L2EvYi9k\",\"mod_revision\":\"2000\",\"lease\":\"7\"}"

static void test_scan_range(void **st)
{
	(void)st;
	range_same_as_jansson("{" HDR ",\"kvs\":[" KV1 "," KV2 "],\"more\":true,\"count\":\"3\"}", 2,
	                      true);
	range_same_as_jansson("{" HDR ",\"kvs\":[" KV1 "],\"count\":\"1\"}", 1, false);
	range_same_as_jansson(" { \"kvs\" : [ " KV2 " ] , \"more\" : false , " HDR " } \n", 1, false);
	range_same_as_jansson("{" HDR "}", 0, false); /* an empty prefix */
	range_same_as_jansson("{\"header\":{\"revision\":5},\"kvs\":[]}", 0, false);
	range_same_as_jansson("{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"eA==\"}],"
	                      "\"more\":true}",
	                      1, true); /* keys_only */
	/* 300 kvs: the array grows past its first 256 */
	char *big = malloc(300 * sizeof(KV1) + 256);
	assert_non_null(big);
	char *p = big + sprintf(big, "{" HDR ",\"kvs\":[");
	for (int i = 0; i < 300; i++)
		p += sprintf(p, "%s" KV1, i ? "," : "");
	sprintf(p, "],\"more\":true,\"count\":\"301\"}");
	range_same_as_jansson(big, 300, true);
	free(big);
	/* what the jansson path handles */
	range_declines("{\"error\":\"etcdserver: mvcc: required revision has been compacted\","
	               "\"code\":11,\"message\":\"etcdserver: mvcc: required revision has been compacted\"}");
	range_declines("{\"kvs\":[" KV1 "]}"); /* no header */
	range_declines("{" HDR ",\"kvs\":[" KV1 "],\"more\":1}");
	range_declines("{" HDR ",\"kvs\":[" KV1 "],\"more\":tru}");
	range_declines("{" HDR ",\"kvs\":[" KV1 "],\"more\":true,\"more\":false}");
	range_declines("{" HDR "," HDR "}");
	range_declines("{\"header\":{\"revision\":\"1\",\"raft_term\":\"2\",\"raft_term\":\"3\"}}");
	range_declines("{\"header\":{\"revision\":\"1\",\"cluster_id\":\"\\u0041\"}}");
	range_declines("{" HDR ",\"kvs\":[{\"key\":\"a\",\"x\":1}]}");
	range_declines("{" HDR ",\"kvs\":[{\"value\":\"a\"}]}");
	range_declines("{" HDR ",\"kvs\":[" KV1 ",]}");
	range_declines("{" HDR ",\"kvs\":[" KV1 "]");
	range_declines("{" HDR ",\"kvs\":[" KV1 "]} x");
	range_declines("{" HDR ",\"other\":1}");
	range_declines("{}");
	range_declines("");
}

/* The buffer variant: one buffer through lines of different sizes (grown
 * past its first 64 events, kept over a declined line), each line read as
 * etcd_scan_watch reads it. */
static void scan_buf_same(const char *line, etcd_wev **buf, size_t *cap, bool want_ok)
{
	etcd_wev *evs;
	size_t n, bn = 99;
	int64_t rev, brev = 99;
	bool ok = etcd_scan_watch(H, line, strlen(line), &evs, &n, &rev);
	assert_int_equal(ok, want_ok);
	etcd_wev *before = *buf;
	assert_int_equal(etcd_scan_watch_buf(H, line, strlen(line), buf, cap, &bn, &brev), ok);
	assert_int_equal(bn, n);
	assert_int_equal(brev, rev);
	if (!ok)
		assert_ptr_equal(*buf, before); /* kept */
	assert_true(bn <= *cap);
	for (size_t i = 0; i < n; i++)
		assert_true(etcd_wev_equal(&evs[i], &(*buf)[i]));
	free(evs);
}

static void test_scan_watch_buf(void **st)
{
	(void)st;
	etcd_wev *buf = NULL;
	size_t cap = 0;
	scan_buf_same("{\"result\":{" HDR ",\"events\":[" PUT1 "," DEL1 "]}}", &buf, &cap, true);
	assert_int_equal(cap, 64);
	/* 200 events: the buffer grows; their keys and kinds as written */
	char *big = malloc(200 * sizeof(PUT1) + 64);
	assert_non_null(big);
	char *p = big + sprintf(big, "{\"result\":{\"events\":[");
	for (int i = 0; i < 200; i++)
		p += sprintf(p, "%s%s", i ? "," : "", i % 3 ? PUT1 : DEL1);
	sprintf(p, "]}}");
	scan_buf_same(big, &buf, &cap, true);
	assert_int_equal(cap, 256);
	assert_true(buf[0].del && !buf[1].del && buf[199].del == (199 % 3 == 0));
	assert_int_equal(buf[1].mod_rev, 1999);
	/* declined (cut three quarters in, a duplicate key): nothing read, the buffer kept */
	big[strlen(big) / 4 * 3] = '\0';
	scan_buf_same(big, &buf, &cap, false);
	scan_buf_same("{\"result\":{\"events\":[{\"kv\":{\"key\":\"a\",\"key\":\"b\"}}]}}", &buf,
	              &cap, false);
	/* a smaller line after them: read into the same buffer */
	scan_buf_same("{\"result\":{" HDR ",\"events\":[" DEL1 "]}}", &buf, &cap, true);
	assert_int_equal(cap, 256);
	assert_true(buf[0].del);
	scan_buf_same("{\"result\":{" HDR "}}", &buf, &cap, true);
	free(big);
	free(buf);
}

static void test_b64(void **st)
{
	(void)st;
	char out[16];
	size_t n = 99;
	assert_true(etcd_b64_decode("L2EvYi9j", 8, out, &n));
	assert_int_equal(n, 6);
	assert_string_equal(out, "/a/b/c");
	assert_true(etcd_b64_decode("eyJhIjoxfQ==", 12, out, &n));
	assert_int_equal(n, 7);
	assert_string_equal(out, "{\"a\":1}");
	assert_true(etcd_b64_decode("AP8=", 4, out, &n));
	assert_int_equal(n, 2);
	assert_int_equal((unsigned char)out[0], 0);
	assert_int_equal((unsigned char)out[1], 0xff);
	assert_true(etcd_b64_decode("", 0, out, &n));
	assert_int_equal(n, 0);
	assert_true(etcd_b64_decode("+/+/", 4, out, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(out, "\xfb\xff\xbf", 3);
	assert_false(etcd_b64_decode("L2E*", 4, out, &n));
	assert_false(etcd_b64_decode("L2E=x", 5, out, &n));
	assert_false(etcd_b64_decode("L2\0E", 4, out, &n));
	/* past whole groups: a bad byte, a short tail */
	assert_false(etcd_b64_decode("L2EvYi9j*2Ev", 12, out, &n));
	assert_false(etcd_b64_decode("L2EvYi9jL-Ev", 12, out, &n));
	assert_true(etcd_b64_decode("L2EvYi9", 7, out, &n));
	assert_int_equal(n, 5);
	assert_memory_equal(out, "/a/b/", 5);
}

/* A txn's answer: only its leading header is parsed (etcd_call.c). */
static void test_txn_header(void **st)
{
	(void)st;
	const char *ok = "{\"header\":{\"cluster_id\":\"12344236530008248105\",\"member_id\":\"1\","
	                 "\"revision\":\"3\",\"raft_term\":\"2\"},\"succeeded\":true,\"responses\":"
	                 "[{\"response_put\":{\"header\":{\"revision\":\"3\"}}}]}";
	int64_t rev = 0, term = 0;
	assert_true(etcd_txn_header_fields(ok, strlen(ok), &rev, &term));
	assert_int_equal(rev, 3);
	assert_int_equal(term, 2);
	/* the fields in another order, other fields between them */
	const char *swapped = "{\"header\":{\"raft_term\":\"9\",\"x\":1,\"revision\":\"12345678901\"},\"succeeded\":true}";
	assert_true(etcd_txn_header_fields(swapped, strlen(swapped), &rev, &term));
	assert_true(rev == 12345678901LL);
	assert_int_equal(term, 9);
	/* anything else: false, and the caller parses the whole answer */
	const char *other[] = {
		"{\"error\":\"x\",\"code\":5}",
		"{\"header\":{\"a\":{\"b\":1}}}",          /* not flat */
		"{\"header\":{\"a\":[1]}}",
		"{\"header\":{\"revision\":\"3}\"}}",      /* a '}' in a string: cut, invalid */
		"{\"header\":{\"revision\":\"3\"}}",         /* no raft term */
		"{\"header\":{\"revision\":\"x\",\"raft_term\":\"2\"}}", /* not a number */
		"{\"header\":{\"revision\":3,\"raft_term\":\"2\"}}",   /* not etcd's string form */
		"{\"header\":{\"revision\":\"3\"",          /* no end */
		"{\"header\":{\"revision\":\"12345678901234567890\",\"raft_term\":\"2\"}}", /* > int64 */
		"{\"header\":{revision:\"3\",\"raft_term\":\"2\"}}", /* a name not quoted */
		" {\"header\":{}}",
		"",
	};
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		bool j = etcd_txn_header_fields(other[i], strlen(other[i]), &rev, &term);
		if (j)
			fail_msg("answer %zu read as a header", i);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txn_header),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_printable),
		cmocka_unit_test(test_scan_watch),
		cmocka_unit_test(test_scan_watch_buf),
		cmocka_unit_test(test_scan_range),
		cmocka_unit_test(test_b64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
