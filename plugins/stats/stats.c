/* stats.c - the stats sink: serves the agent's own metrics (/metrics),
 * catalog (/v1/catalog), local set (/v1/local), health (/healthz) and a
 * status page (/, page.c) over HTTP.  The server is libmicrohttpd in external
 * epoll mode, driven from the core's loop by a uv_poll_t on MHD's epoll fd
 * and a uv_timer_t armed from MHD_get_timeout(): no thread, no blocking
 * call.  It owns the listening socket, the MHD daemon, those two handles
 * and a reference to the newest catalog snapshot it was handed.  A reload
 * that replaces or removes it drains it (begin_drain): it stops
 * accepting at once and answers the connections it holds before it goes. */
#include "listener.h"
#include "page.h"
#include "render.h"

#include <regent/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STATS_VERSION REGENT_PLUGIN_VERSION /* regent's own (CMakeLists.txt) */
#define LOG_BURST 10          /* MHD messages logged per minute, the rest counted */
#define LOG_WINDOW_MS 60000
#define DRAIN_MS 2000         /* a replaced instance answers what it holds this long at most */

typedef struct stats stats;
struct stats {
	regent_ctx *ctx;
	const regent_host *h;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_text[80];
	struct MHD_Daemon *d;
	uv_poll_t *poll;
	uv_timer_t *timer;
	const regent_catalog *cat; /* newest applied snapshot (referenced) */
	unsigned open_conns, max_conns;
	bool full; /* the limit was reached: MHD's listener may be out (pump) */
	regent_stats_listener *lst; /* the socket it listens on (listener.c), while it does */
	bool draining;            /* stopped by a reload: no longer accepting (begin_drain) */
	uint64_t drain_start_ms;  /* now_ms() when the drain began ... */
	uint64_t drain_deadline;  /* ... and when it ends, answered or not */
	unsigned drain_held;      /* connections open when it began */
	bool drain_cut;           /* the agent's exit cut it short (stop) */
	struct stats *next_drain; /* in drains */
	uint64_t closed_conns;
	regent_metric *m_conns, *m_conns_total;
	uint64_t log_window_ms;
	unsigned log_count, log_suppressed;
};

/* The instances draining now (begin_drain), so that the agent's exit cuts
 * their drains short (stop).  Only the loop's thread touches it. */
static stats *drains;

