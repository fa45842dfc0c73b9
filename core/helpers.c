/* helpers.c - the host-table helpers of ABI 1.4 that plugins used to write
 * again each (strings, the buffer's JSON strings, URL escaping, the
 * HTTP-result describer, self-closing timers, per-part health, ADDRESS
 * values parsed).  Memory,
 * the map and the buffer themselves are util.c's; spawning is spawn.c's,
 * the atomic file write filewrite.c's. */
#include "helpers.h"

#include "config.h"
#include "host.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- strings ---- */

char *regent_h_strdup(const char *s)
{
	return s ? regent_xstrdup(s) : NULL;
}

char *regent_h_strndup(const char *s, size_t n)
{
	if (!s)
		return NULL;
	size_t len = strnlen(s, n);
	char *d = regent_xmalloc(len + 1);
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

void regent_h_buf_puts(regent_buf *b, const char *s)
{
	if (s)
		regent_buf_add(b, s, strlen(s));
}

/* ---- JSON strings ---- */

static int dump_to_buf(const char *data, size_t len, void *arg)
{
	regent_buf_add(arg, data, len);
	return 0;
}

/* s with every byte that is not part of valid UTF-8 replaced by U+FFFD, or
 * NULL when s is valid as it is. */
static char *utf8_fixed(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, u = 0;
	while (i < n) {
		u = p[i] < 0x80 ? 1 : regent_utf8_len(p + i, n - i);
		if (!u)
			break;
		i += u;
	}
	if (i == n)
		return NULL;
	regent_buf out = {0};
	regent_buf_add(&out, s, i);
	while (i < n) {
		u = p[i] < 0x80 ? 1 : regent_utf8_len(p + i, n - i);
		if (u) {
			regent_buf_add(&out, p + i, u);
			i += u;
		} else {
			regent_buf_add(&out, "\xEF\xBF\xBD", 3);
			i++;
		}
	}
	return out.data;
}

void regent_buf_json(regent_buf *b, const char *s)
{
	if (!s) {
		regent_buf_add(b, "null", 4);
		return;
	}
	size_t n = 0;
	/* Plain printable ASCII (most names, ids and addresses) as it is. */
	while (s[n] >= 0x20 && s[n] < 0x7f && s[n] != '"' && s[n] != '\\')
		n++;
	if (!s[n]) {
		regent_buf_add(b, "\"", 1);
		regent_buf_add(b, s, n);
		regent_buf_add(b, "\"", 1);
		return;
	}
	n += strlen(s + n);
	char *fixed = utf8_fixed(s, n);
	const char *text = fixed ? fixed : s;
	json_t *j = json_stringn_nocheck(text, fixed ? strlen(fixed) : n);
	if (!j || json_dump_callback(j, dump_to_buf, b, JSON_ENCODE_ANY) != 0) {
		fputs("regent: out of memory\n", stderr);
		abort();
	}
	json_decref(j);
	free(fixed);
}

/* ---- URL escaping ---- */

char *regent_url_escape(const char *s, size_t len)
{
	if (!s)
		return NULL;
	if (len == 0)
		len = strlen(s);
	if (len > INT_MAX)
		return NULL;
	if (len == 0)
		return regent_xstrdup("");
	/* libcurl >= 7.82 ignores the handle. */
	char *e = curl_easy_escape(NULL, s, (int)len);
	if (!e) {
		fputs("regent: out of memory\n", stderr);
		abort();
	}
	char *d = regent_xstrdup(e);
	curl_free(e);
	return d;
}

/* ---- HTTP results ---- */

#define DESCRIBE_MAX 200

/* The text a body says: a JSON object's "message" or "error" string, else
 * the body.  *tmp owns what must be freed. */
static const char *body_message(const regent_http_result *res, size_t *len, json_t **tmp)
{
	*tmp = NULL;
	*len = res->body_len;
	if (!res->body || !res->body_len)
		return NULL;
	size_t i = 0;
	while (i < res->body_len && strchr(" \t\r\n", res->body[i]))
		i++;
	if (i < res->body_len && res->body[i] == '{') {
		json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
		const char *keys[] = {"message", "error"};
		for (size_t k = 0; j && k < 2; k++) {
			json_t *m = json_is_object(j) ? json_object_get(j, keys[k]) : NULL;
			if (json_is_string(m)) {
				*tmp = j;
				*len = json_string_length(m);
				return json_string_value(m);
			}
		}
		json_decref(j);
	}
	return res->body;
}

const char *regent_http_describe(const regent_http_result *res, char *out, size_t outlen)
{
	if (!out || !outlen)
		return out;
	if (!res) {
		snprintf(out, outlen, "no result");
		return out;
	}
	if (res->error) {
		const char *e = strerror(-res->error);
		if (res->error == -ETIMEDOUT)
			e = "timeout";
		else if (res->error == -ECONNREFUSED)
			e = "connection refused";
		if (res->error_msg && res->error_msg[0] && strcmp(res->error_msg, e) != 0)
			snprintf(out, outlen, "%s (%s)", e, res->error_msg);
		else
			snprintf(out, outlen, "%s", e);
		return out;
	}
	json_t *tmp;
	size_t mlen;
	const char *msg = body_message(res, &mlen, &tmp);
	char ex[DESCRIBE_MAX + 4];
	size_t k = 0;
	bool cut = false, blank = true; /* blank: the last byte kept was a blank */
	const unsigned char *p = (const unsigned char *)msg;
	for (size_t i = 0; msg && i < mlen;) {
		size_t u = p[i] < 0x80 ? 1 : regent_utf8_len(p + i, mlen - i);
		bool space = p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n';
		if (space && blank) {
			i++;
			continue;
		}
		size_t take = u ? u : 1;
		if (k + take > DESCRIBE_MAX) {
			cut = true;
			break;
		}
		if (space)
			ex[k++] = ' ';
		else if (!u || p[i] < 0x20 || p[i] == 0x7f)
			ex[k++] = '?';
		else {
			memcpy(ex + k, p + i, u);
			k += u;
		}
		blank = space;
		i += take;
	}
	while (k > 0 && ex[k - 1] == ' ')
		k--;
	if (cut) {
		memcpy(ex + k, "...", 3);
		k += 3;
	}
	ex[k] = '\0';
	json_decref(tmp);
	snprintf(out, outlen, "HTTP %ld%s%s", res->status, k ? ": " : "", ex);
	return out;
}

/* ---- timers ---- */

uv_timer_t *regent_timer_new(uv_loop_t *loop, void *data)
{
	uv_timer_t *t = regent_xcalloc(1, sizeof(*t));
	int rc = uv_timer_init(loop, t);
	if (rc != 0) { /* libuv's timer_init cannot fail but for a bad loop */
		fprintf(stderr, "regent: uv_timer_init: %s\n", uv_strerror(rc));
		abort();
	}
	t->data = data;
	return t;
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

void regent_timer_close(uv_timer_t **t)
{
	if (!t || !*t)
		return;
	uv_timer_stop(*t);
	(*t)->data = NULL;
	uv_close((uv_handle_t *)*t, timer_closed);
	*t = NULL;
}

/* ---- per-part health ---- */

typedef struct health_part {
	char *name;
	char *reason; /* why it fails, or its note (NULL: none) */
	bool healthy;
} health_part;

struct regent_health_parts {
	health_part *v;
	size_t n;
};

void regent_health_part(regent_ctx *ctx, const char *part, bool healthy, const char *reason)
{
	if (!ctx || !part)
		return;
	regent_health_parts *ps = ctx->health_parts;
	if (!ps)
		ps = ctx->health_parts = regent_xcalloc(1, sizeof(*ps));
	health_part *hp = NULL;
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->v[i].name, part) == 0)
			hp = &ps->v[i];
	if (!hp) {
		ps->v = regent_xrealloc(ps->v, (ps->n + 1) * sizeof(*ps->v));
		hp = &ps->v[ps->n++];
		hp->name = regent_xstrdup(part);
		hp->reason = NULL;
	}
	free(hp->reason);
	hp->healthy = healthy;
	if (healthy) /* a note, or nothing */
		hp->reason = reason && reason[0] ? regent_xstrdup(reason) : NULL;
	else
		hp->reason = regent_xstrdup(reason && reason[0] ? reason : "failing");
	/* Unhealthy: the failing parts.  Healthy: the parts' notes, if any. */
	bool ok = true;
	for (size_t i = 0; i < ps->n; i++)
		ok = ok && ps->v[i].healthy;
	regent_buf why = {0};
	for (size_t i = 0; i < ps->n; i++)
		if (ps->v[i].healthy == ok && ps->v[i].reason)
			regent_buf_printf(&why, "%s%s: %s", why.len ? "; " : "", ps->v[i].name,
			                  ps->v[i].reason);
	regent_host_table.set_health(ctx, ok, why.len ? why.data : NULL);
	regent_buf_free(&why);
}

