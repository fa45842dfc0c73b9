/* model.c - the haproxy sink's model: services (a sorted list plus a table
 * by name), their server slots, forced proxy ids, and the step from a
 * catalog snapshot to what each service wants.  Work is proportional to
 * what changed: only the services named by the core's `changed` list are
 * recomputed (plus those whose port assignment flips), and within one
 * only its changed instances (slots.c: the routed set, the port counts
 * and the slots are kept per change), proxy ids come from a free stack,
 * slot arrays grow geometrically with headroom.
 *
 * It also owns two availability rules: a service whose instances all left
 * keeps its listen for [service] empty_grace (haproxy answers 503 / closes
 * meanwhile, returning instances come back over the runtime API), and a
 * service whose listener cannot be bound, or whose section haproxy
 * refused, is left out of the configuration and tried again later while
 * every other service goes on; and a third: the listeners and slots of the
 * file stay within the open-file limit haproxy inherits (a service that
 * would outgrow it keeps the slots it has, reported), or haproxy would
 * refuse every configuration while it lasts. */
#include "model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* 1,000 services at 10,000 instances: 688-byte malloc chunks (784 when the
 * fields were in the order of their topics, with padding between). */
_Static_assert(sizeof(svc) == 576, "a service is 576 bytes");

/* ------------------------------------------------------------------ */
/* Settings                                                           */
/* ------------------------------------------------------------------ */

static uint64_t svc_dur(hx_model *m, const char *name, const char *key, uint64_t dflt)
{
	return m->h->service_is_set(m->ctx, name, key) ? m->h->service_duration_ms(m->ctx, name, key)
	                                               : dflt;
}

/* ------------------------------------------------------------------ */
/* Warnings                                                           */
/* ------------------------------------------------------------------ */

void hx_svc_warn(hx_model *m, svc *v, const char *fmt, ...)
{
	char msg[520];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg + 1, sizeof(msg) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	msg[0] = '\n';
	size_t len = strlen(msg);
	msg[len] = '\n';
	msg[len + 1] = '\0';
	if (!v->warned || !strstr(v->warned, msg))
		m->h->log(m->ctx, REGENT_LOG_WARN, "%.*s", (int)(len - 1), msg + 1);
	if (!v->warn_now.len)
		hx_buf_puts(&v->warn_now, "\n");
	hx_buf_puts(&v->warn_now, msg + 1);
}

static void warn_begin(svc *v)
{
	hx_buf_free(&v->warn_now);
}

static void warn_end(svc *v)
{
	free(v->warned);
	v->warned = v->warn_now.len ? hx_buf_take(&v->warn_now) : NULL;
	hx_buf_free(&v->warn_now);
}

/* ------------------------------------------------------------------ */
/* Services, the name table and proxy ids                             */
/* ------------------------------------------------------------------ */

void hx_model_init(hx_model *m, regent_ctx *ctx, const regent_host *h)
{
	memset(m, 0, sizeof(*m));
	m->ctx = ctx;
	m->h = h;
	m->next_id = HX_FIRST_ID;
	m->bind_check = true;
	m->mq_all = true; /* no mirror layout yet */
	snprintf(m->bind_addr, sizeof(m->bind_addr), "*");
	/* haproxy inherits the agent's limits and raises its soft limit up
	 * to the hard one as it needs */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
		m->fd_limit = (uint64_t)rl.rlim_max;
	long nc = sysconf(_SC_NPROCESSORS_ONLN);
	m->ncpu = nc > 0 ? (nc > 64 ? 64 : (unsigned)nc) : 64; /* haproxy's threads */
	m->no_opts = hx_cstr_new(h, "");
	hx_addr_register(m);
}

size_t hx_fd_budget(uint64_t limit, unsigned ncpu, int64_t maxconn)
{
	if (!limit)
		return SIZE_MAX;
	/* a global maxconn: haproxy counts 2 descriptors per connection */
	uint64_t keep = HX_FD_RESERVE + 3ull * ncpu + limit * HX_FD_MARGIN_PCT / 100 +
	                2ull * (uint64_t)(maxconn > 0 ? maxconn : 0);
	return limit > keep ? (size_t)(limit - keep) : 0;
}

size_t hx_model_fd_budget(const hx_model *m)
{
	return hx_fd_budget(m->fd_limit, m->ncpu, m->maxconn);
}

