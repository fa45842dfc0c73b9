/* consul_disc.c - discovery of the Consul store plugin: the catalog read
 * back with a bounded number of connections, whatever the number of
 * services.
 *
 * Owns, per plugin instance (only when the host has a sink):
 *  - two blocking queries: /v1/catalog/services (which services exist,
 *    their tags) and /v1/health/state/any (every check: node, id, status,
 *    ModifyIndex).  A service whose checks changed (a signature per
 *    service), that appeared, or whose tags changed is marked dirty.
 *    Every registration regent makes carries its hash in the check's
 *    Notes, so any change of a regent instance changes its check.  A
 *    registration change that moves neither (a foreign instance without
 *    a check added, removed or changing its address) moves only the
 *    service list's index:
 *     - a service whose last read had an instance without a check of its
 *       own ("check-less") is read again whenever the list's index moves
 *       (sweep_checkless; at most once every CHECKLESS_GAP_MS): the
 *       checks cannot tell, since under churn of other services' checks
 *       their index is always at or past the list's.  A fleet of regent
 *       registrations only (all with checks) has none of these.
 *     - a move while no check did (one plain read of the checks tells)
 *       makes every service be read again (sweep_all).  That is what
 *       catches, on a quiet catalog, a first check-less instance in a
 *       service whose instances all had checks, or a foreign checked
 *       registration changed without touching its check; under churn of
 *       other checks such a change waits until the service is read for
 *       another reason (a limit: see docs/consul.md).
 *  - which services exist: a service the list names gets its reader
 *    (consul_read.c: the queue of dirty services read with
 *    /v1/health/service/<name>, at most CONSUL_READ_CAP at a time, each
 *    replacing that service in the catalog), one it no longer names
 *    leaves the catalog.
 *  - the rate limit of the blocking queries (Consul's guidance): two
 *    starts of one query at least GAP_MIN_MS apart; when answers keep
 *    coming back at once with a new index (churn), the gap doubles up to
 *    GAP_MAX_MS (15 s); one answer that blocked resets it.
 *  - ACL filtering: a service list without the "consul" service (which
 *    Consul's servers always register) is a filtered one, whether or not
 *    the header says so (Consul strips it when the request had no token):
 *    the last catalog is kept and the store reports unhealthy.
 * So the agent sees at most 3 + CONSUL_READ_CAP connections from discovery
 * (the two watches, the plain read of the checks, the reads; Consul allows
 * 200 per client IP by default). */
#include "consul_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GAP_MIN_MS 50      /* between two starts of one blocking query */
#define GAP_MAX_MS 15000   /* under sustained churn (Consul's guidance) */
#define CHURN_FREE 4       /* fast answers in a row before slowing down */
#define FAST_MS 100        /* an answer with a new index sooner than this is churn:
                            * more than ten changes a second, sustained */
#define WARNED_MAX 1024    /* invalid service names remembered */
#define CHECKLESS_GAP_MS 1000 /* between two re-reads of the check-less services
                               * for a moved service list */

static void watch_issue(consul_watch *w);
static void on_first_timer(uv_timer_t *t);

/* ------------------------------------------------------------------ */
/* blocking queries                                                   */
/* ------------------------------------------------------------------ */

static void on_watch_timer(uv_timer_t *t)
{
	watch_issue(t->data);
}

static void watch_schedule(consul_watch *w, uint64_t delay_ms)
{
	if (delay_ms == 0)
		watch_issue(w);
	else
		uv_timer_start(w->timer, on_watch_timer, delay_ms, 0);
}

static uint64_t watch_gap(const consul_watch *w)
{
	if (w->churn <= CHURN_FREE)
		return GAP_MIN_MS;
	unsigned k = w->churn - CHURN_FREE;
	return k >= 9 ? GAP_MAX_MS
	              : (GAP_MIN_MS << k) < GAP_MAX_MS ? (GAP_MIN_MS << k) : GAP_MAX_MS;
}

static void watch_fail(consul_watch *w, regent_log_level level, const char *fmt, ...)
	REGENT_PRINTF(3, 4);
static void watch_fail(consul_watch *w, regent_log_level level, const char *fmt, ...)
{
	consul *c = w->c;
	/* The index of a restarted agent starts low again: read afresh. */
	w->index = 0;
	w->churn = 0;
	va_list ap;
	va_start(ap, fmt);
	consul_disc_problem(c, &w->failing, w == c->catalog ? M_CATALOG : M_HEALTH, level, fmt, ap);
	va_end(ap);
	watch_schedule(w, c->h->backoff_next(&w->bo));
	consul_recover_want(c);
}

