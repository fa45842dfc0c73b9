/* addr.c - the haproxy sink's server addresses, interned (model.h, hx_ip):
 * a slot's address and its views of the server (what haproxy has, what
 * the installed and the pending file say, and in the model's table of the
 * runtime batch in flight what was sent) each hold a 4-byte handle into
 * one table of the distinct addresses instead of the 17-byte address: a
 * slot was 80 bytes instead of 128 (16,000 slots at 10,000 instances:
 * 2.05 -> 1.28 MB, plus 0.33 MB of table for 10,000 distinct addresses;
 * 64 bytes since the views are 8 bytes, 48 since the sent view is in the
 * batch's table: 0.77 MB).  Equal addresses have equal handles, so
 * comparing two is comparing handles.  Handle 0 is the all-zero IPv4
 * address, what a zeroed view holds.
 *
 * Nothing counts references.  hx_addr_gc (from hx_model_gc, where no
 * handle lives outside a slot or the batch table) marks the handles the
 * slots and the batch table of every registered model hold and frees the
 * others, once the table holds twice what was live after the last
 * collection (+64): O(1) amortised per address interned.  One table for
 * the plugin (one loop thread), owned by the registered models: it is
 * freed when the last one unregisters. */
#include "model.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

typedef struct raw_ip {
	uint8_t b[16];
	bool v6;
} raw_ip;

enum { A_USED = 1, A_MARK = 2 };

static struct {
	const regent_host *h;
	hx_model *models; /* registered (hx_model.anext) */
	raw_ip *ips;      /* by handle; ips[0] is the zero address */
	uint8_t *fl;      /* by handle: A_USED, A_MARK */
	uint32_t n, cap;  /* handles handed out so far (used or free), allocated */
	uint32_t *free;   /* free handles (a stack) */
	size_t nfree, freecap;
	uint32_t *tab;    /* open addressing: handle, 0 empty (0 is never in it) */
	size_t tabcap;
	size_t live;      /* used handles after the last collection */
} A;

static size_t ip_hash(const raw_ip *ip)
{
	uint64_t x = 1469598103934665603ull ^ ip->v6;
	for (size_t i = 0; i < sizeof(ip->b); i++)
		x = (x ^ ip->b[i]) * 1099511628211ull;
	return (size_t)(x ^ (x >> 29));
}

static bool ip_same(const raw_ip *a, const raw_ip *b)
{
	return a->v6 == b->v6 && memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

static size_t used(void)
{
	return A.n ? A.n - 1 - A.nfree : 0;
}

static void tab_put(uint32_t *t, size_t cap, uint32_t hd)
{
	size_t i = ip_hash(&A.ips[hd]) & (cap - 1);
	while (t[i])
		i = (i + 1) & (cap - 1);
	t[i] = hd;
}

static void tab_rebuild(size_t cap)
{
	uint32_t *t = A.h->xcalloc(cap, sizeof(*t));
	for (uint32_t hd = 1; hd < A.n; hd++)
		if (A.fl[hd] & A_USED)
			tab_put(t, cap, hd);
	free(A.tab);
	A.tab = t;
	A.tabcap = cap;
}

static uint32_t intern(const raw_ip *ip)
{
	static const raw_ip zero;
	if (ip_same(ip, &zero) || !A.h)
		return 0;
	if (A.tabcap) {
		for (size_t i = ip_hash(ip) & (A.tabcap - 1); A.tab[i]; i = (i + 1) & (A.tabcap - 1))
			if (ip_same(&A.ips[A.tab[i]], ip))
				return A.tab[i];
	}
	uint32_t hd;
	if (A.nfree) {
		hd = A.free[--A.nfree];
	} else {
		if (!A.n)
			A.n = 1; /* handle 0: the zero address, never stored */
		if (A.n >= A.cap) {
			A.cap = A.cap ? A.cap + A.cap / 2 : 256; /* by half: less left unused */
			A.ips = A.h->xrealloc(A.ips, A.cap * sizeof(*A.ips));
			A.fl = A.h->xrealloc(A.fl, A.cap * sizeof(*A.fl));
			memset(A.ips, 0, sizeof(*A.ips)); /* ips[0] */
			A.fl[0] = A_USED;
		}
		hd = A.n++;
	}
	A.ips[hd] = *ip;
	A.fl[hd] = A_USED;
	if (4 * (used() + 1) > 3 * A.tabcap) /* fills to 3/4 */
		tab_rebuild(A.tabcap ? 2 * A.tabcap : 512);
	else
		tab_put(A.tab, A.tabcap, hd);
	return hd;
}

bool hx_ip_parse(const char *text, hx_ip *ip)
{
	ip->h = 0;
	raw_ip r = {0};
	if (!text)
		return false;
	if (inet_pton(AF_INET, text, r.b) != 1) {
		r.v6 = true;
		if (inet_pton(AF_INET6, text, r.b) != 1)
			return false;
	}
	ip->h = intern(&r);
	return true;
}

const char *hx_ip_str(const hx_ip *ip, char *buf)
{
	static const raw_ip zero;
	const raw_ip *r = ip->h && ip->h < A.n ? &A.ips[ip->h] : &zero;
	if (!r->v6)
		return hx_ip4_str(r->b, buf);
	if (!inet_ntop(AF_INET6, r->b, buf, HX_ADDR_MAX))
		buf[0] = '\0';
	return buf;
}

void hx_addr_register(hx_model *m)
{
	if (!A.h)
		A.h = m->h;
	m->anext = A.models;
	A.models = m;
}

void hx_addr_unregister(hx_model *m)
{
	for (hx_model **pp = &A.models; *pp; pp = &(*pp)->anext)
		if (*pp == m) {
			*pp = m->anext;
			break;
		}
	m->anext = NULL;
	if (A.models)
		return;
	free(A.ips);
	free(A.fl);
	free(A.free);
	free(A.tab);
	memset(&A, 0, sizeof(A));
}

static void mark(hx_ip ip)
{
	if (ip.h < A.n)
		A.fl[ip.h] |= A_MARK;
}

void hx_addr_gc(bool force)
{
	if (!A.n || (!force && used() < 2 * A.live + 64))
		return;
	for (hx_model *m = A.models; m; m = m->anext) {
		for (svc *v = m->svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++) {
				const slot *sl = &v->slots[i];
				mark(sl->addr);
				mark(sl->ap.addr);
				mark(sl->file.addr);
				mark(sl->pend.addr);
			}
		for (size_t k = 0; k < m->sentcap; k++) /* the batch in flight's */
			if (m->sent[k].v)
				mark(m->sent[k].view.addr);
	}
	for (uint32_t hd = 1; hd < A.n; hd++) {
		if ((A.fl[hd] & (A_USED | A_MARK)) == A_USED) {
			A.fl[hd] = 0;
			if (A.nfree == A.freecap) {
				A.freecap = A.freecap ? 2 * A.freecap : 64;
				A.free = A.h->xrealloc(A.free, A.freecap * sizeof(*A.free));
			}
			A.free[A.nfree++] = hd;
		}
		A.fl[hd] &= (uint8_t)~A_MARK;
	}
	A.live = used();
	size_t cap = 512;
	while (3 * cap < 4 * (A.live + 1))
		cap *= 2;
	tab_rebuild(cap);
}

size_t hx_addr_count(void)
{
	return used();
}
