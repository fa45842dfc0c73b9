/* history.c - the agent's recent past, for the status page: a ring of the
 * last REGENT_HISTORY_CHANGES catalog changes (instance by instance, from
 * comparing each changed service of a new snapshot with the previous
 * snapshot, with the wall time each running sink applied it), and a ring
 * of REGENT_HISTORY_POINTS fixed intervals (propagation latency seen by
 * the sinks, catalog size).  It owns those two rings, the strings of
 * their entries, a small table of the sinks it follows and a reference to
 * the last snapshot.  Fixed memory whatever the fleet does. */
#include "history.h"
#include "model.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hist_change {
	uint64_t seq; /* of the snapshot that carried it */
	uint64_t wall_ns, origin_ns;
	char *service, *id, *detail;
	const char *what; /* a literal */
	size_t nsinks;
	char *sinks[REGENT_HISTORY_SINKS];
	uint64_t applied_ns[REGENT_HISTORY_SINKS];
} hist_change;

typedef struct hist_point {
	uint64_t bucket; /* now_ms / REGENT_HISTORY_STEP_MS */
	uint64_t wall_ns;
	uint32_t applies;
	double lat_sum, lat_max;
	size_t services, instances;
} hist_point;

/* The sinks followed: a snapshot counts for the latency once per sink,
 * and only one made while the sink ran (since_seq). */
#define FOLLOWED (2 * REGENT_HISTORY_SINKS)
typedef struct hist_sink {
	char *name;
	uint64_t since_seq, last_seq;
} hist_sink;

struct regent_history {
	hist_change ch[REGENT_HISTORY_CHANGES];
	size_t nch, head; /* head: the next slot written */
	hist_point pts[REGENT_HISTORY_POINTS];
	bool have_points;
	uint64_t first_bucket, last_bucket;
	size_t services, instances; /* of the last snapshot */
	hist_sink followed[FOLLOWED];
	const regent_catalog *last; /* referenced */
};

regent_history *regent_history_new(void)
{
	return regent_xcalloc(1, sizeof(regent_history));
}

static void change_clear(hist_change *c)
{
	free(c->service);
	free(c->id);
	free(c->detail);
	for (size_t i = 0; i < c->nsinks; i++)
		free(c->sinks[i]);
	memset(c, 0, sizeof(*c));
}

void regent_history_free(regent_history *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < REGENT_HISTORY_CHANGES; i++)
		change_clear(&h->ch[i]);
	for (size_t i = 0; i < FOLLOWED; i++)
		free(h->followed[i].name);
	if (h->last)
		regent_catalog_unref(h->last);
	free(h);
}

/* ---- intervals ---- */

/* Moves the ring up to the interval of now_ms: the intervals passed over
 * start empty with the catalog size carried forward. */
static hist_point *advance(regent_history *h, uint64_t now_ms, uint64_t now_wall_ns)
{
	uint64_t cur = now_ms / REGENT_HISTORY_STEP_MS;
	if (!h->have_points) {
		h->have_points = true;
		h->first_bucket = h->last_bucket = cur;
		hist_point *p = &h->pts[cur % REGENT_HISTORY_POINTS];
		memset(p, 0, sizeof(*p));
		p->bucket = cur;
		p->wall_ns = now_wall_ns - (now_ms - cur * REGENT_HISTORY_STEP_MS) * 1000000ull;
		p->services = h->services;
		p->instances = h->instances;
		return p;
	}
	if (cur > h->last_bucket) {
		uint64_t from = h->last_bucket + 1;
		if (cur - from >= REGENT_HISTORY_POINTS)
			from = cur - REGENT_HISTORY_POINTS + 1;
		for (uint64_t b = from; b <= cur; b++) {
			hist_point *p = &h->pts[b % REGENT_HISTORY_POINTS];
			memset(p, 0, sizeof(*p));
			p->bucket = b;
			p->wall_ns = now_wall_ns - (now_ms - b * REGENT_HISTORY_STEP_MS) * 1000000ull;
			p->services = h->services;
			p->instances = h->instances;
		}
		h->last_bucket = cur;
	}
	return &h->pts[h->last_bucket % REGENT_HISTORY_POINTS];
}

void regent_history_points(regent_history *h, uint64_t now_ms, uint64_t now_wall_ns,
                           void (*fn)(void *arg, const regent_history_point *p), void *arg)
{
	advance(h, now_ms, now_wall_ns);
	uint64_t from = h->first_bucket;
	if (h->last_bucket - from >= REGENT_HISTORY_POINTS)
		from = h->last_bucket - REGENT_HISTORY_POINTS + 1;
	for (uint64_t b = from; b <= h->last_bucket; b++) {
		const hist_point *p = &h->pts[b % REGENT_HISTORY_POINTS];
		regent_history_point out = {
			.size = sizeof(out),
			.wall_ns = p->wall_ns,
			.interval_ms = REGENT_HISTORY_STEP_MS,
			.applies = p->applies,
			.latency_max = p->lat_max,
			.latency_mean = p->applies ? p->lat_sum / p->applies : 0,
			.services = p->services,
			.instances = p->instances,
		};
		fn(arg, &out);
	}
}

