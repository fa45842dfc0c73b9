/* docker.c - the docker source plugin: every local container endpoint, in
 * real time.  Owns the conversation with dockerd over its unix socket (the
 * container list, one inspect per container, the /events stream and the
 * /_ping liveness probe), the table of running containers with what was
 * reported for each, and the cycle list -> inspect -> full resync -> follow
 * events -> (stream lost) backoff -> list again.  The JSON decoding and the
 * mapping rules live in decode.c. */
#include "decode.h"

#include <regent/plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_INFLIGHT 8              /* concurrent inspects */
#define EVENT_LINE_MAX (4u << 20)   /* one /events line (labels included) */
#define SEEN_MAX 64                 /* recent events remembered to drop replays */

typedef struct state state;

/* One running container we know of. */
typedef struct ctr {
	state *st;
	struct ctr *next, *prev;
	char id[DK_ID_LEN + 1];
	char short_id[13];
	char name[128];        /* sanitised, for logs */
	regent_http_req *req;  /* inspect in flight */
	uint64_t epoch;        /* bumped by every event about it */
	uint64_t req_epoch;    /* epoch when the inspect was sent */
	uint64_t origin_ns;    /* time of the event that triggered the inspect */
	bool need_inspect;     /* an up-ward event wants a fresh inspect */
	bool queued;           /* waiting for an inspect slot */
	bool in_sync;          /* counted in st->sync_pending */
	bool stopping;         /* kill/stop seen: stays down until it starts again */
	char run[40];          /* State.StartedAt of the last inspect */
	uint64_t run_ns;       /* ... in ns (0: unknown) */
	char stop_run[40];     /* ... when it was seen stopping */
	bool warned;           /* its bad labels were reported once */
	bool listed;
	int stop_signal;
	dk_inst *up;           /* what is reported up for it */
	size_t nup;
} ctr;

typedef enum phase {
	PH_IDLE = 0, /* created, not started */
	PH_WAIT,     /* backoff before the next attempt */
	PH_LIST,     /* GET /containers/json */
	PH_INSPECT,  /* inspecting every listed container */
	PH_STREAM,   /* following /events */
	PH_STOPPED,
} phase;

struct state {
	regent_ctx *ctx;
	const regent_host *h;
	char *socket;
	char *base;    /* http://localhost/v1.41 */
	char *node;
	char *host_ip; /* NULL when unset */
	bool internal;
	uint64_t ping_interval, ping_timeout, req_timeout;
	phase ph;
	regent_http_req *list_req, *ev_req, *ping_req;
	uv_timer_t *retry_timer, *ping_timer;
	regent_backoff bo;
	ctr *ctrs;
	size_t nctrs, inflight, nqueued, sync_pending;
	uint64_t list_start_ns;
	uint64_t last_ns; /* newest event time seen */
	struct seen {
		uint64_t time_ns;
		char key[DK_ID_LEN + 48];
	} seen[SEEN_MAX]; /* ring of recent events: since is inclusive */
	size_t seen_next;
	bool synced_once, failing;
	unsigned failures;
	regent_metric *m_events, *m_resyncs, *m_errors, *m_containers, *m_skipped, *m_reconnects;
};

