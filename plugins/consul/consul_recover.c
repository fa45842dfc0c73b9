/* consul_recover.c - the Consul store's recovery check: while a side waits
 * out a retry's backoff (the registration side up to ttl/3, discovery up
 * to 10 s), one cheap request a second (GET /v1/status/leader, which needs
 * no ACL) tells when the agent answers again after it was unreachable;
 * then every waiting retry goes at once, so both sides resume within about
 * a second of the agent's return whatever the outage length (the design's
 * rule for a registry that fails), not at the end of their backoff.  The
 * check runs for as long as a side has failed and not worked since (a
 * retry in flight included: the check's phase and what it saw are kept).
 *
 * A return also opens discovery's settle (consul_disc_settle): an agent
 * back after a ttl restores its checks critical until their owners pass
 * them again, so for a moment a read that would remove instances waits.
 *
 * Only a return resumes: the check must have failed (no answer: refused,
 * reset, timed out) since the side began to wait, then been answered.  An
 * agent that answers all along (its failures are HTTP errors: an ACL
 * refusal, a 500) keeps each side's own backoff.  The timer runs only
 * while something waits (consul_reg_waiting, consul_disc_waiting).
 *
 * Owns: recover_timer, recover_req (cancelled at stop and destroy).
 */
#include "consul_int.h"

/* The check's period, and how long one may take before it counts as no
 * answer (a frozen agent accepts connections and answers nothing). */
#define RECOVER_EVERY_MS 1000u
#define RECOVER_TIMEOUT_MS 900u

static bool waiting(consul *c)
{
	return !c->stopping && (consul_reg_waiting(c) || consul_disc_waiting(c));
}

static void on_recover_done(void *arg, const regent_http_result *res)
{
	consul *c = arg;
	c->recover_req = NULL;
	if (res->error) {
		if (!c->recover_away)
			c->h->log(c->ctx, REGENT_LOG_DEBUG, "recovery check: no answer from %s",
			          c->shown);
		c->recover_away = true;
		return;
	}
	if (!c->recover_away)
		return; /* it answers all along: the sides keep their own backoff */
	c->recover_away = false;
	if (c->watching)
		consul_disc_settle(c);
	if (!waiting(c))
		return;
	c->h->log(c->ctx, REGENT_LOG_INFO,
	          "the Consul agent at %s answers again: the waiting retries go now", c->shown);
	consul_reg_resume(c);
	consul_disc_resume(c);
}

static void on_recover_timer(uv_timer_t *t)
{
	consul *c = t->data;
	if (!waiting(c)) {
		uv_timer_stop(c->recover_timer);
		c->recover_away = false;
		return;
	}
	if (c->recover_req)
		return; /* still out: its timeout ends it before the next tick */
	int err = 0;
	c->recover_req = consul_send(c, "GET", "/v1/status/leader", NULL, RECOVER_TIMEOUT_MS,
	                             on_recover_done, c, &err);
	if (!c->recover_req)
		c->recover_away = true; /* cannot even send: the next tick tries again */
}

void consul_recover_want(consul *c)
{
	if (c->stopping || !c->recover_timer || uv_is_active((uv_handle_t *)c->recover_timer))
		return;
	c->recover_away = false;
	uv_timer_start(c->recover_timer, on_recover_timer, RECOVER_EVERY_MS, RECOVER_EVERY_MS);
}

void consul_recover_stop(consul *c)
{
	if (c->recover_req)
		c->h->http_cancel(c->recover_req);
	c->recover_req = NULL;
	c->h->timer_close(&c->recover_timer);
}
