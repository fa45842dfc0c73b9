/* etcd_util.c - pure helpers of the etcd store plugin (see etcd_util.h):
 * no loop; memory only through the host table handed in (h->x*), so the
 * unit test and the fuzzer link this file directly with the core's table.
 * The plugin's maps are the host's (host->map_*). */
#include "etcd_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ---- */

etcd_key_kind etcd_split_key_at(const char *key, size_t len, const char *prefix, size_t *svc_off,
                                size_t *svc_len, size_t *id_off)
{
	*svc_off = *svc_len = *id_off = 0;
	size_t pl = strlen(prefix);
	if (len < pl + 1 || memcmp(key, prefix, pl) != 0 || key[pl] != '/')
		return ETCD_KEY_BAD;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
			return ETCD_KEY_BAD;
	const char *svc = key + pl + 1;
	const char *end = key + len;
	const char *slash = memchr(svc, '/', (size_t)(end - svc));
	if (!slash || slash == svc || slash + 1 >= end)
		return ETCD_KEY_BAD;
	*svc_off = pl + 1;
	*svc_len = (size_t)(slash - svc);
	size_t il = (size_t)(end - slash - 1);
	if (il == 4 && memcmp(slash + 1, "port", 4) == 0)
		return ETCD_KEY_PORT;
	*id_off = (size_t)(slash + 1 - key);
	return ETCD_KEY_INSTANCE;
}

etcd_key_kind etcd_split_key(const regent_host *h, const char *key, size_t len,
                             const char *prefix, char **service, char **id)
{
	size_t so, sl, io;
	etcd_key_kind kind = etcd_split_key_at(key, len, prefix, &so, &sl, &io);
	*service = kind == ETCD_KEY_BAD ? NULL : h->xstrndup(key + so, sl); /* no NUL inside */
	*id = kind == ETCD_KEY_INSTANCE ? h->xstrndup(key + io, len - io) : NULL;
	return kind;
}

char *etcd_prefix_end(const regent_host *h, const char *p, size_t len, size_t *outlen)
{
	char *out = h->xmalloc(len + 1);
	memcpy(out, p, len);
	while (len > 0 && (unsigned char)out[len - 1] == 0xff)
		len--;
	if (len == 0) {
		out[0] = '\0';
		*outlen = 1; /* "\0": every key >= the start */
		return out;
	}
	out[len - 1] = (char)((unsigned char)out[len - 1] + 1);
	out[len] = '\0';
	*outlen = len;
	return out;
}

char *etcd_normalize_prefix(const regent_host *h, const char *p)
{
	if (!p)
		return NULL;
	size_t n = strlen(p);
	if (n > 512)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return NULL;
	if (n > 0 && p[0] != '/')
		return NULL;
	while (n > 0 && p[n - 1] == '/')
		n--;
	return h->xstrndup(p, n);
}

bool etcd_json_int64(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	const char *s = json_string_value(v);
	if (!s[0] || strlen(s) > 20)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (int64_t)x;
	return true;
}

char *etcd_printable(const regent_host *h, const char *s, size_t len, size_t max)
{
	size_t cut = len > max ? max : len;
	/* Exact size first: a sane key costs its own length, not 4x. */
	size_t need = cut < len ? 4 : 1;
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)s[i];
		need += (c < 0x20 || c >= 0x7f || c == '\\') ? 4 : 1;
	}
	char *out = h->xmalloc(need);
	size_t o = 0;
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\') { /* quotes kept: JSON stays readable */
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	if (cut < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

int etcd_parse_port(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	while (len > i && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
	                   s[len - 1] == '\r'))
		len--;
	if (i == len || len - i > 5)
		return 0;
	int port = 0;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		port = port * 10 + (s[i] - '0');
	}
	return port >= 1 && port <= 65535 ? port : 0;
}

/* ---- watch responses: the common case without a JSON tree ---- */

/* A strict reader of a subset of JSON: strings of printable ASCII without
 * escapes, integers without fraction or exponent, objects and arrays.
 * Anything else makes the whole scan decline (jansson then parses the
 * line), so the subset never accepts what JSON refuses. */
typedef struct scan {
	const char *p, *end;
} scan;

static void sc_ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool sc_char(scan *s, char c)
{
	sc_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* The bytes a plain string holds (printable ASCII but '"' and '\\'), by
 * value: one lookup a byte in the scanner's hottest loop (the base64 of
 * every key and value). */