static const regent_config_key keys[] = {
	{"socket", REGENT_CFG_STRING, "/var/run/docker.sock", false, 0, 0,
	 "the Docker daemon's unix socket"},
	{"api_version", REGENT_CFG_STRING, "1.41", false, 0, 0,
	 "Docker Engine API version used in request paths (1.41 or later)"},
	{"internal", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "register container IP + private port instead of host_ip + published port"},
	{"allow_loopback", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "accept a loopback [agent] host_ip (single-host setups and tests)"},
	{"ping_interval", REGENT_CFG_DURATION, "5s", false, 100, 3600000,
	 "how often the daemon is probed with /_ping while the event stream is open"},
	{"ping_timeout", REGENT_CFG_DURATION, "3s", false, 50, 600000,
	 "a /_ping slower than this counts as a dead daemon: reconnect"},
	{"request_timeout", REGENT_CFG_DURATION, "10s", false, 100, 600000,
	 "timeout of the list and inspect requests"},
	{"retry_max", REGENT_CFG_DURATION, "30s", false, 100, 3600000,
	 "longest wait between reconnection attempts (capped exponential backoff)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void fail(state *st, const char *fmt, ...) REGENT_PRINTF(2, 3);
static void begin_sync(state *st);
static void inspect(state *st, ctr *c);

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* "HTTP 404: No such container: x" or the transport error. */
static void describe(const state *st, const regent_http_result *res, char *out, size_t outlen)
{
	if (res->error == -ECONNREFUSED) {
		/* curl names "localhost port 80" even for a unix socket */
		struct stat sb;
		if (stat(st->socket, &sb) != 0)
			snprintf(out, outlen, "cannot connect: the socket does not exist (%s)",
			         strerror(errno));
		else
			snprintf(out, outlen, "cannot connect to the socket (%s)", strerror(-res->error));
		return;
	}
	if (res->error) {
		snprintf(out, outlen, "%s (%s)", res->error_msg && res->error_msg[0] ? res->error_msg
		                                                                      : "transport error",
		         strerror(-res->error));
		return;
	}
	char msg[200] = "";
	if (res->body && res->body_len) {
		json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
		json_t *m = json_is_object(j) ? json_object_get(j, "message") : NULL;
		if (json_is_string(m))
			dk_escape(json_string_value(m), msg, sizeof msg);
		json_decref(j);
	}
	snprintf(out, outlen, "HTTP %ld%s%s", res->status, msg[0] ? ": " : "", msg);
}

static regent_http_req *get(state *st, const char *path, uint64_t timeout_ms,
                            regent_http_done_cb done, void *arg, int *err)
{
	char url[512];
	snprintf(url, sizeof url, "%s%s", st->base, path);
	regent_http_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.url = url;
	o.unix_socket = st->socket;
	o.timeout_ms = timeout_ms;
	o.connect_timeout_ms = timeout_ms < 5000 ? timeout_ms : 5000;
	o.on_done = done;
	o.arg = arg;
	return st->h->http_request(st->ctx, &o, err);
}

static bool inst_equal(const dk_inst *a, const dk_inst *b)
{
	if (strcmp(a->id, b->id) || strcmp(a->service, b->service) || strcmp(a->address, b->address) ||
	    a->port != b->port || a->proto != b->proto || a->private_port != b->private_port ||
	    a->ntags != b->ntags || a->nmeta != b->nmeta)
		return false;
	for (size_t i = 0; i < a->ntags; i++)
		if (strcmp(a->tags[i], b->tags[i]))
			return false;
	for (size_t i = 0; i < a->nmeta; i++)
		if (strcmp(a->meta[i].key, b->meta[i].key) || strcmp(a->meta[i].value, b->meta[i].value))
			return false;
	return true;
}

static void update_gauge(state *st)
{
	if (st->m_containers)
		st->h->metric_set(st->m_containers, (double)st->nctrs);
}

/* ------------------------------------------------------------------ */
/* the container table and what is reported                           */
/* ------------------------------------------------------------------ */

static ctr *ctr_find(state *st, const char *id)
{
	for (ctr *c = st->ctrs; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

static ctr *ctr_new(state *st, const char *id, const char *name)
{
	ctr *c = calloc(1, sizeof *c);
	if (!c) {
		st->h->log(st->ctx, REGENT_LOG_ERROR, "container %.12s: out of memory", id);
		return NULL;
	}
	c->st = st;
	snprintf(c->id, sizeof c->id, "%s", id);
	memcpy(c->short_id, id, 12);
	snprintf(c->name, sizeof c->name, "%s", name ? name : "");
	c->stop_signal = 15;
	c->next = st->ctrs;
	if (st->ctrs)
		st->ctrs->prev = c;
	st->ctrs = c;
	st->nctrs++;
	update_gauge(st);
	return c;
}

static void free_up(ctr *c)
{
	for (size_t i = 0; i < c->nup; i++)
		dk_inst_free(&c->up[i]);
	free(c->up);
	c->up = NULL;
	c->nup = 0;
}

/* Debug: the whole instance (every field is validated by then). */
static void log_inst(state *st, const ctr *c, const dk_inst *in)
{
	char tags[512] = "", meta[1024] = "";
	size_t o = 0;
	for (size_t i = 0; i < in->ntags && o < sizeof tags; i++)
		o += (size_t)snprintf(tags + o, sizeof tags - o, "%s%s", i ? "," : "", in->tags[i]);
	o = 0;
	for (size_t i = 0; i < in->nmeta && o < sizeof meta; i++)
		o += (size_t)snprintf(meta + o, sizeof meta - o, "%s%s=%s", i ? "," : "",
		                      in->meta[i].key, in->meta[i].value);
	st->h->log(st->ctx, REGENT_LOG_DEBUG,
	           "container %s (%s): instance %s service=%s address=%s:%u/%s private_port=%u "
	           "tags=[%s] meta={%s}",
	           c->name, c->short_id, in->id, in->service, in->address, in->port,
	           in->proto == REGENT_PROTO_UDP ? "udp" : "tcp", in->private_port, tags, meta);
}

/* Makes `want` what is reported for c: downs what left, ups the rest
 * (the core ignores an identical re-report). */
static void report_set(state *st, ctr *c, const dk_inst *want, size_t n, uint64_t origin_ns)
{
	const regent_host *h = st->h;
	bool changed = n != c->nup;
	for (size_t i = 0; i < n && !changed; i++)
		if (!inst_equal(&want[i], &c->up[i]))
			changed = true;
	if (!changed)
		return;
	h->mark_change(st->ctx, origin_ns ? origin_ns : h->wall_ns());
	for (size_t i = 0; i < c->nup; i++) {
		bool keep = false;
		for (size_t j = 0; j < n && !keep; j++)
			keep = strcmp(c->up[i].id, want[j].id) == 0;
		if (!keep)
			h->local_down(st->ctx, c->up[i].id);
	}
	dk_inst *copy = n ? calloc(n, sizeof *copy) : NULL;
	size_t k = 0;
	bool debug = h->log_enabled(st->ctx, REGENT_LOG_DEBUG);
	for (size_t j = 0; j < n; j++) {
		regent_instance v;
		dk_inst_view(&want[j], &v);
		if (debug)
			log_inst(st, c, &want[j]);
		h->local_up(st->ctx, &v);
		if (copy && dk_inst_copy(&copy[k], &want[j]) == 0)
			k++;
	}
	if (n && k != n)
		h->log(st->ctx, REGENT_LOG_ERROR, "container %s: out of memory keeping its instances",
		       c->short_id);
	free_up(c);
	c->up = copy;
	c->nup = k;
}

static void ctr_down(state *st, ctr *c, const char *why, uint64_t origin_ns)
{
	if (c->nup)
		st->h->log(st->ctx, REGENT_LOG_INFO, "container %s (%s) %s: %zu instance%s down",
		           c->name, c->short_id, why, c->nup, c->nup == 1 ? "" : "s");
	report_set(st, c, NULL, 0, origin_ns);
}

static void unqueue(state *st, ctr *c)
{
	if (c->req) {
		st->h->http_cancel(c->req);
		c->req = NULL;
		st->inflight--;
	}
	if (c->queued) {
		c->queued = false;
		st->nqueued--;
	}
}

/* Forgets c, taking its instances down first when report is set. */
static void ctr_remove(state *st, ctr *c, bool report, const char *why, uint64_t origin_ns)
{
	if (report)
		ctr_down(st, c, why, origin_ns);
	unqueue(st, c);
	if (c->in_sync) {
		c->in_sync = false;
		st->sync_pending--;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		st->ctrs = c->next;
	if (c->next)
		c->next->prev = c->prev;
	st->nctrs--;
	update_gauge(st);
	free_up(c);
	free(c);
}

static bool stop_signal(const ctr *c, int sig)
{
	return sig == 15 || sig == 9 || sig == 2 || sig == 3 ||
	       (c->stop_signal > 0 && sig == c->stop_signal);
}

/* ------------------------------------------------------------------ */
/* inspect                                                            */
/* ------------------------------------------------------------------ */

static void apply(state *st, ctr *c, const dk_container *dc)
{
	const regent_host *h = st->h;
	if (!dc->running) {
		h->log(st->ctx, REGENT_LOG_DEBUG, "container %s (%s) is not running", c->name,
		       c->short_id);
		ctr_remove(st, c, true, "is not running", c->origin_ns);
		return;
	}
	dk_escape(dc->name, c->name, sizeof c->name);
	snprintf(c->run, sizeof c->run, "%s", dc->started_at);
	c->run_ns = dk_parse_time(dc->started_at);
	if (c->stopping && strcmp(c->run, c->stop_run) != 0)
		c->stopping = false; /* restarted since (its start event was missed) */
	int sig = dk_signal_number(dc->stop_signal);
	c->stop_signal = sig > 0 ? sig : 15;

	dk_settings s = {.node = st->node, .host_ip = st->host_ip, .internal = st->internal};
	dk_result r;
	if (dk_build(dc, &s, &r) < 0) {
		dk_result_free(&r);
		h->log(st->ctx, REGENT_LOG_ERROR, "container %s (%s): out of memory", c->name,
		       c->short_id);
		return;
	}
	if (!c->warned) {
		for (size_t i = 0; i < r.nwarnings; i++)
			h->log(st->ctx, REGENT_LOG_WARN, "%s", r.warnings[i]);
		for (size_t i = 0; i < r.nnotes; i++)
			h->log(st->ctx, REGENT_LOG_DEBUG, "%s", r.notes[i]);
		if (r.nwarnings && st->m_skipped)
			h->metric_add(st->m_skipped, (double)r.nwarnings);
		c->warned = true;
	}
	const char *why;
	bool ready = dk_container_ready(dc, &why);
	if (c->stopping) {
		ready = false;
		why = "stopping";
	}
	if (!ready) {
		ctr_down(st, c, why, c->origin_ns);
	} else {
		report_set(st, c, r.insts, r.n, c->origin_ns);
	}
	dk_result_free(&r);
}

static void sync_done(state *st);

static void pump(state *st)
{
	while (st->nqueued && st->inflight < MAX_INFLIGHT && st->ph >= PH_INSPECT &&
	       st->ph != PH_STOPPED) {
		ctr *q = NULL;
		for (ctr *c = st->ctrs; c; c = c->next)
			if (c->queued)
				q = c; /* the oldest queued (list is newest first) */
		if (!q)
			break;
		q->queued = false;
		st->nqueued--;
		inspect(st, q);
	}
}

static void on_inspect(void *arg, const regent_http_result *res)
{
	ctr *c = arg;
	state *st = c->st;
	const regent_host *h = st->h;
	c->req = NULL;
	st->inflight--;
	bool was_sync = c->in_sync;

	if (res->error || res->status != 200) {
		char d[300];
		describe(st, res, d, sizeof d);
		if (!res->error && res->status == 404) {
			h->log(st->ctx, REGENT_LOG_DEBUG, "container %s (%s) is gone: %s", c->name,
			       c->short_id, d);
			ctr_remove(st, c, true, "is gone", c->origin_ns);
		} else {
			fail(st, "inspecting container %s (%s): %s", c->name, c->short_id, d);
			return;
		}
	} else {
		dk_container dc;
		char why[200];
		if (dk_container_parse(res->body, res->body_len, &dc, why, sizeof why) < 0) {
			fail(st, "inspecting container %s (%s): %s", c->name, c->short_id, why);
			return;
		}
		if (strcmp(dc.id, c->id) != 0) {
			char other[13];
			memcpy(other, dc.short_id, sizeof other);
			dk_container_free(&dc);
			fail(st, "inspecting container %s: the daemon answered for %s", c->short_id,
			     other);
			return;
		}
		if (c->req_epoch != c->epoch && c->need_inspect) {
			/* Events came meanwhile: the answer may predate them. */
			inspect(st, c);
		} else if (c->req_epoch != c->epoch) {
			/* A down-ward event came meanwhile and stands. */
			if (was_sync) {
				c->in_sync = false;
				st->sync_pending--;
			}
		} else {
			c->need_inspect = false;
			if (was_sync) {
				c->in_sync = false;
				st->sync_pending--;
			}
			apply(st, c, &dc); /* may free c */
		}
		dk_container_free(&dc);
	}
	pump(st);
	if (was_sync && st->ph == PH_INSPECT && st->sync_pending == 0)
		sync_done(st);
}

static void inspect(state *st, ctr *c)
{
	if (c->req || c->queued)
		return; /* the answer is checked against c->epoch */
	if (st->inflight >= MAX_INFLIGHT) {
		c->queued = true;
		st->nqueued++;
		return;
	}
	char path[DK_ID_LEN + 32];
	snprintf(path, sizeof path, "/containers/%s/json", c->id);
	int err = 0;
	c->req_epoch = c->epoch;
	c->req = get(st, path, st->req_timeout, on_inspect, c, &err);
	if (!c->req) {
		fail(st, "inspecting container %s: cannot send the request: %s", c->short_id,
		     strerror(-err));
		return;
	}
	st->inflight++;
}

/* ------------------------------------------------------------------ */
/* the cycle: list, inspect, resync, stream; fail -> backoff -> list   */
/* ------------------------------------------------------------------ */

static void cancel_all(state *st)
{
	const regent_host *h = st->h;
	if (st->list_req)
		h->http_cancel(st->list_req);
	if (st->ev_req)
		h->http_cancel(st->ev_req);
	if (st->ping_req)
		h->http_cancel(st->ping_req);
	st->list_req = st->ev_req = st->ping_req = NULL;
	for (ctr *c = st->ctrs; c; c = c->next) {
		unqueue(st, c);
		c->in_sync = false;
	}
	st->sync_pending = 0;
	if (st->ping_timer)
		uv_timer_stop(st->ping_timer);
	if (st->retry_timer)
		uv_timer_stop(st->retry_timer);
}

static void on_retry(uv_timer_t *t)
{
	state *st = t->data;
	if (st->ph == PH_WAIT)
		begin_sync(st);
}

static void fail(state *st, const char *fmt, ...)
{
	if (st->ph == PH_STOPPED || st->ph == PH_IDLE)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cancel_all(st);
	st->ph = PH_WAIT;
	st->failures++;
	uint64_t delay = st->h->backoff_next(&st->bo);
	st->h->log(st->ctx, REGENT_LOG_WARN, "%s; docker at %s: retrying in %llu ms (keeping %zu "
	           "known containers until the next full listing)", msg, st->socket,
	           (unsigned long long)delay, st->nctrs);
	char reason[600];
	snprintf(reason, sizeof reason, "docker at %s: %s", st->socket, msg);
	st->h->set_health(st->ctx, false, reason);
	if (st->m_errors)
		st->h->metric_add(st->m_errors, 1);
	st->failing = true;
	uv_timer_start(st->retry_timer, on_retry, delay, 0);
}

static void on_list(void *arg, const regent_http_result *res)
{
	state *st = arg;
	st->list_req = NULL;
	if (res->error || res->status != 200) {
		char d[300];
		describe(st, res, d, sizeof d);
		fail(st, "listing containers: %s", d);
		return;
	}
	char(*ids)[DK_ID_LEN + 1] = NULL;
	size_t n = 0, bad = 0;
	char why[200];
	if (dk_list_parse(res->body, res->body_len, &ids, &n, &bad, why, sizeof why) < 0) {
		fail(st, "listing containers: %s", why);
		return;
	}
	if (bad)
		st->h->log(st->ctx, REGENT_LOG_WARN,
		           "listing containers: skipped %zu entr%s without a valid Id", bad,
		           bad == 1 ? "y" : "ies");
	for (ctr *c = st->ctrs; c; c = c->next)
		c->listed = false;
	for (size_t i = 0; i < n; i++) {
		ctr *c = ctr_find(st, ids[i]);
		if (!c)
			c = ctr_new(st, ids[i], NULL);
		if (c)
			c->listed = true;
	}
	free(ids);
	/* What we knew of and the daemon no longer lists really vanished. */
	for (ctr *c = st->ctrs, *next; c; c = next) {
		next = c->next;
		if (!c->listed)
			ctr_remove(st, c, true, "vanished while the event stream was down", 0);
	}
	st->ph = PH_INSPECT;
	st->sync_pending = 0;
	for (ctr *c = st->ctrs; c; c = c->next) {
		c->in_sync = true;
		st->sync_pending++;
	}
	for (ctr *c = st->ctrs, *next; c && st->ph == PH_INSPECT; c = next) {
		next = c->next;
		c->epoch++;
		c->need_inspect = true;
		c->origin_ns = 0;
		inspect(st, c);
	}
	if (st->ph == PH_INSPECT && st->sync_pending == 0)
		sync_done(st);
}

static void begin_sync(state *st)
{
	cancel_all(st);
	st->ph = PH_LIST;
	st->list_start_ns = st->h->wall_ns();
	int err = 0;
	st->list_req = get(st, "/containers/json", st->req_timeout, on_list, st, &err);
	if (!st->list_req)
		fail(st, "listing containers: cannot send the request: %s", strerror(-err));
}

static int on_event_line(void *arg, const char *data, size_t len);
static void on_stream_done(void *arg, const regent_http_result *res);
static void on_ping_timer(uv_timer_t *t);

static void urlencode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < outlen; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

static void start_stream(state *st)
{
	static const char filters[] =
		"{\"type\":[\"container\"],\"event\":[\"start\",\"die\",\"stop\",\"kill\","
		"\"destroy\",\"pause\",\"unpause\",\"health_status\"]}";
	char enc[512], url[1024];
	urlencode(filters, enc, sizeof enc);
	/* Replay from the newest event seen (the first time: from the
	 * listing); handle_event() skips what the listing already reflects.
	 * since is inclusive: on_event_line drops what it already handled. */
	uint64_t since = st->last_ns ? st->last_ns : st->list_start_ns;
	snprintf(url, sizeof url, "%s/events?since=%llu.%09llu&filters=%s", st->base,
	         (unsigned long long)(since / 1000000000ull),
	         (unsigned long long)(since % 1000000000ull), enc);
	regent_http_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.url = url;
	o.unix_socket = st->socket;
	o.connect_timeout_ms = st->req_timeout < 5000 ? st->req_timeout : 5000;
	o.flags = REGENT_HTTP_LINES;
	o.on_data = on_event_line;
	o.on_done = on_stream_done;
	o.arg = st;
	o.max_body = EVENT_LINE_MAX;
	int err = 0;
	st->ph = PH_STREAM;
	st->ev_req = st->h->http_request(st->ctx, &o, &err);
	if (!st->ev_req) {
		fail(st, "following events: cannot send the request: %s", strerror(-err));
		return;
	}
	uv_timer_start(st->ping_timer, on_ping_timer, st->ping_interval, st->ping_interval);
}

static void sync_done(state *st)
{
	const regent_host *h = st->h;
	size_t ninst = 0;
	h->local_resync_begin(st->ctx);
	for (ctr *c = st->ctrs; c; c = c->next)
		for (size_t i = 0; i < c->nup; i++) {
			regent_instance v;
			dk_inst_view(&c->up[i], &v);
			h->local_up(st->ctx, &v);
			ninst++;
		}
	h->local_resync_end(st->ctx);
	if (st->m_resyncs)
		h->metric_add(st->m_resyncs, 1);
	h->log(st->ctx, st->failing || !st->synced_once ? REGENT_LOG_INFO : REGENT_LOG_DEBUG,
	       "%s docker at %s: %zu running container%s, %zu instance%s up",
	       st->synced_once ? "resynced with" : "synced with", st->socket, st->nctrs,
	       st->nctrs == 1 ? "" : "s", ninst, ninst == 1 ? "" : "s");
	st->synced_once = true;
	st->failing = false;
	/* The backoff is reset only once the stream proves itself (a valid
	 * event or a ping answered), so a daemon whose stream keeps breaking
	 * right after each listing is not hammered. */
	h->set_health(st->ctx, true, NULL);
	start_stream(st);
}

/* ---- events ---- */

static void handle_event(state *st, const dk_event *ev)
{
	const regent_host *h = st->h;
	ctr *c = ctr_find(st, ev->id);
	if (h->log_enabled(st->ctx, REGENT_LOG_DEBUG))
		h->log(st->ctx, REGENT_LOG_DEBUG, "event %s container %s (%.12s)", ev->action_text,
		       ev->name, ev->id);
	bool down_ward = ev->action != DK_EV_START && ev->action != DK_EV_UNPAUSE &&
	                 ev->action != DK_EV_HEALTHY;
	if (c && down_ward && ev->time_ns && c->run_ns && ev->time_ns < c->run_ns) {
		h->log(st->ctx, REGENT_LOG_DEBUG, "event %s container %s (%.12s): about an earlier "
		       "run; ignored", ev->action_text, ev->name, ev->id);
		return;
	}
	/* A replayed event older than the listing we resynced from: the
	 * listing is newer, except that it cannot show a container inside its
	 * stop grace period, which only its kill/stop event tells. */
	if (ev->time_ns && ev->time_ns < st->list_start_ns && ev->action != DK_EV_STOP &&
	    ev->action != DK_EV_KILL) {
		h->log(st->ctx, REGENT_LOG_DEBUG, "event %s container %s (%.12s): older than the "
		       "listing; ignored", ev->action_text, ev->name, ev->id);
		return;
	}
	switch (ev->action) {
	case DK_EV_START:
	case DK_EV_UNPAUSE:
	case DK_EV_HEALTHY:
		if (!c)
			c = ctr_new(st, ev->id, ev->name);
		if (!c)
			return;
		if (ev->action == DK_EV_START)
			c->stopping = false;
		else if (c->stopping)
			return; /* on its way out: stays down */
		c->epoch++;
		c->need_inspect = true;
		c->origin_ns = ev->time_ns;
		inspect(st, c);
		return;
	case DK_EV_UNHEALTHY:
	case DK_EV_PAUSE:
		if (!c)
			return;
		c->epoch++;
		c->need_inspect = false;
		ctr_down(st, c, ev->action == DK_EV_PAUSE ? "paused" : "unhealthy", ev->time_ns);
		return;
	case DK_EV_KILL:
	case DK_EV_STOP:
		if (!c || (ev->action == DK_EV_KILL && !stop_signal(c, ev->signal)))
			return;
		c->stopping = true;
		memcpy(c->stop_run, c->run, sizeof c->stop_run);
		c->epoch++;
		c->need_inspect = false;
		if (ev->action == DK_EV_KILL) {
			char why[48];
			snprintf(why, sizeof why, "is stopping (signal %d)", ev->signal);
			ctr_down(st, c, why, ev->time_ns);
		} else {
			ctr_down(st, c, "was stopped", ev->time_ns);
		}
		return;
	case DK_EV_DIE:
	case DK_EV_DESTROY:
		if (c)
			ctr_remove(st, c, true, ev->action == DK_EV_DIE ? "died" : "was removed",
			           ev->time_ns);
		return;
	case DK_EV_OTHER:
		return;
	}
}

static int on_event_line(void *arg, const char *data, size_t len)
{
	state *st = arg;
	if (len == 0)
		return 0;
	dk_event ev;
	char why[300];
	if (dk_event_parse(data, len, &ev, why, sizeof why) < 0) {
		fail(st, "event stream: %s", why);
		return 0; /* fail() cancelled the stream */
	}
	st->h->backoff_reset(&st->bo);
	if (!ev.container)
		return 0;
	/* since is inclusive, so a reconnect may replay events already
	 * handled: drop exact repeats (same nanosecond, container, action). */
	char key[sizeof st->seen[0].key];
	snprintf(key, sizeof key, "%s %.40s", ev.id, ev.action_text);
	for (size_t i = 0; i < SEEN_MAX; i++)
		if (st->seen[i].time_ns == ev.time_ns && strcmp(st->seen[i].key, key) == 0)
			return 0;
	st->seen[st->seen_next].time_ns = ev.time_ns;
	memcpy(st->seen[st->seen_next].key, key, sizeof key);
	st->seen_next = (st->seen_next + 1) % SEEN_MAX;
	if (ev.time_ns > st->last_ns)
		st->last_ns = ev.time_ns;
	if (st->m_events)
		st->h->metric_add(st->m_events, 1);
	handle_event(st, &ev);
	return 0;
}

static void on_stream_done(void *arg, const regent_http_result *res)
{
	state *st = arg;
	st->ev_req = NULL;
	if (st->m_reconnects)
		st->h->metric_add(st->m_reconnects, 1);
	char d[300];
	if (!res->error && res->status == 200)
		snprintf(d, sizeof d, "the daemon closed it");
	else
		describe(st, res, d, sizeof d);
	fail(st, "event stream lost: %s", d);
}

/* ---- liveness: /events carries no keepalives, so a silent stream is
 * normal; a daemon that stopped answering is not. ---- */

static void on_ping(void *arg, const regent_http_result *res)
{
	state *st = arg;
	st->ping_req = NULL;
	if (res->error || res->status != 200) {
		char d[300];
		if (st->m_reconnects)
			st->h->metric_add(st->m_reconnects, 1);
		describe(st, res, d, sizeof d);
		fail(st, "the daemon did not answer /_ping within %llu ms (%s): the event stream is "
		         "presumed dead",
		     (unsigned long long)st->ping_timeout, d);
		return;
	}
	st->h->backoff_reset(&st->bo);
}

static void on_ping_timer(uv_timer_t *t)
{
	state *st = t->data;
	if (st->ph != PH_STREAM || st->ping_req)
		return;
	int err = 0;
	st->ping_req = get(st, "/_ping", st->ping_timeout, on_ping, st, &err);
	if (!st->ping_req)
		fail(st, "cannot send /_ping: %s", strerror(-err));
}

/* ------------------------------------------------------------------ */
/* plugin entry points                                                */
/* ------------------------------------------------------------------ */

/* "MAJOR.MINOR", digits only (sscanf's %u would take blanks and signs,
 * which would end up in the request path), at least 1.41. */
static bool valid_api_version(const char *v)
{
	if (!v)
		return false;
	size_t a = strspn(v, "0123456789");
	if (a == 0 || a > 4 || v[a] != '.')
		return false;
	size_t b = strspn(v + a + 1, "0123456789");
	if (b == 0 || b > 4 || v[a + 1 + b] != '\0')
		return false;
	unsigned maj = (unsigned)atoi(v), min = (unsigned)atoi(v + a + 1);
	return maj > 1 || (maj == 1 && min >= 41);
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	const char *sock = h->cfg_string(ctx, "socket");
	if (!sock || sock[0] != '/') {
		h->cfg_error(ctx, "socket", "must be an absolute path, got \"%s\"", sock ? sock : "");
		rc = -EINVAL;
	} else if (strlen(sock) >= 108) {
		h->cfg_error(ctx, "socket", "path longer than a unix socket path may be (107 bytes)");
		rc = -EINVAL;
	} else {
		/* A warning only: Docker may start after regent (the source
		 * waits for it).  Also seen by a reload's validation. */
		struct stat sb;
		if (stat(sock, &sb) != 0)
			h->log(ctx, REGENT_LOG_WARN,
			       "socket %s: %s (Docker not started yet? the source waits for it; check the "
			       "path)",
			       sock, strerror(errno));
		else if (!S_ISSOCK(sb.st_mode))
			h->log(ctx, REGENT_LOG_WARN, "socket %s exists but is not a socket", sock);
	}
	if (!valid_api_version(h->cfg_string(ctx, "api_version"))) {
		h->cfg_error(ctx, "api_version", "expected MAJOR.MINOR, 1.41 or later, got \"%s\"",
		             h->cfg_string(ctx, "api_version"));
		rc = -EINVAL;
	}
	bool internal = h->cfg_bool(ctx, "internal");
	const char *hip = h->host_ip(ctx);
	if (!internal && (!hip || !hip[0])) {
		h->cfg_error(ctx, NULL,
		             "[agent] host_ip is required: the address other hosts reach this host's "
		             "containers on (or set internal = true to register container IPs)");
		rc = -EINVAL;
	}
	if (hip && hip[0] && dk_is_loopback(hip) && !h->cfg_bool(ctx, "allow_loopback")) {
		h->cfg_error(ctx, NULL,
		             "[agent] host_ip %s is a loopback address: other hosts cannot reach "
		             "containers there (the classic wrong-IP trap with host networking); set "
		             "host_ip to this host's routable address, or allow_loopback = true for a "
		             "single-host setup",
		             hip);
		rc = -EINVAL;
	}
	if (h->cfg_duration_ms(ctx, "ping_timeout") > h->cfg_duration_ms(ctx, "ping_interval") * 10) {
		h->cfg_error(ctx, "ping_timeout", "must not exceed 10 x ping_interval");
		rc = -EINVAL;
	}
	return rc;
}

static void free_state(state *st)
{
	free(st->socket);
	free(st->base);
	free(st->node);
	free(st->host_ip);
	free(st);
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	st->ctx = ctx;
	st->h = h;
	st->socket = xstrdup(h->cfg_string(ctx, "socket"));
	const char *api = h->cfg_string(ctx, "api_version");
	size_t blen = strlen(api) + 32;
	st->base = malloc(blen);
	if (st->base)
		snprintf(st->base, blen, "http://localhost/v%s", api);
	const char *node = h->node(ctx);
	st->node = xstrdup(node ? node : "localhost");
	st->host_ip = xstrdup(h->host_ip(ctx));
	if (!st->socket || !st->base || !st->node || (h->host_ip(ctx) && !st->host_ip)) {
		free_state(st);
		return -ENOMEM;
	}
	st->internal = h->cfg_bool(ctx, "internal");
	st->ping_interval = h->cfg_duration_ms(ctx, "ping_interval");
	st->ping_timeout = h->cfg_duration_ms(ctx, "ping_timeout");
	st->req_timeout = h->cfg_duration_ms(ctx, "request_timeout");
	st->bo.initial_ms = 200;
	st->bo.max_ms = h->cfg_duration_ms(ctx, "retry_max");
	st->m_reconnects = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_watch_reconnects_total",
	                             "Watch or event streams that ended and were started again.",
	                             NULL);
	st->m_events = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_events_total",
	                         "Container events received from the Docker daemon.", NULL);
	st->m_resyncs = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_resyncs_total",
	                          "Full listings of the Docker daemon's containers.", NULL);
	st->m_errors = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_errors_total",
	                         "Docker API errors, lost event streams and failed pings "
	                         "(each followed by a retry).", NULL);
	st->m_skipped = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_rejected_total",
	                          "Invalid labels or env values refused (container skipped or "
	                          "value ignored).", NULL);
	st->m_containers = h->metric(ctx, REGENT_METRIC_GAUGE, "regent_docker_containers",
	                             "Running containers the docker source knows of.", NULL);
	*self = st;
	return 0;
}