void regent_health_parts_free(regent_ctx *ctx)
{
	regent_health_parts *ps = ctx->health_parts;
	if (!ps)
		return;
	for (size_t i = 0; i < ps->n; i++) {
		free(ps->v[i].name);
		free(ps->v[i].reason);
	}
	free(ps->v);
	free(ps);
	ctx->health_parts = NULL;
}

/* ---- ADDRESS values, parsed ---- */

int regent_address_parse(const char *s, regent_address *a, char *why, size_t whylen)
{
	memset(a, 0, sizeof(*a));
	a->size = sizeof(*a);
	const char *colon = s ? strrchr(s, ':') : NULL;
	if (!colon || colon == s) {
		snprintf(why, whylen, "expected HOST:PORT, got \"%s\"", s ? s : "");
		return -EINVAL;
	}
	if (regent_parse_port(colon + 1, strlen(colon + 1), &a->port) != 0) {
		snprintf(why, whylen, "invalid port in \"%s\" (digits only, 1-65535)", s);
		return -EINVAL;
	}
	size_t hl = (size_t)(colon - s);
	bool bracketed = s[0] == '[' && hl > 2 && s[hl - 1] == ']';
	const char *h = bracketed ? s + 1 : s;
	size_t n = bracketed ? hl - 2 : hl;
	if (!bracketed && memchr(s, ':', hl)) {
		snprintf(why, whylen, "IPv6 addresses need brackets: \"[%.*s]:%u\"", (int)hl, s,
		         (unsigned)a->port);
		return -EINVAL;
	}
	if (n >= sizeof(a->host)) {
		snprintf(why, whylen, "host too long in \"%s\"", s);
		return -EINVAL;
	}
	memcpy(a->host, h, n);
	a->host[n] = '\0';
	if (!regent_valid_address(a->host)) {
		snprintf(why, whylen, "invalid host \"%s\"", a->host);
		return -EINVAL;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
	if (bracketed) {
		if (inet_pton(AF_INET6, a->host, &s6->sin6_addr) != 1) {
			snprintf(why, whylen, "\"%s\" in brackets is not an IPv6 address", a->host);
			return -EINVAL;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a->port);
		a->family = AF_INET6;
		a->salen = sizeof(*s6);
	} else if (inet_pton(AF_INET, a->host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		a->family = AF_INET;
		a->salen = sizeof(*s4);
	} else {
		a->family = AF_UNSPEC; /* a DNS name */
	}
	return 0;
}

int regent_cfg_address(regent_ctx *ctx, const char *key, regent_address *out)
{
	const regent_cfg_value *v = ctx && key ? regent_cfg_find(ctx->sec, key) : NULL;
	const char *who = ctx ? ctx->who : "plugin";
	if (!v || v->key->type != REGENT_CFG_ADDRESS) {
		regent_log(REGENT_LOG_ERROR, who, "plugin bug: key \"%s\" is not declared as an ADDRESS",
		           key ? key : "(null)");
		return -EINVAL;
	}
	if (!out || out->size < REGENT_ADDRESS_SIZE_1_4) {
		regent_log(REGENT_LOG_ERROR, who, "plugin bug: cfg_address(\"%s\") without out->size",
		           key);
		return -EINVAL;
	}
	if (!v->raw)
		return -ENOENT;
	regent_address a;
	char why[320];
	if (regent_address_parse(v->raw, &a, why, sizeof(why)) != 0) {
		/* the config parser refused it already; a stricter rule here */
		regent_log(REGENT_LOG_ERROR, who, "%s: %s", key, why);
		return -EINVAL;
	}
	size_t size = out->size < sizeof(a) ? out->size : sizeof(a);
	memcpy(out, &a, size);
	out->size = size;
	return 0;
}