static void shape_clear(shape *p)
{
	hx_cstr_put(p->listen);
	hx_cstr_put(p->srvopts);
	memset(p, 0, sizeof(*p));
}

/* *t becomes a reference to other's text when both say the same. */
static void text_share(char **t, char *other)
{
	if (*t && other && *t != other && strcmp(*t, other) == 0) {
		hx_cstr_put(*t);
		*t = hx_cstr_ref(other);
	}
}

static size_t name_hash(const char *s)
{
	uint64_t x = 1469598103934665603ull;
	for (; *s; s++)
		x = (x ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)x;
}

static void tab_put(svc **tab, size_t cap, svc *v)
{
	size_t i = name_hash(v->name) & (cap - 1);
	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = v;
}

static void tab_rebuild(hx_model *m, size_t cap)
{
	free(m->tab);
	m->tab = m->h->xcalloc(cap, sizeof(*m->tab));
	m->tabcap = cap;
	for (svc *v = m->svcs; v; v = v->next)
		tab_put(m->tab, cap, v);
}

svc *hx_svc_find(hx_model *m, const char *name)
{
	if (!m->tabcap)
		return NULL;
	for (size_t i = name_hash(name) & (m->tabcap - 1); m->tab[i]; i = (i + 1) & (m->tabcap - 1))
		if (strcmp(m->tab[i]->name, name) == 0)
			return m->tab[i];
	return NULL;
}

static bool id_used(const hx_model *m, unsigned id)
{
	size_t k = id - HX_FIRST_ID;
	return id >= HX_FIRST_ID && k / 8 < m->idcap && (m->idused[k / 8] >> (k % 8)) & 1;
}

static void id_mark(hx_model *m, unsigned id, bool used)
{
	size_t k = id - HX_FIRST_ID;
	if (k / 8 >= m->idcap) {
		size_t cap = m->idcap ? m->idcap : 64;
		while (cap <= k / 8)
			cap *= 2;
		uint8_t *p = m->h->xrealloc(m->idused, cap);
		memset(p + m->idcap, 0, cap - m->idcap);
		m->idused = p;
		m->idcap = cap;
	}
	if (used)
		m->idused[k / 8] |= (uint8_t)(1u << (k % 8));
	else
		m->idused[k / 8] &= (uint8_t)~(1u << (k % 8));
}

/* O(1) amortised: a released id first, else the next never used one. */
static unsigned id_alloc(hx_model *m)
{
	while (m->nidfree) {
		unsigned id = m->idfree[--m->nidfree];
		if (!id_used(m, id)) {
			id_mark(m, id, true);
			return id;
		}
	}
	while (id_used(m, m->next_id))
		m->next_id++;
	id_mark(m, m->next_id, true);
	return m->next_id++;
}

static void id_release(hx_model *m, unsigned id)
{
	if (!id_used(m, id))
		return;
	id_mark(m, id, false);
	if (m->nidfree == m->idfreecap) {
		m->idfreecap = m->idfreecap ? 2 * m->idfreecap : 64;
		unsigned *p = m->h->xrealloc(m->idfree, m->idfreecap * sizeof(*p));
		m->idfree = p;
	}
	m->idfree[m->nidfree++] = id;
}

bool hx_svc_set_id(hx_model *m, svc *v, unsigned id)
{
	if (id < HX_FIRST_ID || id == v->pxid || id_used(m, id) || id - HX_FIRST_ID > 100000000u)
		return id == v->pxid;
	id_release(m, v->pxid);
	id_mark(m, id, true);
	v->pxid = id;
	return true;
}

svc *hx_svc_get(hx_model *m, const char *name)
{
	svc *v = hx_svc_find(m, name);
	if (v)
		return v;
	v = m->h->xcalloc(1, sizeof(*v));
	v->h = m->h;
	v->warn_now.h = m->h;
	v->name = m->h->xstrdup(name);
	v->pxid = id_alloc(m);
	v->slot_max = HX_MAX_SLOTS;
	v->next = m->svcs; /* sorted again by hx_model_sort() */
	m->svcs = v;
	m->unsorted = true;
	m->count++;
	if (2 * m->count > m->tabcap)
		tab_rebuild(m, m->tabcap ? 2 * m->tabcap : 64);
	else
		tab_put(m->tab, m->tabcap, v);
	return v;
}

