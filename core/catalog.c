/* catalog.c - the catalog.  Each store reports per-service instance sets
 * into its own view; the catalog is their union by instance id.  Changes
 * mark services dirty.  The first change after a quiet period (no flush
 * for at least `debounce`) is flushed on the next loop iteration (leading
 * edge); changes that follow within the debounce are batched: flushed
 * after a quiet `debounce`, or at most `max_delay` after the first of
 * them.  A flush re-merges the dirty services, and when any of them
 * really differs a new immutable snapshot goes to the flush callback
 * together with the list of changed services.  Snapshots share the
 * per-service lists that did not change, so a flush of k dirty services
 * costs O(k log services) comparisons plus one copy of the service
 * pointers (the ABI hands sinks one sorted array of names).  A snapshot
 * settled into the next one hands it the references of the lists both
 * have (as lists do with instances, below), so neither the flush nor the
 * release of the older snapshot touches the S lists.  The flush also keeps
 * the catalog's instances by owning node (for the /metrics gauges) by
 * moving the changed services' counts out and in: O(changes) for a
 * settled service, O(its instances) for one set whole, never a walk of
 * the catalog.
 *
 * A store reports a service either whole (regent_cat_view_set: O(its
 * instances)) or instance by instance (regent_cat_view_put/_del, ABI 1.3:
 * O(log n) each).  Single changes wait in the view's per-service pending
 * table (catpend.c) and are settled into a new sorted list when the
 * service is merged: O(k log k + k log(n/k)) comparisons for k changes
 * (the sort skipped when they came in id order), plus one copy of the n
 * pointers (the ABI hands sinks one sorted array per service).  A removal
 * is placed there too, not looked up when it comes.
 *
 * A reload's new store instance reports into a candidate view: kept, but
 * neither merged nor holding up readiness, until it is promoted.  Then it
 * replaces the old view in one change (once it has completed a full read;
 * until then the old view's instances stay), so a store swap never
 * flushes an empty or half-read catalog.
 *
 * A store may report a service as unknown (listed by the registry, its
 * instances not readable yet: ABI 1.9) so that its first full read can end
 * without it; a snapshot names such services (sorted copies, gathered from
 * the views at each flush: nothing to do when there are none) and holds no
 * list for them.  A
 * promoted candidate that reports a service unknown takes over the old
 * view's list of it.
 *
 * The lists and snapshots themselves, and the plugins' reads of a
 * snapshot, are catsvc.c's. */
#include "catsvc.h"
#include "util.h"

#include <stdlib.h>
#include <time.h>
#include <string.h>

struct regent_catview {
	regent_cat *cat;
	regent_map *svcs;     /* name -> vsvc */
	regent_map *seen;     /* during a sync: names set */
	regent_map *unknown;  /* names listed but not read (set_unknown), none in svcs; value unused */
	bool watching, in_sync, synced;
	bool hidden;          /* a candidate: not merged, not awaited */
	bool promoted;        /* replaces `replaces` at its first full read */
	regent_catview *replaces;    /* the old view it takes over from */
	regent_catview *replaced_by; /* set on that old view */
	regent_catview *next;
};

struct regent_cat {
	uv_loop_t *loop;
	uv_timer_t timer;
	uint64_t debounce_ms, max_ms;
	uint64_t first_ms;    /* when the pending set started (real clock, ms), 0 = none */
	uint64_t last_flush_ms; /* real clock (ms) when the last snapshot was applied, 0 = none yet */
	uint64_t flush_ns;    /* the last flush's CPU time (loop thread), the sinks' callback included */
	char *biggest;        /* the biggest service the last flush changed, NULL = none */
	size_t biggest_n;     /* its instances (0 = none) */
	char *costly;         /* the last costly flush's biggest service (see schedule), or NULL */
	uint64_t costly_gap_ms;   /* its spacing */
	uint64_t costly_until_ms; /* real clock (ms): not flushed again before (its last flush + gap) */
	uint64_t origin_ns;
	regent_map *dirty;    /* names, value unused */
	regent_catview *views;
	regent_catalog *current;
	regent_map *nodes;    /* current's instances by owner (regent_svc_count_nodes) */
	bool flushed_once;
	uint64_t seq;         /* of the newest snapshot */
	bool leading;         /* a leading-edge flush is scheduled */
	uint64_t due_ms;      /* real clock (ms) the trailing flush is armed for */
	regent_cat_flush_cb cb;
	void *arg;
};


