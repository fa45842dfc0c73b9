/* consul_util.c - pure helpers of the Consul store plugin (see
 * consul_util.h): no loop, only libc, jansson and the host table handed in
 * (memory through h->x*, the map of consul_parse_state), so the unit test
 * and the fuzzer link them directly with the core's. */
#include "consul_util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* addresses, escaping, durations                                     */
/* ------------------------------------------------------------------ */

/* Reasons quote values from Consul's answers: control bytes become '?'
 * (they reach logs and /healthz; found by tests/fuzz). */
static void why_printable(char *why)
{
	for (; *why; why++)
		if ((unsigned char)*why < 0x20 || *why == 0x7f)
			*why = '?';
}

#define WHY(...)                                        \
	do {                                            \
		if (why && whylen) {                    \
			snprintf(why, whylen, __VA_ARGS__); \
			why_printable(why);             \
		}                                       \
	} while (0)

static bool url_chars_ok(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '"' || c == '\\')
			return false;
	}
	return true;
}

int consul_parse_address(const regent_host *h, const char *addr, char **base, char **unix_path,
                         char *why, size_t whylen)
{
	*base = NULL;
	*unix_path = NULL;
	if (!addr || !addr[0]) {
		WHY("empty address");
		return -EINVAL;
	}
	if (strncmp(addr, "unix://", 7) == 0) {
		const char *p = addr + 7;
		if (p[0] != '/' || p[1] == '\0') {
			WHY("a unix socket address is unix:///absolute/path, got \"%s\"", addr);
			return -EINVAL;
		}
		for (const char *q = p; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f) {
				WHY("control character in the socket path");
				return -EINVAL;
			}
		*unix_path = h->xstrdup(p);
		*base = h->xstrdup("http://localhost");
		return 0;
	}
	const char *rest;
	bool has_scheme = true;
	if (strncmp(addr, "http://", 7) == 0)
		rest = addr + 7;
	else if (strncmp(addr, "https://", 8) == 0)
		rest = addr + 8;
	else if (strstr(addr, "://")) {
		char *shown = consul_redact_url(h, addr);
		WHY("unsupported scheme in \"%s\" (use http://, https:// or unix://)", shown);
		free(shown);
		return -EINVAL;
	} else {
		rest = addr;
		has_scheme = false;
	}
	if (!rest[0] || rest[0] == '/' || rest[0] == ':' || !url_chars_ok(rest)) {
		char *shown = consul_redact_url(h, addr);
		WHY("\"%s\" is not an http(s) URL (e.g. http://127.0.0.1:8500)", shown);
		free(shown);
		return -EINVAL;
	}
	char *b = has_scheme ? h->xstrdup(addr) : h->xasprintf("http://%s", addr);
	size_t n = strlen(b);
	while (n > 0 && b[n - 1] == '/')
		b[--n] = '\0';
	*base = b;
	return 0;
}

char *consul_redact_url(const regent_host *h, const char *url)
{
	const char *host = strstr(url, "://");
	host = host ? host + 3 : url;
	const char *end = host + strcspn(host, "/?#");
	const char *at = NULL;
	for (const char *p = host; p < end; p++)
		if (*p == '@')
			at = p;
	if (!at)
		return h->xstrdup(url);
	return h->xasprintf("%.*s***%s", (int)(host - url), url, at);
}

void consul_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms % 60000 == 0 && ms > 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

char *consul_check_id(const regent_host *h, const char *cid)
{
	return h->xasprintf("service:%s", cid);
}

char *consul_service_id(const regent_host *h, const char *rid)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(rid);
	char *out = h->xmalloc(n * 3 + 1);
	size_t k = 0;
	for (const unsigned char *p = (const unsigned char *)rid; *p; p++) {
		if (isalnum(*p) || *p == '.' || *p == '_' || *p == '-')
			out[k++] = (char)*p;
		else if (*p == '/')
			out[k++] = ':';
		else {
			out[k++] = '_';
			out[k++] = hex[*p >> 4];
			out[k++] = hex[*p & 15];
		}
	}
	out[k] = '\0';
	return out;
}