static void on_watch_done(void *arg, const regent_http_result *res)
{
	consul_watch *w = arg;
	consul *c = w->c;
	regent_http_req *req = w->req;
	w->req = NULL;
	if (res->error || res->status != 200) {
		char d[300];
		consul_describe(c, res, d, sizeof(d));
		if (res->status == 403)
			watch_fail(w, REGENT_LOG_ERROR,
			           "Consul refused to read %s: %s (ACL: the token is unknown or lacks "
			           "read permission)",
			           w->what, d);
		else
			watch_fail(w, REGENT_LOG_WARN, "cannot read %s from %s: %s", w->what, c->shown,
			           d);
		return;
	}
	uint64_t got = consul_parse_index(c->h->http_header(req, "X-Consul-Index"));
	const char *filt = c->h->http_header(req, "X-Consul-Results-Filtered-By-ACLs");
	bool filtered = filt && strcmp(filt, "true") == 0;
	uint64_t prev = w->index;
	if (!w->on_answer(w, req, res, got, filtered))
		return;
	if (c->stopping)
		return;
	w->done_once = true;
	c->h->backoff_reset(&w->bo);
	consul_disc_ok(c, &w->failing);
	bool reset;
	w->index = consul_next_index(prev, got, &reset);
	if (reset && prev)
		c->h->log(c->ctx, REGENT_LOG_DEBUG,
		          "%s: index went from %" PRIu64 " to %" PRIu64 ": reading afresh", w->what,
		          prev, got);
	uint64_t now = c->h->now_ms();
	if (prev && got != prev && now - w->last_start < FAST_MS)
		w->churn++;
	else
		w->churn = 0;
	consul_disc_sync(c);
	consul_pump_reads(c);
	if (w->oneshot)
		return;
	if (!got) {
		/* No X-Consul-Index (not Consul, or a proxy dropped it): no
		 * blocking possible, so poll gently instead. */
		if (!w->warned_index)
			c->h->log(c->ctx, REGENT_LOG_WARN,
			          "%s: the answer has no X-Consul-Index header; polling every second",
			          w->what);
		w->warned_index = true;
		watch_schedule(w, 1000);
		return;
	}
	/* Next query no sooner than the gap after the last one started: a
	 * change that lands meanwhile is answered at once by the next one. */
	uint64_t due = w->last_start + watch_gap(w);
	watch_schedule(w, due > now ? due - now : 0);
}

static void watch_issue(consul_watch *w)
{
	consul *c = w->c;
	if (c->stopping || w->req)
		return;
	uv_timer_stop(w->timer);
	char *url;
	uint64_t timeout;
	bool has_q = w->path[strlen(w->path) - 1] != '?';
	if (w->index) {
		char wait[32];
		consul_duration(c->wait_ms, wait, sizeof(wait));
		url = c->h->xasprintf("%s%sindex=%" PRIu64 "&wait=%s", w->path, has_q ? "&" : "",
		                       w->index, wait);
		/* Consul adds up to wait/16 of jitter. */
		timeout = c->wait_ms + c->wait_ms / 16 + c->timeout_ms;
	} else {
		url = c->h->xstrdup(w->path);
		size_t n = strlen(url);
		if (url[n - 1] == '?')
			url[n - 1] = '\0';
		timeout = c->timeout_ms;
	}
	w->last_start = c->h->now_ms();
	int err = 0;
	w->req = consul_send(c, "GET", url, NULL, timeout, on_watch_done, w, &err);
	free(url);
	if (w->req)
		consul_count(c, c->m_req, w == c->catalog ? M_CATALOG : M_HEALTH);
	else
		watch_fail(w, REGENT_LOG_ERROR, "cannot send a request to %s: %s", c->shown,
		           strerror(-err));
}

