/* model.c - the instance model: validation of untrusted names and values
 * (with the hard limits of model.h), the core's immutable copies (meta in
 * canonical order), equality in O(n log n), and the JSON form stores keep. */
#include "model.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *regent_proto_name(regent_proto p)
{
	return p == REGENT_PROTO_UDP ? "udp" : "tcp";
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
bool regent_valid_service(const char *name)
{
	if (!name || !isalnum((unsigned char)name[0]))
		return false;
	size_t n = 1;
	for (; name[n]; n++) {
		unsigned char c = (unsigned char)name[n];
		if (!(isalnum(c) || c == '.' || c == '_' || c == '-') || n >= 63)
			return false;
	}
	return true;
}

bool regent_valid_address(const char *addr)
{
	if (!addr || !addr[0] || strlen(addr) > 253)
		return false;
	for (const char *p = addr; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || c == '.' || c == ':' || c == '-' || c == '_'))
			return false;
	}
	return addr[0] != '-' && addr[0] != '.';
}

/* The bytes of an instance id or node name: [A-Za-z0-9._:/@-], one
 * lookup a byte (every key of a 100,000-instance write). */
static const bool id_byte[256] = {
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
	['.'] = 1, ['_'] = 1, [':'] = 1, ['/'] = 1, ['@'] = 1, ['-'] = 1,
};

static bool valid_id(const char *id)
{
	if (!id || !id[0])
		return false;
	const char *p = id;
	while (id_byte[(unsigned char)*p])
		p++;
	return !*p && p - id <= 255;
}

static bool valid_tag(const char *t)
{
	if (!t || !t[0] || strlen(t) > 128)
		return false;
	for (const char *p = t; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == ',')
			return false;
	}
	return true;
}