static const regent_config_key keys[] = {
	{"listen", REGENT_CFG_ADDRESS, "127.0.0.1:9150", false, 0, 0,
	 "address:port of the HTTP listener (IP literal, [IPv6] or localhost)"},
	{"public", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "allow a non-loopback listen address (serves the catalog to other hosts)"},
	{"max_connections", REGENT_CFG_INT, "512", false, 1, 65536,
	 "open HTTP connections at most; more are closed at once"},
	{"max_connections_per_ip", REGENT_CFG_INT, "0", false, 0, 65536,
	 "open connections per client address at most (0 = no per-client limit)"},
	{"timeout", REGENT_CFG_DURATION, "10s", false, 1000, 3600000,
	 "close a connection that sends or receives nothing for this long"},
	{"max_header_size", REGENT_CFG_INT, "16384", false, 4096, 1048576,
	 "bytes a connection may use for the request line and headers (larger: 431)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* Config                                                             */
/* ------------------------------------------------------------------ */

static int parse_config(regent_ctx *ctx, const regent_host *h, struct sockaddr_storage *ss,
                        socklen_t *len, bool report)
{
	const char *listen_at = h->cfg_string(ctx, "listen");
	char why[320] = "cannot be read (logged above)";
	regent_address a = {.size = sizeof(a)};
	if (h->cfg_address(ctx, "listen", &a) != 0 ||
	    stats_listen_addr(&a, ss, len, why, sizeof(why)) < 0) {
		if (report)
			h->cfg_error(ctx, "listen", "%s", why);
		else
			h->log(ctx, REGENT_LOG_ERROR, "listen: %s", why);
		return -EINVAL;
	}
	if (!stats_is_loopback((const struct sockaddr *)ss) && !h->cfg_bool(ctx, "public")) {
		const char *msg = "is not a loopback address: the catalog and metrics would be "
		                  "served to other hosts; set public = true to allow it";
		if (report)
			h->cfg_error(ctx, "listen", "%s %s", listen_at, msg);
		else
			h->log(ctx, REGENT_LOG_ERROR, "listen: %s %s", listen_at, msg);
		return -EINVAL;
	}
	return 0;
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	struct sockaddr_storage ss;
	socklen_t len;
	return parse_config(ctx, h, &ss, &len, true);
}

/* ------------------------------------------------------------------ */
/* Responses                                                          */
/* ------------------------------------------------------------------ */

static void count_request(stats *s, stats_route r, unsigned code)
{
	char labels[96];
	snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%u\"", stats_route_name(r), code);
	regent_metric *m = s->h->metric(s->ctx, REGENT_METRIC_COUNTER, "regent_stats_requests_total",
	                                "HTTP requests answered by the stats listener.", labels);
	s->h->metric_add(m, 1);
}

/* Queues body (malloc'd; ownership passes to MHD) with status code. */
static enum MHD_Result reply(stats *s, struct MHD_Connection *c, stats_route r, unsigned code,
                             const char *ctype, char *body, size_t len)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		s->h->log(s->ctx, REGENT_LOG_ERROR, "%s: cannot create a response: out of memory",
		          stats_route_name(r));
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (r == STATS_ROUTE_INDEX && code == MHD_HTTP_OK) {
		/* Self-contained page: nothing may load from anywhere, inline
		 * style only, no script at all. */
		MHD_add_response_header(resp, "Content-Security-Policy",
		                        "default-src 'none'; style-src 'unsafe-inline'; "
		                        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
		MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	}
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	if (s->draining) /* the client's next request goes to the new instance */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	enum MHD_Result rc = MHD_queue_response(c, code, resp);
	MHD_destroy_response(resp);
	count_request(s, r, code);
	return rc;
}

static enum MHD_Result reply_text(stats *s, struct MHD_Connection *c, stats_route r, unsigned code,
                                  const char *text)
{
	char *body = strdup(text);
	if (!body)
		return MHD_NO;
	return reply(s, c, r, code, "text/plain; charset=utf-8", body, strlen(body));
}

static enum MHD_Result reply_buf(stats *s, struct MHD_Connection *c, stats_route r, unsigned code,
                                 const char *ctype, stats_buf *b)
{
	if (b->oom) {
		stats_buf_free(b);
		s->h->log(s->ctx, REGENT_LOG_ERROR, "%s: out of memory while rendering",
		          stats_route_name(r));
		return reply_text(s, c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	size_t len;
	char *body = stats_buf_take(b, &len);
	return reply(s, c, r, code, ctype, body, len);
}

/* ------------------------------------------------------------------ */
/* Data                                                               */
/* ------------------------------------------------------------------ */

/* The snapshot to show (referenced: unref it): the newest one applied,
 * or the core's current one before the first apply. */
static const regent_catalog *snapshot(stats *s)
{
	if (s->cat)
		return s->h->catalog_ref(s->cat);
	return s->h->catalog_current(s->ctx);
}

/* {"services":{"web":[{...},...],...}}, one instance a line. */
static void catalog_json(stats *s, stats_buf *b)
{
	const regent_host *h = s->h;
	stats_buf_puts(b, "{\"services\":{");
	const regent_catalog *cat = snapshot(s);
	if (cat) {
		const char *const *names;
		size_t n = h->catalog_services(cat, &names);
		for (size_t i = 0; i < n; i++) {
			const regent_instance *const *insts;
			size_t k = h->catalog_instances(cat, names[i], &insts);
			stats_buf_puts(b, i ? ",\n" : "\n");
			stats_buf_json_string(b, names[i]);
			stats_buf_puts(b, ":[");
			for (size_t j = 0; j < k; j++) {
				stats_buf_puts(b, j ? ",\n" : "\n");
				stats_buf_instance_json(b, insts[j], NULL);
			}
			stats_buf_puts(b, "]");
		}
	}
	stats_buf_puts(b, "\n}");
	/* Listed by the registry, not read yet (ABI 1.9): only when there are. */
	const char *const *unk;
	size_t nu = cat ? h->catalog_unknown(cat, &unk) : 0;
	if (nu) {
		stats_buf_puts(b, ",\n\"unknown\":[");
		for (size_t i = 0; i < nu; i++) {
			stats_buf_puts(b, i ? "," : "");
			stats_buf_json_string(b, unk[i]);
		}
		stats_buf_puts(b, "]");
	}
	if (cat)
		h->catalog_unref(cat);
	stats_buf_puts(b, "}\n");
}

typedef struct local_list {
	const regent_instance **v;
	size_t n, cap;
	bool oom;
} local_list;

static void local_collect(void *arg, const regent_instance *inst)
{
	local_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		const regent_instance **v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->oom = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = inst;
}

static int cmp_local(const void *a, const void *b)
{
	const regent_instance *x = *(const regent_instance *const *)a;
	const regent_instance *y = *(const regent_instance *const *)b;
	int c = strcmp(x->service, y->service);
	return c ? c : strcmp(x->id, y->id);
}

/* {"node":"...","instances":[{...},...]}, sorted by service and id. */
static void local_json(stats *s, stats_buf *b)
{
	const char *node = s->h->node(s->ctx);
	local_list l = {0};
	s->h->local_foreach(s->ctx, local_collect, &l);
	if (l.oom)
		b->oom = true;
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_local);
	stats_buf_puts(b, "{\"node\":");
	stats_buf_json_string(b, node);
	stats_buf_puts(b, ",\"instances\":[");
	for (size_t i = 0; i < l.n; i++) {
		stats_buf_puts(b, i ? ",\n" : "\n");
		stats_buf_instance_json(b, l.v[i], node);
	}
	stats_buf_puts(b, "\n]}\n");
	free(l.v);
}

static void metrics_out(void *arg, const char *data, size_t len)
{
	stats_buf_add(arg, data, len);
}

static void render_page(stats *s, stats_buf *b)
{
	const regent_catalog *cat = snapshot(s);
	stats_render_page(s->h, s->ctx, cat, STATS_VERSION, b);
	if (cat)
		s->h->catalog_unref(cat);
}

/* ------------------------------------------------------------------ */
/* Request handling                                                   */
/* ------------------------------------------------------------------ */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
	stats *s = cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)req_cls;
	stats_route r = stats_route_of(url);
	if (r == STATS_ROUTE_NONE)
		return reply_text(s, c, r, MHD_HTTP_NOT_FOUND,
		                  "not found; try /, /metrics, /v1/catalog, /v1/local or /healthz\n");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_text(s, c, r, MHD_HTTP_METHOD_NOT_ALLOWED,
		                  "method not allowed; use GET or HEAD\n");
	stats_buf b = {.h = s->h};
	switch (r) {
	case STATS_ROUTE_METRICS:
		s->h->metric_set(s->m_conns, s->open_conns);
		s->h->metrics_write(s->ctx, metrics_out, &b);
		return reply_buf(s, c, r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		                 &b);
	case STATS_ROUTE_CATALOG:
		catalog_json(s, &b);
		return reply_buf(s, c, r, MHD_HTTP_OK, "application/json", &b);
	case STATS_ROUTE_LOCAL:
		local_json(s, &b);
		return reply_buf(s, c, r, MHD_HTTP_OK, "application/json", &b);
	case STATS_ROUTE_HEALTHZ: {
		char *text = s->h->health_json(s->ctx);
		if (!text)
			return reply_text(s, c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		json_t *root = json_loads(text, 0, NULL);
		bool ok = json_is_true(json_object_get(root, "ok"));
		if (!root)
			s->h->log(s->ctx, REGENT_LOG_ERROR, "/healthz: the core's health JSON "
			                                    "does not parse; answering 503");
		json_decref(root);
		stats_buf_puts(&b, text);
		stats_buf_add(&b, "\n", 1);
		free(text);
		return reply_buf(s, c, r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		                 "application/json", &b);
	}
	case STATS_ROUTE_INDEX:
		render_page(s, &b);
		return reply_buf(s, c, r, MHD_HTTP_OK, "text/html; charset=utf-8", &b);
	case STATS_ROUTE_NONE:
		break;
	}
	return MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	stats *s = cls;
	(void)c;
	(void)socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		if (++s->open_conns >= s->max_conns)
			s->full = true;
		s->h->metric_add(s->m_conns_total, 1);
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		s->closed_conns++;
		if (s->open_conns > 0)
			s->open_conns--;
	}
}

