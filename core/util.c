/* util.c - small helpers the whole core shares: checked allocation, time,
 * backoff, base64, strict number and duration parsing, escaping for log
 * lines, a string-keyed hash map, counted words and a growable buffer. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(void)
{
	fputs("regent: out of memory\n", stderr);
	abort();
}

void *regent_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *regent_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *regent_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *regent_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d)
		oom();
	return d;
}

char *regent_xvasprintf(const char *fmt, va_list ap)
{
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		oom();
	return s;
}

char *regent_xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = regent_xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

char *regent_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

uint64_t regent_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t regent_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t regent_backoff_next(regent_backoff *b)
{
	uint64_t initial = b->initial_ms ? b->initial_ms : 100;
	uint64_t max = b->max_ms ? b->max_ms : 30000;
	if (b->current_ms == 0)
		b->current_ms = initial;
	else if (b->current_ms < max)
		b->current_ms = b->current_ms * 2 > max ? max : b->current_ms * 2;
	/* +-20% jitter so a fleet does not retry in lockstep. */
	uint64_t span = b->current_ms / 5;
	uint64_t delay = b->current_ms - span + (span ? (uint64_t)random() % (2 * span + 1) : 0);
	return delay ? delay : 1;
}

void regent_backoff_reset(regent_backoff *b)
{
	b->current_ms = 0;
}

regent_log_level regent_failure_note(regent_failure *f, bool ongoing, regent_log_level level,
                                     bool same_text, uint64_t now, bool *remind)
{
	*remind = false;
	if (!ongoing) {
		*f = (regent_failure){.since = now, .said = now, .level = level, .count = 1};
		return level;
	}
	f->count++;
	bool quiet = same_text || (level == REGENT_LOG_WARN && f->level == REGENT_LOG_WARN);
	if (!quiet) {
		f->said = now;
		f->level = level;
		return level;
	}
	if (now - f->said >= REGENT_FAILURE_REMIND_MS) {
		f->said = now;
		*remind = true;
		return f->level;
	}
	return REGENT_LOG_DEBUG;
}

const char *regent_failure_text(const regent_failure *f, uint64_t now, char *buf, size_t size)
{
	uint64_t took = now > f->since ? now - f->since : 0;
	if (size)
		snprintf(buf, size, "%llu.%llu s and %u failure%s", (unsigned long long)(took / 1000),
		         (unsigned long long)(took % 1000 / 100), f->count, f->count == 1 ? "" : "s");
	return buf;
}

