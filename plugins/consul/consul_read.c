/* consul_read.c - discovery of the Consul store plugin, per service: the
 * reads of /v1/health/service/<name> and what decides them.
 *
 * Owns, per plugin instance (only when the host has a sink):
 *  - the services known from the service list (consul_svc: created and
 *    freed by consul_disc.c's list handling through consul_svc_new/free),
 *    each with its read path (tags, dc and the passing filter in the
 *    query string);
 *  - the queue of dirty services (consul_svc_dirty) and its pump: at most
 *    CONSUL_READ_CAP reads at a time, each replacing that service in the
 *    catalog (catalog_set); a failed read is retried after the store's
 *    backoff (read_timer);
 *  - the settle after the agent was away: a read that would remove
 *    instances is held until the owners can pass the checks the agent
 *    restored critical, then read again (settle_timer);
 *  - discovery's failure accounting (consul_disc_problem/ok: the message,
 *    the outage's note, the error metric), shared with
 *    the blocking queries of consul_disc.c: the side is failing while any
 *    watch or read is.
 * The blocking queries that mark services dirty live in consul_disc.c. */
#include "consul_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* failures                                                           */
/* ------------------------------------------------------------------ */

void consul_disc_problem(consul *c, bool *failing, int op, regent_log_level level, const char *fmt,
                         va_list ap)
{
	char msg[320];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	bool ongoing = c->disc_failing > 0;
	if (!*failing) {
		*failing = true;
		c->disc_failing++;
	}
	snprintf(c->disc_problem, sizeof(c->disc_problem), "%s", msg);
	consul_outage_note(c, &c->disc_outage, ongoing, level, "discovery", msg, CONSUL_DISC_THEN);
	consul_update_health(c);
	consul_count(c, c->m_err, op);
}

void consul_disc_ok(consul *c, bool *failing)
{
	if (!*failing)
		return;
	*failing = false;
	c->disc_failing--;
	if (c->disc_failing == 0) {
		char what[300];
		snprintf(what, sizeof what, "reading the catalog from %s", c->shown);
		consul_outage_end(c, &c->disc_outage, what);
		consul_update_health(c);
		if (c->recover_away) /* the agent was away, back before the check saw it */
			consul_disc_settle(c);
	}
}

void consul_disc_settle(consul *c)
{
	c->settle_until = c->h->now_ms() + CONSUL_SETTLE_MS;
	c->settle_held = 0;
}

/* The settle after an outage ended: the services whose removals it held
 * are read again (a check still critical now is one its owner did not
 * pass: its instance goes). */
static void queue_push(consul *c, consul_svc *s);

static void on_settle_timer(uv_timer_t *t)
{
	consul *c = t->data;
	/* Over, whatever now_ms() reads (the loop's timers run on another
	 * clock): the reads below are taken. */
	c->settle_until = 0;
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v)) {
		consul_svc *s = v;
		if (s->held) {
			s->held = false;
			queue_push(c, s);
		}
	}
	c->h->log(c->ctx, REGENT_LOG_INFO, "settle over: reading %zu held service%s again",
	          c->settle_held, c->settle_held == 1 ? "" : "s");
	c->settle_held = 0;
	consul_pump_reads(c);
}

/* A read of s that would remove instances within the settle: held (true),
 * read again once it ends. */
static bool settle_holds(consul *c, consul_svc *s, size_t n)
{
	uint64_t now = c->h->now_ms();
	if (!s->first_done || n >= s->last_n || now >= c->settle_until)
		return false;
	if (s->held)
		return true; /* read again within the settle: still held */
	s->held = true;
	if (c->settle_held++ == 0)
		c->h->log(c->ctx, REGENT_LOG_INFO,
		          "the Consul agent at %s answers again: a read that removes instances "
		          "(service %s: %zu of %zu) waits %llu ms, until their owners can pass the "
		          "checks the agent restored critical, and is read again then",
		          c->shown, s->name, s->last_n - n, s->last_n,
		          (unsigned long long)(c->settle_until - now));
	if (!uv_is_active((uv_handle_t *)c->settle_timer))
		uv_timer_start(c->settle_timer, on_settle_timer, c->settle_until - now, 0);
	return true;
}


