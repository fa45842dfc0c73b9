/* ports.c - the haproxy sink's port claims: each listen port's claimants
 * (services) in a list, explicit ports first, then by name, in a table by
 * port, so that a model update touches only the ports of the services it
 * computed (O(claimants of those ports)), never every service.  Which
 * claimant holds a port (the first; the others conflict) is settled by
 * model.c (port_settle), which owns the services. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

/* Ports: each port's claimants in a list, explicit ones first, then by
 * name; the first holds it, the others conflict, and the stats port is
 * taken.  A table by port, so that an update touches only the ports of
 * the services it computed (O(claimants of those ports)), never every
 * service. */
struct port_cell *hx_port_cell(hx_model *m, long port, bool add)
{
	if (add && 2 * (m->nports + 1) > m->portcap) {
		size_t cap = m->portcap ? 2 * m->portcap : 64;
		struct port_cell *t = m->h->xcalloc(cap, sizeof(*t));
		for (size_t i = 0; i < m->portcap; i++) {
			if (!m->ports[i].port)
				continue;
			size_t h = (m->ports[i].port * 2654435761u) & (cap - 1);
			while (t[h].port)
				h = (h + 1) & (cap - 1);
			t[h] = m->ports[i];
		}
		free(m->ports);
		m->ports = t;
		m->portcap = cap;
	}
	if (!m->portcap)
		return NULL;
	uint32_t key = (uint32_t)port;
	size_t h = (key * 2654435761u) & (m->portcap - 1);
	while (m->ports[h].port && m->ports[h].port != key)
		h = (h + 1) & (m->portcap - 1);
	if (!m->ports[h].port) {
		if (!add)
			return NULL;
		m->ports[h].port = key;
		m->nports++;
	}
	return &m->ports[h];
}

static bool claim_before(const svc *x, const svc *y)
{
	if (x->pclaim_expl != y->pclaim_expl)
		return x->pclaim_expl;
	return strcmp(x->name, y->name) < 0;
}

void hx_port_unclaim(hx_model *m, svc *v)
{
	if (!v->pclaim)
		return;
	struct port_cell *c = hx_port_cell(m, v->pclaim, false);
	for (svc **pp = c ? &c->head : NULL; pp && *pp; pp = &(*pp)->pnext)
		if (*pp == v) {
			*pp = v->pnext;
			break;
		}
	v->pnext = NULL;
	v->pclaim = 0;
}

void hx_port_claim(hx_model *m, svc *v, long port, bool expl)
{
	v->pclaim = port;
	v->pclaim_expl = expl;
	struct port_cell *c = hx_port_cell(m, port, true);
	svc **pp = &c->head;
	while (*pp && claim_before(*pp, v))
		pp = &(*pp)->pnext;
	v->pnext = *pp;
	*pp = v;
}