/* MHD's own messages (bad requests, limits, socket errors): at most
 * LOG_BURST a minute, so a flood of bad clients cannot flood the log. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	stats *s = cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Drop the canned HTML body MHD quotes in "... code is 431 ('<html>...')". */
	char *body = strstr(msg, " ('<");
	char *body_end = body ? strstr(body, "')") : NULL;
	if (body_end)
		memmove(body, body_end + 2, strlen(body_end + 2) + 1);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	uint64_t now = s->h->now_ms();
	if (now - s->log_window_ms >= LOG_WINDOW_MS) {
		if (s->log_suppressed)
			s->h->log(s->ctx, REGENT_LOG_WARN,
			          "HTTP listener %s: %u more messages suppressed in the last minute",
			          s->addr_text, s->log_suppressed);
		s->log_window_ms = now;
		s->log_count = 0;
		s->log_suppressed = 0;
	}
	if (s->log_count < LOG_BURST) {
		s->log_count++;
		s->h->log(s->ctx, REGENT_LOG_WARN, "HTTP listener %s: %s", s->addr_text, msg);
	} else {
		s->log_suppressed++;
	}
}

/* ------------------------------------------------------------------ */
/* MHD on the loop                                                    */
/* ------------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);
static void finish_drain(stats *s);

/* Arms the timer with the longest wait MHD allows (see pump), and while
 * draining no later than the drain's deadline. */