static consul_watch *watch_new(consul *c, const char *what, const char *path,
                               bool (*on_answer)(consul_watch *, regent_http_req *,
                                                 const regent_http_result *, uint64_t, bool))
{
	consul_watch *w = c->h->xcalloc(1, sizeof(*w));
	w->c = c;
	w->what = what;
	w->on_answer = on_answer;
	w->bo.initial_ms = 100;
	w->bo.max_ms = 10000;
	if (c->dc) {
		char *e = c->h->url_escape(c->dc, 0);
		w->path = c->h->xasprintf("%s?dc=%s", path, e);
		free(e);
	} else {
		w->path = c->h->xasprintf("%s?", path);
	}
	w->timer = c->h->timer_new(c->ctx, w);
	return w;
}

static void watch_free(consul_watch *w)
{
	consul *c = w->c;
	if (w->req)
		c->h->http_cancel(w->req);
	if (w->failing && c->disc_failing)
		c->disc_failing--;
	c->h->timer_close(&w->timer);
	free(w->path);
	free(w);
}

/* ------------------------------------------------------------------ */
/* the service list                                                   */
/* ------------------------------------------------------------------ */

static bool ignored(consul *c, const char *name)
{
	for (size_t i = 0; i < c->nignore; i++)
		if (strcmp(c->ignore[i], name) == 0)
			return true;
	return false;
}

static void warn_name_once(consul *c, const char *name)
{
	if (c->h->map_get(c->warned, name))
		return;
	if (c->h->map_size(c->warned) < WARNED_MAX)
		c->h->map_put(c->warned, name, (void *)1);
	c->h->log(c->ctx, REGENT_LOG_WARN,
	          "skipped Consul service \"%.80s\": invalid name (allowed: "
	          "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
	          name);
}

static bool usable_service(consul *c, const consul_service_entry *e, bool warn)
{
	if (ignored(c, e->name))
		return false;
	if (!c->h->valid_service(e->name)) {
		if (warn)
			warn_name_once(c, e->name);
		return false;
	}
	return !c->ntags || consul_tags_match(e->tags, e->ntags, c->tags, c->ntags);
}

static uint64_t tags_sig(const consul_service_entry *e)
{
	uint64_t h = 0;
	for (size_t i = 0; i < e->ntags; i++) {
		uint64_t x = 0xcbf29ce484222325ull;
		for (const char *p = e->tags[i]; *p; p++) {
			x ^= (unsigned char)*p;
			x *= 0x100000001b3ull;
		}
		h += x;
	}
	return h | 1;
}

/* The service list moved and no check did at or after that index: a
 * registration without a check changed somewhere.  Read everything. */
static void sweep_all(consul *c)
{
	c->h->log(c->ctx, REGENT_LOG_DEBUG,
	          "the service list moved without any check changing (a registration without "
	          "a check): reading all %zu services again",
	          c->h->map_size(c->svcs));
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v))
		consul_svc_dirty(v);
}

/* The service list moved: a check-less instance (its service's last read
 * had one) may have been added, removed or changed in place, which moves
 * no check, whatever the checks' index says (under churn of other checks
 * it is always past the list's).  Its services are read again, at most
 * once every CHECKLESS_GAP_MS. */
static void sweep_checkless(consul *c)
{
	c->checkless_last = c->h->now_ms();
	c->h->log(c->ctx, REGENT_LOG_DEBUG,
	          "the service list moved: reading the %zu services with instances without a "
	          "check again",
	          c->checkless_n);
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v))
		if (((consul_svc *)v)->checkless)
			consul_svc_dirty(v);
	consul_pump_reads(c);
}

static void on_checkless_timer(uv_timer_t *t)
{
	consul *c = t->data;
	if (!c->stopping && c->checkless_n)
		sweep_checkless(c);
}

static void checkless_moved(consul *c)
{
	if (!c->checkless_n || uv_is_active((uv_handle_t *)c->checkless_timer))
		return;
	uint64_t now = c->h->now_ms(), due = c->checkless_last + CHECKLESS_GAP_MS;
	if (!c->checkless_last || now >= due)
		sweep_checkless(c);
	else
		uv_timer_start(c->checkless_timer, on_checkless_timer, due - now, 0);
}