/* ---- the catalog object ---- */

static void on_timer(uv_timer_t *t);

regent_cat *regent_cat_new(uv_loop_t *loop, uint64_t debounce_ms, uint64_t max_delay_ms,
                           regent_cat_flush_cb cb, void *arg)
{
	regent_cat *c = regent_xcalloc(1, sizeof(*c));
	c->loop = loop;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->debounce_ms = debounce_ms;
	c->max_ms = max_delay_ms < debounce_ms ? debounce_ms : max_delay_ms;
	c->dirty = regent_map_new();
	c->current = regent_snap_new(0);
	c->nodes = regent_map_new();
	c->cb = cb;
	c->arg = arg;
	return c;
}

void regent_cat_set_timing(regent_cat *c, uint64_t debounce_ms, uint64_t max_delay_ms)
{
	c->debounce_ms = debounce_ms;
	c->max_ms = max_delay_ms < debounce_ms ? debounce_ms : max_delay_ms;
}

static void on_close(uv_handle_t *h)
{
	free(h->data);
}

void regent_cat_free(regent_cat *c)
{
	if (!c)
		return;
	while (c->views)
		regent_cat_view_free(c->views);
	regent_map_free(c->dirty, NULL);
	regent_catalog_unref(c->current);
	regent_map_free(c->nodes, NULL);
	free(c->biggest);
	free(c->costly);
	uv_close((uv_handle_t *)&c->timer, on_close);
}

const regent_catalog *regent_cat_current(const regent_cat *c)
{
	return c->current;
}

const regent_map *regent_cat_nodes(const regent_cat *c)
{
	return c->nodes;
}

bool regent_cat_ready(const regent_cat *c)
{
	for (regent_catview *v = c->views; v; v = v->next)
		if (v->watching && !v->synced && !v->hidden)
			return false;
	return true;
}

bool regent_cat_flushed(const regent_cat *c)
{
	return c->flushed_once;
}

void regent_cat_mark(regent_cat *c, uint64_t origin_wall_ns)
{
	if (!c->origin_ns || origin_wall_ns < c->origin_ns)
		c->origin_ns = origin_wall_ns;
}

/* The clock here is the real one, not the loop's cached time: a long
 * callback (a big watch answer applied in slices) keeps adding changes
 * while the loop's clock stands still, and the debounce must run from the
 * last change, not from the start of the loop turn (else every slice got
 * its own snapshot, each O(service) in the core and the sinks). */
static uint64_t real_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* A flush of a big service costs O(its instances) in the core and in
 * every sink: after a flush that took C of the loop thread's CPU, the
 * next one that carries the same service (the biggest the costly flush
 * changed) waits until FLUSH_DUTY x C after it (at least the debounce, at
 * most the maximum delay, or FLUSH_LONG_CAP_MS for a service of
 * FLUSH_LONG_MIN instances or more), so its snapshots take at most
 * ~1/FLUSH_DUTY of the loop's time while it keeps changing.  Only a
 * service of FLUSH_SPACED_MIN instances or more is held; a change of any
 * other service is not held by it (a lone change after a quiet period
 * still goes out at once), and a usual flush costs well under the
 * debounce / FLUSH_DUTY.  CPU time, not the wall clock: a loaded machine
 * does not stretch the spacing.
 *
 * C is at least FLUSH_NS_PER_INST per instance: what a snapshot costs
 * beyond the flush, on later loop turns (the haproxy sink's runtime
 * changes and its state poll of the servers it moved: at 100,000, ~2 ms a
 * snapshot of a write, 50-80 ms when a range delete moves the 10,000
 * routed ones).  So 10,000 instances are 200 ms apart, 100,000 2 s: the
 * documented trade-off is that a service of 25,000 or more, while it keeps
 * changing, reaches the sinks up to 2 s late.  That hold never holds
 * another service past its own maximum delay: the flush goes out without
 * it (hold_costly), which stays pending until its time. */
