/* mirrorq.c - the haproxy sink's mirror lists: the services whose slots
 * changed how they render since the mirror last wrote them (HX_MQ_MOVED)
 * and those whose part is in the mirror write in flight (HX_MQ_PEND), so
 * that a change's in-place patch (mirror.c) and its completion
 * (pipeline.c) work in proportion to the services it touched, not to
 * every service.  Intrusive doubly linked lists: O(1) add and remove. */
#include "model.h"

void hx_mq_add(hx_model *m, int q, svc *v)
{
	struct svc_link *l = &v->mq[q];
	if (v->mq_on[q])
		return;
	v->mq_on[q] = true;
	l->prev = NULL;
	l->next = m->mqhead[q];
	if (l->next)
		l->next->mq[q].prev = v;
	m->mqhead[q] = v;
}

void hx_mq_del(hx_model *m, int q, svc *v)
{
	struct svc_link *l = &v->mq[q];
	if (!v->mq_on[q])
		return;
	if (l->prev)
		l->prev->mq[q].next = l->next;
	else
		m->mqhead[q] = l->next;
	if (l->next)
		l->next->mq[q].prev = l->prev;
	l->prev = l->next = NULL;
	v->mq_on[q] = false;
}

void hx_mq_clear(hx_model *m, int q)
{
	while (m->mqhead[q])
		hx_mq_del(m, q, m->mqhead[q]);
}

void hx_svc_moved(hx_model *m, svc *v)
{
	v->sgen++;
	hx_mq_add(m, HX_MQ_MOVED, v);
}