static uv_timer_t *new_timer(state *st)
{
	uv_timer_t *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	if (uv_timer_init(st->h->loop(st->ctx), t) != 0) {
		free(t);
		return NULL;
	}
	t->data = st;
	return t;
}

static int start(void *self)
{
	state *st = self;
	st->retry_timer = new_timer(st);
	st->ping_timer = new_timer(st);
	if (!st->retry_timer || !st->ping_timer)
		return -ENOMEM;
	st->h->log(st->ctx, REGENT_LOG_INFO, "following docker at %s (API %s, %s addresses)",
	           st->socket, st->base + strlen("http://localhost/"),
	           st->internal ? "container" : "host");
	st->ph = PH_WAIT;
	begin_sync(st);
	return 0;
}

static int stop(void *self)
{
	state *st = self;
	cancel_all(st);
	st->ph = PH_STOPPED;
	return 0;
}

static void resync(void *self)
{
	state *st = self;
	if (st->ph == PH_STREAM || st->ph == PH_WAIT)
		begin_sync(st);
}

static void destroy(void *self)
{
	state *st = self;
	if (st->ph != PH_STOPPED && st->ph != PH_IDLE)
		cancel_all(st);
	st->ph = PH_STOPPED;
	while (st->ctrs) {
		ctr *c = st->ctrs;
		st->ctrs = c->next;
		free_up(c);
		free(c);
	}
	if (st->retry_timer)
		uv_close((uv_handle_t *)st->retry_timer, (uv_close_cb)free);
	if (st->ping_timer)
		uv_close((uv_handle_t *)st->ping_timer, (uv_close_cb)free);
	free_state(st);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_source_ops source_ops = {sizeof(source_ops), resync};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("docker"),
	.kind = REGENT_KIND_SOURCE,
	.version = REGENT_PLUGIN_VERSION, /* regent's own (CMakeLists.txt) */
	.description = "Docker Engine API: running containers and their ports, followed through "
	               "/events",
	.config_keys = keys,
	.ops = &ops,
	.kind_ops = &source_ops,
};