/* Merge sort of the list by name. */
static svc *merge_sort(svc *l, size_t n)
{
	if (n < 2)
		return l;
	svc *mid = l;
	for (size_t i = 1; i < n / 2; i++)
		mid = mid->next;
	svc *r = mid->next;
	mid->next = NULL;
	l = merge_sort(l, n / 2);
	r = merge_sort(r, n - n / 2);
	svc head = {0}, *t = &head;
	while (l && r) {
		if (strcmp(l->name, r->name) <= 0) {
			t->next = l;
			l = l->next;
		} else {
			t->next = r;
			r = r->next;
		}
		t = t->next;
	}
	t->next = l ? l : r;
	return head.next;
}

size_t hx_model_recovered(hx_model *m)
{
	size_t n = 0;
	for (svc *v = m->svcs; v; v = v->next, n++) {
		v->recovered = true;
		hx_svc_shape_sync(m, v);
	}
	return n;
}

void hx_model_sort(hx_model *m)
{
	if (!m->unsorted)
		return;
	m->svcs = merge_sort(m->svcs, m->count);
	m->unsorted = false;
}

static void set_grace(hx_model *m, svc *v, bool on);

static void svc_free(hx_model *m, svc *v)
{
	id_release(m, v->pxid);
	hx_svc_unqueue(m, v);
	hx_mq_del(m, HX_MQ_MOVED, v);
	hx_mq_del(m, HX_MQ_PEND, v);
	hx_port_unclaim(m, v);
	set_grace(m, v, false);
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].st == ST_DRAIN)
			m->ndrain--;
	if (v->sdiff)
		m->nsdiff--;
	m->fd_used -= v->fdn;
	if (v->capped) {
		m->ncapped--;
		m->excl_gen++;
	}
	free(v->capped);
	shape_clear(&v->want);
	shape_clear(&v->cand);
	shape_clear(&v->run);
	hx_plan_free(v);
	hx_svc_slots_free(v);
	free(v->mloff);
	free(v->cmloff);
	free(v->warned);
	free(v->excluded);
	hx_buf_free(&v->warn_now);
	free(v->name);
	free(v);
}

static bool collectible(const hx_model *m, const svc *v)
{
	return !v->in_cat && !v->want.listen && !v->cand.listen && !v->run.listen && !v->todo &&
	       !(v->recovered && !m->grace_over);
}

void hx_model_gc(hx_model *m)
{
	size_t dropped = 0;
	for (svc **pp = &m->svcs; *pp;) {
		svc *v = *pp;
		if (collectible(m, v)) {
			*pp = v->next;
			if (v->excluded) {
				m->nexcluded--;
				m->excl_gen++;
			}
			svc_free(m, v);
			m->count--;
			dropped++;
		} else {
			pp = &v->next;
		}
	}
	if (dropped)
		tab_rebuild(m, m->tabcap);
	hx_addr_gc(false);
}