/* ------------------------------------------------------------------ */
/* services and their reads                                           */
/* ------------------------------------------------------------------ */

static void queue_push(consul *c, consul_svc *s)
{
	if (s->queued || s->req)
		return;
	s->queued = true;
	s->qnext = NULL;
	s->qprev = c->qtail;
	if (c->qtail)
		c->qtail->qnext = s;
	else
		c->qhead = s;
	c->qtail = s;
}

static void queue_unlink(consul *c, consul_svc *s)
{
	if (!s->queued)
		return;
	if (s->qprev)
		s->qprev->qnext = s->qnext;
	else
		c->qhead = s->qnext;
	if (s->qnext)
		s->qnext->qprev = s->qprev;
	else
		c->qtail = s->qprev;
	s->queued = false;
	s->qprev = s->qnext = NULL;
}

void consul_svc_dirty(consul_svc *s)
{
	s->dirty = true;
	queue_push(s->c, s);
}

consul_svc *consul_svc_new(consul *c, const char *name)
{
	consul_svc *s = c->h->xcalloc(1, sizeof(*s));
	s->c = c;
	s->name = c->h->xstrdup(name);
	char *e = c->h->url_escape(name, 0);
	char *q = c->h->xstrdup(c->states == CONSUL_STATE_PASSING ? "?passing" : "?");
	for (size_t i = 0; i < c->ntags; i++) {
		char *t = c->h->url_escape(c->tags[i], 0);
		char *n = c->h->xasprintf("%s%stag=%s", q, q[1] ? "&" : "", t);
		free(t);
		free(q);
		q = n;
	}
	if (c->dc) {
		char *d = c->h->url_escape(c->dc, 0);
		char *n = c->h->xasprintf("%s%sdc=%s", q, q[1] ? "&" : "", d);
		free(d);
		free(q);
		q = n;
	}
	if (!q[1])
		q[0] = '\0';
	s->path = c->h->xasprintf("/v1/health/service/%s%s", e, q);
	free(q);
	free(e);
	s->sig = c->sigs ? (uint64_t)(uintptr_t)c->h->map_get(c->sigs, name) : 0;
	return s;
}

void consul_svc_free(consul_svc *s)
{
	consul *c = s->c;
	queue_unlink(c, s);
	if (s->req) {
		c->h->http_cancel(s->req);
		c->reads--;
	}
	if (s->failing && c->disc_failing)
		c->disc_failing--;
	if (s->checkless && c->checkless_n)
		c->checkless_n--;
	free(s->name);
	free(s->path);
	free(s);
}

void consul_svc_free_v(void *s)
{
	consul_svc_free(s);
}

static void on_read_timer(uv_timer_t *t)
{
	consul *c = t->data;
	regent_map_iter it = {0};
	void *v;
	while (c->h->map_next(c->svcs, &it, NULL, &v)) {
		consul_svc *s = v;
		if (s->dirty && s->failing)
			queue_push(c, s);
	}
	consul_pump_reads(c);
}

static void read_fail(consul_svc *s, regent_log_level level, const char *fmt, ...)
	REGENT_PRINTF(3, 4);
static void read_fail(consul_svc *s, regent_log_level level, const char *fmt, ...)
{
	consul *c = s->c;
	s->dirty = true; /* read it again after the backoff */
	va_list ap;
	va_start(ap, fmt);
	consul_disc_problem(c, &s->failing, M_HEALTH, level, fmt, ap);
	va_end(ap);
	if (!uv_is_active((uv_handle_t *)c->read_timer))
		uv_timer_start(c->read_timer, on_read_timer, c->h->backoff_next(&c->read_bo), 0);
	consul_recover_want(c);
}