#define FLUSH_DUTY 200
#define FLUSH_SPACED_MIN 1000 /* instances: a smaller service is never held */
#define FLUSH_NS_PER_INST 100
#define FLUSH_LONG_MIN 20000 /* instances: the spacing may pass the maximum delay */
#define FLUSH_LONG_CAP_MS 2000

static uint64_t flush_gap_ms(const regent_cat *c)
{
	bool lng = c->biggest_n >= FLUSH_LONG_MIN;
	uint64_t cost = (uint64_t)c->biggest_n * FLUSH_NS_PER_INST;
	if (cost < c->flush_ns)
		cost = c->flush_ns;
	uint64_t gap = FLUSH_DUTY * cost / 1000000u;
	uint64_t cap = lng && FLUSH_LONG_CAP_MS > c->max_ms ? FLUSH_LONG_CAP_MS : c->max_ms;
	if (gap > cap)
		gap = cap;
	return gap > c->debounce_ms ? gap : c->debounce_ms;
}

/* The timer armed for real-clock time `due` (ms). */
static void arm(regent_cat *c, uint64_t due)
{
	uint64_t loop_now = uv_now(c->loop);
	/* the same due time as armed (many changes in one ms): not armed again */
	if (due == c->due_ms && uv_is_active((uv_handle_t *)&c->timer))
		return;
	c->due_ms = due;
	uv_timer_start(&c->timer, on_timer, due > loop_now ? due - loop_now : 0, 0);
}

static void schedule(regent_cat *c)
{
	if (c->first_ms && c->leading)
		return; /* a leading-edge flush is already due */
	uint64_t now = real_ms();
	bool spaced = c->costly && regent_map_get(c->dirty, c->costly);
	/* spaced: not before the costly service's last flush + its gap */
	uint64_t not_before = spaced ? c->costly_until_ms
	                             : c->last_flush_ms ? c->last_flush_ms + c->debounce_ms : 0;
	if (!c->first_ms) {
		c->first_ms = now;
		/* Leading edge: after a quiet period the first change goes out on
		 * the next loop iteration (what the same callback changes next
		 * still joins it). */
		if (now >= not_before) {
			c->leading = true;
			uv_timer_start(&c->timer, on_timer, 0, 0);
			return;
		}
	}
	uint64_t due = now + c->debounce_ms;
	if (due < not_before)
		due = not_before; /* spaced by the last flush's cost */
	/* A long hold (past the maximum delay) of the costly service alone is
	 * not capped; with other services pending the flush goes out at their
	 * maximum delay, without it (flush_snap). */
	bool long_hold = spaced && c->costly_gap_ms > c->max_ms && regent_map_size(c->dirty) == 1;
	if (!long_hold && due > c->first_ms + c->max_ms)
		due = c->first_ms + c->max_ms;
	arm(c, due);
}

static void mark_dirty(regent_cat *c, const char *service)
{
	if (!regent_map_get(c->dirty, service))
		regent_map_put(c->dirty, service, (void *)1);
	if (!c->origin_ns)
		c->origin_ns = regent_wall_ns();
	schedule(c);
}