/* ---- changes ---- */

static hist_change *change_add(regent_history *h, const regent_catalog *snap, const char *service,
                               const char *id, const char *what, char *detail,
                               const char *const *sinks, size_t nsinks, uint64_t now_wall_ns)
{
	hist_change *c = &h->ch[h->head];
	change_clear(c);
	h->head = (h->head + 1) % REGENT_HISTORY_CHANGES;
	if (h->nch < REGENT_HISTORY_CHANGES)
		h->nch++;
	c->seq = regent_catalog_seq(snap);
	c->wall_ns = now_wall_ns;
	c->origin_ns = regent_catalog_origin_ns(snap);
	c->service = regent_xstrdup(service);
	c->id = regent_xstrdup(id);
	c->what = what;
	c->detail = detail;
	for (size_t i = 0; i < nsinks && c->nsinks < REGENT_HISTORY_SINKS; i++)
		c->sinks[c->nsinks++] = regent_xstrdup(sinks[i]);
	return c;
}

static char *endpoint(const regent_instance *in)
{
	bool v6 = strchr(in->address, ':') != NULL;
	return regent_xasprintf("%s%s%s:%u/%s", v6 ? "[" : "", in->address, v6 ? "]" : "", in->port,
	                        regent_proto_name(in->proto));
}

static bool same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* What differs between two versions of an instance, and how to say it. */
static const char *describe(const regent_instance *o, const regent_instance *n, char **detail)
{
	if (!same_str(o->address, n->address) || o->port != n->port || o->proto != n->proto) {
		char *a = endpoint(o), *b = endpoint(n);
		*detail = regent_xasprintf("%s -> %s", a, b);
		free(a);
		free(b);
		return "moved";
	}
	regent_buf b = {0};
	bool tags = o->ntags != n->ntags;
	for (size_t i = 0; !tags && i < o->ntags; i++)
		tags = !same_str(o->tags[i], n->tags[i]);
	const char *fields[4];
	size_t nf = 0;
	if (tags)
		fields[nf++] = "tags";
	if (!same_str(o->node, n->node))
		fields[nf++] = "node";
	if (o->service_port != n->service_port)
		fields[nf++] = "service port";
	/* Whatever else differs is the meta (regent_instance_equal said so). */
	if (nf == 0 || o->nmeta != n->nmeta)
		fields[nf++] = "meta";
	for (size_t i = 0; i < nf; i++)
		regent_buf_printf(&b, "%s%s", i ? ", " : "", fields[i]);
	*detail = b.data;
	return "changed";
}

typedef struct flush_ctx {
	regent_history *h;
	const regent_catalog *snap;
	const char *const *sinks;
	size_t nsinks;
	uint64_t wall;
	size_t listed, more;
} flush_ctx;

/* One change listed (the caller checked full()). */
static void note(flush_ctx *f, const char *service, const char *id, const char *what,
                 char *detail)
{
	f->listed++;
	change_add(f->h, f->snap, service, id, what, detail, f->sinks, f->nsinks, f->wall);
}

/* Whether the snapshot's lines are all taken: a further change is only
 * counted ("more"), its words never made (a snapshot of 10,000 changes
 * formats 49 of them, not 10,000). */
static bool full(flush_ctx *f)
{
	if (f->listed + 1 < REGENT_HISTORY_CHANGES)
		return false;
	f->more++;
	return true;
}

/* Both lists sorted by id (the catalog's order): one merge walk. */
static void diff_service(flush_ctx *f, const char *service)
{
	const regent_instance *const *ov = NULL, *const *nv = NULL;
	size_t on = f->h->last ? regent_catalog_instances(f->h->last, service, &ov) : 0;
	size_t nn = regent_catalog_instances(f->snap, service, &nv);
	size_t i = 0, j = 0;
	while (i < on || j < nn) {
		/* the same instance in both (most of a big service): no string
		 * compared, so a change costs O(n) pointer reads */
		int c = i == on ? 1 : j == nn ? -1 : ov[i] == nv[j] ? 0 : strcmp(ov[i]->id, nv[j]->id);
		if (c < 0 && full(f)) {
			i++;
		} else if (c > 0 && full(f)) {
			j++;
		} else if (c < 0) {
			char *e = endpoint(ov[i]);
			note(f, service, ov[i]->id, "removed", regent_xasprintf("was %s", e));
			free(e);
			i++;
		} else if (c > 0) {
			char *e = endpoint(nv[j]);
			const char *node = nv[j]->node && nv[j]->node[0] ? nv[j]->node : NULL;
			note(f, service, nv[j]->id, "added",
			     node ? regent_xasprintf("%s on %s", e, node) : regent_xstrdup(e));
			free(e);
			j++;
		} else {
			if (ov[i] != nv[j] && !regent_instance_equal(ov[i], nv[j]) && !full(f)) {
				char *detail = NULL;
				const char *what = describe(ov[i], nv[j], &detail);
				note(f, service, nv[j]->id, what, detail);
			}
			i++;
			j++;
		}
	}
}

