/* render.c - the stats plugin's pure helpers: its text buffer over the
 * host's, HTML escaping, the listen address and its loopback rule, instances as
 * JSON and the route table.  No loop, no server: unit-tested on its own. */
#include "render.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer: the host's ---- */

void stats_buf_add(stats_buf *b, const char *data, size_t len)
{
	b->h->buf_add(&b->b, data, len);
}

void stats_buf_puts(stats_buf *b, const char *s)
{
	b->h->buf_puts(&b->b, s);
}

void stats_buf_printf(stats_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	b->h->buf_vprintf(&b->b, fmt, ap);
	va_end(ap);
}

char *stats_buf_take(stats_buf *b, size_t *len)
{
	char *d = b->b.data ? b->b.data : b->h->xstrdup("");
	if (len)
		*len = b->b.len;
	b->b = (regent_buffer){0};
	b->oom = false;
	return d;
}

void stats_buf_free(stats_buf *b)
{
	b->h->buf_free(&b->b);
	b->oom = false;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned c = p[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned min;
	unsigned cp;
	if ((c & 0xE0) == 0xC0) {
		n = 2, min = 0x80, cp = c & 0x1F;
	} else if ((c & 0xF0) == 0xE0) {
		n = 3, min = 0x800, cp = c & 0x0F;
	} else if ((c & 0xF8) == 0xF0) {
		n = 4, min = 0x10000, cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

void stats_buf_html(stats_buf *b, const char *text)
{
	const unsigned char *p = (const unsigned char *)(text ? text : "");
	while (*p) {
		const char *ent = NULL;
		switch (*p) {
		case '&': ent = "&amp;"; break;
		case '<': ent = "&lt;"; break;
		case '>': ent = "&gt;"; break;
		case '"': ent = "&quot;"; break;
		case '\'': ent = "&#39;"; break;
		default: break;
		}
		if (ent) {
			stats_buf_puts(b, ent);
			p++;
			continue;
		}
		if ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7F) {
			stats_buf_add(b, replacement, 3);
			p++;
			continue;
		}
		size_t n = utf8_len(p);
		if (n == 0) {
			stats_buf_add(b, replacement, 3);
			p++;
			continue;
		}
		stats_buf_add(b, (const char *)p, n);
		p += n;
	}
}

/* ---- listen address ---- */

int stats_listen_addr(const regent_address *a, struct sockaddr_storage *ss, socklen_t *len,
                      char *why, size_t whylen)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET || a->family == AF_INET6) {
		memcpy(ss, &a->sa, a->salen);
		*len = a->salen;
		return 0;
	}
	if (strcmp(a->host, "localhost") != 0) {
		snprintf(why, whylen,
		         "\"%s\" is not an IP address (use an IPv4 address, [IPv6] or localhost)",
		         a->host);
		return -EINVAL;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s4->sin_port = htons(a->port);
	*len = sizeof(*s4);
	return 0;
}

bool stats_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

void stats_format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		snprintf(out, outlen, "(family %d)", sa->sa_family);
	}
}

/* ---- JSON ---- */

void stats_buf_json_string(stats_buf *b, const char *s)
{
	b->h->buf_json(&b->b, s ? s : "");
}

static void json_key(stats_buf *b, const char *key)
{
	stats_buf_json_string(b, key);
	stats_buf_add(b, ":", 1);
}

void stats_buf_instance_json(stats_buf *b, const regent_instance *in, const char *default_node)
{
	const char *node = in->node && in->node[0] ? in->node : default_node ? default_node : "";
	stats_buf_puts(b, "{\"id\":");
	stats_buf_json_string(b, in->id);
	stats_buf_puts(b, ",\"service\":");
	stats_buf_json_string(b, in->service);
	stats_buf_puts(b, ",\"address\":");
	stats_buf_json_string(b, in->address);
	stats_buf_printf(b, ",\"port\":%u,\"proto\":\"%s\",\"service_port\":%u,\"node\":", in->port,
	                 in->proto == REGENT_PROTO_UDP ? "udp" : "tcp", in->service_port);
	stats_buf_json_string(b, node);
	stats_buf_puts(b, ",\"tags\":[");
	for (size_t i = 0; i < in->ntags; i++) {
		if (i)
			stats_buf_add(b, ",", 1);
		stats_buf_json_string(b, in->tags[i]);
	}
	stats_buf_puts(b, "],\"meta\":{");
	for (size_t i = 0; i < in->nmeta; i++) {
		if (i)
			stats_buf_add(b, ",", 1);
		json_key(b, in->meta[i].key);
		stats_buf_json_string(b, in->meta[i].value);
	}
	/* The catalog holds only instances the registries report as alive
	 * (etcd: lease held; Consul: ?passing), so every one is passing. */
	stats_buf_puts(b, "},\"health\":\"passing\"}");
}

/* ---- routes ---- */

static const struct {
	const char *path;
	stats_route route;
} routes[] = {
	{"/", STATS_ROUTE_INDEX},
	{"/metrics", STATS_ROUTE_METRICS},
	{"/v1/catalog", STATS_ROUTE_CATALOG},
	{"/v1/local", STATS_ROUTE_LOCAL},
	{"/healthz", STATS_ROUTE_HEALTHZ},
};

stats_route stats_route_of(const char *path)
{
	if (!path)
		return STATS_ROUTE_NONE;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(path, routes[i].path) == 0)
			return routes[i].route;
	return STATS_ROUTE_NONE;
}

const char *stats_route_name(stats_route r)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (routes[i].route == r)
			return routes[i].path;
	return "other";
}
