/* fuzz_etcd.c - libFuzzer harness: what the etcd store decodes from etcd's
 * untrusted keys and values.  The input is KEY NUL VALUE: the key goes
 * through etcd_split_key (plugins/etcd/etcd_util.c) under two prefixes,
 * the value through the core's instance decoding (regent_instance_decode,
 * the host's instance_decode) or the seed's port parsing.  Checked: a
 * decoded instance is one the core accepts and survives encode/decode
 * unchanged; split parts hold no control byte; printable renderings are
 * clean; range ends sort after the prefix; the readers of the common
 * shapes (an instance value, a watch response line) answer as jansson's
 * path does. */
#include "core.h"
#include "etcd_util.h"
#include "fuzz.h"
#include "host.h" /* the core's host table: etcd_util.c allocates through it */

#include <errno.h>
#include <jansson.h>

static const regent_host *H = &regent_host_table;

static void check_value(const char *svc, const char *id, const uint8_t *val, size_t vlen)
{
	regent_instance *inst = NULL, *slow = NULL;
	int rc = regent_instance_decode((const char *)val, vlen, svc, id, &inst);
	/* the reader of the common shape answers as the jansson path would */
	int rs = regent_instance_decode_ex((const char *)val, vlen, svc, id, &slow, false);
	CHECK(rs == rc, "fast path rc %d, jansson path %d", rc, rs);
	CHECK(rc != 0 || regent_instance_equal(inst, slow), "fast and jansson paths differ");
	regent_instance_free(slow);
	if (rc != 0) {
		CHECK(inst == NULL, "output on failure");
		CHECK(rc == -EINVAL || rc == -E2BIG, "rc %d", rc);
		return;
	}
	CHECK(vlen <= REGENT_MAX_VALUE, "value of %zu bytes accepted", vlen);
	char why[256] = "";
	regent_inst *in = regent_inst_copy(inst, "", why, sizeof(why));
	CHECK(in != NULL, "decoded but refused: %s", why);
	CHECK(regent_instance_equal(&in->pub, inst), "copy differs");
	char *json = regent_instance_encode(inst);
	CHECK(json != NULL, "encode");
	regent_instance *back = NULL;
	CHECK(regent_instance_decode(json, strlen(json), svc, id, &back) == 0, "re-decode of %s",
	      json);
	CHECK(regent_instance_equal(back, inst), "round trip differs: %s", json);
	regent_instance_free(back);
	free(json);
	regent_inst_unref(in);
	regent_instance_free(inst);
}

static void check_key(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                      const char *prefix)
{
	char *svc = NULL, *id = NULL;
	etcd_key_kind k = etcd_split_key(H, (const char *)key, klen, prefix, &svc, &id);
	if (k == ETCD_KEY_BAD) {
		CHECK(!svc && !id, "parts on BAD");
		return;
	}
	CHECK(svc && svc[0] && fz_clean(svc, strlen(svc), ""), "service");
	if (k == ETCD_KEY_PORT) {
		CHECK(id == NULL, "id for a port key");
		int port = etcd_parse_port((const char *)val, vlen);
		CHECK(port >= 0 && port <= 65535, "port %d", port);
	} else {
		CHECK(id && id[0] && fz_clean(id, strlen(id), ""), "id");
		check_value(svc, id, val, vlen);
	}
	free(svc);
	free(id);
}

/* A watch line the scanner accepts is valid JSON, and jansson reads the
 * same events from it (etcd_disc.c's two paths); the buffer variant, with
 * one buffer kept from input to input as the plugin keeps it from line to
 * line, reads the same as the allocating one. */
static void check_watch_line(const uint8_t *data, size_t size)
{
	static etcd_wev *buf;
	static size_t cap;
	etcd_wev *evs;
	size_t n, bn;
	int64_t rev, brev;
	bool ok = etcd_scan_watch(H, (const char *)data, size, &evs, &n, &rev);
	bool bok = etcd_scan_watch_buf(H, (const char *)data, size, &buf, &cap, &bn, &brev);
	CHECK(bok == ok && bn == n && brev == rev && bn <= cap, "the buffer variant differs");
	for (size_t i = 0; ok && i < n; i++)
		CHECK(etcd_wev_equal(&evs[i], &buf[i]), "event %zu differs in the buffer variant", i);
	if (cap > 1024) { /* as the plugin: a big buffer is not kept */
		free(buf);
		buf = NULL;
		cap = 0;
	}
	if (!ok) {
		CHECK(evs == NULL && n == 0, "output on decline");
		return;
	}
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	CHECK(j != NULL, "scanner accepted what jansson refuses");
	json_t *res = json_object_get(j, "result");
	int64_t jrev = 0;
	etcd_json_int64(json_object_get(json_object_get(res, "header"), "revision"), &jrev);
	CHECK(jrev == rev, "revision %lld, jansson %lld", (long long)rev, (long long)jrev);
	size_t jn;
	etcd_wev *jevs = etcd_json_events(H, json_object_get(res, "events"), &jn);
	CHECK(jn == n, "%zu events, jansson %zu", n, jn);
	for (size_t i = 0; i < n; i++)
		CHECK(etcd_wev_equal(&evs[i], &jevs[i]), "event %zu differs from jansson's", i);
	free(jevs);
	json_decref(j);
	free(evs);
}