#define IDLE_RUN_MS 1000
static void arm_timer(stats *s)
{
	MHD_UNSIGNED_LONG_LONG to = 0;
	bool has = MHD_get_timeout(s->d, &to) == MHD_YES;
	if (s->draining) {
		uint64_t now = s->h->now_ms();
		uint64_t left = s->drain_deadline > now ? s->drain_deadline - now : 0;
		if (!has || to > left)
			to = left;
	} else if (!has) {
		if (!s->full) {
			uv_timer_stop(s->timer);
			return;
		}
		to = IDLE_RUN_MS;
	} else if (s->full && to > IDLE_RUN_MS) {
		to = IDLE_RUN_MS;
	}
	uv_timer_start(s->timer, on_timer, (uint64_t)to, 0);
}

/* Runs MHD (it never blocks in external mode), then arms the timer.
 *
 * At its connection limit MHD takes the listening socket out of its epoll
 * set, and puts it back only at the start of a later MHD_run().  When the
 * last connections close inside a run, MHD_get_timeout() may then say
 * "no timeout" and nothing would ever run MHD again: the listener would
 * stall for good.  So run again while connections keep closing, and when
 * MHD wants no timer, still look again every IDLE_RUN_MS while that can
 * matter: since the limit was reached (full), until a run that closed
 * nothing started below the limit (so put the listener back).  Without
 * the limit reached the listener never left: no timer then, and an agent
 * with no stats client connected, or one scraped now and then, is not
 * woken for it.
 *
 * While draining, a run after which no connection is left, or one at the
 * deadline, ends the drain: the core may free s in it, so callers touch
 * nothing after pump(). */
static void pump(stats *s)
{
	if (!s->d)
		return;
	bool closed_some = false;
	for (int i = 0; i < 4; i++) {
		uint64_t closed = s->closed_conns;
		bool below = s->open_conns < s->max_conns;
		MHD_run(s->d);
		closed_some = s->closed_conns != closed;
		if (!closed_some) {
			if (below && s->open_conns < s->max_conns)
				s->full = false; /* (the limit not reached again in it) */
			break;
		}
	}
	if (s->draining && (s->open_conns == 0 || s->h->now_ms() >= s->drain_deadline)) {
		finish_drain(s);
		return;
	}
	arm_timer(s);
}