static uint64_t fnv64(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* ------------------------------------------------------------------ */
/* registration                                                       */
/* ------------------------------------------------------------------ */

static bool reserved_key(const char *k)
{
	return strcmp(k, CONSUL_META_PROTO) == 0 || strcmp(k, CONSUL_META_SERVICE_PORT) == 0 ||
	       strcmp(k, CONSUL_META_NODE) == 0 || strcmp(k, CONSUL_META_ID) == 0 ||
	       strcmp(k, CONSUL_META_HASH) == 0;
}

bool consul_meta_key_ok(const char *key)
{
	size_t n = key ? strlen(key) : 0;
	if (n == 0 || n > 128 || strncmp(key, "consul-", 7) == 0 || reserved_key(key))
		return false;
	for (const char *p = key; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void add_dropped(char *dropped, size_t len, const char *key)
{
	if (!dropped || !len)
		return;
	size_t used = strlen(dropped);
	if (used + 1 >= len)
		return;
	snprintf(dropped + used, len - used, "%s%s", used ? "," : "", key);
}

char *consul_register_body(const regent_host *h, const regent_instance *inst, const char *node,
                           uint64_t ttl_ms, uint64_t deregister_after_ms, char *dropped,
                           size_t droppedlen, char *hash)
{
	if (dropped && droppedlen)
		dropped[0] = '\0';
	json_t *o = json_object();
	char *sid = consul_service_id(h, inst->id);
	json_object_set_new(o, "ID", json_string(sid));
	json_object_set_new(o, "Name", json_string(inst->service));
	json_object_set_new(o, "Address", json_string(inst->address ? inst->address : ""));
	json_object_set_new(o, "Port", json_integer(inst->port));
	json_t *tags = json_array();
	for (size_t i = 0; i < inst->ntags; i++)
		json_array_append_new(tags, json_string(inst->tags[i]));
	json_object_set_new(o, "Tags", tags);
	json_t *meta = json_object();
	char num[16];
	json_object_set_new(meta, CONSUL_META_PROTO,
	                    json_string(inst->proto == REGENT_PROTO_UDP ? "udp" : "tcp"));
	snprintf(num, sizeof(num), "%u", (unsigned)inst->service_port);
	json_object_set_new(meta, CONSUL_META_SERVICE_PORT, json_string(num));
	const char *n = inst->node && inst->node[0] ? inst->node : node ? node : "";
	json_object_set_new(meta, CONSUL_META_NODE, json_string(n));
	json_object_set_new(meta, CONSUL_META_ID, json_string(inst->id));
	for (size_t i = 0; i < inst->nmeta; i++) {
		const char *k = inst->meta[i].key;
		/* One pair stays free for regent-hash, added last. */
		if (!consul_meta_key_ok(k) || json_object_size(meta) >= CONSUL_META_MAX - 1 ||
		    !inst->meta[i].value || strlen(inst->meta[i].value) > 512) {
			add_dropped(dropped, droppedlen, k ? k : "(null)");
			continue;
		}
		json_object_set_new(meta, k, json_string(inst->meta[i].value));
	}
	json_object_set_new(o, "Meta", meta);
	char ttl[32], dereg[32];
	consul_duration(ttl_ms, ttl, sizeof(ttl));
	consul_duration(deregister_after_ms, dereg, sizeof(dereg));
	char *cid = consul_check_id(h, sid);
	free(sid);
	json_t *chk = json_object();
	json_object_set_new(chk, "CheckID", json_string(cid));
	json_object_set_new(chk, "Name", json_string("regent TTL"));
	json_object_set_new(chk, "TTL", json_string(ttl));
	json_object_set_new(chk, "Status", json_string("passing"));
	json_object_set_new(chk, "DeregisterCriticalServiceAfter", json_string(dereg));
	json_object_set_new(o, "Check", chk);
	free(cid);
	/* The hash of everything above, then written into the body. */
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!s)
		abort();
	char hx[CONSUL_HASH_LEN], notes[CONSUL_HASH_LEN + 8];
	snprintf(hx, sizeof(hx), "%016" PRIx64, fnv64(s, strlen(s), FNV_INIT));
	free(s);
	snprintf(notes, sizeof(notes), "regent %s", hx);
	json_object_set_new(meta, CONSUL_META_HASH, json_string(hx));
	json_object_set_new(chk, "Notes", json_string(notes));
	if (hash)
		memcpy(hash, hx, CONSUL_HASH_LEN);
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		abort();
	return s;
}

/* ------------------------------------------------------------------ */
/* index rules                                                        */
/* ------------------------------------------------------------------ */

uint64_t consul_parse_index(const char *h)
{
	if (!h)
		return 0;
	while (*h == ' ' || *h == '\t')
		h++;
	if (!isdigit((unsigned char)*h))
		return 0;
	uint64_t v = 0;
	for (; isdigit((unsigned char)*h); h++) {
		unsigned d = (unsigned)(*h - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	while (*h == ' ' || *h == '\t' || *h == '\r')
		h++;
	return *h ? 0 : v;
}

uint64_t consul_next_index(uint64_t prev, uint64_t got, bool *reset)
{
	bool r = got == 0 || got < prev;
	if (reset)
		*reset = r;
	return r ? 0 : got;
}

/* ------------------------------------------------------------------ */
/* answers                                                            */
/* ------------------------------------------------------------------ */

/* An answer's JSON, of the type wanted: the root (the caller owns it), or
 * NULL with why ("not JSON: ..." / "not a JSON object|array"). */
static json_t *load_answer(const char *body, size_t len, json_type want, char *why,
                           size_t whylen)
{
	json_error_t err;
	json_t *root = json_loadb(body ? body : "", len, 0, &err);
	if (!root) {
		WHY("not JSON: %s (line %d)", err.text, err.line);
		return NULL;
	}
	if (json_typeof(root) != want) {
		WHY("not a JSON %s", want == JSON_OBJECT ? "object" : "array");
		json_decref(root);
		return NULL;
	}
	return root;
}

static size_t skip_ws(const char *b, size_t len, size_t pos)
{
	while (pos < len && (b[pos] == ' ' || b[pos] == '\t' || b[pos] == '\n' || b[pos] == '\r'))
		pos++;
	return pos;
}

/* Calls fn on each element of the JSON array in body, parsed one at a
 * time (jansson's JSON_DISABLE_EOF_CHECK: one value, then the position
 * after it), so that one element's tree is held at a time: the tree of a
 * whole answer is ~10x its size (a 16 MB health answer of 10,000
 * instances: 180 MB at its peak).  Returns 0; -EINVAL with why (not an
 * array, not JSON, fn's error); -EAGAIN at an element that is neither an
 * object nor an array (jansson may read past a bare value: the caller
 * parses the whole answer instead). */
static int array_each(const char *body, size_t len, int (*fn)(json_t *e, void *arg), void *arg,
                      char *why, size_t whylen)
{
	body = body ? body : "";
	size_t pos = skip_ws(body, len, 0);
	if (pos >= len || body[pos] != '[') {
		json_t *any = load_answer(body, len, JSON_ARRAY, why, whylen); /* says why */
		json_decref(any);
		return -EINVAL;
	}
	pos = skip_ws(body, len, pos + 1);
	bool first = true;
	for (;;) {
		if (first && pos < len && body[pos] == ']')
			break;
		if (pos < len && body[pos] != '{' && body[pos] != '[')
			return -EAGAIN;
		json_error_t err;
		json_t *e = json_loadb(body + pos, len - pos, JSON_DISABLE_EOF_CHECK, &err);
		if (!e) {
			WHY("not JSON: %s (byte %zu)", err.text, pos + (size_t)(err.position > 0 ? err.position : 0));
			return -EINVAL;
		}
		pos += (size_t)err.position;
		int rc = fn(e, arg);
		json_decref(e);
		if (rc < 0)
			return rc;
		first = false;
		pos = skip_ws(body, len, pos);
		if (pos < len && body[pos] == ',') {
			pos = skip_ws(body, len, pos + 1);
			continue;
		}
		if (pos < len && body[pos] == ']')
			break;
		WHY("not JSON: ',' or ']' expected (byte %zu)", pos);
		return -EINVAL;
	}
	if (skip_ws(body, len, pos + 1) != len) {
		WHY("not JSON: end of file expected (byte %zu)", pos + 1);
		return -EINVAL;
	}
	return 0;
}

int consul_parse_services(const regent_host *h, const char *body, size_t len, consul_services *out,
                          char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	json_t *root = load_answer(body, len, JSON_OBJECT, why, whylen);
	if (!root)
		return -EINVAL;
	size_t n = json_object_size(root);
	out->root = root;
	out->v = h->xcalloc(n + 1, sizeof(*out->v));
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v)
	{
		consul_service_entry *e = &out->v[out->n++];
		e->name = k;
		size_t nt = json_is_array(v) ? json_array_size(v) : 0;
		e->tags = h->xcalloc(nt + 1, sizeof(*e->tags));
		for (size_t i = 0; i < nt; i++) {
			json_t *t = json_array_get(v, i);
			if (json_is_string(t))
				e->tags[e->ntags++] = json_string_value(t);
		}
	}
	return 0;
}

void consul_services_free(consul_services *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].tags);
	free(s->v);
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}

bool consul_tags_match(const char *const *tags, size_t ntags, const char *const *want,
                       size_t nwant)
{
	for (size_t i = 0; i < nwant; i++) {
		bool found = false;
		for (size_t j = 0; j < ntags && !found; j++)
			found = strcasecmp(tags[j], want[i]) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* Records p (an h->x* allocation) as owned by s. */
static void *own(const regent_host *h, consul_instances *s, void *p)
{
	if ((s->nblocks & (s->nblocks - 1)) == 0) /* 0, 1, 2, 4...: grown by doubling */
		s->blocks = h->xrealloc(s->blocks, sizeof(*s->blocks) * (s->nblocks ? 2 * s->nblocks : 1));
	s->blocks[s->nblocks++] = p;
	return p;
}

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Parses a decimal port 0..65535 (the whole string). */
static bool parse_port(const char *s, uint16_t *out)
{
	if (!s || !*s || strlen(s) > 5)
		return false;
	unsigned v = 0;
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static bool checks_serving(json_t *checks, unsigned states)
{
	size_t n = json_is_array(checks) ? json_array_size(checks) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *st = jstr(json_array_get(checks, i), "Status");
		if (!st)
			continue;
		if (strcmp(st, "passing") == 0 && (states & CONSUL_STATE_PASSING))
			continue;
		if (strcmp(st, "warning") == 0 && (states & CONSUL_STATE_WARNING))
			continue;
		return false;
	}
	return true;
}

/* A check of the instance itself (ServiceID set), not only the node's. */
static bool has_own_check(json_t *checks)
{
	size_t n = json_is_array(checks) ? json_array_size(checks) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *sid = jstr(json_array_get(checks, i), "ServiceID");
		if (sid && sid[0])
			return true;
	}
	return false;
}

/* What health_entry reads and fills, for one answer. */
typedef struct health_ctx {
	const regent_host *h;
	consul_instances *out;
	const char *service;
	unsigned states;
	size_t *skipped;
	char *why;
	size_t whylen;
	size_t cap; /* of out->v */
	/* One entry's tag and meta pointers, reused: pack_instance copies
	 * what they point to, so nothing per instance stays behind. */
	const char **tags;
	regent_kv *kv;
	size_t tcap, kcap;
} health_ctx;

/* The next instance of out (its array grown by doubling). */
static regent_instance *health_slot(const regent_host *h, consul_instances *out, health_ctx *x)
{
	if (out->n == x->cap) {
		x->cap = x->cap ? 2 * x->cap : 16;
		out->v = h->xrealloc(out->v, x->cap * sizeof(*out->v));
	}
	return &out->v[out->n];
}

/* Copies what in points to (its id, address, node, tags and meta, read
 * from one element's tree, which goes right after) into one block owned
 * by out. */
static void pack_instance(const regent_host *h, consul_instances *out, regent_instance *in)
{
	size_t chars = 0;
	const char *str[3] = {in->id, in->address, in->node};
	for (int k = 0; k < 3; k++)
		chars += str[k] ? strlen(str[k]) + 1 : 0;
	for (size_t t = 0; t < in->ntags; t++)
		chars += strlen(in->tags[t]) + 1;
	for (size_t m = 0; m < in->nmeta; m++)
		chars += strlen(in->meta[m].key) + strlen(in->meta[m].value) + 2;
	size_t head = (in->ntags + 1) * sizeof(char *) + (in->nmeta + 1) * sizeof(regent_kv);
	char *blk = own(h, out, h->xmalloc(head + chars));
	const char **tags = (const char **)(void *)blk;
	regent_kv *kv = (regent_kv *)(void *)(blk + (in->ntags + 1) * sizeof(char *));
	char *p = blk + head;
#define PUT(dst, src)                          \
	do {                                   \
		size_t l_ = strlen(src) + 1;   \
		memcpy(p, (src), l_);          \
		(dst) = p;                     \
		p += l_;                       \
	} while (0)
	for (size_t t = 0; t < in->ntags; t++)
		PUT(tags[t], in->tags[t]);
	tags[in->ntags] = NULL;
	for (size_t m = 0; m < in->nmeta; m++) {
		PUT(kv[m].key, in->meta[m].key);
		PUT(kv[m].value, in->meta[m].value);
	}
	memset(&kv[in->nmeta], 0, sizeof(kv[0]));
	if (in->id)
		PUT(in->id, in->id);
	if (in->address)
		PUT(in->address, in->address);
	if (in->node)
		PUT(in->node, in->node);
#undef PUT
	in->tags = tags;
	in->meta = kv;
}

/* One entry of /v1/health/service: an instance appended to x->out, or
 * skipped (counted, the first reason in why), or not serving. */
static void health_entry(json_t *e, health_ctx *x)
{
	const regent_host *h = x->h;
	consul_instances *out = x->out;
	const char *service = x->service;
	unsigned states = x->states;
	size_t *skipped = x->skipped;
	char *why = x->why;
	size_t whylen = x->whylen;
#define SKIP(...)                                          \
	do {                                               \
		if (*skipped == 0)                         \
			WHY(__VA_ARGS__);                  \
		(*skipped)++;                              \
		return;                                    \
	} while (0)
	json_t *svc = json_object_get(e, "Service");
	json_t *nodeo = json_object_get(e, "Node");
	if (!json_is_object(svc))
		SKIP("an entry without a Service object");
	const char *id = jstr(svc, "ID");
	if (!id || !id[0])
		SKIP("an entry without a Service.ID");
	const char *sname = jstr(svc, "Service");
	if (sname && strcmp(sname, service) != 0)
		SKIP("instance %.80s is of service \"%.80s\"", id, sname);
	if (!has_own_check(json_object_get(e, "Checks")))
		out->checkless = true;
	if (!checks_serving(json_object_get(e, "Checks"), states))
		return; /* not serving: not an error */
	json_t *port = json_object_get(svc, "Port");
	if (!json_is_integer(port) || json_integer_value(port) < 1 ||
	    json_integer_value(port) > 65535)
		SKIP("instance %.80s has no usable Port", id);
	regent_instance *in = health_slot(h, out, x);
	memset(in, 0, sizeof(*in));
	in->service = service;
	in->port = (uint16_t)json_integer_value(port);
	in->service_port = in->port;
	in->proto = REGENT_PROTO_TCP;
	const char *addr = jstr(svc, "Address");
	if (!addr || !addr[0])
		addr = json_is_object(nodeo) ? jstr(nodeo, "Address") : NULL;
	in->address = addr ? addr : "";
	const char *cnode = json_is_object(nodeo) ? jstr(nodeo, "Node") : NULL;
	json_t *tags = json_object_get(svc, "Tags");
	size_t nt = json_is_array(tags) ? json_array_size(tags) : 0;
	if (nt + 1 > x->tcap) {
		x->tcap = nt + 1;
		x->tags = h->xrealloc(x->tags, x->tcap * sizeof(*x->tags));
	}
	const char **tv = x->tags;
	for (size_t t = 0; t < nt; t++) {
		json_t *tj = json_array_get(tags, t);
		if (json_is_string(tj))
			tv[in->ntags++] = json_string_value(tj);
	}
	in->tags = tv;
	json_t *meta = json_object_get(svc, "Meta");
	size_t nm = json_is_object(meta) ? json_object_size(meta) : 0;
	if (nm + 1 > x->kcap) {
		x->kcap = nm + 1;
		x->kv = h->xrealloc(x->kv, x->kcap * sizeof(*x->kv));
	}
	regent_kv *kv = x->kv;
	bool ours = false;
	const char *rid = NULL, *mk;
	json_t *mv;
	if (nm)
		json_object_foreach(meta, mk, mv)
		{
			const char *val = json_is_string(mv) ? json_string_value(mv) : NULL;
			if (!val)
				SKIP("instance %.80s: meta %.80s is not a string", id, mk);
			if (strcmp(mk, CONSUL_META_PROTO) == 0) {
				if (strcmp(val, "udp") == 0)
					in->proto = REGENT_PROTO_UDP;
				else if (strcmp(val, "tcp") != 0)
					SKIP("instance %.80s: unknown proto \"%.20s\"", id, val);
			} else if (strcmp(mk, CONSUL_META_SERVICE_PORT) == 0) {
				if (!parse_port(val, &in->service_port))
					SKIP("instance %.80s: bad service_port \"%.20s\"", id,
					     val);
			} else if (strcmp(mk, CONSUL_META_NODE) == 0) {
				in->node = val;
				ours = true;
			} else if (strcmp(mk, CONSUL_META_ID) == 0) {
				rid = val;
			} else if (strcmp(mk, CONSUL_META_HASH) == 0) {
				/* regent's own bookkeeping */
			} else {
				kv[in->nmeta].key = mk;
				kv[in->nmeta++].value = val;
			}
		}
	in->meta = kv;
	char *fid = NULL;
	if (ours) {
		in->id = rid && rid[0] ? rid : id;
	} else {
		/* Not registered by regent: Consul IDs are unique per
		 * node only. */
		in->id = fid = h->xasprintf("%s/%s", cnode ? cnode : "", id);
		in->node = cnode;
	}
	pack_instance(h, out, in);
	free(fid);
	out->n++;
	return;
}
#undef SKIP

static int health_each(json_t *e, void *arg)
{
	health_entry(e, arg);
	return 0;
}

int consul_parse_health(const regent_host *h, const char *body, size_t len, const char *service,
                        unsigned states, consul_instances *out, size_t *skipped, char *why,
                        size_t whylen)
{
	memset(out, 0, sizeof(*out));
	*skipped = 0;
	if (why && whylen)
		why[0] = '\0';
	health_ctx x = {h, out, service, states, skipped, why, whylen, 0, NULL, NULL, 0, 0};
	int rc = array_each(body, len, health_each, &x, why, whylen);
	if (rc == -EAGAIN) { /* an element that is not an object: the whole tree */
		consul_instances_free(out);
		*skipped = 0;
		x.cap = 0;
		json_t *root = load_answer(body, len, JSON_ARRAY, why, whylen);
		for (size_t i = 0; root && i < json_array_size(root); i++)
			health_entry(json_array_get(root, i), &x);
		rc = root ? 0 : -EINVAL;
		json_decref(root);
	}
	free(x.tags);
	free(x.kv);
	if (rc < 0) {
		consul_instances_free(out);
		return rc;
	}
	out->ptrs = h->xcalloc(out->n + 1, sizeof(*out->ptrs));
	for (size_t i = 0; i < out->n; i++)
		out->ptrs[i] = &out->v[i];
	return 0;
}

/* What state_check adds to, for one answer. */
typedef struct state_ctx {
	const regent_host *host;
	regent_map *sigs;
	uint64_t *node_sig;
	size_t n;
} state_ctx;

static void state_check(json_t *c, state_ctx *x)
{
	const char *node = jstr(c, "Node"), *cid = jstr(c, "CheckID");
	const char *st = jstr(c, "Status"), *svc = jstr(c, "ServiceName");
	json_t *mi = json_object_get(c, "ModifyIndex");
	uint64_t h = FNV_INIT;
	h = fnv64(node ? node : "", node ? strlen(node) + 1 : 1, h);
	h = fnv64(cid ? cid : "", cid ? strlen(cid) + 1 : 1, h);
	h = fnv64(st ? st : "", st ? strlen(st) + 1 : 1, h);
	uint64_t m = json_is_integer(mi) ? (uint64_t)json_integer_value(mi) : 0;
	h = fnv64(&m, sizeof(m), h);
	x->n++;
	/* Order-free: a sum of the checks' hashes. */
	if (!svc || !svc[0]) {
		*x->node_sig += h;
		return;
	}
	uint64_t prev = (uint64_t)(uintptr_t)x->host->map_get(x->sigs, svc);
	x->host->map_put(x->sigs, svc, (void *)(uintptr_t)((prev + h) | 1));
}

static int state_each(json_t *c, void *arg)
{
	state_check(c, arg);
	return 0;
}

int consul_parse_state(const regent_host *host, const char *body, size_t len, regent_map *sigs,
                       uint64_t *node_sig, char *why, size_t whylen)
{
	*node_sig = 0;
	state_ctx x = {host, sigs, node_sig, 0};
	int rc = array_each(body, len, state_each, &x, why, whylen);
	if (rc == -EAGAIN) { /* an element that is not an object: the whole tree */
		json_t *root = load_answer(body, len, JSON_ARRAY, why, whylen);
		if (!root)
			return -EINVAL;
		/* the sums start again: sigs only gains keys, their sums restart */
		*node_sig = 0;
		x.n = 0;
		for (size_t i = 0; i < json_array_size(root); i++) {
			json_t *c = json_array_get(root, i);
			const char *svc = jstr(c, "ServiceName");
			if (svc && svc[0])
				host->map_put(sigs, svc, (void *)(uintptr_t)0);
		}
		for (size_t i = 0; i < json_array_size(root); i++)
			state_check(json_array_get(root, i), &x);
		json_decref(root);
		rc = 0;
	}
	if (rc < 0)
		return rc;
	return (int)(x.n > INT32_MAX ? INT32_MAX : x.n);
}

int consul_parse_agent_services(const regent_host *h, const char *body, size_t len,
                                const char *node, consul_agent_services *out, char *why,
                                size_t whylen)
{
	memset(out, 0, sizeof(*out));
	json_t *root = load_answer(body, len, JSON_OBJECT, why, whylen);
	if (!root)
		return -EINVAL;
	out->root = root;
	out->v = h->xcalloc(json_object_size(root) + 1, sizeof(*out->v));
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v)
	{
		json_t *meta = json_object_get(v, "Meta");
		const char *mn = jstr(meta, CONSUL_META_NODE);
		if (!mn || !node || strcmp(mn, node) != 0 || !jstr(meta, CONSUL_META_PROTO))
			continue;
		const char *id = jstr(v, "ID");
		consul_agent_service *a = &out->v[out->n++];
		a->cid = id ? id : k;
		a->rid = jstr(meta, CONSUL_META_ID) ? jstr(meta, CONSUL_META_ID) : a->cid;
		a->hash = jstr(meta, CONSUL_META_HASH) ? jstr(meta, CONSUL_META_HASH) : "";
		a->service = jstr(v, "Service") ? jstr(v, "Service") : "";
	}
	return 0;
}

void consul_agent_services_free(consul_agent_services *s)
{
	if (!s)
		return;
	free(s->v);
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}

void consul_instances_free(consul_instances *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nblocks; i++)
		free(s->blocks[i]);
	free(s->blocks);
	free(s->v);
	free(s->ptrs);
	json_decref(s->root);
	memset(s, 0, sizeof(*s));
}