/* A range answer the scanner accepts is valid JSON, and jansson reads the
 * same header, kvs and "more" from it (etcd_disc.c range_done's two
 * paths). */
static void check_range(const uint8_t *data, size_t size)
{
	etcd_range rg;
	if (!etcd_scan_range(H, (const char *)data, size, &rg)) {
		CHECK(rg.kvs == NULL && rg.n == 0 && rg.rev == 0, "output on decline");
		return;
	}
	json_t *j = json_loadb((const char *)data, size, 0, NULL);
	CHECK(j != NULL, "range scanner accepted what jansson refuses");
	json_t *hdr = json_object_get(j, "header");
	int64_t jrev = 0, jterm = 0;
	etcd_json_int64(json_object_get(hdr, "revision"), &jrev);
	etcd_json_int64(json_object_get(hdr, "raft_term"), &jterm);
	CHECK(jrev == rg.rev && jterm == rg.term, "range header differs from jansson's");
	const char *cid = json_string_value(json_object_get(hdr, "cluster_id"));
	CHECK(!cid == !rg.cid && (!cid || (strlen(cid) == rg.cid_len &&
	                                   memcmp(cid, rg.cid, rg.cid_len) == 0)),
	      "cluster_id differs from jansson's");
	CHECK(rg.more == json_is_true(json_object_get(j, "more")), "more differs from jansson's");
	json_t *kvs = json_object_get(j, "kvs");
	CHECK(json_array_size(kvs) == rg.n, "%zu kvs, jansson %zu", rg.n, json_array_size(kvs));
	for (size_t i = 0; i < rg.n; i++) {
		etcd_wev w = etcd_json_kv(json_array_get(kvs, i));
		CHECK(etcd_wev_equal(&rg.kvs[i], &w), "kv %zu differs from jansson's", i);
	}
	json_decref(j);
	free(rg.kvs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		regent_log_threshold = REGENT_LOG_ERROR;
		quiet = true;
	}
	if (size > 1 << 18)
		return 0;
	const uint8_t *nul = memchr(data, 0, size);
	size_t klen = nul ? (size_t)(nul - data) : size;
	const uint8_t *val = nul ? nul + 1 : data;
	size_t vlen = nul ? size - klen - 1 : size;
	check_key(data, klen, val, vlen, "/backends");
	check_key(data, klen, val, vlen, "");
	if (!nul)
		check_value("svc", "n1/abc/80", data, size);
	check_watch_line(data, size);
	check_range(data, size);

	char *p = etcd_printable(H, (const char *)data, size, 80);
	CHECK(fz_clean(p, strlen(p), ""), "printable \"%s\"", p);
	CHECK(strlen(p) <= 80 * 4 + 3, "printable too long");
	free(p);
	size_t elen;
	char *end = etcd_prefix_end(H, (const char *)data, klen, &elen);
	if (!(elen == 1 && end[0] == '\0')) { /* "\0": to the end of the keyspace */
		size_t m = klen < elen ? klen : elen;
		int c = memcmp(data, end, m);
		CHECK(c < 0 || (c == 0 && klen < elen), "range end not after the prefix");
	}
	free(end);
	char *k = fz_strndup(data, klen);
	char *np = etcd_normalize_prefix(H, k);
	if (np)
		CHECK(np[0] == '\0' || (np[0] == '/' && np[strlen(np) - 1] != '/'), "prefix \"%s\"",
		      np);
	free(np);
	free(k);
	json_t *j = json_loadb((const char *)val, vlen, JSON_DECODE_ANY, NULL);
	int64_t x;
	(void)etcd_json_int64(j, &x);
	json_decref(j);
	return 0;
}