static void on_timer(uv_timer_t *t)
{
	pump(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	stats *s = p->data;
	(void)events;
	if (status < 0)
		s->h->log(s->ctx, REGENT_LOG_WARN, "HTTP listener %s: polling the server failed: %s",
		          s->addr_text, uv_strerror(status));
	pump(s);
}

static void on_closed(uv_handle_t *h)
{
	free(h);
}

static int open_listener(stats *s, int *out)
{
	return regent_stats_listen(&s->addr, s->addrlen, out, &s->lst);
}

/* Stops serving: closes the handles first (so libuv forgets the epoll fd
 * before MHD closes it), then MHD, which closes every connection and the
 * listening socket at once. */
static void shutdown_server(stats *s)
{
	if (s->poll) {
		uv_close((uv_handle_t *)s->poll, on_closed);
		s->poll = NULL;
	}
	s->h->timer_close(&s->timer);
	if (s->d) {
		MHD_stop_daemon(s->d);
		s->d = NULL;
	}
	regent_stats_unlisten(s->lst); /* the port closes unless a replacement serves it */
	s->lst = NULL;
	s->open_conns = 0;
	s->full = false;
	if (s->draining) {
		for (stats **pp = &drains; *pp; pp = &(*pp)->next_drain)
			if (*pp == s) {
				*pp = s->next_drain;
				break;
			}
		s->draining = false;
	}
}

/* A reload replaced or removed this instance: it stops accepting at once
 * and answers the connections it holds, up to DRAIN_MS, without blocking
 * the loop.  MHD_quiesce_daemon takes the listening socket out of MHD's
 * epoll set and gives it back; closing that descriptor here leaves a
 * replacement on the same address (which holds its own dup of the socket,
 * listener.c) serving the kernel's accept queue, and closes the port when
 * nobody else holds it.  Stopping at once instead would close a connection
 * this instance accepted but had not answered yet: a reload would cost
 * that client its request (stats_http: "no request failed while they
 * swapped").  Responses from now on carry "Connection: close", so a
 * keep-alive client sends its next request to the new instance (with
 * libmicrohttpd 0.9.75 every connection closes after its reply anyway:
 * it does so when the reply is queued at once, as here).  False when
 * nothing is open, so nothing to wait for. */
static bool begin_drain(stats *s)
{
	MHD_socket fd = MHD_quiesce_daemon(s->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	regent_stats_unlisten(s->lst);
	s->lst = NULL;
	if (s->open_conns == 0 || !s->poll || !s->timer)
		return false;
	s->draining = true;
	s->next_drain = drains;
	drains = s;
	s->full = false;
	s->drain_held = s->open_conns;
	s->drain_start_ms = s->h->now_ms();
	s->drain_deadline = s->drain_start_ms + DRAIN_MS;
	/* A run at the loop's next turn, not pump() now: the core must see
	 * REGENT_PENDING before the drain can end. */
	uv_timer_start(s->timer, on_timer, 0, 0);
	return true;
}

/* The drain is over (pump): stops MHD, then tells the core, which destroys
 * s in host->stopped(). */
static void finish_drain(stats *s)
{
	unsigned left = s->open_conns;
	uint64_t ms = s->h->now_ms() - s->drain_start_ms;
	if (left)
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "HTTP listener %s: closing %u of the %u connections it held when a "
		          "reload stopped it, still open after %llu ms%s",
		          s->addr_text, left, s->drain_held, (unsigned long long)ms,
		          s->drain_cut ? " (the agent is stopping)" : "");
	else
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "HTTP listener %s: answered the %u connection%s it held when a reload "
		          "stopped it, in %llu ms",
		          s->addr_text, s->drain_held, s->drain_held == 1 ? "" : "s",
		          (unsigned long long)ms);
	shutdown_server(s);
	s->h->stopped(s->ctx);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                          */
/* ------------------------------------------------------------------ */

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	stats *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = h;
	h->catalog_want_unknown(ctx); /* shows a catalog with unknown services as it is */
	int rc = parse_config(ctx, h, &s->addr, &s->addrlen, false);
	if (rc < 0) {
		free(s);
		return rc;
	}
	stats_format_sockaddr((const struct sockaddr *)&s->addr, s->addr_text, sizeof(s->addr_text));
	s->m_conns = h->metric(ctx, REGENT_METRIC_GAUGE, "regent_stats_open_connections",
	                       "Open connections to the stats listener.", NULL);
	s->m_conns_total = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_stats_connections_total",
	                             "Connections accepted by the stats listener.", NULL);
	/* The family shows from the first scrape on. */
	h->metric(ctx, REGENT_METRIC_COUNTER, "regent_stats_requests_total",
	          "HTTP requests answered by the stats listener.", "path=\"/metrics\",code=\"200\"");
	*self = s;
	return 0;
}