static const bool sc_plain[256] = {
	[0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1, /* not '"' 0x22, '\\' 0x5c */
};

static bool sc_string(scan *s, const char **str, size_t *len)
{
	if (!sc_char(s, '"'))
		return false;
	const char *b = s->p;
	/* 8 bytes at a time while none is special: below 0x20, '"', '\\',
	 * 0x7f or above (each test is exact for "any byte"; the word with one
	 * goes byte by byte below) */
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	while (s->end - s->p >= 8) {
		uint64_t x, q, bs, del;
		memcpy(&x, s->p, 8);
		q = x ^ (ones * '"');
		bs = x ^ (ones * '\\');
		del = x ^ (ones * 0x7f);
		if ((((x - ones * 0x20) | (q - ones) | (bs - ones) | (del - ones)) & ~x & high) |
		    (x & high))
			break;
		s->p += 8;
	}
	while (s->p < s->end && sc_plain[(unsigned char)*s->p])
		s->p++;
	if (s->p >= s->end || *s->p != '"')
		return false; /* escapes, control bytes, UTF-8: jansson's */
	*str = b;
	*len = (size_t)(s->p - b);
	s->p++;
	return true;
}

/* A decimal int64 as etcd sends it: a JSON integer or a string of digits
 * (what etcd_json_int64 accepts, minus the cases it would refuse). */
static bool sc_int64(scan *s, int64_t *out)
{
	sc_ws(s);
	const char *b;
	size_t n;
	bool quoted = s->p < s->end && *s->p == '"';
	if (quoted) {
		if (!sc_string(s, &b, &n))
			return false;
	} else {
		b = s->p;
		if (s->p < s->end && *s->p == '-')
			s->p++;
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
		n = (size_t)(s->p - b);
		if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E'))
			return false;
	}
	size_t i = n && b[0] == '-' ? 1 : 0;
	if (n == i || n - i > 18 || (!quoted && n - i > 1 && b[i] == '0'))
		return false; /* 18 digits at most: no overflow below */
	int64_t v = 0;
	for (size_t k = i; k < n; k++) {
		if (b[k] < '0' || b[k] > '9')
			return false;
		v = v * 10 + (b[k] - '0');
	}
	*out = i ? -v : v;
	return true;
}

/* Matches a key string against a literal. */
static bool sc_is(const char *k, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(k, lit, n) == 0;
}

/* An object member's name and its colon. */
static bool sc_name(scan *s, const char **k, size_t *kn)
{
	return sc_string(s, k, kn) && sc_char(s, ':');
}

/* Whether member k is lit, the first time (bit of *seen then set). */
static bool sc_first(const char *k, size_t kn, const char *lit, unsigned bit, unsigned *seen)
{
	if (!sc_is(k, kn, lit) || (*seen & bit))
		return false;
	*seen |= bit;
	return true;
}

/* Skips a scalar of the subset (string or integer). */
static bool sc_skip_scalar(scan *s)
{
	int64_t v;
	sc_ws(s);
	if (s->p < s->end && *s->p == '"') {
		const char *b;
		size_t n;
		return sc_string(s, &b, &n);
	}
	return sc_int64(s, &v);
}

/* {"key": "..", "value": "..", "mod_revision": N, create_revision, version,
 * lease} */
static bool sc_kv(scan *s, etcd_wev *ev)
{
	unsigned seen = 0;
	if (!sc_char(s, '{'))
		return false;
	if (sc_char(s, '}'))
		return false; /* no key: jansson's path reports it */
	do {
		const char *k;
		size_t kn;
		unsigned bit;
		if (!sc_string(s, &k, &kn) || !sc_char(s, ':'))
			return false;
		bool ok;
		if (sc_is(k, kn, "key")) {
			bit = 1;
			ok = sc_string(s, &ev->key, &ev->key_len);
		} else if (sc_is(k, kn, "value")) {
			bit = 2;
			ok = sc_string(s, &ev->value, &ev->value_len);
		} else if (sc_is(k, kn, "mod_revision")) {
			bit = 4;
			ok = sc_int64(s, &ev->mod_rev);
		} else if (sc_is(k, kn, "create_revision")) {
			bit = 8;
			ok = sc_skip_scalar(s);
		} else if (sc_is(k, kn, "version")) {
			bit = 16;
			ok = sc_skip_scalar(s);
		} else if (sc_is(k, kn, "lease")) {
			bit = 32;
			ok = sc_skip_scalar(s);
		} else {
			return false;
		}
		if (!ok || (seen & bit))
			return false; /* malformed, or a duplicate key */
		seen |= bit;
	} while (sc_char(s, ','));
	return (seen & 1) && sc_char(s, '}');
}

/* {"type": "PUT"|"DELETE", "kv": {...}} */
static bool sc_event(scan *s, etcd_wev *ev)
{
	unsigned seen = 0;
	*ev = (etcd_wev){0};
	if (!sc_char(s, '{') || sc_char(s, '}'))
		return false;
	do {
		const char *k, *t;
		size_t kn, tn;
		if (!sc_string(s, &k, &kn) || !sc_char(s, ':'))
			return false;
		if (sc_is(k, kn, "type") && !(seen & 1)) {
			seen |= 1;
			if (!sc_string(s, &t, &tn))
				return false;
			if (sc_is(t, tn, "DELETE"))
				ev->del = true;
			else if (!sc_is(t, tn, "PUT"))
				return false;
		} else if (sc_is(k, kn, "kv") && !(seen & 2)) {
			seen |= 2;
			if (!sc_kv(s, ev))
				return false;
		} else {
			return false; /* prev_kv, a duplicate, anything new */
		}
	} while (sc_char(s, ','));
	return (seen & 2) && sc_char(s, '}');
}

/* "header": {"revision": N, other scalars}; a range answer's also its
 * "raft_term" and "cluster_id" (term, cid: NULL when not wanted) */
static bool sc_header(scan *s, int64_t *rev, int64_t *term, const char **cid, size_t *cidn)
{
	unsigned seen = 0;
	if (!sc_char(s, '{'))
		return false;
	if (sc_char(s, '}'))
		return true;
	do {
		const char *k;
		size_t kn;
		if (!sc_string(s, &k, &kn) || !sc_char(s, ':'))
			return false;
		if (sc_is(k, kn, "revision")) {
			if ((seen & 1) || !sc_int64(s, rev))
				return false;
			seen |= 1;
		} else if (term && sc_is(k, kn, "raft_term")) {
			if ((seen & 2) || !sc_int64(s, term))
				return false;
			seen |= 2;
		} else if (cid && sc_is(k, kn, "cluster_id")) {
			if ((seen & 4) || !sc_string(s, cid, cidn))
				return false;
			seen |= 4;
		} else if (!sc_skip_scalar(s)) {
			return false;
		}
	} while (sc_char(s, ','));
	return sc_char(s, '}');
}

/* Room for entry n of *arr (*cap entries, grown to first, then doubled). */
static etcd_wev *sc_room(const regent_host *h, etcd_wev **arr, size_t *cap, size_t n, size_t first)
{
	if (n == *cap) {
		*cap = *cap ? 2 * *cap : first;
		*arr = h->xrealloc(*arr, *cap * sizeof(**arr));
	}
	return &(*arr)[n];
}

static bool sc_events(const regent_host *h, scan *s, etcd_wev **evs, size_t *cap, size_t *n)
{
	if (!sc_char(s, '['))
		return false;
	if (sc_char(s, ']'))
		return true;
	do {
		if (!sc_event(s, sc_room(h, evs, cap, *n, 64)))
			return false;
		(*n)++;
	} while (sc_char(s, ','));
	return sc_char(s, ']');
}

bool etcd_scan_watch_buf(const regent_host *h, const char *line, size_t len, etcd_wev **evs,
                         size_t *cap, size_t *n, int64_t *rev)
{
	scan s = {line, line + len};
	unsigned seen = 0;
	*n = 0;
	*rev = 0;
	bool ok = sc_char(&s, '{');
	ok = ok && !sc_char(&s, '}');
	if (ok) {
		const char *k;
		size_t kn;
		ok = sc_string(&s, &k, &kn) && sc_is(k, kn, "result") && sc_char(&s, ':') &&
		     sc_char(&s, '{') && !sc_char(&s, '}');
	}
	while (ok) {
		const char *k;
		size_t kn;
		if (!(ok = sc_name(&s, &k, &kn)))
			break;
		if (sc_first(k, kn, "header", 1, &seen))
			ok = sc_header(&s, rev, NULL, NULL, NULL);
		else if (sc_first(k, kn, "events", 2, &seen))
			ok = sc_events(h, &s, evs, cap, n);
		else if (sc_first(k, kn, "watch_id", 4, &seen))
			ok = sc_skip_scalar(&s);
		else
			ok = false; /* created, canceled, a duplicate, anything new */
		if (ok && !sc_char(&s, ','))
			break;
	}
	ok = ok && sc_char(&s, '}') && sc_char(&s, '}');
	if (ok) {
		sc_ws(&s);
		ok = s.p == s.end;
	}
	if (!ok) {
		*n = 0;
		*rev = 0;
	}
	return ok;
}

bool etcd_scan_watch(const regent_host *h, const char *line, size_t len, etcd_wev **evs,
                     size_t *n, int64_t *rev)
{
	size_t cap = 0;
	*evs = NULL;
	bool ok = etcd_scan_watch_buf(h, line, len, evs, &cap, n, rev);
	if (!ok) {
		free(*evs);
		*evs = NULL;
	}
	return ok;
}

/* true or false */
static bool sc_bool(scan *s, bool *out)
{
	sc_ws(s);
	size_t left = (size_t)(s->end - s->p);
	if (left >= 4 && memcmp(s->p, "true", 4) == 0) {
		s->p += 4;
		*out = true;
		return true;
	}
	if (left >= 5 && memcmp(s->p, "false", 5) == 0) {
		s->p += 5;
		*out = false;
		return true;
	}
	return false;
}

/* "kvs": [{kv}, ..] */
static bool sc_kvs(const regent_host *h, scan *s, etcd_range *r, size_t *cap)
{
	if (!sc_char(s, '['))
		return false;
	if (sc_char(s, ']'))
		return true;
	do {
		etcd_wev *kv = sc_room(h, &r->kvs, cap, r->n, 256);
		*kv = (etcd_wev){0};
		if (!sc_kv(s, kv))
			return false;
		r->n++;
	} while (sc_char(s, ','));
	return sc_char(s, ']');
}

bool etcd_scan_range(const regent_host *h, const char *body, size_t len, etcd_range *r)
{
	scan s = {body, body + len};
	unsigned seen = 0;
	size_t cap = 0;
	*r = (etcd_range){0};
	bool ok = sc_char(&s, '{');
	if (ok && !sc_char(&s, '}')) {
		do {
			const char *k;
			size_t kn;
			if (!(ok = sc_name(&s, &k, &kn)))
				break;
			if (sc_first(k, kn, "header", 1, &seen))
				ok = sc_header(&s, &r->rev, &r->term, &r->cid, &r->cid_len);
			else if (sc_first(k, kn, "kvs", 2, &seen))
				ok = sc_kvs(h, &s, r, &cap);
			else if (sc_first(k, kn, "more", 4, &seen))
				ok = sc_bool(&s, &r->more);
			else if (sc_first(k, kn, "count", 8, &seen))
				ok = sc_skip_scalar(&s);
			else
				ok = false; /* an error, a duplicate, anything new */
		} while (ok && sc_char(&s, ','));
		ok = ok && sc_char(&s, '}');
	}
	if (ok) {
		sc_ws(&s);
		ok = s.p == s.end && (seen & 1);
	}
	if (!ok) {
		free(r->kvs);
		*r = (etcd_range){0};
	}
	return ok;
}

etcd_wev etcd_json_kv(const json_t *kv)
{
	etcd_wev w = {0};
	w.key = json_string_value(json_object_get(kv, "key"));
	w.key_len = w.key ? strlen(w.key) : 0;
	w.value = json_string_value(json_object_get(kv, "value"));
	w.value_len = w.value ? strlen(w.value) : 0;
	etcd_json_int64(json_object_get(kv, "mod_revision"), &w.mod_rev);
	return w;
}

etcd_wev *etcd_json_events(const regent_host *h, const json_t *events, size_t *n)
{
	*n = json_array_size(events);
	etcd_wev *evs = h->xcalloc(*n + 1, sizeof(*evs));
	for (size_t i = 0; i < *n; i++) {
		const json_t *ev = json_array_get(events, i);
		const char *type = json_string_value(json_object_get(ev, "type"));
		evs[i] = etcd_json_kv(json_object_get(ev, "kv"));
		evs[i].del = type && strcmp(type, "DELETE") == 0;
	}
	return evs;
}

bool etcd_wev_equal(const etcd_wev *a, const etcd_wev *b)
{
	if (!a->key != !b->key || a->key_len != b->key_len || !a->value != !b->value ||
	    a->value_len != b->value_len || a->mod_rev != b->mod_rev || a->del != b->del)
		return false;
	return (!a->key || memcmp(a->key, b->key, a->key_len) == 0) &&
	       (!a->value || memcmp(a->value, b->value, a->value_len) == 0);
}

static const signed char b64_rev[256] = {
	['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
	['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
	['/'] = 64,
};

bool etcd_b64_decode(const char *s, size_t n, char *out, size_t *outlen)
{
	size_t o = 0, i = 0;
	uint32_t acc = 0;
	int bits = 0;
	/* whole groups of 4 (3 bytes) first: no per-character state (the
	 * values of 100,000 watch events) */
	for (; i + 4 <= n; i += 4) {
		int a = b64_rev[(unsigned char)s[i]] - 1, b = b64_rev[(unsigned char)s[i + 1]] - 1,
		    c = b64_rev[(unsigned char)s[i + 2]] - 1, d = b64_rev[(unsigned char)s[i + 3]] - 1;
		if ((a | b | c | d) < 0)
			break; /* '=' or a bad byte: the loop below says which */
		uint32_t g = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (char)(g >> 16);
		out[o++] = (char)(g >> 8);
		out[o++] = (char)g;
	}
	for (; i < n && s[i] != '='; i++) {
		int v = b64_rev[(unsigned char)s[i]] - 1;
		if (v < 0)
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(acc >> bits);
		}
	}
	for (; i < n; i++)
		if (s[i] != '=')
			return false;
	out[o] = '\0';
	*outlen = o;
	return true;
}

/* A decimal int64 in etcd's string form ("<digits>", at most 19 of
 * them: no overflow) at [p, end): the value, p moved past it. */
static bool quoted_digits(const char **p, const char *end, int64_t *out)
{
	const char *q = *p;
	if (q >= end || *q != '"')
		return false;
	q++;
	int64_t v = 0;
	int nd = 0;
	while (q < end && *q >= '0' && *q <= '9' && nd < 19) {
		v = v * 10 + (*q++ - '0');
		nd++;
	}
	if (!nd || q >= end || *q != '"')
		return false;
	*p = q + 1;
	*out = v;
	return true;
}

/* A txn's answer repeats a header per operation ({"header":{...},
 * "succeeded":true,"responses":[{"response_put":{"header":...}}, ...]}):
 * only the first header's revision and raft term are used, so a
 * successful answer is scanned for just those, in one pass over the
 * header and without building JSON (parsing a 128-operation answer was a
 * fifth of the agent's work registering 10,000 instances, and even a
 * one-operation answer's parse, then the tree built for the two fields,
 * a tenth of a change).  False when the answer does not start that way
 * (the whole answer is parsed then). */
bool etcd_txn_header_fields(const char *body, size_t len, int64_t *rev, int64_t *term)
{
	static const char lead[] = "{\"header\":{";
	size_t ll = sizeof(lead) - 1;
	if (len < ll || memcmp(body, lead, ll) != 0)
		return false;
	const char *p = body + ll, *end = memchr(p, '}', len - ll);
	if (!end || memchr(p, '{', (size_t)(end - p)) || memchr(p, '[', (size_t)(end - p)))
		return false; /* not the flat header expected */
	bool have_rev = false, have_term = false;
	/* "name":value pairs; only the two wanted must be etcd's "<digits>" */
	while (p < end) {
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p != '"')
			return false;
		const char *name = ++p;
		p = memchr(p, '"', (size_t)(end - p));
		if (!p || p + 1 >= end || p[1] != ':')
			return false;
		size_t nl = (size_t)(p - name);
		p += 2;
		if (nl == 8 && memcmp(name, "revision", 8) == 0) {
			if (!quoted_digits(&p, end, rev))
				return false;
			have_rev = true;
		} else if (nl == 9 && memcmp(name, "raft_term", 9) == 0) {
			if (!quoted_digits(&p, end, term))
				return false;
			have_term = true;
		} else if (*p == '"') { /* another string value (no escapes in etcd's ids) */
			p = memchr(p + 1, '"', (size_t)(end - p - 1));
			if (!p)
				return false;
			p++;
		} else {
			while (p < end && *p != ',')
				p++;
		}
	}
	return have_rev && have_term;
}