/* The union, by instance id, of every view's list for a service. */
static svc_list *merge(regent_cat *c, const char *service)
{
	size_t total = 0, nlists = 0;
	svc_list *only = NULL;
	for (regent_catview *v = c->views; v; v = v->next) {
		if (v->hidden)
			continue;
		vsvc *vs = regent_map_get(v->svcs, service);
		svc_list *s = vs ? regent_vsvc_list(vs) : NULL;
		if (s) {
			nlists++;
			only = s;
			total += s->n;
		}
	}
	if (nlists == 0)
		return NULL;
	if (nlists == 1) { /* one view has it: its list (sorted, unique) is the union */
		only->refs++;
		return only;
	}
	svc_list *m = regent_svc_new(service, total);
	size_t k = 0;
	for (regent_catview *v = c->views; v; v = v->next) {
		vsvc *vs = v->hidden ? NULL : regent_map_get(v->svcs, service);
		svc_list *s = vs ? regent_vsvc_list(vs) : NULL;
		for (size_t i = 0; s && i < s->n; i++)
			m->pubs[k++] = &regent_inst_ref(regent_svc_at(s, i))->pub;
	}
	regent_svc_finish(m);
	return m;
}

static bool svc_same(const svc_list *a, const svc_list *b)
{
	if (a == b)
		return true;
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->pubs[i] != b->pubs[i] && !regent_instance_equal(a->pubs[i], b->pubs[i]))
			return false;
	return true;
}

/* Appends old's services [from, to) to snap, sharing their lists: pointer
 * copies only (old hands snap its references of them, see flush_snap), no
 * string compared, no list touched. */
static void snap_take(regent_catalog *snap, const regent_catalog *old, size_t from, size_t to)
{
	size_t n = to - from;
	memcpy(snap->svcs + snap->n, old->svcs + from, n * sizeof(*snap->svcs));
	memcpy(snap->names + snap->n, old->names + from, n * sizeof(*snap->names));
	snap->n += n;
}

/* Re-merges the dirty services; when any really changed, the new snapshot
 * is the old one's sorted list with the dirty ones replaced, removed or
 * inserted: one merge walk of two sorted lists (the dirty names, sorted,
 * each placed by a binary search from the previous one), so a change of
 * k services costs O(k log S) comparisons plus S pointer copies. */
static bool flush_snap(regent_cat *c);

/* A flush, timed (see schedule). */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A flush that did not carry the costly service (held, or not pending)
 * and no other service of FLUSH_SPACED_MIN instances leaves its spacing
 * as it was: a change of a usual service in between does not end it. */
static void flush(regent_cat *c)
{
	bool had = c->costly && regent_map_get(c->dirty, c->costly);
	uint64_t t0 = thread_cpu_ns();
	bool held = flush_snap(c);
	uint64_t t1 = thread_cpu_ns();
	if (c->costly && (held || (!had && !c->biggest))) {
		free(c->biggest);
		c->biggest = NULL;
		return;
	}
	c->flush_ns = t1 > t0 ? t1 - t0 : 0;
	free(c->costly);
	c->costly = NULL;
	uint64_t gap = c->biggest ? flush_gap_ms(c) : 0;
	if (gap > c->debounce_ms) {
		c->costly = c->biggest;
		c->biggest = NULL;
		c->costly_gap_ms = gap;
		c->costly_until_ms = c->last_flush_ms + gap;
	}
}

/* Takes the costly service out of the pending set when it is held past
 * the maximum delay (schedule): true when held. */
static bool hold_costly(regent_cat *c)
{
	return c->costly && c->costly_gap_ms > c->max_ms && real_ms() < c->costly_until_ms &&
	       regent_map_del(c->dirty, c->costly);
}

/* Puts a held costly service back (in the new pending set) and arms the
 * timer for its time. */