/* ---- base64 (RFC 4648, with padding) ---- */

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *regent_base64_encode(const void *data, size_t len)
{
	const unsigned char *in = data;
	char *out = regent_xmalloc((len + 2) / 3 * 4 + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static int b64val(int c)
{
	const char *p = c ? strchr(b64chars, c) : NULL;
	return p ? (int)(p - b64chars) : -1;
}

void *regent_base64_decode(const char *text, size_t *len)
{
	size_t n = strlen(text);
	unsigned char *out = regent_xmalloc(n / 4 * 3 + 4);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	size_t i;
	for (i = 0; i < n && text[i] != '='; i++) {
		int v = b64val((unsigned char)text[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	for (; i < n; i++)
		if (text[i] != '=') {
			free(out);
			return NULL;
		}
	out[o] = '\0';
	if (len)
		*len = o;
	return out;
}

/* ---- strict numbers and durations ---- */

int regent_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	/* Digits only: strtoul would take blanks, a sign and (with base 0)
	 * "0x".  Leading zeros are fine; the value saturates past max. */
	if (!s || len == 0)
		return -EINVAL;
	uint64_t v = 0;
	bool over = false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
			over = true;
		if (!over)
			v = v * 10 + d;
	}
	if (over || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int regent_parse_port(const char *s, size_t len, uint16_t *out)
{
	uint64_t v;
	if (regent_parse_uint(s, len, 65535, &v) != 0 || v == 0)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int regent_parse_duration(const char *s, int64_t *ms, int64_t *unit_ms)
{
	if (!s)
		return -EINVAL;
	size_t digits = strspn(s, "0123456789");
	const char *unit = s + digits;
	int64_t mult;
	if (*unit == '\0' || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0)
		mult = 60000;
	else if (strcmp(unit, "h") == 0)
		mult = 3600000;
	else
		return -EINVAL;
	uint64_t v;
	int rc = regent_parse_uint(s, digits, (uint64_t)(INT64_MAX / 2 / mult), &v);
	if (rc != 0)
		return rc;
	*ms = (int64_t)v * mult;
	if (unit_ms)
		*unit_ms = mult;
	return 0;
}

void regent_format_duration(int64_t ms, int64_t unit_ms, char *buf, size_t len)
{
	static const struct {
		int64_t ms;
		const char *name;
	} units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
	for (size_t i = 0; i < REGENT_ARRAY_LEN(units); i++) {
		if (ms == 0 ? units[i].ms != (unit_ms > 0 ? unit_ms : 1) : ms % units[i].ms != 0)
			continue;
		snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].name);
		return;
	}
	snprintf(buf, len, "%lldms", (long long)ms);
}

/* ---- escaping for log lines ---- */

size_t regent_utf8_len(const unsigned char *p, size_t n)
{
	size_t need;
	unsigned char lo = 0x80, hi = 0xbf;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		need = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		need = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		need = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return need;
}

/* One piece of the escaped text for the bytes at p: written into tmp,
 * returns its length and sets *consumed. */
static size_t escape_piece(const unsigned char *p, size_t left, char tmp[5], size_t *consumed)
{
	*consumed = 1;
	if (p[0] >= 0x20 && p[0] < 0x7f) {
		tmp[0] = (char)p[0];
		return 1;
	}
	size_t u = p[0] >= 0x80 ? regent_utf8_len(p, left) : 0;
	if (u) {
		memcpy(tmp, p, u);
		*consumed = u;
		return u;
	}
	snprintf(tmp, 5, "\\x%02x", p[0]);
	return 4;
}

size_t regent_log_escape(const char *in, size_t inlen, char *out, size_t outlen)
{
	if (!outlen)
		return 0;
	const unsigned char *p = (const unsigned char *)(in ? in : "");
	if (!in)
		inlen = 0;
	/* The usual message is printable ASCII throughout: one copy. */
	size_t plain = 0;
	while (plain < inlen && p[plain] >= 0x20 && p[plain] < 0x7f)
		plain++;
	if (plain == inlen && inlen < outlen) {
		memcpy(out, p, inlen);
		out[inlen] = '\0';
		return inlen;
	}
	char tmp[5];
	size_t total = 0, c;
	for (size_t i = 0; i < inlen; i += c)
		total += escape_piece(p + i, inlen - i, tmp, &c);
	bool cut = total + 1 > outlen;
	size_t o = 0;
	for (size_t i = 0; i < inlen; i += c) {
		size_t n = escape_piece(p + i, inlen - i, tmp, &c);
		/* When it is cut, keep room for "...". */
		if (o + n + (cut ? 3 : 0) + 1 > outlen) {
			if (o + 4 <= outlen) {
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}

/* ---- hash map ---- */

typedef struct map_entry {
	void *value;
	uint64_t hash;
	struct map_entry *next;
	char key[]; /* the entry and its key: one allocation */
} map_entry;

struct regent_map {
	map_entry **buckets;
	size_t nbuckets, size;
};

uint64_t regent_hash_str(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= REGENT_HASH_PRIME;
	}
	return h;
}

static uint64_t hash_str(const char *s)
{
	return regent_hash_str(REGENT_HASH_SEED, s);
}

regent_map *regent_map_new(void)
{
	regent_map *m = regent_xcalloc(1, sizeof(*m));
	m->nbuckets = 16;
	m->buckets = regent_xcalloc(m->nbuckets, sizeof(*m->buckets));
	return m;
}

void regent_map_free(regent_map *m, void (*free_value)(void *))
{
	if (!m)
		return;
	for (size_t b = 0; b < m->nbuckets; b++) {
		map_entry *e = m->buckets[b];
		while (e) {
			map_entry *next = e->next;
			if (free_value)
				free_value(e->value);
			free(e);
			e = next;
		}
	}
	free(m->buckets);
	free(m);
}

static map_entry **map_slot(const regent_map *m, const char *key, uint64_t h)
{
	map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->next;
	return pp;
}

void *regent_map_get(const regent_map *m, const char *key)
{
	map_entry **pp = map_slot(m, key, hash_str(key));
	return *pp ? (*pp)->value : NULL;
}

static void map_grow(regent_map *m)
{
	size_t nb = m->nbuckets * 2;
	map_entry **nbk = regent_xcalloc(nb, sizeof(*nbk));
	for (size_t b = 0; b < m->nbuckets; b++) {
		map_entry *e = m->buckets[b];
		while (e) {
			map_entry *next = e->next;
			e->next = nbk[e->hash & (nb - 1)];
			nbk[e->hash & (nb - 1)] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = nbk;
	m->nbuckets = nb;
}

void *regent_map_put(regent_map *m, const char *key, void *value)
{
	uint64_t h = hash_str(key);
	map_entry **pp = map_slot(m, key, h);
	if (*pp) {
		void *old = (*pp)->value;
		(*pp)->value = value;
		return old;
	}
	size_t kl = strlen(key) + 1;
	map_entry *e = regent_xmalloc(sizeof(*e) + kl);
	memcpy(e->key, key, kl);
	e->next = NULL;
	e->value = value;
	e->hash = h;
	*pp = e;
	if (++m->size > m->nbuckets)
		map_grow(m);
	return NULL;
}

void *regent_map_del(regent_map *m, const char *key)
{
	map_entry **pp = map_slot(m, key, hash_str(key));
	map_entry *e = *pp;
	if (!e)
		return NULL;
	void *v = e->value;
	*pp = e->next;
	free(e);
	m->size--;
	return v;
}

size_t regent_map_size(const regent_map *m)
{
	return m->size;
}

bool regent_map_next(const regent_map *m, regent_map_iter *it, const char **key, void **value)
{
	/* it->entry holds the entry to return next, found ahead of time so
	 * that deleting the returned one is safe. */
	map_entry *e = it->entry;
	if (!e) {
		while (it->bucket < m->nbuckets && !m->buckets[it->bucket])
			it->bucket++;
		if (it->bucket >= m->nbuckets)
			return false;
		e = m->buckets[it->bucket];
	}
	if (e->next) {
		it->entry = e->next;
	} else {
		it->entry = NULL;
		it->bucket++;
	}
	if (key)
		*key = e->key;
	if (value)
		*value = e->value;
	return true;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char **regent_map_sorted_keys(const regent_map *m, size_t *n)
{
	const char **keys = regent_xmalloc(sizeof(*keys) * (m->size + 1));
	size_t k = 0;
	regent_map_iter it = {0};
	const char *key;
	while (regent_map_next(m, &it, &key, NULL))
		keys[k++] = key;
	qsort(keys, k, sizeof(*keys), cmp_strp);
	*n = k;
	return keys;
}

/* ---- counted words ---- */

typedef struct word {
	size_t refs;
	char text[];
} word;

const char *regent_word_get(regent_map **words, const char *text)
{
	if (!text)
		return NULL;
	if (!*words)
		*words = regent_map_new();
	word *w = regent_map_get(*words, text);
	if (!w) {
		size_t n = strlen(text) + 1;
		w = regent_xmalloc(sizeof(*w) + n);
		w->refs = 0;
		memcpy(w->text, text, n);
		regent_map_put(*words, w->text, w);
	}
	w->refs++;
	return w->text;
}

void regent_word_put(regent_map *words, const char *text)
{
	if (!text)
		return;
	word *w = (word *)(void *)(text - offsetof(word, text));
	if (--w->refs == 0) {
		regent_map_del(words, w->text);
		free(w);
	}
}

/* ---- buffer ---- */

/* Room for extra more bytes and the NUL. */
static void buf_reserve(regent_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	if (extra > SIZE_MAX / 2 - b->len)
		oom();
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->data = regent_xrealloc(b->data, cap);
	b->cap = cap;
}

void regent_buf_add(regent_buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void regent_buf_vprintf(regent_buf *b, const char *fmt, va_list ap)
{
	/* Straight into the buffer when it fits, else grow once. */
	char small[256];
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		oom();
	if ((size_t)n < sizeof(small)) {
		regent_buf_add(b, small, (size_t)n);
		return;
	}
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void regent_buf_printf(regent_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	regent_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void regent_buf_free(regent_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