static bool on_services(consul_watch *w, regent_http_req *req, const regent_http_result *res,
                        uint64_t got, bool filtered)
{
	(void)req;
	consul *c = w->c;
	consul_services s;
	char why[256] = "";
	if (consul_parse_services(c->h, res->body, res->body_len, &s, why, sizeof(why)) < 0) {
		watch_fail(w, REGENT_LOG_WARN, "bad answer from %s for the service list: %s",
		           c->shown, why);
		return false;
	}
	bool has_consul = false, empty = true;
	for (size_t i = 0; i < s.n; i++) {
		has_consul |= strcmp(s.v[i].name, "consul") == 0;
		if (empty)
			empty = !usable_service(c, &s.v[i], false);
	}
	if (!c->token_hdr && c->acls_on && empty)
		filtered = true; /* Consul stripped the header: no token was sent */
	if (!has_consul || (filtered && empty)) {
		consul_services_free(&s);
		/* Consul answers a missing or weak token with a filtered result,
		 * not an error (and without the header when no token was sent):
		 * no proof that the catalog is empty. */
		if (!has_consul)
			watch_fail(w, REGENT_LOG_ERROR,
			           "Consul filtered the service list by ACLs: the answer lacks the "
			           "\"consul\" service, which Consul's servers always register (%s)",
			           c->token_hdr ? "the token lacks service:read on \"consul\"; give it "
			                          "service_prefix \"\" and node_prefix \"\" read"
			                        : "no token is configured: set [store consul] token to one "
			                          "with service:read and node:read");
		else
			watch_fail(w, REGENT_LOG_ERROR,
			           "Consul filtered the service list by ACLs down to nothing usable (%s)",
			           c->token_hdr ? "the token lacks service:read/node:read"
			                        : "no token is configured and the agent enforces ACLs: "
			                          "set [store consul] token");
		return false;
	}
	if (!c->synced_once && !c->sync_open) {
		c->h->catalog_sync_begin(c->ctx);
		c->sync_open = true;
	}
	bool explained = false;
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v))
		((consul_svc *)v)->seen = false;
	for (size_t i = 0; i < s.n; i++) {
		const consul_service_entry *e = &s.v[i];
		if (!usable_service(c, e, true))
			continue;
		uint64_t ts = tags_sig(e);
		consul_svc *sv = c->h->map_get(c->svcs, e->name);
		if (!sv) {
			sv = consul_svc_new(c, e->name);
			c->h->map_put(c->svcs, e->name, sv);
			c->h->log(c->ctx, REGENT_LOG_DEBUG, "service %s is in the catalog", e->name);
			consul_svc_dirty(sv);
			explained = true;
		} else if (sv->tags_sig != ts) {
			consul_svc_dirty(sv);
			explained = true;
		}
		sv->tags_sig = ts;
		sv->seen = true;
	}
	consul_services_free(&s);
	it = (regent_map_iter){0};
	const char *name;
	while (c->h->map_next(c->svcs, &it, &name, &v)) {
		consul_svc *sv = v;
		if (sv->seen)
			continue;
		c->h->log(c->ctx, REGENT_LOG_INFO, "service %s left the Consul catalog", sv->name);
		c->h->catalog_remove(c->ctx, sv->name);
		c->h->map_del(c->svcs, name);
		consul_svc_free(sv);
		explained = true;
	}
	/* Any move (a new service may hide another change in the same
	 * answer): the services known to hold check-less instances. */
	if (w->index && got > w->index)
		checkless_moved(c);
	/* The list moved and nothing above says why.  A registration and its
	 * checks are written at one raft index, so the checks explain it when
	 * their index reaches this one: one plain read of them tells.  If it
	 * stays below, a registration changed without touching any check
	 * (only foreign registrations do that): every service is read again.
	 * (Under churn of other checks, their index is always past the list's:
	 * that is why the check-less services are read above whatever it says.) */
	if (w->index && got > w->index && !explained && c->state->index < got) {
		if (got > c->pending_move)
			c->pending_move = got;
		if (!c->state_now->req && !uv_is_active((uv_handle_t *)c->state_now->timer)) {
			c->state_now->index = 0;
			watch_issue(c->state_now);
		}
	}
	if (c->m_watched)
		c->h->metric_set(c->m_watched, (double)c->h->map_size(c->svcs));
	consul_update_health(c); /* a failing service may be gone */
	return true;
}

/* ------------------------------------------------------------------ */
/* the health of every check                                          */
/* ------------------------------------------------------------------ */