void hx_model_free(hx_model *m)
{
	while (m->svcs) {
		svc *v = m->svcs;
		m->svcs = v->next;
		svc_free(m, v);
	}
	for (size_t i = 0; i < m->ndropq; i++)
		free(m->dropq[i]);
	free(m->dropq);
	free(m->tab);
	free(m->ports);
	free(m->todo);
	free(m->idused);
	free(m->idfree);
	free(m->sent);
	hx_cstr_put(m->no_opts); /* freed here unless a shape outlives the model */
	hx_addr_unregister(m);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ */
/* Snapshot -> model                                                  */
/* ------------------------------------------------------------------ */

/* Builds the shape a service wants; false (with a warning) when its
 * settings cannot be rendered. */
static bool build_shape(hx_model *m, svc *v, long port, shape *out)
{
	svc_settings ss;
	char why[512];
	if (hx_read_settings(m->ctx, m->h, v->name, &ss, why, sizeof(why)) < 0) {
		hx_svc_warn(m, v, "service %s is not routed: %s", v->name, why);
		return false;
	}
	if (!hx_format_bind(m->bind_addr, (unsigned)port, ss.bind, sizeof(ss.bind))) {
		hx_buf_free(&ss.srvopts);
		return false;
	}
	ss.c.bind = ss.bind;
	ss.c.id = v->pxid;
	if (ss.c.retries < 0)
		ss.c.retries = m->retries_default;
	ss.c.t_connect = svc_dur(m, v->name, "timeout_connect", m->t_connect);
	ss.c.t_client = svc_dur(m, v->name, "timeout_client", m->t_client);
	ss.c.t_server = svc_dur(m, v->name, "timeout_server", m->t_server);
	ss.c.t_check = svc_dur(m, v->name, "timeout_check", m->t_check);
	uint64_t inter = svc_dur(m, v->name, "check_interval", m->inter);
	ss.c.state_global = m->state_global;
	ss.c.state_file = m->state_file;
	char t[32];
	hx_fmt_ms(t, sizeof(t), inter);
	/* Every server of the section has the same options: the listen's
	 * default-server line, not each server line (render.c). */
	hx_buf o = {.h = m->h};
	hx_buf_printf(&o, " check inter %s%s", t, hx_buf_str(&ss.srvopts));
	ss.c.server_defaults = hx_buf_str(&o);
	char *listen = hx_render_listen(m->h, &ss.c);
	out->listen = hx_cstr_new(m->h, listen); /* counted, to its size */
	free(listen);
	hx_buf_free(&o);
	out->srvopts = hx_cstr_ref(m->no_opts);
	out->nslots = (size_t)(ss.slots > 0 ? ss.slots : m->slots_default);
	out->port = (uint16_t)port;
	out->checked = ss.c.check_path != NULL;
	out->ssl = ss.opts.ssl;
	out->weight = ss.opts.weight;
	hx_buf_free(&ss.srvopts);
	return true;
}

/* Effective listen port: [service] port, else the routed instances'
 * service_port (the most common one; ties: the lowest), else their meta
 * "port" (the seed's /port key; the most common likewise).  O(1): the
 * counts are kept per change (slots.c). */
static long pick_port(hx_model *m, svc *v, bool *explicit_port)
{
	*explicit_port = false;
	if (m->h->service_is_set(m->ctx, v->name, "port")) {
		*explicit_port = true;
		return (long)m->h->service_int(m->ctx, v->name, "port");
	}
	if (v->sport.distinct > 1)
		hx_svc_warn(m, v,
		            "service %s: instances disagree on service_port; listening on %ld (the most "
		            "common); set [service %s] port to choose",
		            v->name, v->sport.best, v->name);
	return v->sport.best ? v->sport.best : v->mport.best;
}

static void set_grace(hx_model *m, svc *v, bool on)
{
	if (v->in_grace != on)
		m->ngrace += on ? 1 : (size_t)-1;
	v->in_grace = on;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Step 1 of a service: its instances (from prev's list to cat's, only
 * what changed unless `full`) and its port (warnings restart). */
static void compute(hx_model *m, const regent_catalog *prev, const regent_catalog *cat,
                    const char *const *names, size_t nnames, svc *v, bool full)
{
	const regent_host *h = m->h;
	uint64_t now = h->now_ms();
	warn_begin(v);
	v->todo = true;
	if (m->ntodo == m->todocap) {
		m->todocap = m->todocap ? 2 * m->todocap : 16;
		m->todo = m->h->xrealloc(m->todo, m->todocap * sizeof(*m->todo));
	}
	m->todo[m->ntodo++] = v;
	v->plan = m->h->xcalloc(1, sizeof(*v->plan));
	v->plan->h = m->h;
	const char *key = v->name;
	bool listed = cat && bsearch(&key, names, nnames, sizeof(*names), name_cmp) != NULL;
	const regent_instance *const *insts = NULL, *const *old = NULL;
	size_t k = listed ? h->catalog_instances(cat, v->name, &insts) : 0;
	size_t nold = !full && prev && v->synced ? h->catalog_instances(prev, v->name, &old) : 0;
	hx_plan_compute(m, v, old, nold, insts, k, full);
	v->in_cat = listed;
	v->has_port = false;
	set_grace(m, v, false);
	if (listed && strcmp(v->name, HX_STATS_PROXY) == 0) {
		hx_svc_warn(m, v, "service %s is not routed: the name is taken by the stats listener",
		            v->name);
		return;
	}
	if (v->nvalid > v->nin)
		hx_svc_warn(m, v,
		            "service %s: %u instances over the limit of %d per service are not routed "
		            "(the first %d by instance id are)",
		            v->name, (unsigned)(v->nvalid - v->nin), HX_MAX_INSTANCES, HX_MAX_INSTANCES);
	if (v->nin == 0 && (v->want.listen || v->run.listen || v->ho_listen) && v->port > 0) {
		/* Briefly empty?  Its listen stays for the grace period: haproxy
		 * answers 503 (http) or closes (tcp) meanwhile, and returning
		 * instances get their slots over the runtime API. */
		uint64_t grace = svc_dur(m, v->name, "empty_grace", m->empty_grace);
		if (!v->empty_since)
			v->empty_since = now;
		if (grace && now < v->empty_since + grace) {
			set_grace(m, v, true);
			v->grace_until = v->empty_since + grace;
			v->has_port = true; /* the port it had */
			return;
		}
	} else if (v->nin) {
		v->empty_since = 0;
	}
	v->ho_listen = false; /* carried over for the grace only (handover.c hx_ho_carry) */
	if (!listed)
		return;
	bool expl;
	long port = pick_port(m, v, &expl);
	if (!port) {
		hx_svc_warn(m, v,
		            "service %s is not routed: no port (set [service %s] port, or register "
		            "instances with a service_port)",
		            v->name, v->name);
		v->port = 0;
		return;
	}
	v->port = port;
	v->explicit_port = expl;
	v->has_port = true;
}

/* Every claimant of a port: conflict unless first (or the stats port);
 * one whose outcome flips is computed again (finalized below). */
static void port_settle(hx_model *m, const regent_catalog *cat, const char *const *names,
                        size_t nnames, long port)
{
	struct port_cell *c = hx_port_cell(m, port, false);
	for (svc *v = c ? c->head : NULL; v; v = v->pnext) {
		bool conflict = v != c->head || (m->stats_on && port == m->stats_port);
		if (conflict != v->conflict) {
			v->conflict = conflict;
			if (!v->todo) /* unchanged: cat is its previous catalog too */
				compute(m, cat, cat, names, nnames, v, false);
		}
	}
}

static void resolve_ports(hx_model *m, const regent_catalog *cat, const char *const *names,
                          size_t nnames)
{
	size_t n0 = m->ntodo;
	long *touched = m->h->xcalloc(2 * n0 + 1, sizeof(*touched));
	size_t nt = 0;
	for (size_t k = 0; k < n0; k++) {
		svc *v = m->todo[k];
		long p = v->has_port ? v->port : 0;
		if (p != v->pclaim || (p && v->explicit_port != v->pclaim_expl)) {
			if (v->pclaim)
				touched[nt++] = v->pclaim;
			hx_port_unclaim(m, v);
			if (p)
				hx_port_claim(m, v, p, v->explicit_port);
		}
		if (p)
			touched[nt++] = p;
		else
			v->conflict = false;
	}
	for (size_t k = 0; k < nt; k++)
		port_settle(m, cat, names, nnames, touched[k]);
	free(touched);
}

static void set_excluded(hx_model *m, svc *v, const char *why, uint64_t now)
{
	if (!v->excluded) {
		m->nexcluded++;
		m->excl_gen++;
	} else if (strcmp(v->excluded, why) != 0) {
		m->excl_gen++;
	}
	free(v->excluded);
	v->excluded = m->h->xstrdup(why);
	uint64_t d = HX_EXCLUDE_RETRY_MS;
	for (unsigned i = 0; i < v->nexcl && d < HX_EXCLUDE_RETRY_MAX_MS; i++)
		d *= 2;
	if (d > HX_EXCLUDE_RETRY_MAX_MS)
		d = HX_EXCLUDE_RETRY_MAX_MS;
	v->nexcl++;
	v->retry_at = now + d;
}

static void clear_excluded(hx_model *m, svc *v)
{
	if (!v->excluded)
		return;
	free(v->excluded);
	v->excluded = NULL;
	m->nexcluded--;
	m->excl_gen++;
}

/* An excluded service that haproxy runs keeps the section it runs (its
 * instances still change over the runtime API); a new one stays out. */
static void keep_running(svc *v)
{
	shape_clear(&v->want);
	if (!v->run.listen)
		return;
	v->want.listen = hx_cstr_ref(v->run.listen);
	v->want.srvopts = hx_cstr_ref(v->run.srvopts);
	v->want.nslots = v->run.nslots;
	v->want.port = v->run.port;
	v->want.checked = v->run.checked;
	v->want.ssl = v->run.ssl;
	v->want.weight = v->run.weight;
}

/* The port of a new listener (or a listener that moves) must be free as
 * haproxy binds it, or the whole reload fails. */
static bool bind_ok(hx_model *m, svc *v, const shape *want, uint64_t now)
{
	if (v->excluded && now < v->retry_at)
		return false; /* not yet: the reason stays */
	if (!m->bind_check || v->recovered || (v->run.listen && v->run.port == want->port)) {
		clear_excluded(m, v);
		return true;
	}
	int rc = hx_bind_test(strcmp(m->bind_addr, "*") == 0 ? NULL : m->bind_addr, want->port);
	if (rc < 0) {
		char why[300];
		snprintf(why, sizeof(why), "service %s is not routed: its listener %s:%u cannot be bound "
		         "(%s); retried later",
		         v->name, m->bind_addr, (unsigned)want->port, strerror(-rc));
		set_excluded(m, v, why, now);
		return false;
	}
	if (v->excluded && strstr(v->excluded, "cannot be bound")) {
		m->h->log(m->ctx, REGENT_LOG_INFO, "service %s: port %u can be bound again; included",
		          v->name, (unsigned)want->port);
		v->nexcl = 0;
	}
	clear_excluded(m, v);
	return true;
}

/* A service that wants `wanted` slots (0: no more than it has) and holds
 * fewer for haproxy's open-file limit is reported: once in the log while
 * it lasts, in the /healthz note while it lasts. */
static void set_capped(hx_model *m, svc *v, size_t wanted)
{
	if (!wanted) {
		if (v->capped) {
			m->h->log(m->ctx, REGENT_LOG_INFO,
			          "service %s: its %zu server slots fit haproxy's open-file limit again",
			          v->name, v->want.nslots);
			free(v->capped);
			v->capped = NULL;
			m->ncapped--;
			m->excl_gen++;
		}
		return;
	}
	char why[400];
	snprintf(why, sizeof(why),
	         "service %s: server slots capped at %zu of %zu wanted: haproxy's open-file "
	         "limit is %llu (%s at most %zu, the other services hold %zu)",
	         v->name, v->want.nslots, wanted, (unsigned long long)m->fd_limit,
	         m->fd_loose ? "no strict-limits: listeners" : "listeners + slots",
	         hx_model_fd_budget(m), m->fd_used - v->fdn);
	/* the note keeps the first figures; a new line only when the cap moves */
	if (!v->capped || v->capped_at != v->want.nslots) {
		v->capped_at = v->want.nslots;
		if (!v->capped)
			m->ncapped++;
		free(v->capped);
		v->capped = m->h->xstrdup(why);
		m->excl_gen++;
		m->h->log(m->ctx, REGENT_LOG_WARN, "%s", why);
	}
}

/* The service's section goes at the next reload (the empty grace, if any,
 * is over): its listener may close now.  Not while the startup grace
 * keeps an earlier run's services. */
void hx_model_drop_queue(hx_model *m, svc *v)
{
	if (!v->run.listen || v->want.listen || v->shut || v->dropq ||
	    (v->recovered && !m->grace_over))
		return;
	if (m->ndropq == m->dropqcap) {
		m->dropqcap = m->dropqcap ? 2 * m->dropqcap : 8;
		m->dropq = m->h->xrealloc(m->dropq, m->dropqcap * sizeof(*m->dropq));
	}
	m->dropq[m->ndropq++] = m->h->xstrdup(v->name);
	v->dropq = true;
}

char **hx_model_drops_take(hx_model *m, size_t *n)
{
	char **q = m->dropq;
	*n = m->ndropq;
	for (size_t i = 0; i < m->ndropq; i++) {
		svc *v = hx_svc_find(m, q[i]);
		if (v)
			v->dropq = false;
	}
	m->dropq = NULL;
	m->ndropq = m->dropqcap = 0;
	return q;
}

void hx_model_drops_reset(hx_model *m)
{
	for (svc *v = m->svcs; v; v = v->next) {
		if (v->shut) {
			v->shut = false;
			hx_svc_shape_sync(m, v);
		}
		hx_model_drop_queue(m, v);
	}
}

/* Step 2 of a service: what it wants, and its slots. */
static void finalize(hx_model *m, svc *v)
{
	uint64_t now = m->h->now_ms();
	bool ok = v->has_port;
	if (ok && v->conflict) {
		if (m->stats_on && v->port == m->stats_port)
			hx_svc_warn(m, v, "service %s is not routed: port %ld is the stats listener's",
			            v->name, v->port);
		else
			hx_svc_warn(m, v, "service %s is not routed: another service claims port %ld",
			            v->name, v->port);
		ok = false;
	}
	shape want = {0};
	if (ok)
		ok = build_shape(m, v, v->port, &want);
	if (ok && !bind_ok(m, v, &want, now)) {
		hx_svc_warn(m, v, "%s", v->excluded);
		shape_clear(&want);
		keep_running(v);
		if (v->want.listen) {
			want = v->want; /* the running section, with the latest instances */
			memset(&v->want, 0, sizeof(v->want));
		} else {
			ok = false;
		}
	}
	if (!ok && !(v->excluded && v->has_port))
		clear_excluded(m, v);
	size_t wanted = 0;
	if (ok) {
		/* haproxy's descriptors: what the others' listeners and slots
		 * leave.  Growth keeps a tenth of the budget for other services
		 * (a new one still gets its configured slots); never fewer slots
		 * than it has (they do not shrink). */
		size_t budget = hx_model_fd_budget(m), others = m->fd_used - v->fdn;
		size_t room = budget > others + 1 ? budget - others - 1 : 0;
		size_t grow = room > budget / 10 ? room - budget / 10 : 0;
		if (grow < want.nslots) /* its configured slots, if they fit */
			grow = want.nslots < room ? want.nslots : room;
		if (m->fd_loose) /* no strict-limits: only its listener must fit */
			grow = others < budget ? HX_MAX_SLOTS : 0;
		v->slot_max = grow < HX_MAX_SLOTS ? grow : HX_MAX_SLOTS;
		if (v->slot_max < v->nslots)
			v->slot_max = v->nslots;
		v->noslot = 0;
		hx_plan_apply(m, v);
		/* Slots never shrink while the service lives.  When the instances
		 * outgrow them they grow in one step, geometrically with
		 * headroom: a burst of joining instances costs one reload, a
		 * steady climb a logarithmic number. */
		size_t step = want.nslots;
		size_t need = v->want.listen ? v->want.nslots : 0;
		if (v->run.listen && v->run.nslots > need)
			need = v->run.nslots;
		if (want.nslots > need)
			need = want.nslots;
		while (v->hi && v->slots[v->hi - 1].st == ST_FREE) /* amortised O(1) */
			v->hi--;
		size_t used = v->hi;
		if (need < used) {
			size_t g = used + used / 2 > 2 * need ? used + used / 2 : 2 * need;
			need = (g + step - 1) / step * step;
			if (need > HX_MAX_SLOTS)
				need = HX_MAX_SLOTS > used ? HX_MAX_SLOTS : used;
		}
		wanted = need + v->noslot;
		if (need > v->slot_max)
			need = v->slot_max > used ? v->slot_max : used;
		want.nslots = need;
		hx_svc_grow(m, v, need);
		/* a text rendered again as haproxy runs it: the installed one's */
		text_share(&want.listen, v->run.listen);
		text_share(&want.srvopts, v->run.srvopts);
		shape_clear(&v->want);
		v->want = want;
	} else {
		shape_clear(&want);
		shape_clear(&v->want);
		/* A recovered service the catalog does not list yet keeps its
		 * slots through the startup grace. */
		if (!(v->recovered && !m->grace_over && !v->in_cat))
			hx_plan_unroute_all(m, v);
	}
	hx_plan_free(v);
	hx_svc_shape_sync(m, v);
	hx_model_drop_queue(m, v);
	set_capped(m, v, ok && wanted > v->want.nslots ? wanted : 0);
	v->todo = false;
	warn_end(v);
}

void hx_model_update(hx_model *m, const regent_catalog *prev, const regent_catalog *cat,
                     const char *const *names_in, size_t n, bool all)
{
	const regent_host *h = m->h;
	const char *const *names = NULL;
	size_t nnames = cat ? h->catalog_services(cat, &names) : 0;
	if (all) {
		for (size_t i = 0; i < nnames; i++)
			if (h->valid_service(names[i]))
				hx_svc_get(m, names[i]);
		for (svc *v = m->svcs; v; v = v->next)
			if (!v->todo)
				compute(m, NULL, cat, names, nnames, v, true);
	} else {
		for (size_t i = 0; i < n; i++) {
			if (!h->valid_service(names_in[i]))
				continue;
			svc *v = hx_svc_find(m, names_in[i]);
			if (!v) {
				const char *key = names_in[i];
				if (!bsearch(&key, names, nnames, sizeof(*names), name_cmp))
					continue; /* gone, and never known */
				v = hx_svc_get(m, names_in[i]);
			}
			if (v->todo)
				continue;
			compute(m, prev, cat, names, nnames, v, false);
		}
	}
	resolve_ports(m, cat, names, nnames);
	/* Only the services computed (a flip of a port's outcome adds one
	 * while this runs), never a walk of every service. */
	for (size_t k = 0; k < m->ntodo; k++)
		finalize(m, m->todo[k]);
	bool gc = false;
	for (size_t k = 0; k < m->ntodo && !gc; k++)
		gc = collectible(m, m->todo[k]);
	m->ntodo = 0;
	m->gen++;
	hx_model_sort(m);
	if (gc) /* a service goes: the whole list (a reload follows anyway) */
		hx_model_gc(m);
	else
		hx_addr_gc(false); /* the addresses slots no longer hold, amortised */
}

uint64_t hx_model_tick(hx_model *m, const regent_catalog *cat)
{
	if (!m->ngrace && !m->nexcluded)
		return 0; /* no deadline (the common case): O(1) */
	uint64_t now = m->h->now_ms(), next = 0;
	const char **due = NULL;
	size_t ndue = 0;
	for (svc *v = m->svcs; v; v = v->next) {
		uint64_t at = v->in_grace ? v->grace_until : v->excluded ? v->retry_at : 0;
		if (!at)
			continue;
		if (at <= now) {
			const char **p = m->h->xrealloc(due, (ndue + 1) * sizeof(*due));
			due = p;
			due[ndue++] = v->name;
		} else if (!next || at < next) {
			next = at;
		}
	}
	if (ndue) {
		/* names point into the services: copy them, an update may free one */
		char **copy = m->h->xcalloc(ndue, sizeof(*copy));
		for (size_t i = 0; i < ndue; i++)
			copy[i] = m->h->xstrdup(due[i]);
		hx_model_update(m, cat, cat, (const char *const *)copy, ndue, false);
		for (size_t i = 0; i < ndue; i++)
			free(copy[i]);
		free(copy);
		free(due);
		return hx_model_tick(m, cat); /* the next deadline, after the update */
	}
	free(due);
	return next;
}

void hx_model_exclude(hx_model *m, svc *v, const char *why)
{
	char msg[400];
	snprintf(msg, sizeof(msg), "service %s %s: %s; retried later", v->name,
	         v->run.listen ? "keeps the section haproxy runs" : "is not routed", why);
	m->h->log(m->ctx, REGENT_LOG_WARN, "%s", msg);
	set_excluded(m, v, msg, m->h->now_ms());
	keep_running(v);
	hx_svc_shape_sync(m, v);
	m->gen++;
}

svc *hx_model_svc_at_line(hx_model *m, size_t line)
{
	for (svc *v = m->svcs; v; v = v->next)
		if (v->cand.listen && line >= v->line0 && line < v->line1)
			return v;
	return NULL;
}

char *hx_model_excluded_note(hx_model *m)
{
	if (!m->nexcluded && !m->ncapped)
		return NULL;
	hx_buf b = {.h = m->h};
	size_t shown = 0, total = m->nexcluded + m->ncapped;
	for (svc *v = m->svcs; v; v = v->next) {
		for (int k = 0; k < 2; k++) {
			const char *why = k ? v->capped : v->excluded;
			if (!why)
				continue;
			if (shown == 3) {
				hx_buf_printf(&b, " (and %zu more)", total - shown);
				return hx_buf_take(&b);
			}
			hx_buf_printf(&b, "%s%s", shown ? "; " : "", why);
			shown++;
		}
	}
	return hx_buf_take(&b);
}