static int start(void *self)
{
	stats *s = self;
	const regent_host *h = s->h;
	int fd = -1;
	int rc = open_listener(s, &fd);
	if (rc < 0) {
		h->log(s->ctx, REGENT_LOG_ERROR, "cannot listen on %s: %s", s->addr_text,
		       strerror(-rc));
		return rc;
	}
	uint64_t timeout_ms = h->cfg_duration_ms(s->ctx, "timeout");
	unsigned timeout_s = (unsigned)((timeout_ms + 999) / 1000);
	s->max_conns = (unsigned)h->cfg_int(s->ctx, "max_connections");
	s->full = false;
	s->d = MHD_start_daemon(
	    MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, /* first, so MHD prints nothing itself */
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
	    MHD_OPTION_CONNECTION_LIMIT, s->max_conns,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)h->cfg_int(s->ctx, "max_connections_per_ip"),
	    MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)h->cfg_int(s->ctx, "max_header_size"),
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	    MHD_OPTION_END);
	if (!s->d) {
		/* MHD may or may not have closed the socket on its failure path. */
		if (fcntl(fd, F_GETFD) >= 0)
			close(fd);
		regent_stats_unlisten(s->lst);
		s->lst = NULL;
		h->log(s->ctx, REGENT_LOG_ERROR,
		       "cannot start the HTTP server on %s (libmicrohttpd refused its options)",
		       s->addr_text);
		return -EIO;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		MHD_stop_daemon(s->d);
		s->d = NULL;
		h->log(s->ctx, REGENT_LOG_ERROR, "cannot start the HTTP server on %s: no epoll fd",
		       s->addr_text);
		return -EIO;
	}
	uv_loop_t *loop = h->loop(s->ctx);
	s->poll = h->xcalloc(1, sizeof(*s->poll));
	s->timer = h->timer_new(s->ctx, s);
	int uvrc = uv_poll_init(loop, s->poll, info->epoll_fd);
	if (uvrc == 0) {
		s->poll->data = s;
		uvrc = uv_poll_start(s->poll, UV_READABLE, on_poll);
		if (uvrc < 0)
			uv_close((uv_handle_t *)s->poll, on_closed);
	} else {
		free(s->poll);
	}
	if (uvrc < 0) {
		s->poll = NULL;
		h->log(s->ctx, REGENT_LOG_ERROR, "cannot watch the HTTP server on %s: %s",
		       s->addr_text, uv_strerror(uvrc));
		shutdown_server(s);
		return -EIO;
	}
	pump(s);
	h->log(s->ctx, REGENT_LOG_INFO, "serving /metrics, /v1/catalog, /v1/local, /healthz and / "
	                                "on http://%s/",
	       s->addr_text);
	return 0;
}

/* The agent exits: drains on this loop end at its next turn (not here:
 * the core must not see another instance stop inside this one's stop()). */
static void cut_drains(stats *s)
{
	uv_loop_t *loop = s->h->loop(s->ctx);
	for (stats *d = drains; d; d = d->next_drain)
		if (d->h->loop(d->ctx) == loop) {
			d->drain_deadline = d->h->now_ms();
			d->drain_cut = true;
			uv_timer_start(d->timer, on_timer, 0, 0);
		}
}

/* A reload that replaces or removes the section drains it (begin_drain,
 * REGENT_PENDING); the agent's exit stops it at once, and cuts short the
 * drain of an instance a reload just replaced, so SIGTERM is never held up
 * by a client. */
static int stop(void *self)
{
	stats *s = self;
	const regent_host *h = s->h;
	regent_stop_reason why =
	    REGENT_HOST_HAS(h, stop_reason) ? h->stop_reason(s->ctx) : REGENT_STOP_EXIT;
	if ((why == REGENT_STOP_REPLACED || why == REGENT_STOP_REMOVED) && s->d && begin_drain(s))
		return REGENT_PENDING;
	if (why == REGENT_STOP_EXIT)
		cut_drains(s);
	shutdown_server(s);
	return 0;
}

static void destroy(void *self)
{
	stats *s = self;
	shutdown_server(s);
	if (s->cat)
		s->h->catalog_unref(s->cat);
	free(s);
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed,
                  size_t nchanged)
{
	stats *s = self;
	(void)changed;
	(void)nchanged;
	const regent_catalog *old = s->cat;
	s->cat = s->h->catalog_ref(cat);
	if (old)
		s->h->catalog_unref(old);
	s->h->applied(s->ctx, cat);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("stats"),
	.kind = REGENT_KIND_SINK,
	.version = STATS_VERSION,
	.description = "the agent's metrics, catalog and health over HTTP (Prometheus, JSON, HTML)",
	.config_keys = keys,
	.ops = &ops,
	.sink_ops = &sink_ops,
};