static bool valid_meta_key(const char *k)
{
	if (!k || !k[0] || strlen(k) > 128)
		return false;
	for (const char *p = k; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static bool valid_meta_value(const char *v)
{
	if (!v || strlen(v) > 512)
		return false;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int instance_check(const regent_instance *i, char *why, size_t whylen)
{
#define FAIL(...)                                       \
	do {                                            \
		if (why)                                \
			snprintf(why, whylen, __VA_ARGS__); \
		return -EINVAL;                         \
	} while (0)
	if (!regent_valid_service(i->service))
		FAIL("invalid service name \"%.80s\" (allowed: [A-Za-z0-9][A-Za-z0-9._-]{0,62})",
		     i->service ? i->service : "");
	if (!valid_id(i->id))
		FAIL("service %s: invalid instance id \"%.80s\"", i->service, i->id ? i->id : "");
	if (!regent_valid_address(i->address))
		FAIL("instance %s: invalid address \"%.80s\"", i->id, i->address ? i->address : "");
	if (i->port == 0)
		FAIL("instance %s: port 0", i->id);
	if (i->proto != REGENT_PROTO_TCP && i->proto != REGENT_PROTO_UDP)
		FAIL("instance %s: unknown protocol %d", i->id, (int)i->proto);
	if (i->ntags > REGENT_MAX_TAGS)
		FAIL("instance %s: %zu tags (at most %d)", i->id, i->ntags, REGENT_MAX_TAGS);
	if (i->nmeta > REGENT_MAX_META)
		FAIL("instance %s: %zu meta pairs (at most %d)", i->id, i->nmeta, REGENT_MAX_META);
	for (size_t t = 0; t < i->ntags; t++)
		if (!valid_tag(i->tags[t]))
			FAIL("instance %s: invalid tag \"%.80s\"", i->id, i->tags[t] ? i->tags[t] : "");
	for (size_t m = 0; m < i->nmeta; m++) {
		if (!valid_meta_key(i->meta[m].key))
			FAIL("instance %s: invalid meta key \"%.80s\"", i->id,
			     i->meta[m].key ? i->meta[m].key : "");
		if (!valid_meta_value(i->meta[m].value))
			FAIL("instance %s: invalid value for meta key %s", i->id, i->meta[m].key);
	}
	if (i->node && i->node[0] && !valid_id(i->node))
		FAIL("instance %s: invalid node name \"%.80s\"", i->id, i->node);
	return 0;
#undef FAIL
}

static int cmp_kv(const void *a, const void *b)
{
	const regent_kv *x = a, *y = b;
	int c = strcmp(x->key ? x->key : "", y->key ? y->key : "");
	return c ? c : strcmp(x->value ? x->value : "", y->value ? y->value : "");
}

static int cmp_kvp(const void *a, const void *b)
{
	return cmp_kv(*(const regent_kv *const *)a, *(const regent_kv *const *)b);
}

/* The names many instances share (their service, their node), held once
 * for every copy that uses them and counted: ~20 bytes less per copy
 * (10,000 instances in 1,000 services on one node: 160-byte malloc chunks
 * -> 144).  Loop thread only, as every copy (plugin.h). */
static regent_map *shared_names; /* util.c's words; NULL when none */

static const char *name_get(const char *text)
{
	return text[0] ? regent_word_get(&shared_names, text) : ""; /* "": not counted */
}

static void name_put(const char *text)
{
	if (!text || !text[0])
		return;
	regent_word_put(shared_names, text);
	if (regent_map_size(shared_names) == 0) {
		regent_map_free(shared_names, NULL);
		shared_names = NULL;
	}
}

/* Deep copy into a single allocation that starts with `header` bytes, but
 * for the service and node names (shared, above). */
static void *deep_copy(const regent_instance *src, const char *default_node, size_t header,
                       regent_instance **pubp)
{
	const char *node = src->node && src->node[0] ? src->node : default_node ? default_node : "";
	size_t need = header + sizeof(char *) * src->ntags + sizeof(regent_kv) * src->nmeta;
	need += strlen(src->id) + strlen(src->address) + 2;
	for (size_t t = 0; t < src->ntags; t++)
		need += strlen(src->tags[t]) + 1;
	for (size_t m = 0; m < src->nmeta; m++)
		need += strlen(src->meta[m].key) + strlen(src->meta[m].value) + 2;
	char *block = regent_xcalloc(1, need);
	/* The public struct sits at the start of the block (regent_inst
	 * begins with it too). */
	regent_instance *pub = (regent_instance *)(void *)block;
	char **tags = (char **)(void *)(block + header);
	regent_kv *meta = (regent_kv *)(void *)(block + header + sizeof(char *) * src->ntags);
	char *str = (char *)(meta + src->nmeta);
#define PUT(dst, s)                        \
	do {                               \
		size_t l_ = strlen(s) + 1; \
		memcpy(str, s, l_);        \
		(dst) = str;               \
		str += l_;                 \
	} while (0)
	*pub = *src;
	pub->service = name_get(src->service);
	PUT(pub->id, src->id);
	PUT(pub->address, src->address);
	pub->node = name_get(node);
	for (size_t t = 0; t < src->ntags; t++)
		PUT(tags[t], src->tags[t]);
	for (size_t m = 0; m < src->nmeta; m++) {
		PUT(meta[m].key, src->meta[m].key);
		PUT(meta[m].value, src->meta[m].value);
	}
#undef PUT
	/* Meta is a map: kept in one canonical order (key, then value for
	 * duplicate keys) so that comparing two copies is linear. */
	if (src->nmeta > 1)
		qsort(meta, src->nmeta, sizeof(*meta), cmp_kv);
	pub->tags = (const char *const *)tags;
	pub->meta = meta;
	*pubp = pub;
	return block;
}

regent_inst *regent_inst_copy(const regent_instance *src, const char *default_node, char *why,
                              size_t whylen)
{
	if (instance_check(src, why, whylen) != 0)
		return NULL;
	regent_instance *pub;
	regent_inst *in = deep_copy(src, default_node, sizeof(regent_inst), &pub);
	in->refs = 1;
	in->magic = REGENT_INST_MAGIC;
	return in;
}

/* What instance_decode gives: the same block as the catalog's copies. */
static void decoded_copy(const regent_instance *src, regent_instance **out)
{
	regent_inst *in = deep_copy(src, NULL, sizeof(regent_inst), out);
	in->refs = 1;
	in->magic = REGENT_INST_MAGIC;
}

regent_inst *regent_inst_of_decoded(const regent_instance *inst)
{
	regent_inst *in = (regent_inst *)inst; /* pub is its first member */
	if (!in || in->magic != REGENT_INST_MAGIC || in->refs == 0)
		return NULL;
	return regent_inst_ref(in);
}

regent_inst *regent_inst_ref(regent_inst *i)
{
	i->refs++;
	return i;
}

void regent_inst_unref(regent_inst *i)
{
	if (i && --i->refs == 0) {
		i->magic = 0; /* a stale pointer handed back is refused, not shared */
		name_put(i->pub.service);
		name_put(i->pub.node);
		free(i);
	}
}

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool meta_sorted(const regent_kv *m, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (cmp_kv(&m[i - 1], &m[i]) > 0)
			return false;
	return true;
}

/* Meta as a multiset of pairs: sorted pointers unless already in order
 * (the core's copies always are), then one linear pass. */
static bool meta_equal(const regent_kv *a, const regent_kv *b, size_t n)
{
	if (meta_sorted(a, n) && meta_sorted(b, n)) {
		for (size_t m = 0; m < n; m++)
			if (cmp_kv(&a[m], &b[m]) != 0)
				return false;
		return true;
	}
	const regent_kv **pa = regent_xmalloc(sizeof(*pa) * n * 2);
	const regent_kv **pb = pa + n;
	for (size_t m = 0; m < n; m++) {
		pa[m] = &a[m];
		pb[m] = &b[m];
	}
	qsort(pa, n, sizeof(*pa), cmp_kvp);
	qsort(pb, n, sizeof(*pb), cmp_kvp);
	bool eq = true;
	for (size_t m = 0; m < n && eq; m++)
		eq = cmp_kv(pa[m], pb[m]) == 0;
	free(pa);
	return eq;
}

bool regent_instance_equal(const regent_instance *a, const regent_instance *b)
{
	if (!str_eq(a->service, b->service) || !str_eq(a->id, b->id) ||
	    !str_eq(a->address, b->address) || a->port != b->port || a->proto != b->proto ||
	    a->service_port != b->service_port || !str_eq(a->node, b->node) ||
	    a->ntags != b->ntags || a->nmeta != b->nmeta)
		return false;
	for (size_t t = 0; t < a->ntags; t++)
		if (!str_eq(a->tags[t], b->tags[t]))
			return false;
	/* Meta is a map: order does not matter.  O(n log n) at worst. */
	return a->nmeta < 2 ? a->nmeta == 0 || (str_eq(a->meta[0].key, b->meta[0].key) &&
	                                        str_eq(a->meta[0].value, b->meta[0].value))
	                    : meta_equal(a->meta, b->meta, a->nmeta);
}

/* ---- the stored JSON form ---- */

/* A string jansson writes as itself: printable ASCII without '"' or '\\'. */
static bool plain_json(const char *s)
{
	if (!s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
			return false;
	return true;
}

#define BUF_LIT(b, lit) regent_buf_add((b), (lit), sizeof(lit) - 1)

static void put_str(regent_buf *b, const char *s)
{
	regent_buf_add(b, "\"", 1);
	regent_buf_add(b, s, strlen(s));
	regent_buf_add(b, "\"", 1);
}

/* The same text as the jansson tree below dumps (compact, keys sorted)
 * for the usual instance, written straight into one buffer: one change
 * is one encode, and the tree cost ~15 allocations and a sort.  Declines
 * (NULL) for anything jansson would write differently: a string that
 * needs escaping or is not ASCII, a missing string, meta keys not in
 * strictly increasing order (the core's copies have them sorted). */
static char *encode_plain(const regent_instance *inst)
{
	const char *node = inst->node ? inst->node : "";
	if (!plain_json(inst->address) || !plain_json(node))
		return NULL;
	for (size_t t = 0; t < inst->ntags; t++)
		if (!plain_json(inst->tags[t]))
			return NULL;
	for (size_t m = 0; m < inst->nmeta; m++)
		if (!plain_json(inst->meta[m].key) || !plain_json(inst->meta[m].value) ||
		    (m > 0 && strcmp(inst->meta[m - 1].key, inst->meta[m].key) >= 0))
			return NULL;
	regent_buf b = {0};
	BUF_LIT(&b, "{\"address\":");
	put_str(&b, inst->address);
	BUF_LIT(&b, ",\"meta\":{");
	for (size_t m = 0; m < inst->nmeta; m++) {
		if (m)
			BUF_LIT(&b, ",");
		put_str(&b, inst->meta[m].key);
		BUF_LIT(&b, ":");
		put_str(&b, inst->meta[m].value);
	}
	BUF_LIT(&b, "},\"node\":");
	put_str(&b, node);
	char num[96];
	int n = snprintf(num, sizeof(num), ",\"port\":%u,\"proto\":\"%s\",\"service_port\":%u,\"tags\":[",
	                 (unsigned)inst->port, regent_proto_name(inst->proto),
	                 (unsigned)inst->service_port);
	regent_buf_add(&b, num, (size_t)n);
	for (size_t t = 0; t < inst->ntags; t++) {
		if (t)
			BUF_LIT(&b, ",");
		put_str(&b, inst->tags[t]);
	}
	BUF_LIT(&b, "]}");
	return b.data;
}

char *regent_instance_encode(const regent_instance *inst)
{
	char *plain = encode_plain(inst);
	if (plain)
		return plain;
	json_t *o = json_object();
	json_object_set_new(o, "address", json_string(inst->address));
	json_object_set_new(o, "port", json_integer(inst->port));
	json_object_set_new(o, "proto", json_string(regent_proto_name(inst->proto)));
	json_object_set_new(o, "service_port", json_integer(inst->service_port));
	json_t *tags = json_array();
	for (size_t t = 0; t < inst->ntags; t++)
		json_array_append_new(tags, json_string(inst->tags[t]));
	json_object_set_new(o, "tags", tags);
	json_t *meta = json_object();
	for (size_t m = 0; m < inst->nmeta; m++)
		json_object_set_new(meta, inst->meta[m].key, json_string(inst->meta[m].value));
	json_object_set_new(o, "meta", meta);
	json_object_set_new(o, "node", json_string(inst->node ? inst->node : ""));
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return s;
}

/* The seed's docker-register value: "ip:port" (IPv6 as "[v6]:port"). */
static int decode_plain(const char *text, size_t len, char *addr, size_t addrlen, long *port)
{
	if (len == 0 || len >= addrlen)
		return -EINVAL;
	char buf[256];
	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	char *colon = strrchr(buf, ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	uint16_t p;
	if (regent_parse_port(colon + 1, strlen(colon + 1), &p) != 0)
		return -EINVAL; /* digits only: no sign, blank or trailing byte */
	*port = p;
	char *host = buf;
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		host++;
	}
	snprintf(addr, addrlen, "%s", host);
	return 0;
}

/* ---- the common value without a JSON tree ---- */

/* A strict reader of a subset of JSON over a writable copy of the value:
 * strings of printable ASCII without escapes (NUL-terminated in place),
 * integers without sign, fraction or exponent.  Anything else declines. */
typedef struct vscan {
	char *p, *end;
} vscan;

static void vs_ws(vscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool vs_char(vscan *s, char c)
{
	vs_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* The bytes of the 8 at p that need a look (below 0x20, '"', '\\', 0x7f or
 * above), one high bit each: 0 when none; the lowest bit set is exact
 * (above it a borrow may set more). */
static uint64_t vs_special8(const char *p)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t x;
	memcpy(&x, p, 8);
	uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);
	return ((((x - ones * 0x20) | (q - ones) | (bs - ones) | (del - ones)) & ~x & high) |
	        (x & high));
}

static bool vs_string_n(vscan *s, const char **out, size_t *len)
{
	if (!vs_char(s, '"'))
		return false;
	char *b = s->p;
	/* 8 bytes at a time up to the first that needs a look (the closing
	 * quote, usually), then byte by byte */
	while (s->end - s->p >= 8) {
		uint64_t m = vs_special8(s->p);
		if (m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			s->p += __builtin_ctzll(m) / 8;
#endif
			break;
		}
		s->p += 8;
	}
	while (s->p < s->end && *s->p != '"') {
		unsigned char c = (unsigned char)*s->p;
		if (c < 0x20 || c >= 0x7f || c == '\\')
			return false; /* escapes, control bytes, UTF-8: jansson's */
		s->p++;
	}
	if (s->p >= s->end)
		return false;
	*len = (size_t)(s->p - b);
	*s->p++ = '\0'; /* the closing quote: read already */
	*out = b;
	return true;
}

static bool vs_string(vscan *s, const char **out)
{
	size_t len;
	return vs_string_n(s, out, &len);
}

enum vs_field { VF_ADDRESS, VF_PORT, VF_PROTO, VF_SPORT, VF_NODE, VF_TAGS, VF_META, VF_OTHER };

/* Which field a key names: by its length, then one comparison. */
static enum vs_field vs_field_of(const char *k, size_t n)
{
	switch (n) {
	case 4:
		return memcmp(k, "port", 4) == 0   ? VF_PORT
		       : memcmp(k, "node", 4) == 0 ? VF_NODE
		       : memcmp(k, "tags", 4) == 0 ? VF_TAGS
		       : memcmp(k, "meta", 4) == 0 ? VF_META
		                                   : VF_OTHER;
	case 5:
		return memcmp(k, "proto", 5) == 0 ? VF_PROTO : VF_OTHER;
	case 7:
		return memcmp(k, "address", 7) == 0 ? VF_ADDRESS : VF_OTHER;
	case 12:
		return memcmp(k, "service_port", 12) == 0 ? VF_SPORT : VF_OTHER;
	default:
		return VF_OTHER;
	}
}

static bool vs_uint(vscan *s, long *out)
{
	vs_ws(s);
	const char *b = s->p;
	long v = 0;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9' && s->p - b < 9)
		v = v * 10 + (*s->p++ - '0');
	size_t n = (size_t)(s->p - b);
	if (n == 0 || (n > 1 && b[0] == '0') ||
	    (s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' ||
	                       *s->p == 'E')))
		return false;
	*out = v;
	return true;
}

/* The value's fields, as the jansson path reads them; returns 0 with *out
 * set, or 1 when it declines (the caller parses with jansson, which also
 * gives every error its code). */
static int decode_fast(char *text, size_t len, const char *service, const char *id,
                       regent_instance **out)
{
	const char *tags[REGENT_MAX_TAGS];
	regent_kv meta[REGENT_MAX_META];
	regent_instance tmp = {.service = service, .id = id, .proto = REGENT_PROTO_TCP};
	vscan sc = {text, text + len}, *s = &sc;
	unsigned seen = 0;
	long port = 0, sport = 0;
	if (!vs_char(s, '{'))
		return 1;
	if (!vs_char(s, '}')) {
		do {
			const char *k, *str;
			size_t kn;
			unsigned bit;
			bool ok;
			if (!vs_string_n(s, &k, &kn) || !vs_char(s, ':'))
				return 1;
			enum vs_field fld = vs_field_of(k, kn);
			if (fld == VF_ADDRESS) {
				bit = 1;
				ok = vs_string(s, &tmp.address);
			} else if (fld == VF_PORT) {
				bit = 2;
				ok = vs_uint(s, &port);
			} else if (fld == VF_PROTO) {
				bit = 4;
				ok = vs_string(s, &str);
				if (ok && strcmp(str, "udp") == 0)
					tmp.proto = REGENT_PROTO_UDP;
				else if (ok && strcmp(str, "tcp") != 0)
					ok = false;
			} else if (fld == VF_SPORT) {
				bit = 8;
				ok = vs_uint(s, &sport);
			} else if (fld == VF_NODE) {
				bit = 16;
				ok = vs_string(s, &tmp.node);
			} else if (fld == VF_TAGS) {
				bit = 32;
				ok = vs_char(s, '[');
				if (ok && !vs_char(s, ']')) {
					do {
						ok = tmp.ntags < REGENT_MAX_TAGS &&
						     vs_string(s, &tags[tmp.ntags]);
						tmp.ntags++;
					} while (ok && vs_char(s, ','));
					ok = ok && vs_char(s, ']');
				}
				tmp.tags = tags;
			} else if (fld == VF_META) {
				bit = 64;
				ok = vs_char(s, '{');
				if (ok && !vs_char(s, '}')) {
					do {
						regent_kv *kv = &meta[tmp.nmeta];
						ok = tmp.nmeta < REGENT_MAX_META && vs_string(s, &kv->key) &&
						     vs_char(s, ':') && vs_string(s, &kv->value);
						for (size_t m = 0; ok && m < tmp.nmeta; m++)
							ok = strcmp(meta[m].key, kv->key) != 0; /* duplicate */
						tmp.nmeta++;
					} while (ok && vs_char(s, ','));
					ok = ok && vs_char(s, '}');
				}
				tmp.meta = meta;
			} else {
				return 1; /* a field it does not know */
			}
			if (!ok || (seen & bit))
				return 1;
			seen |= bit;
		} while (vs_char(s, ','));
		if (!vs_char(s, '}'))
			return 1;
	}
	vs_ws(s);
	if (s->p != s->end || !(seen & 1) || port < 1 || port > 65535 || sport > 65535)
		return 1;
	tmp.port = (uint16_t)port;
	tmp.service_port = (uint16_t)sport;
	if (instance_check(&tmp, NULL, 0) != 0)
		return 1;
	decoded_copy(&tmp, out);
	return 0;
}

int regent_instance_decode_fast(const char *json, size_t len, const char *service,
                                const char *id, regent_instance **out)
{
	char stack[2048];
	*out = NULL;
	if (len > 16384)
		return 1;
	char *text = len < sizeof(stack) ? stack : regent_xmalloc(len + 1);
	memcpy(text, json, len);
	text[len] = '\0';
	int rc = decode_fast(text, len, service, id, out);
	if (text != stack)
		free(text);
	return rc;
}

int regent_instance_decode(const char *json, size_t len, const char *service, const char *id,
                           regent_instance **out)
{
	return regent_instance_decode_ex(json, len, service, id, out, true);
}

int regent_instance_decode_ex(const char *json, size_t len, const char *service, const char *id,
                              regent_instance **out, bool fast)
{
	*out = NULL;
	regent_instance tmp = {.service = service, .id = id, .proto = REGENT_PROTO_TCP};
	const char **tags = NULL;
	regent_kv *meta = NULL;
	json_t *root = NULL;
	int rc = -EINVAL;
	char addr[260];

	if (len > REGENT_MAX_VALUE)
		return -E2BIG; /* refused before parsing: bounded work per value */
	if (len > 0 && json[0] != '{') {
		long port;
		if (decode_plain(json, len, addr, sizeof(addr), &port) != 0)
			return -EINVAL;
		tmp.address = addr;
		tmp.port = (uint16_t)port;
	} else if (fast && regent_instance_decode_fast(json, len, service, id, out) == 0) {
		return 0;
	} else {
		json_error_t jerr;
		root = json_loadb(json, len, 0, &jerr);
		if (!json_is_object(root))
			goto out;
		json_t *v;
		if (!json_is_string(v = json_object_get(root, "address")))
			goto out;
		tmp.address = json_string_value(v);
		v = json_object_get(root, "port");
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
			goto out;
		tmp.port = (uint16_t)json_integer_value(v);
		v = json_object_get(root, "proto");
		if (v) {
			if (json_is_string(v) && strcmp(json_string_value(v), "udp") == 0)
				tmp.proto = REGENT_PROTO_UDP;
			else if (!json_is_string(v) || strcmp(json_string_value(v), "tcp") != 0)
				goto out;
		}
		v = json_object_get(root, "service_port");
		if (v) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 65535)
				goto out;
			tmp.service_port = (uint16_t)json_integer_value(v);
		}
		v = json_object_get(root, "node");
		if (v) {
			if (!json_is_string(v))
				goto out;
			tmp.node = json_string_value(v);
		}
		v = json_object_get(root, "tags");
		if (v) {
			if (!json_is_array(v))
				goto out;
			if (json_array_size(v) > REGENT_MAX_TAGS) {
				rc = -E2BIG;
				goto out;
			}
			tags = regent_xcalloc(json_array_size(v) + 1, sizeof(*tags));
			size_t k;
			json_t *t;
			json_array_foreach(v, k, t)
			{
				if (!json_is_string(t))
					goto out;
				tags[tmp.ntags++] = json_string_value(t);
			}
			tmp.tags = tags;
		}
		v = json_object_get(root, "meta");
		if (v) {
			if (!json_is_object(v))
				goto out;
			if (json_object_size(v) > REGENT_MAX_META) {
				rc = -E2BIG;
				goto out;
			}
			meta = regent_xcalloc(json_object_size(v) + 1, sizeof(*meta));
			const char *k;
			json_t *mv;
			json_object_foreach(v, k, mv)
			{
				if (!json_is_string(mv))
					goto out;
				meta[tmp.nmeta].key = k;
				meta[tmp.nmeta++].value = json_string_value(mv);
			}
			tmp.meta = meta;
		}
	}
	if (instance_check(&tmp, NULL, 0) != 0)
		goto out;
	decoded_copy(&tmp, out);
	rc = 0;
out:
	free(tags);
	free(meta);
	json_decref(root);
	return rc;
}

void regent_instance_free(regent_instance *inst)
{
	regent_inst_unref((regent_inst *)inst);
}