static bool on_state(consul_watch *w, regent_http_req *req, const regent_http_result *res,
                     uint64_t got, bool filtered)
{
	(void)req;
	consul *c = w->c;
	regent_map *sigs = c->h->map_new();
	uint64_t node_sig = 0;
	char why[256] = "";
	int n = consul_parse_state(c->h, res->body, res->body_len, sigs, &node_sig, why, sizeof(why));
	if (n < 0) {
		c->h->map_free(sigs, NULL);
		watch_fail(w, REGENT_LOG_WARN, "bad answer from %s for the health of every check: %s",
		           c->shown, why);
		return false;
	}
	if (n == 0) {
		/* Every node has its serfHealth check: an empty list is a
		 * filtered one. */
		c->h->map_free(sigs, NULL);
		watch_fail(w, REGENT_LOG_ERROR,
		           "Consul filtered the health of every check by ACLs down to nothing%s (the "
		           "token is missing or lacks node:read/service:read)",
		           filtered ? "" : " (no serfHealth check)");
		return false;
	}
	bool first = !c->sigs;
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v)) {
		consul_svc *s = v;
		uint64_t sg = (uint64_t)(uintptr_t)c->h->map_get(sigs, s->name);
		/* On the first answer, a service read before it may have changed
		 * in between. */
		if (first ? s->first_done : (sg != s->sig || node_sig != c->node_sig))
			consul_svc_dirty(s);
		s->sig = sg;
	}
	c->node_sig = node_sig;
	if (c->pending_move && got >= c->pending_move)
		c->pending_move = 0; /* explained */
	else if (c->pending_move && w->oneshot) {
		c->pending_move = 0;
		sweep_all(c);
	}
	if (c->sigs)
		c->h->map_free(c->sigs, NULL);
	c->sigs = sigs;
	return true;
}

/* ------------------------------------------------------------------ */
/* sync and lifecycle                                                 */
/* ------------------------------------------------------------------ */

/* The first full read ends once every service listed has been read, or,
 * past first_read_wait, with those not read yet reported unknown (sinks
 * keep what they serve for them, and route the rest): one service whose
 * reads keep failing must not hold every other one back for good.  Each
 * joins once read (on_read_done's catalog_set). */
void consul_disc_sync(consul *c)
{
	if (!c->sync_open || !c->state || !c->state->done_once)
		return;
	regent_map_iter it = {0};
	void *v;
	size_t missing = 0;
	while (c->h->map_next(c->svcs, &it, NULL, &v))
		missing += !((consul_svc *)v)->first_done;
	if (missing && !c->first_expired) {
		/* The bound runs from here: the list and the checks are read,
		 * the services' reads under way. */
		if (c->first_wait_ms && !c->first_armed) {
			c->first_armed = true;
			uv_timer_start(c->first_timer, on_first_timer, c->first_wait_ms, 0);
		}
		return;
	}
	if (missing) {
		char names[256] = "";
		size_t len = 0, shown = 0;
		regent_map_iter im = {0};
		while (c->h->map_next(c->svcs, &im, NULL, &v)) {
			consul_svc *s = v;
			if (s->first_done)
				continue;
			c->h->catalog_set_unknown(c->ctx, s->name);
			if (shown < 5 && len < sizeof(names)) {
				int k = snprintf(names + len, sizeof(names) - len, "%s%s", shown ? ", " : "",
				                 s->name);
				len += k > 0 ? (size_t)k : 0;
				shown++;
			}
		}
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "read the catalog but %zu of its %zu services after %llu ms (first_read_wait): "
		          "%s%s not read yet (%s); the sinks route the others, keep what they served "
		          "for these, and get each once it is read",
		          missing, c->h->map_size(c->svcs), (unsigned long long)c->first_wait_ms, names,
		          missing > shown ? ", ..." : "",
		          c->disc_problem[0] ? c->disc_problem : "no answer yet");
	}
	uv_timer_stop(c->first_timer);
	c->h->catalog_sync_end(c->ctx);
	c->sync_open = false;
	c->synced_once = true;
	if (!missing)
		c->h->log(c->ctx, REGENT_LOG_INFO, "read the catalog: %zu service%s",
		          c->h->map_size(c->svcs), c->h->map_size(c->svcs) == 1 ? "" : "s");
}

static void on_first_timer(uv_timer_t *t)
{
	consul *c = t->data;
	c->first_expired = true;
	consul_disc_sync(c);
}

static void probe_issue(consul *c);

static void on_probe_timer(uv_timer_t *t)
{
	probe_issue(t->data);
}