static void on_read_done(void *arg, const regent_http_result *res)
{
	consul_svc *s = arg;
	consul *c = s->c;
	regent_http_req *req = s->req;
	s->req = NULL;
	c->reads--;
	if (res->error || res->status != 200) {
		char d[300];
		consul_describe(c, res, d, sizeof(d));
		if (res->status == 403)
			read_fail(s, REGENT_LOG_ERROR,
			          "Consul refused to read the health of service %s: %s (ACL: the token is "
			          "unknown or lacks read permission)",
			          s->name, d);
		else
			read_fail(s, REGENT_LOG_WARN, "cannot read the health of service %s from %s: %s",
			          s->name, c->shown, d);
		consul_pump_reads(c);
		return;
	}
	const char *filt = c->h->http_header(req, "X-Consul-Results-Filtered-By-ACLs");
	bool filtered = filt && strcmp(filt, "true") == 0;
	consul_instances in;
	size_t skipped = 0;
	char why[256] = "";
	if (consul_parse_health(c->h, res->body, res->body_len, s->name, c->states, &in, &skipped, why,
	                        sizeof(why)) < 0) {
		read_fail(s, REGENT_LOG_WARN, "bad answer from %s for service %s: %s", c->shown,
		          s->name, why);
		consul_pump_reads(c);
		return;
	}
	if (filtered && in.n == 0 && skipped == 0) {
		consul_instances_free(&in);
		/* No proof that the service is empty. */
		read_fail(s, REGENT_LOG_ERROR,
		          "Consul filtered the health of service %s by ACLs down to nothing (the "
		          "token lacks service:read/node:read)",
		          s->name);
		consul_pump_reads(c);
		return;
	}
	if (settle_holds(c, s, in.n)) {
		consul_instances_free(&in);
		c->h->backoff_reset(&c->read_bo);
		consul_disc_ok(c, &s->failing);
		consul_disc_sync(c);
		consul_pump_reads(c);
		return;
	}
	if (skipped)
		c->h->log(c->ctx, REGENT_LOG_WARN, "service %s: skipped %zu instance%s from Consul: %s",
		          s->name, skipped, skipped == 1 ? "" : "s", why);
	c->h->catalog_set(c->ctx, s->name, in.ptrs, in.n);
	s->last_n = in.n;
	if (in.checkless != s->checkless) {
		s->checkless = in.checkless;
		if (in.checkless)
			c->checkless_n++;
		else
			c->checkless_n--;
	}
	consul_instances_free(&in);
	s->first_done = true;
	c->h->backoff_reset(&c->read_bo);
	consul_disc_ok(c, &s->failing);
	if (s->dirty)
		queue_push(c, s); /* changed again while it was read */
	consul_disc_sync(c);
	consul_pump_reads(c);
}

static void read_issue(consul_svc *s)
{
	consul *c = s->c;
	s->dirty = false;
	int err = 0;
	s->req = consul_send(c, "GET", s->path, NULL, c->timeout_ms, on_read_done, s, &err);
	if (!s->req) {
		read_fail(s, REGENT_LOG_ERROR, "cannot send a request to %s: %s", c->shown,
		          strerror(-err));
		return;
	}
	c->reads++;
	consul_count(c, c->m_req, M_HEALTH);
	if (c->m_reads)
		c->h->metric_add(c->m_reads, 1);
}

void consul_pump_reads(consul *c)
{
	if (c->stopping)
		return;
	while (c->reads < CONSUL_READ_CAP && c->qhead) {
		consul_svc *s = c->qhead;
		queue_unlink(c, s);
		read_issue(s);
	}
}

void consul_reads_resume(consul *c)
{
	if (c->disc_failing && uv_is_active((uv_handle_t *)c->read_timer)) {
		uv_timer_stop(c->read_timer);
		on_read_timer(c->read_timer);
	}
}
