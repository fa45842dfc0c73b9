/* docker.c - the docker source plugin: every local container endpoint, in
 * real time.  Owns the conversation with dockerd over its unix socket (the
 * container list, one inspect per container, the /events stream and the
 * /_ping liveness probe), the table of running containers with what was
 * reported for each, and the cycle list -> inspect -> full resync -> follow
 * events -> (stream lost) backoff -> list again.  The container table and
 * what is reported live in ctrs.c, the JSON decoding in decode.c, the
 * mapping rules in labels.c, agent-run checks in checks.c. */
#include "docker.h"

#include <regent/plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* [service NAME] keys: an agent-run check for every instance of the
 * service that has no regent.check label (docs/docker.md). */
static const regent_config_key service_keys[] = {
	{"agent_check", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "agent-run check of the docker source's instances: http:<path>, tcp or exec:<command>"},
	{"agent_check_interval", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "agent_check interval (default 2s)"},
	{"agent_check_timeout", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "agent_check timeout (default 1s, at most the interval)"},
	{"agent_check_rise", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "passes in a row before an instance is registered (default 2)"},
	{"agent_check_fall", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "failures in a row before it is removed (default 3)"},
	{"agent_check_method", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "http check method (default GET)"},
	{"agent_check_status", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "http status expected (default any 2xx or 3xx)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void fail(state *st, const char *fmt, ...) REGENT_PRINTF(2, 3);
static void begin_sync(state *st);
static void inspect(state *st, ctr *c);

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

/* "HTTP 404: No such container: x" or the transport error; a refused
 * connection says whether the socket exists (curl names "localhost port
 * 80" even for a unix socket). */
static void describe(const state *st, const regent_http_result *res, char *out, size_t outlen)
{
	if (res->error == -ECONNREFUSED) {
		struct stat sb;
		if (stat(st->socket, &sb) != 0)
			snprintf(out, outlen, "cannot connect: the socket does not exist (%s)",
			         strerror(errno));
		else
			snprintf(out, outlen, "cannot connect to the socket (%s)", strerror(-res->error));
		return;
	}
	st->h->http_describe(res, out, outlen);
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

/* ------------------------------------------------------------------ */
/* inspect                                                            */
/* ------------------------------------------------------------------ */

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
			dk_ctr_remove(st, c, true, "is gone", c->origin_ns);
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
			dk_ctr_apply(st, c, &dc); /* may free c */
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
		dk_ctr_unqueue(st, c);
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
	/* One warning for an outage: the retries at debug level, a reminder a
	 * minute; the resync says how long it lasted. */
	bool remind;
	uint64_t now = st->h->now_ms();
	regent_log_level at =
	        st->h->failure_note(&st->fail_log, st->failing, REGENT_LOG_WARN, false, now, &remind);
	char since[96] = "", took[48];
	if (remind)
		snprintf(since, sizeof since, "still failing after %s; ",
		         st->h->failure_text(&st->fail_log, now, took, sizeof took));
	st->h->log(st->ctx, at, "%s; docker at %s: retrying in %llu ms (%skeeping %zu "
	           "known containers until the next full listing, except those whose "
	           "process exits meanwhile)", msg, st->socket,
	           (unsigned long long)delay, since, st->nctrs);
	char reason[600];
	snprintf(reason, sizeof reason, "docker at %s: %s", st->socket, msg);
	st->h->set_health(st->ctx, false, reason);
	if (st->m_errors)
		st->h->metric_add(st->m_errors, 1);
	st->failing = true;
	uv_timer_start(st->retry_timer, on_retry, delay, 0);
	dk_pid_watch_start(st); /* a container whose process exits meanwhile goes (pidwatch.c) */
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
		ctr *c = dk_ctr_find(st, ids[i]);
		if (!c)
			c = dk_ctr_new(st, ids[i], NULL);
		if (c)
			c->listed = true;
	}
	free(ids);
	/* What we knew of and the daemon no longer lists really vanished. */
	for (ctr *c = st->ctrs, *next; c; c = next) {
		next = c->next;
		if (!c->listed)
			dk_ctr_remove(st, c, true, "vanished while the event stream was down", 0);
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

static void start_stream(state *st)
{
	static const char filters[] =
		"{\"type\":[\"container\"],\"event\":[\"start\",\"die\",\"stop\",\"kill\","
		"\"destroy\",\"pause\",\"unpause\",\"health_status\"]}";
	char *enc = st->h->url_escape(filters, 0);
	/* Replay from the newest event seen (the first time: from the
	 * listing); handle_event() skips what the listing already reflects.
	 * since is inclusive: on_event_line drops what it already handled. */
	uint64_t since = st->last_ns ? st->last_ns : st->list_start_ns;
	char *url = st->h->xasprintf("%s/events?since=%llu.%09llu&filters=%s", st->base,
	                             (unsigned long long)(since / 1000000000ull),
	                             (unsigned long long)(since % 1000000000ull), enc);
	free(enc);
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
	free(url);
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
	char after[96] = "", took[48];
	if (st->failing)
		snprintf(after, sizeof after, " after %s",
		         h->failure_text(&st->fail_log, h->now_ms(), took, sizeof took));
	h->log(st->ctx, st->failing || !st->synced_once ? REGENT_LOG_INFO : REGENT_LOG_DEBUG,
	       "%s docker at %s%s: %zu running container%s, %zu instance%s up",
	       st->synced_once ? "resynced with" : "synced with", st->socket, after, st->nctrs,
	       st->nctrs == 1 ? "" : "s", ninst, ninst == 1 ? "" : "s");
	st->synced_once = true;
	st->failing = false;
	dk_pid_watch_stop(st);
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
	ctr *c = dk_ctr_find(st, ev->id);
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
			c = dk_ctr_new(st, ev->id, ev->name);
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
		dk_ctr_down(st, c, ev->action == DK_EV_PAUSE ? "paused" : "unhealthy", ev->time_ns);
		return;
	case DK_EV_KILL:
	case DK_EV_STOP:
		if (!c || (ev->action == DK_EV_KILL && !dk_stop_signal(c, ev->signal)))
			return;
		c->stopping = true;
		memcpy(c->stop_run, c->run, sizeof c->stop_run);
		c->epoch++;
		c->need_inspect = false;
		if (ev->action == DK_EV_KILL) {
			char why[48];
			snprintf(why, sizeof why, "is stopping (signal %d)", ev->signal);
			dk_ctr_down(st, c, why, ev->time_ns);
		} else {
			dk_ctr_down(st, c, "was stopped", ev->time_ns);
		}
		return;
	case DK_EV_DIE:
	case DK_EV_DESTROY:
		if (c) {
			dk_ctr_remove(st, c, true, ev->action == DK_EV_DIE ? "died" : "was removed",
			           ev->time_ns);
			/* Its inspect, if in flight, was cancelled: its slot goes to
			 * a queued one now (no answer will come to free it). */
			pump(st);
		}
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
	if (res->error == -EFBIG) {
		/* An event longer than EVENT_LINE_MAX (labels of megabytes)
		 * cannot be read.  Resumed from the last event seen, the stream
		 * would send it again and fail again, for good; the listing that
		 * follows covers it, so the stream resumes from that listing. */
		st->last_ns = 0;
		fail(st, "event stream lost: an event longer than %u bytes: skipped, the "
		         "containers are listed again and events followed from there",
		     EVENT_LINE_MAX);
		return;
	}
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

/* Every [service NAME] agent_check* set parses (the same rules as labels). */
static int validate_service_checks(regent_ctx *ctx, const regent_host *h)
{
	static const char *const params[] = {"interval", "timeout", "rise", "fall", "method",
	                                     "status"};
	const char *const *names = NULL;
	size_t n = h->services(ctx, &names);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		const char *spec = h->service_string(ctx, names[i], "agent_check");
		bool any = spec && spec[0];
		char why[200], key[40];
		for (size_t p = 0; p < sizeof params / sizeof params[0] && !any; p++) {
			snprintf(key, sizeof key, "agent_check_%s", params[p]);
			any = h->service_is_set(ctx, names[i], key);
		}
		if (!any)
			continue;
		dk_check c;
		int r = dk_check_parse(spec, &c, why, sizeof why);
		const char *bad = "agent_check";
		for (size_t p = 0; r == 0 && p < sizeof params / sizeof params[0]; p++) {
			snprintf(key, sizeof key, "agent_check_%s", params[p]);
			const char *v = h->service_string(ctx, names[i], key);
			if (v && v[0] && (r = dk_check_param(&c, params[p], v, why, sizeof why)) < 0)
				bad = params[p];
		}
		if (r == 0)
			r = dk_check_validate(&c, why, sizeof why);
		dk_check_free(&c);
		if (r < 0) {
			h->cfg_error(ctx, NULL, "[service %s] agent_check%s%s: %s", names[i],
			             strcmp(bad, "agent_check") ? "_" : "",
			             strcmp(bad, "agent_check") ? bad : "", why);
			rc = -EINVAL;
		}
	}
	return rc;
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
	rc = validate_service_checks(ctx, h) < 0 ? -EINVAL : rc;
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
	st->socket = h->xstrdup(h->cfg_string(ctx, "socket"));
	st->base = h->xasprintf("http://localhost/v%s", h->cfg_string(ctx, "api_version"));
	const char *node = h->node(ctx);
	st->node = h->xstrdup(node ? node : "localhost");
	st->host_ip = h->xstrdup(h->host_ip(ctx)); /* NULL when unset */
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
	st->m_checks = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_checks_total",
	                         "Agent-run check probes started.", NULL);
	st->m_check_fail = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_docker_check_failures_total",
	                             "Agent-run check probes that failed.", NULL);
	*self = st;
	return 0;
}

static int start(void *self)
{
	state *st = self;
	st->retry_timer = st->h->timer_new(st->ctx, st);
	st->ping_timer = st->h->timer_new(st->ctx, st);
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
	dk_pid_watch_stop(st);
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
	dk_pid_free(st);
	while (st->ctrs) {
		ctr *c = st->ctrs;
		st->ctrs = c->next;
		dk_ctr_free_up(c);
		free(c);
	}
	st->h->timer_close(&st->retry_timer);
	st->h->timer_close(&st->ping_timer);
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
	.service_keys = service_keys,
	.ops = &ops,
	.source_ops = &source_ops,
};
