/* etcd_util.h - pure helpers of the etcd store plugin (no loop; memory
 * through the host table handed in, ABI 1.4 x* entries, which abort on
 * OOM), shared by the plugin and its unit test: the key layout
 * <prefix>/<service>/<id>, range ends, and etcd's 64-bit JSON numbers
 * (sent as strings).  Every string or array returned is released with
 * free(). */
#ifndef REGENT_ETCD_UTIL_H
#define REGENT_ETCD_UTIL_H

#include <jansson.h>
#include <regent/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a key under the prefix is. */
typedef enum etcd_key_kind {
	ETCD_KEY_INSTANCE = 0, /* <prefix>/<service>/<id>, id may contain '/' */
	ETCD_KEY_PORT = 1,     /* <prefix>/<service>/port: the seed's listen port */
	ETCD_KEY_BAD = -1,     /* anything else */
} etcd_key_kind;

/* Splits key (len bytes, may hold any byte) under prefix (no trailing
 * '/').  On INSTANCE/PORT, *service and *id are malloc'd copies (id NULL
 * for PORT).  A key with a NUL or control byte, an empty service or an
 * empty id is BAD. */
etcd_key_kind etcd_split_key(const regent_host *h, const char *key, size_t len,
                             const char *prefix, char **service, char **id);

/* The same, in place: the service is key[*svc_off, +*svc_len), the id
 * (INSTANCE) the key's tail from *id_off; nothing allocated. */
etcd_key_kind etcd_split_key_at(const char *key, size_t len, const char *prefix, size_t *svc_off,
                                size_t *svc_len, size_t *id_off);

/* The range end of a prefix: drop trailing 0xff bytes, increment the last
 * byte.  malloc'd, *outlen bytes (0 and "\0" = to the end of the keyspace). */
char *etcd_prefix_end(const regent_host *h, const char *p, size_t len, size_t *outlen);

/* Normalises a configured prefix: trailing '/' dropped ("/" -> "").
 * Returns a malloc'd copy, or NULL when it is not acceptable (must be ""
 * or start with '/', printable ASCII without spaces). */
char *etcd_normalize_prefix(const regent_host *h, const char *p);

/* A JSON integer or a string holding a decimal int64 (etcd's encoding).
 * Returns false when absent or malformed. */
bool etcd_json_int64(const json_t *v, int64_t *out);

/* The revision and raft term of a txn's answer ({"header":{...},...}),
 * without parsing the per-operation responses or building JSON; false
 * when the answer does not start with a flat header object holding both
 * (parse the whole answer then). */
bool etcd_txn_header_fields(const char *body, size_t len, int64_t *rev, int64_t *term);

/* A printable, bounded rendering of untrusted bytes for log messages
 * (non-printable bytes and backslashes as \xNN, quotes kept, cut at max
 * bytes with "..."). malloc'd. */
char *etcd_printable(const regent_host *h, const char *s, size_t len, size_t max);

/* Parses the seed's listen-port value ("8000", blanks allowed around).
 * Returns the port or 0 when malformed. */
int etcd_parse_port(const char *s, size_t len);

/* One event of a watch response, pointing into the line: key and value
 * are etcd's base64 text (value NULL when absent). */
typedef struct etcd_wev {
	const char *key, *value;
	size_t key_len, value_len;
	int64_t mod_rev; /* 0 when absent */
	bool del;
} etcd_wev;

/* Reads a watch response line of the common shape, {"result": {"header":
 * {..}, "events": [{"type", "kv": {"key", "value", "mod_revision",
 * "create_revision", "version", "lease"}}, ..], "watch_id"}}, without
 * building a JSON tree (O(line), one allocation: the event array).  Only
 * a strict subset of JSON is read (strings of printable ASCII without
 * escapes, integers, int64 strings of at most 18 digits, no duplicate
 * key); anything else (created, canceled, an error, prev_kv, an escape, a
 * field it does not know) returns false with nothing to free, and the
 * caller parses the line with jansson: for every line it accepts, the
 * result is what the jansson path reads.  On true, *evs (malloc'd, may be
 * NULL when *n is 0) and *rev (the header's revision, 0 when absent). */
bool etcd_scan_watch(const regent_host *h, const char *line, size_t len, etcd_wev **evs,
                     size_t *n, int64_t *rev);

/* The same into a buffer the caller keeps from line to line (*evs, *cap
 * entries: grown as needed, released by the caller with free()), so a
 * stream of responses allocates nothing per line.  On false, *n and *rev
 * are 0 and the buffer is kept. */
bool etcd_scan_watch_buf(const regent_host *h, const char *line, size_t len, etcd_wev **evs,
                         size_t *cap, size_t *n, int64_t *rev);

/* A range answer (/v3/kv/range) of the common shape, {"header":
 * {"cluster_id", "member_id", "revision", "raft_term"}, "kvs": [{"key",
 * "value", "mod_revision", "create_revision", "version", "lease"}, ..],
 * "more": bool, "count"}, read as etcd_scan_watch reads a watch line (the
 * same subset of JSON; anything else returns false with nothing to free,
 * and the caller parses it with jansson).  The discovery's first read of
 * 10,000 keys is ~2.9 MB of such text.  On true: kvs (malloc'd, NULL when
 * n is 0; key and value point into body, del false), the header's
 * revision and raft_term (0 when absent), its cluster_id (NULL when
 * absent; cid_len bytes into body, no NUL), more. */
typedef struct etcd_range {
	etcd_wev *kvs;
	size_t n;
	int64_t rev, term;
	const char *cid;
	size_t cid_len;
	bool more;
} etcd_range;
bool etcd_scan_range(const regent_host *h, const char *body, size_t len, etcd_range *r);

/* A kv object parsed by jansson, as the scanners read one (pointing into
 * the tree; del false). */
etcd_wev etcd_json_kv(const json_t *kv);

/* The events of a watch response parsed by jansson (`events`, the
 * result's array), as etcd_scan_watch gives them: pointing into the tree,
 * which must outlive them.  malloc'd array of *n (never NULL). */
etcd_wev *etcd_json_events(const regent_host *h, const json_t *events, size_t *n);

/* Whether two events read the same (key, value or its absence,
 * mod_revision, type): the scanner and jansson must agree (unit test,
 * fuzzer). */
bool etcd_wev_equal(const etcd_wev *a, const etcd_wev *b);

/* Decodes n bytes of base64 text (as the host's base64_decode: the
 * alphabet up to the first '=', then only '=') into out, which has room
 * for n / 4 * 3 + 3 bytes plus a NUL.  Returns false on a foreign byte. */
bool etcd_b64_decode(const char *s, size_t n, char *out, size_t *outlen);

#endif
