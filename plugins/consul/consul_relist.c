/* consul_relist.c - the Consul store's registration side when the agent
 * lost services: a pass answered "unknown check" (the agent restarted
 * without its data, or reaped the service) registers that instance again,
 * and one listing of the agent (GET /v1/agent/services, at most one each
 * ttl/3) tells which others it lost: those acknowledged before the listing
 * was sent and absent from it.  Only they are registered again, with one
 * log line and one count for all.
 *
 * Owns: the relisting's request and timer use (relist_req, relist_timer,
 * relist_* in struct consul; created and freed by consul_reg.c).
 */
#include "consul_int.h"

#include <stdlib.h>

/* The agent no longer holds r: register it again (no pass until then). */
static void lost_one(consul *c, reg *r)
{
	consul_pass_cancel(c, r);
	r->known = false;
	if (r->adopted) {
		r->adopted = false; /* nothing to keep: gone */
	} else if (r->body) {
		consul_set_synced(c, r, false);
		r->rejected = false;
		c->relist_n++;
	}
	consul_work_add(c, r);
}

static void relist_issue(consul *c);

/* The line (and the counter) for the instances registered again since the
 * last one, once no listing is left to find more. */
static void report_lost(consul *c)
{
	if (c->relist_n) {
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "the Consul agent at %s no longer knows the check of %s (it restarted, or "
		          "reaped the service): registering %zu instance%s again",
		          c->shown, c->relist_why ? c->relist_why : "?", c->relist_n,
		          c->relist_n == 1 ? "" : "s");
		if (c->m_rereg)
			c->h->metric_add(c->m_rereg, 1);
		c->relist_n = 0;
	}
	free(c->relist_why);
	c->relist_why = NULL;
}

/* The agent's services after a pass was answered "unknown check": those
 * acknowledged before the listing was sent and absent from it are lost
 * (the agent restarted, or reaped them).  Only they are registered again:
 * a check that expired and was reaped costs one register, not one per
 * instance. */
static void on_relist_done(void *arg, const regent_http_result *res)
{
	consul *c = arg;
	c->relist_req = NULL;
	consul_agent_services as;
	char why[256] = "", what[200];
	consul_describe(c, res, what, sizeof(what));
	bool ok = !res->error && res->status == 200 &&
	          consul_parse_agent_services(c->h, res->body, res->body_len, c->h->node(c->ctx),
	                                      &as, why, sizeof(why)) == 0;
	if (!ok) {
		consul_count(c, c->m_err, M_LIST);
		c->h->log(c->ctx, REGENT_LOG_DEBUG,
		          "cannot list the services of the Consul agent at %s: %s%s; only the "
		          "instances whose pass was refused are registered again",
		          c->shown, what, why);
	} else {
		c->relist_gen++;
		for (size_t i = 0; i < as.n; i++) {
			reg *r = c->h->map_get(c->regs, as.v[i].cid);
			if (r)
				r->seen = c->relist_gen;
		}
		consul_agent_services_free(&as);
		for (reg *r = c->head; r; r = r->next)
			if (r->seen != c->relist_gen && r->known && !r->req && consul_pass_wanted(r) &&
			    (r->adopted || r->synced_at < c->relist_sent))
				lost_one(c, r);
	}
	if (c->relist_again) {
		/* More checks were refused meanwhile: one more listing, then one
		 * line for all. */
		c->relist_again = false;
		relist_issue(c);
	}
	if (!c->relist_req)
		report_lost(c);
	consul_registered_gauge(c);
	consul_pump(c);
}

static void on_relist_timer(uv_timer_t *t)
{
	relist_issue(t->data);
}

/* At most one listing each ttl/3 (a listing of thousands of services is
 * heavy for the agent): an instance lost meanwhile is registered again at
 * once, the listing that finds the others (and the log line) waits. */
static void relist_issue(consul *c)
{
	if (c->relist_req) {
		c->relist_again = true;
		return;
	}
	uint64_t now = uv_now(c->h->loop(c->ctx));
	if (c->relist_gen && now < c->relist_sent + consul_pass_every(c)) {
		if (!uv_is_active((uv_handle_t *)c->relist_timer))
			uv_timer_start(c->relist_timer, on_relist_timer,
			               c->relist_sent + consul_pass_every(c) - now, 0);
		return;
	}
	int err = 0;
	c->relist_sent = now;
	c->relist_req = consul_send(c, "GET", "/v1/agent/services", NULL, c->timeout_ms,
	                            on_relist_done, c, &err);
	if (c->relist_req)
		consul_count(c, c->m_req, M_LIST);
}

/* A pass of r was answered "unknown check". */
void consul_lost_check(consul *c, reg *r)
{
	if (!c->relist_why)
		c->relist_why = c->h->xstrdup(r->id);
	lost_one(c, r);
	relist_issue(c);
	if (!c->relist_req && c->relist_n && !uv_is_active((uv_handle_t *)c->relist_timer))
		report_lost(c); /* no listing possible: say so now */
	consul_registered_gauge(c);
	consul_update_health(c);
}