static hist_sink *followed(regent_history *h, const char *name)
{
	for (size_t i = 0; i < FOLLOWED; i++)
		if (h->followed[i].name && strcmp(h->followed[i].name, name) == 0)
			return &h->followed[i];
	return NULL;
}

static void follow(regent_history *h, const char *name, uint64_t seq)
{
	if (followed(h, name))
		return;
	hist_sink *slot = &h->followed[0];
	for (size_t i = 0; i < FOLLOWED; i++) {
		hist_sink *s = &h->followed[i];
		if (!s->name) {
			slot = s;
			break;
		}
		if (s->last_seq < slot->last_seq) /* full: the one idle longest goes */
			slot = s;
	}
	free(slot->name);
	*slot = (hist_sink){regent_xstrdup(name), seq, 0};
}

void regent_history_flush(regent_history *h, const regent_catalog *snap,
                          const char *const *changed, size_t nchanged, const char *const *sinks,
                          size_t nsinks, uint64_t now_ms, uint64_t now_wall_ns)
{
	uint64_t seq = regent_catalog_seq(snap);
	for (size_t i = 0; i < nsinks; i++)
		follow(h, sinks[i], seq);
	flush_ctx f = {h, snap, sinks, nsinks, now_wall_ns, 0, 0};
	if (!h->last) {
		size_t ns = regent_catalog_services(snap, NULL);
		size_t ni = regent_catalog_total(snap);
		change_add(h, snap, "", "", "loaded",
		           regent_xasprintf("%zu service%s, %zu instance%s", ns, ns == 1 ? "" : "s", ni,
		                            ni == 1 ? "" : "s"),
		           sinks, nsinks, now_wall_ns);
	} else {
		for (size_t i = 0; i < nchanged; i++)
			diff_service(&f, changed[i]);
		if (f.more)
			change_add(h, snap, "", "", "more",
			           regent_xasprintf("%zu more change%s in this snapshot", f.more,
			                            f.more == 1 ? "" : "s"),
			           sinks, nsinks, now_wall_ns);
	}
	if (h->last)
		regent_catalog_unref(h->last);
	h->last = regent_catalog_ref(snap);
	hist_point *p = advance(h, now_ms, now_wall_ns); /* the intervals before keep the old size */
	h->services = regent_catalog_services(snap, NULL);
	h->instances = regent_catalog_total(snap);
	p->services = h->services;
	p->instances = h->instances;
}

void regent_history_applied(regent_history *h, const char *sink, const regent_catalog *snap,
                            uint64_t now_ms, uint64_t now_wall_ns)
{
	uint64_t seq = regent_catalog_seq(snap);
	for (size_t k = 0; k < h->nch; k++) {
		hist_change *c = &h->ch[k];
		if (c->seq > seq)
			continue;
		for (size_t i = 0; i < c->nsinks; i++)
			if (!c->applied_ns[i] && strcmp(c->sinks[i], sink) == 0)
				c->applied_ns[i] = now_wall_ns;
	}
	hist_sink *s = followed(h, sink);
	if (!s || seq < s->since_seq || seq <= s->last_seq || seq == 0)
		return;
	s->last_seq = seq;
	uint64_t origin = regent_catalog_origin_ns(snap);
	double lat = now_wall_ns > origin ? (double)(now_wall_ns - origin) / 1e9 : 0;
	hist_point *p = advance(h, now_ms, now_wall_ns);
	p->applies++;
	p->lat_sum += lat;
	if (lat > p->lat_max)
		p->lat_max = lat;
}

void regent_history_changes(const regent_history *h,
                            void (*fn)(void *arg, const regent_change *c), void *arg)
{
	for (size_t k = 0; k < h->nch; k++) {
		size_t i = (h->head + REGENT_HISTORY_CHANGES - 1 - k) % REGENT_HISTORY_CHANGES;
		const hist_change *c = &h->ch[i];
		regent_change out = {
			.size = sizeof(out),
			.wall_ns = c->wall_ns,
			.origin_ns = c->origin_ns,
			.service = c->service,
			.id = c->id,
			.what = c->what,
			.detail = c->detail ? c->detail : "",
			.nsinks = c->nsinks,
			.sinks = (const char *const *)c->sinks,
			.applied_ns = c->applied_ns,
		};
		fn(arg, &out);
	}
}