static void rehold_costly(regent_cat *c)
{
	regent_map_put(c->dirty, c->costly, (void *)1);
	c->first_ms = real_ms();
	arm(c, c->costly_until_ms);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names some visible view reports unknown and no visible view
 * holds, sorted, unique, copied: O(U log U) for U unknown names (none in
 * the usual case). */
static char **unknown_names(regent_cat *c, size_t *n)
{
	size_t total = 0;
	for (regent_catview *v = c->views; v; v = v->next)
		if (!v->hidden && v->unknown)
			total += regent_map_size(v->unknown);
	*n = 0;
	if (!total)
		return NULL;
	char **out = regent_xcalloc(total, sizeof(*out));
	for (regent_catview *v = c->views; v; v = v->next) {
		if (v->hidden || !v->unknown)
			continue;
		regent_map_iter it = {0};
		const char *name;
		while (regent_map_next(v->unknown, &it, &name, NULL)) {
			bool known = false;
			for (regent_catview *w = c->views; w && !known; w = w->next)
				known = !w->hidden && regent_map_get(w->svcs, name);
			if (!known)
				out[(*n)++] = regent_xstrdup(name);
		}
	}
	qsort(out, *n, sizeof(*out), name_cmp);
	size_t k = 0;
	for (size_t i = 0; i < *n; i++) {
		if (k && strcmp(out[k - 1], out[i]) == 0)
			free(out[i]);
		else
			out[k++] = out[i];
	}
	*n = k;
	if (!k) {
		free(out);
		return NULL;
	}
	return out;
}

static bool same_names(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static bool flush_snap(regent_cat *c)
{
	uv_timer_stop(&c->timer);
	c->leading = false;
	if (!regent_cat_ready(c))
		return false; /* sync_end of the last view flushes */
	bool first = !c->flushed_once;
	c->first_ms = 0;
	bool held = hold_costly(c);
	if (held && regent_map_size(c->dirty) == 0) {
		rehold_costly(c);
		return true;
	}
	size_t ndirty;
	const char **dirty = regent_map_sorted_keys(c->dirty, &ndirty);
	regent_catalog *old = c->current;
	/* Per dirty name: its list in the new snapshot (NULL: none). */
	svc_list **next = regent_xcalloc(ndirty + 1, sizeof(*next));
	const char **changed = regent_xcalloc(ndirty + 1, sizeof(*changed));
	size_t nchanged = 0, big = SIZE_MAX, big_n = 0;
	for (size_t i = 0; i < ndirty; i++) {
		svc_list *prev = regent_snap_find(old, dirty[i]);
		svc_list *m = merge(c, dirty[i]);
		size_t n = m ? m->n : prev ? prev->n : 0;
		if (big == SIZE_MAX || n > big_n) {
			big = i;
			big_n = n;
		}
		if (m && prev && svc_same(m, prev)) {
			regent_svc_unref(m);
			next[i] = (prev->refs++, prev);
			continue;
		}
		next[i] = m;
		if (m || prev)
			changed[nchanged++] = m ? m->name : prev->name;
	}
	free(c->biggest);
	c->biggest = big != SIZE_MAX && big_n >= FLUSH_SPACED_MIN ? regent_xstrdup(dirty[big]) : NULL;
	c->biggest_n = c->biggest ? big_n : 0;
	regent_map *dmap = c->dirty; /* owns the strings of dirty[] */
	c->dirty = regent_map_new();
	if (held)
		rehold_costly(c);
	/* The unknown names, from the views (a walk of the views when there
	 * are none): whatever changed them, another view's set or removal
	 * included, shows. */
	size_t nunk;
	char **unk = unknown_names(c, &nunk);
	bool unk_changed = !same_names(unk, nunk, old->unknown, old->nunknown);
	if (nchanged == 0 && !first && !unk_changed) {
		for (size_t i = 0; i < nunk; i++)
			free(unk[i]);
		free(unk);
		for (size_t i = 0; i < ndirty; i++)
			regent_svc_unref(next[i]);
		free(next);
		free(changed);
		free(dirty);
		regent_map_free(dmap, NULL);
		if (!held)
			c->origin_ns = 0;
		return held;
	}
	regent_catalog *snap = regent_snap_new(old->n + ndirty);
	snap->n = 0;
	snap->total = old->total;
	/* old keeps its references of the lists at the dirty places (each
	 * next[i] came with its own reference) and hands snap the others. */
	old->own = regent_xmalloc((ndirty ? ndirty : 1) * sizeof(*old->own));
	old->nown = 0;
	size_t r = 0; /* old's services before r are placed */
	svc_tally moved;
	regent_tally_init(&moved);
	for (size_t i = 0; i < ndirty; i++) {
		size_t pos = regent_snap_lower(old, r, dirty[i]);
		snap_take(snap, old, r, pos);
		r = pos;
		svc_list *was = NULL;
		if (r < old->n && strcmp(old->svcs[r]->name, dirty[i]) == 0) {
			was = old->svcs[r++];
			old->own[old->nown++] = was;
			snap->total -= was->n; /* replaced by next[i], or gone */
		}
		if (next[i]) {
			snap->svcs[snap->n] = next[i];
			snap->names[snap->n++] = next[i]->name;
			snap->total += next[i]->n;
		}
		regent_svc_count_nodes(&moved, was, next[i]);
	}
	regent_tally_apply(&moved, c->nodes);
	snap->nodes = regent_map_size(c->nodes);
	snap_take(snap, old, r, old->n);
	snap->svcs[snap->n] = NULL;
	snap->names[snap->n] = NULL;
	old->next = snap; /* old keeps what both have alive through snap */
	snap->refs++;
	snap->linked = true;
	snap->origin_ns = c->origin_ns ? c->origin_ns : regent_wall_ns();
	snap->seq = ++c->seq;
	snap->unknown = unk;
	snap->nunknown = nunk;
	free(next);
	free(dirty);
	regent_map_free(dmap, NULL);
	/* `changed` points at names owned by old or new lists: keep old alive
	 * until the callback returns. */
	c->current = snap;
	c->flushed_once = true;
	if (!held) /* else the held service's first change stays the origin of its snapshot */
		c->origin_ns = 0;
	c->last_flush_ms = real_ms() | 1; /* changes the sinks make in the callback see it */
	if (first) {
		free(changed);
		changed = regent_xcalloc(snap->n + 1, sizeof(*changed));
		memcpy(changed, snap->names, sizeof(*changed) * snap->n);
		nchanged = snap->n;
	}
	if (c->cb)
		c->cb(c->arg, snap, changed, nchanged);
	/* The quiet period that earns the next change a leading edge starts
	 * when the sinks are done with this snapshot. */
	c->last_flush_ms = real_ms() | 1;
	free(changed);
	regent_catalog_unref(old);
	return held;
}

static void on_timer(uv_timer_t *t)
{
	flush(t->data);
}

void regent_cat_flush_now(regent_cat *c)
{
	flush(c);
}

/* ---- views ---- */

static regent_catview *view_new(regent_cat *c, bool watching, bool hidden)
{
	regent_catview *v = regent_xcalloc(1, sizeof(*v));
	v->cat = c;
	v->svcs = regent_map_new();
	v->watching = watching;
	v->hidden = hidden;
	v->next = c->views;
	c->views = v;
	return v;
}

regent_catview *regent_cat_view_new(regent_cat *c, bool watching)
{
	return view_new(c, watching, false);
}

regent_catview *regent_cat_view_new_candidate(regent_cat *c, bool watching)
{
	return view_new(c, watching, true);
}

static void mark_all(regent_catview *v)
{
	regent_map_iter it = {0};
	const char *name;
	while (regent_map_next(v->svcs, &it, &name, NULL))
		mark_dirty(v->cat, name);
	if (v->unknown && regent_map_size(v->unknown)) {
		regent_map_iter iu = {0};
		while (regent_map_next(v->unknown, &iu, &name, NULL))
			mark_dirty(v->cat, name);
	}
}

/* The service is known to the view now (set, put, removed): no longer
 * unknown. */
static void known_now(regent_catview *v, const char *service)
{
	if (v->unknown)
		regent_map_del(v->unknown, service);
}

void regent_cat_view_free(regent_catview *v)
{
	regent_cat *c = v->cat;
	for (regent_catview **pp = &c->views; *pp; pp = &(*pp)->next) {
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	}
	if (v->replaced_by)
		v->replaced_by->replaces = NULL;
	if (v->replaces) {
		v->replaces->replaced_by = NULL;
		regent_cat_view_free(v->replaces);
	}
	if (!v->hidden)
		mark_all(v);
	regent_map_free(v->svcs, regent_vsvc_free);
	regent_map_free(v->seen, NULL);
	regent_map_free(v->unknown, NULL);
	free(v);
	if (regent_cat_ready(c) && !c->flushed_once)
		schedule(c);
}

/* The promoted candidate becomes visible and the view it replaces goes,
 * in one set of dirty services (one flush). */
static void swap_in(regent_catview *v)
{
	v->hidden = false;
	v->promoted = false;
	regent_catview *old = v->replaces;
	if (old && v->unknown && regent_map_size(v->unknown)) {
		/* What the new instance could not read yet keeps the old one's
		 * instances (the last known), moved over. */
		size_t n;
		const char **names = regent_map_sorted_keys(v->unknown, &n);
		char **copy = regent_xcalloc(n + 1, sizeof(*copy));
		for (size_t i = 0; i < n; i++)
			copy[i] = regent_xstrdup(names[i]);
		free(names);
		for (size_t i = 0; i < n; i++) {
			vsvc *vs = regent_map_get(old->svcs, copy[i]);
			if (vs) {
				regent_map_del(old->svcs, copy[i]);
				regent_map_put(v->svcs, copy[i], vs);
				regent_map_del(v->unknown, copy[i]);
			}
			free(copy[i]);
		}
		free(copy);
	}
	mark_all(v);
	v->replaces = NULL;
	if (old) {
		old->replaced_by = NULL;
		regent_cat_view_free(old);
	}
}

void regent_cat_view_promote(regent_catview *v, regent_catview *old)
{
	if (old && old->replaced_by)
		old->replaced_by->replaces = NULL;
	if (v->replaces) { /* promoted twice: the older one goes now */
		v->replaces->replaced_by = NULL;
		regent_cat_view_free(v->replaces);
	}
	v->replaces = old;
	if (old)
		old->replaced_by = v;
	if (!v->hidden) {
		swap_in(v);
		return;
	}
	v->promoted = true;
	if (v->synced || !v->watching)
		swap_in(v);
}

void regent_cat_view_set(regent_catview *v, const char *service, regent_inst **insts, size_t n)
{
	svc_list *s = regent_svc_new(service, n);
	for (size_t i = 0; i < n; i++)
		s->pubs[i] = &insts[i]->pub;
	regent_svc_finish(s);
	if (v->in_sync)
		regent_map_put(v->seen, service, (void *)1);
	known_now(v, service);
	vsvc *vs = regent_map_get(v->svcs, service);
	if (vs && svc_same(regent_vsvc_list(vs), s)) {
		regent_svc_unref(s);
		return;
	}
	if (vs) {
		regent_svc_unref(vs->list);
		vs->list = s;
	} else {
		regent_map_put(v->svcs, service, regent_vsvc_new(s));
	}
	if (!v->hidden)
		mark_dirty(v->cat, service);
}

/* The view's service, created (known, empty) when missing. */
static vsvc *view_svc(regent_catview *v, const char *service, bool *created)
{
	if (v->in_sync)
		regent_map_put(v->seen, service, (void *)1);
	known_now(v, service);
	vsvc *vs = regent_map_get(v->svcs, service);
	*created = !vs;
	if (!vs) {
		vs = regent_vsvc_new(regent_svc_new(service, 0));
		regent_map_put(v->svcs, service, vs);
	}
	return vs;
}

/* The instance the view holds for an id, pending changes included. */
static const regent_inst *vsvc_get(const vsvc *vs, const char *id)
{
	regent_inst *pv;
	if (regent_pend_get(vs->pend, id, &pv))
		return pv;
	return regent_svc_find(vs->list, id);
}

void regent_cat_view_put(regent_catview *v, regent_inst *in)
{
	bool created;
	vsvc *vs = view_svc(v, in->pub.service, &created);
	const regent_inst *cur = vsvc_get(vs, in->pub.id);
	if (cur && (cur == in || regent_instance_equal(&cur->pub, &in->pub))) {
		regent_inst_unref(in);
		if (created && !v->hidden)
			mark_dirty(v->cat, vs->list->name);
		return;
	}
	if (!vs->pend)
		vs->pend = regent_pend_new();
	regent_pend_put(vs->pend, in);
	if (!v->hidden)
		mark_dirty(v->cat, vs->list->name);
}

/* A removal is not looked up in the list (a binary search of a big list
 * per key): the settling places it with the others in one walk (an id
 * the list turns out not to hold removes nothing, and the flush finds the
 * service unchanged). */
void regent_cat_view_del(regent_catview *v, const char *service, const char *id)
{
	vsvc *vs = regent_map_get(v->svcs, service);
	if (!vs)
		return; /* an unknown service stays unknown */
	if (v->in_sync)
		regent_map_put(v->seen, service, (void *)1);
	regent_inst *pv;
	bool pending = regent_pend_get(vs->pend, id, &pv);
	if ((pending && !pv) || (!pending && !regent_svc_may_hold(vs->list, id)))
		return; /* removed already, or known absent */
	if (pending && !regent_svc_find(vs->list, id)) { /* only pending: forget it */
		regent_pend_forget(vs->pend, id);
	} else {
		if (!vs->pend)
			vs->pend = regent_pend_new();
		regent_pend_remove(vs->pend, id);
	}
	if (!v->hidden)
		mark_dirty(v->cat, vs->list->name);
}

void regent_cat_view_remove(regent_catview *v, const char *service)
{
	if (v->unknown && regent_map_get(v->unknown, service)) {
		if (!v->hidden)
			mark_dirty(v->cat, service);
		known_now(v, service);
	}
	vsvc *old = regent_map_get(v->svcs, service);
	if (!old)
		return;
	if (!v->hidden)
		mark_dirty(v->cat, service); /* before the name goes with the list */
	regent_map_del(v->svcs, service);
	regent_vsvc_free(old);
}

void regent_cat_view_set_unknown(regent_catview *v, const char *service)
{
	if (v->in_sync)
		regent_map_put(v->seen, service, (void *)1);
	if (regent_map_get(v->svcs, service))
		return; /* its last instances stay */
	if (!v->unknown)
		v->unknown = regent_map_new();
	if (regent_map_put(v->unknown, service, (void *)1))
		return; /* unknown already */
	if (!v->hidden)
		mark_dirty(v->cat, service);
}

void regent_cat_view_sync_begin(regent_catview *v)
{
	regent_map_free(v->seen, NULL);
	v->seen = regent_map_new();
	v->in_sync = true;
}

void regent_cat_view_sync_end(regent_catview *v)
{
	if (!v->in_sync)
		return;
	regent_map_iter it = {0};
	const char *name;
	void *val;
	while (regent_map_next(v->svcs, &it, &name, &val)) {
		if (!regent_map_get(v->seen, name)) {
			if (!v->hidden)
				mark_dirty(v->cat, name);
			regent_map_del(v->svcs, name); /* name freed: mark first */
			regent_vsvc_free(val);
		}
	}
	regent_map_iter iu = {0};
	while (v->unknown && regent_map_next(v->unknown, &iu, &name, NULL)) {
		if (!regent_map_get(v->seen, name)) {
			if (!v->hidden)
				mark_dirty(v->cat, name);
			known_now(v, name); /* forgotten */
		}
	}
	regent_map_free(v->seen, NULL);
	v->seen = NULL;
	v->in_sync = false;
	bool was_ready = regent_cat_ready(v->cat);
	v->synced = true;
	if (v->hidden && v->promoted)
		swap_in(v);
	if (!was_ready && regent_cat_ready(v->cat))
		schedule(v->cat); /* the first snapshot, even when empty */
}
