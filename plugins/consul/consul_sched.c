/* consul_sched.c - the two queues of the Consul store's registration side
 * (consul_reg.c): the TTL passes by deadline, a min-heap on reg.pass_at
 * (c->pheap; reg.hidx is an entry's 1-based slot), so the check nearest
 * its TTL is passed first whatever the order the entries were made in;
 * and the work list (c->whead) of the entries that may need a register, a
 * deregister or to be freed, so a request's answer does not walk every
 * entry; and the demoted list, checks whose TTL ran out, passed only when
 * no live check's pass is due.  Also the count of acknowledged registrations (the gauge).
 *
 * Owns: the heap's array (freed by consul_reg_destroy) and the list links.
 */
#include "consul_int.h"

#include <stdlib.h>

/* ---- the passes: a min-heap on pass_at, so the check nearest its TTL
 * goes first whatever the order the entries were made in ---- */

static bool heap_less(const reg *a, const reg *b)
{
	return a->pass_at < b->pass_at;
}

static void heap_set(consul *c, size_t i, reg *r) /* i 0-based */
{
	c->pheap[i] = r;
	r->hidx = i + 1;
}

static void heap_up(consul *c, size_t i)
{
	reg *r = c->pheap[i];
	while (i > 0 && heap_less(r, c->pheap[(i - 1) / 2])) {
		heap_set(c, i, c->pheap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(c, i, r);
}

static void heap_down(consul *c, size_t i)
{
	reg *r = c->pheap[i];
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		const reg *best = r;
		if (l < c->pheap_n && heap_less(c->pheap[l], best))
			best = c->pheap[m = l];
		if (l + 1 < c->pheap_n && heap_less(c->pheap[l + 1], best))
			m = l + 1;
		if (m == i)
			break;
		heap_set(c, i, c->pheap[m]);
		i = m;
	}
	heap_set(c, i, r);
}

static void demoted_del(consul *c, reg *r)
{
	if (!r->demoted)
		return;
	r->demoted = false;
	if (r->dprev)
		r->dprev->dnext = r->dnext;
	else
		c->dhead = r->dnext;
	if (r->dnext)
		r->dnext->dprev = r->dprev;
	else
		c->dtail = r->dprev;
	r->dprev = r->dnext = NULL;
}

static void heap_del(consul *c, reg *r)
{
	if (!r->hidx)
		return;
	size_t i = r->hidx - 1;
	r->hidx = 0;
	reg *last = c->pheap[--c->pheap_n];
	if (i == c->pheap_n)
		return;
	c->pheap[i] = last;
	last->hidx = i + 1;
	heap_up(c, i);
	heap_down(c, last->hidx - 1);
}

void consul_pass_cancel(consul *c, reg *r)
{
	heap_del(c, r);
	demoted_del(c, r);
}

/* r's TTL ran out before its pass could go (the agent is slower than the
 * passes due): a late pass cannot keep it in ?passing but would take the
 * slot of a check still passing.  It waits, in the order it ran out, for a
 * moment when no live check's pass is due. */
void consul_pass_demote(consul *c, reg *r)
{
	heap_del(c, r);
	if (r->demoted)
		return;
	r->demoted = true;
	r->dnext = NULL;
	r->dprev = c->dtail;
	if (c->dtail)
		c->dtail->dnext = r;
	else
		c->dhead = r;
	c->dtail = r;
}

/* The next TTL pass of r is due at `at` (loop ms). */
void consul_pass_at(consul *c, reg *r, uint64_t at)
{
	demoted_del(c, r);
	if (r->hidx) {
		r->pass_at = at;
		heap_up(c, r->hidx - 1);
		heap_down(c, r->hidx - 1);
		return;
	}
	if (c->pheap_n == c->pheap_cap) {
		c->pheap_cap = c->pheap_cap ? 2 * c->pheap_cap : 64;
		c->pheap = c->h->xrealloc(c->pheap, c->pheap_cap * sizeof(*c->pheap));
	}
	r->pass_at = at;
	heap_set(c, c->pheap_n++, r);
	heap_up(c, c->pheap_n - 1);
}

/* Whether the agent holds r for us and its check needs passes. */
bool consul_pass_wanted(const reg *r)
{
	return (r->body && r->synced) || r->adopted;
}

void consul_set_synced(consul *c, reg *r, bool v)
{
	if (r->synced == v)
		return;
	r->synced = v;
	if (v) {
		c->n_synced++;
		r->synced_at = uv_now(c->h->loop(c->ctx));
	} else {
		c->n_synced--;
	}
}

/* ---- the work list: entries that may need a register, a deregister or
 * to be freed (pump looks at these only, not at every entry) ---- */

void consul_work_add(consul *c, reg *r)
{
	if (r->in_work)
		return;
	r->in_work = true;
	r->wnext = NULL;
	r->wprev = c->wtail;
	if (c->wtail)
		c->wtail->wnext = r;
	else
		c->whead = r;
	c->wtail = r;
}

void consul_work_del(consul *c, reg *r)
{
	if (!r->in_work)
		return;
	r->in_work = false;
	if (r->wprev)
		r->wprev->wnext = r->wnext;
	else
		c->whead = r->wnext;
	if (r->wnext)
		r->wnext->wprev = r->wprev;
	else
		c->wtail = r->wprev;
	r->wprev = r->wnext = NULL;
}