static void on_probe_done(void *arg, const regent_http_result *res)
{
	consul *c = arg;
	c->probe_req = NULL;
	if (res->error) {
		/* The agent is not there yet: ask again before reading. */
		uv_timer_start(c->probe_timer, on_probe_timer, c->h->backoff_next(&c->read_bo), 0);
		consul_recover_want(c);
		return;
	}
	c->h->backoff_reset(&c->read_bo);
	c->acls_on = res->status == 403;
	if (c->acls_on)
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "no token is configured and the Consul agent at %s enforces ACLs: reads "
		          "see only what the anonymous token may (an answer with nothing usable is "
		          "taken as filtered, never as an empty catalog)",
		          c->shown);
	watch_issue(c->state);
	watch_issue(c->catalog);
}

static void probe_issue(consul *c)
{
	int err = 0;
	c->probe_req = consul_send(c, "GET", "/v1/agent/self", NULL, c->timeout_ms, on_probe_done,
	                           c, &err);
	if (!c->probe_req)
		uv_timer_start(c->probe_timer, on_probe_timer, c->h->backoff_next(&c->read_bo), 0);
}

/* A watch, a service's read or the ACL question waits out a backoff. */
static bool watch_waits(const consul_watch *w)
{
	return w && w->failing && !w->req && uv_is_active((uv_handle_t *)w->timer);
}

bool consul_disc_waiting(consul *c)
{
	if (!c->svcs)
		return false; /* not started, or stopped */
	return c->disc_failing || (!c->probe_req && uv_is_active((uv_handle_t *)c->probe_timer));
}

void consul_disc_resume(consul *c)
{
	if (!c->svcs)
		return;
	consul_watch *ws[] = {c->catalog, c->state};
	for (size_t i = 0; i < 2; i++)
		if (watch_waits(ws[i]))
			watch_issue(ws[i]); /* (stops its timer) */
	consul_reads_resume(c);
	if (!c->probe_req && uv_is_active((uv_handle_t *)c->probe_timer)) {
		uv_timer_stop(c->probe_timer);
		probe_issue(c);
	}
}

void consul_disc_start(consul *c)
{
	c->svcs = c->h->map_new();
	c->warned = c->h->map_new();
	c->read_timer = c->h->timer_new(c->ctx, c);
	c->first_timer = c->h->timer_new(c->ctx, c);
	c->first_expired = c->first_armed = false;
	c->checkless_timer = c->h->timer_new(c->ctx, c);
	c->settle_timer = c->h->timer_new(c->ctx, c);
	c->settle_until = 0;
	c->settle_held = 0;
	c->checkless_n = 0;
	c->checkless_last = 0;
	c->read_bo.initial_ms = 100;
	c->read_bo.max_ms = 10000;
	c->catalog = watch_new(c, "the service list", "/v1/catalog/services", on_services);
	c->state = watch_new(c, "the health of every check", "/v1/health/state/any", on_state);
	c->state_now = watch_new(c, "the health of every check", "/v1/health/state/any", on_state);
	c->state_now->oneshot = true;
	c->probe_timer = c->h->timer_new(c->ctx, c);
	if (c->token_hdr) {
		watch_issue(c->state);
		watch_issue(c->catalog);
	} else {
		/* Without a token, Consul never says that it filtered (it strips
		 * X-Consul-Results-Filtered-By-ACLs): ask whether it enforces
		 * ACLs before taking any answer. */
		probe_issue(c);
	}
}

void consul_disc_stop(consul *c)
{
	if (c->catalog)
		watch_free(c->catalog);
	if (c->state)
		watch_free(c->state);
	if (c->state_now)
		watch_free(c->state_now);
	c->catalog = c->state = c->state_now = NULL;
	if (c->svcs)
		c->h->map_free(c->svcs, consul_svc_free_v);
	c->svcs = NULL;
	c->qhead = c->qtail = NULL;
	if (c->sigs)
		c->h->map_free(c->sigs, NULL);
	c->sigs = NULL;
	if (c->warned)
		c->h->map_free(c->warned, NULL);
	c->warned = NULL;
	c->h->timer_close(&c->read_timer);
	c->h->timer_close(&c->first_timer);
	c->h->timer_close(&c->checkless_timer);
	c->h->timer_close(&c->settle_timer);
	if (c->probe_req)
		c->h->http_cancel(c->probe_req);
	c->probe_req = NULL;
	c->h->timer_close(&c->probe_timer);
}
