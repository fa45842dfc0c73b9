/* render.h - the stats plugin's pure helpers (no libuv, no HTTP server):
 * its text buffer over the host's, HTML escaping, the listen address and its
 * loopback rule, and an instance as JSON (written directly: a catalog of
 * thousands of instances renders in milliseconds).  Shared by stats.c and the
 * unit test (tests/stats/test_render.c). */
#ifndef REGENT_STATS_RENDER_H
#define REGENT_STATS_RENDER_H

#include <regent/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* The host's growable buffer (ABI 1.4: host->buf_*, out-of-memory
 * aborts), with the host it was made with: set h before the first use
 * ({.h = host}).  oom: something else the page needed could not be
 * allocated, so the content is incomplete (the request fails with 500). */
typedef struct stats_buf {
	regent_buffer b;
	const regent_host *h;
	bool oom;
} stats_buf;

void stats_buf_add(stats_buf *b, const char *data, size_t len);
void stats_buf_puts(stats_buf *b, const char *s);
void stats_buf_printf(stats_buf *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
/* Appends text with & < > " ' as entities and control bytes (other than
 * tab and newline) as U+FFFD, so any string is safe in element content
 * and in quoted attribute values. */
void stats_buf_html(stats_buf *b, const char *text);
/* Hands the data over (caller frees; "" when empty); the buffer is empty
 * afterwards. */
char *stats_buf_take(stats_buf *b, size_t *len);
void stats_buf_free(stats_buf *b);

/* The socket address to listen on for a parsed ADDRESS value
 * (host->cfg_address): an IP literal as it is, "localhost" as 127.0.0.1;
 * any other name is refused (the listener binds one address).  Returns 0,
 * or -EINVAL with the reason in why. */
int stats_listen_addr(const regent_address *a, struct sockaddr_storage *ss, socklen_t *len,
                      char *why, size_t whylen);
/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool stats_is_loopback(const struct sockaddr *sa);
/* "127.0.0.1:9150" / "[::1]:9150". */
void stats_format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen);

/* Appends s as a JSON string (host->buf_json: quoted, escaped, invalid
 * UTF-8 bytes as U+FFFD, so the output is always valid JSON).  NULL is "". */
void stats_buf_json_string(stats_buf *b, const char *s);
/* Appends one instance as a compact JSON object:
 * {"id","service","address","port","proto","service_port","node","tags",
 *  "meta","health"}; node NULL/"" becomes default_node (or ""). */
void stats_buf_instance_json(stats_buf *b, const regent_instance *in, const char *default_node);

/* The route a request path maps to (a fixed set, so metric labels stay
 * bounded). */
typedef enum stats_route {
	STATS_ROUTE_NONE = 0,
	STATS_ROUTE_INDEX,
	STATS_ROUTE_METRICS,
	STATS_ROUTE_CATALOG,
	STATS_ROUTE_LOCAL,
	STATS_ROUTE_HEALTHZ,
} stats_route;

stats_route stats_route_of(const char *path);
/* "/metrics" etc., "other" for STATS_ROUTE_NONE. */
const char *stats_route_name(stats_route r);

#endif
