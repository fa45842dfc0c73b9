/* annotations.c - what plugin instances publish about catalog instances
 * (host->annotations_set, ABI 1.2; host->annotations_update, ABI 1.5) and
 * read back (host->annotations_foreach).  Each plugin instance's
 * annotations live in its context (struct regent_annots): one allocation
 * per annotation (the struct, its id and label) in a hash table by service
 * and id, so that publishing k of them costs O(k) on average whatever the
 * instance holds; an annotation published again unchanged keeps its copy.
 * The texts that repeat from one annotation to the next (service, state,
 * detail: "down", "L4CON Connection refused" on thousands of servers) are
 * held once per instance, reference-counted (words).
 * The order foreach gives (service, then id) is an array of pointers
 * sorted again only when foreach runs after a change (a status page
 * request, not every publish).  Freed with the context (or by an empty
 * set).  Or (host->annotations_source, ABI 1.8) the instance keeps none:
 * foreach asks the plugin's source for them and lists copies (one block
 * each, a scratch list on the agent) freed once control is back on the
 * loop.  The core does not interpret them. */
#include "helpers.h"
#include "host.h"
#include "log.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ANNOT_TEXT_MAX 256
#define ANNOT_MAX 1000000

/* The most one instance holds (and gives in one call): ANNOT_MAX, lower
 * only in the unit test. */
static size_t annot_max = ANNOT_MAX;

void regent_annotations_set_max(size_t max)
{
	annot_max = max ? max : ANNOT_MAX;
}

/* 64 bytes before its id and label: 10,000 of them with ids of 24 and
 * labels of 13 bytes fit malloc's 112-byte chunks (128 with a size_t hash
 * and a separate mark: 0.16 MB more). */
typedef struct regent_annot {
	regent_annotation pub; /* every pointer points into this allocation */
	uint32_t hash;         /* of service and id */
	unsigned gen : 31;     /* the annotations_set that last gave it (GEN_MASK) */
	unsigned mark : 1;     /* counted (annotations_update near the limit) */
} regent_annot;

_Static_assert(sizeof(regent_annot) == sizeof(regent_annotation) + 8, "regent_annot packed");
#define GEN_MASK 0x7fffffffu

struct regent_annots {
	regent_map *words;  /* text -> word */
	regent_annot **tab; /* by service and id: open addressing, linear probing,
	                     * no tombstones (removal shifts back); NULL: empty */
	size_t cap, n;      /* cap 0 or a power of two, n <= 3/4 cap */
	unsigned gen;
	/* foreach's order: the n annotations sorted by service then id, valid
	 * while !stale (a change frees or adds copies: stale) */
	regent_annot **sorted;
	bool stale;
	/* annotations_source (ABI 1.8): the plugin's, read at each foreach
	 * (nothing above is held then) */
	void (*source)(void *self, void (*emit)(void *emit_arg, const regent_annotation *a),
	               void *emit_arg);
	void *self;
};

/* What foreach copied of one source's annotations: valid until control
 * is back on the loop. */
struct regent_annot_scratch {
	struct regent_annot_scratch *next;
	regent_annotation **v; /* each one block: the struct, then its texts */
	size_t n, cap, skipped;
};

/* Reads a field of a producer's struct only if its size covers it. */
#define FIELD(a, f) \
	((a)->size >= offsetof(regent_annotation, f) + sizeof((a)->f) ? (a)->f : NULL)

static bool text_ok(const char *s, bool required)
{
	if (!s)
		return !required;
	size_t n = strnlen(s, ANNOT_TEXT_MAX + 1);
	return (n > 0 || !required) && n <= ANNOT_TEXT_MAX;
}

/* FNV-1a over the service, a NUL, the id (a service holds no NUL). */
static uint32_t key_hash(const char *service, const char *id)
{
	uint64_t x = regent_hash_str(REGENT_HASH_SEED, service) * REGENT_HASH_PRIME;
	x = regent_hash_str(x, id);
	return (uint32_t)(x ^ (x >> 29));
}

/* since_wall_ns when the producer's struct has it (ABI 1.5), else 0. */
static uint64_t since_of(const regent_annotation *a)
{
	return a->size >= offsetof(regent_annotation, since_wall_ns) + sizeof(a->since_wall_ns)
	               ? a->since_wall_ns
	               : 0;
}

/* The instance's copy of text (NULL stays NULL), one more reference. */
static const char *word_get(struct regent_annots *s, const char *text)
{
	return regent_word_get(&s->words, text);
}

/* Drops a reference word_get gave. */
static void word_put(struct regent_annots *s, const char *text)
{
	regent_word_put(s->words, text);
}

static void annot_free(struct regent_annots *s, regent_annot *c)
{
	if (!c)
		return;
	word_put(s, c->pub.service);
	word_put(s, c->pub.state);
	word_put(s, c->pub.detail);
	free(c);
}

static regent_annot *annot_copy(struct regent_annots *s, const regent_annotation *a, uint32_t hash)
{
	/* id and label in the same allocation; the rest shared (words) */
	const char *f[2] = {FIELD(a, id), FIELD(a, label)};
	size_t len[2], total = sizeof(regent_annot);
	for (size_t i = 0; i < 2; i++) {
		len[i] = f[i] ? strlen(f[i]) + 1 : 0;
		total += len[i];
	}
	regent_annot *c = regent_xcalloc(1, total);
	char *p = (char *)(c + 1);
	const char **dst[2] = {&c->pub.id, &c->pub.label};
	for (size_t i = 0; i < 2; i++) {
		if (!f[i])
			continue;
		memcpy(p, f[i], len[i]);
		*dst[i] = p;
		p += len[i];
	}
	c->pub.service = word_get(s, FIELD(a, service));
	c->pub.state = word_get(s, FIELD(a, state));
	c->pub.detail = word_get(s, FIELD(a, detail));
	/* ABI 1.5: 0 from an older producer's struct, which ends before it */
	c->pub.since_wall_ns = since_of(a);
	c->pub.size = sizeof(c->pub);
	c->hash = hash;
	return c;
}

/* By service, then id (both checked present before any comparison). */
static int cmp_key(const regent_annotation *a, const regent_annotation *b)
{
	const char *sa = FIELD(a, service), *sb = FIELD(b, service);
	const char *ia = FIELD(a, id), *ib = FIELD(b, id);
	int c = strcmp(sa ? sa : "", sb ? sb : "");
	return c ? c : strcmp(ia ? ia : "", ib ? ib : "");
}

static int cmp_item(const void *x, const void *y)
{
	return cmp_key(*(const regent_annotation *const *)x, *(const regent_annotation *const *)y);
}

static bool text_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether a kept copy says what a producer's item says (same key). */
static bool same_annot(const regent_annot *c, const regent_annotation *a)
{
	return text_eq(c->pub.label, FIELD(a, label)) && text_eq(c->pub.state, FIELD(a, state)) &&
	       text_eq(c->pub.detail, FIELD(a, detail)) && c->pub.since_wall_ns == since_of(a);
}

/* ---- the table ---- */

/* The cell holding service/id, or the empty cell where it would go. */
static size_t tab_find(const struct regent_annots *s, const char *service, const char *id,
                       uint32_t hash)
{
	size_t mask = s->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const regent_annot *c = s->tab[i];
		if (!c || (c->hash == hash && strcmp(c->pub.id, id) == 0 &&
		           strcmp(c->pub.service, service) == 0))
			return i;
	}
}

/* Room for one more (load at most 3/4: probes stay short, the table small). */
static void tab_reserve(struct regent_annots *s)
{
	if (4 * (s->n + 1) <= 3 * s->cap)
		return;
	size_t cap = s->cap ? 2 * s->cap : 16;
	regent_annot **t = regent_xcalloc(cap, sizeof(*t));
	for (size_t i = 0; i < s->cap; i++) {
		regent_annot *c = s->tab[i];
		if (!c)
			continue;
		size_t j = c->hash & (cap - 1);
		while (t[j])
			j = (j + 1) & (cap - 1);
		t[j] = c;
	}
	free(s->tab);
	s->tab = t;
	s->cap = cap;
}

/* Empties cell i, shifting back the entries of its cluster that probed
 * past it (no tombstones).  The caller frees what was there. */
static void tab_remove_at(struct regent_annots *s, size_t i)
{
	size_t mask = s->cap - 1;
	s->tab[i] = NULL;
	s->n--;
	for (size_t j = (i + 1) & mask; s->tab[j]; j = (j + 1) & mask) {
		size_t home = s->tab[j]->hash & mask;
		/* it stays when its home lies cyclically in (i, j] */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			s->tab[i] = s->tab[j];
			s->tab[j] = NULL;
			i = j;
		}
	}
}

/* Puts one checked item: O(1) average. */
static void put_one(struct regent_annots *s, const regent_annotation *a)
{
	const char *service = FIELD(a, service), *id = FIELD(a, id);
	uint32_t h = key_hash(service, id);
	tab_reserve(s);
	size_t i = tab_find(s, service, id, h);
	regent_annot *c = s->tab[i];
	if (c && same_annot(c, a)) {
		c->gen = s->gen; /* unchanged: the copy stays */
		return;
	}
	regent_annot *copy = annot_copy(s, a, h);
	copy->gen = s->gen;
	if (c)
		annot_free(s, c);
	else
		s->n++;
	s->tab[i] = copy;
	s->stale = true;
}

static bool del_one(struct regent_annots *s, const regent_annotation *a)
{
	if (!s->n)
		return false;
	const char *service = FIELD(a, service), *id = FIELD(a, id);
	size_t i = tab_find(s, service, id, key_hash(service, id));
	regent_annot *c = s->tab[i];
	if (!c)
		return false;
	tab_remove_at(s, i);
	annot_free(s, c);
	s->stale = true;
	return true;
}

static struct regent_annots *annots_of(regent_ctx *ctx)
{
	if (!ctx->annots)
		ctx->annots = regent_xcalloc(1, sizeof(*ctx->annots));
	return ctx->annots;
}

void regent_annotations_clear(regent_ctx *ctx)
{
	struct regent_annots *s = ctx->annots;
	if (!s)
		return;
	for (size_t i = 0; i < s->cap; i++)
		annot_free(s, s->tab[i]);
	regent_map_free(s->words, NULL); /* empty by now */
	free(s->tab);
	free(s->sorted);
	free(s);
	ctx->annots = NULL;
}

size_t regent_annotations_count(const regent_ctx *ctx)
{
	return ctx->annots ? ctx->annots->n : 0;
}

/* ---- checks ---- */

/* An item to publish: a valid service, an id and a state, texts within
 * the limit. */
static bool put_ok(const regent_annotation *a)
{
	const char *service = a ? FIELD(a, service) : NULL;
	return a && service && regent_valid_service(service) && text_ok(FIELD(a, id), true) &&
	       text_ok(FIELD(a, state), true) && text_ok(FIELD(a, label), false) &&
	       text_ok(FIELD(a, detail), false);
}

/* An item to withdraw: only its service and id are read. */
static bool del_ok(const regent_annotation *a)
{
	const char *service = a ? FIELD(a, service) : NULL;
	return a && service && regent_valid_service(service) && text_ok(FIELD(a, id), true);
}

static int refuse(regent_ctx *ctx, const char *what, size_t i, size_t n)
{
	regent_log(REGENT_LOG_ERROR, ctx->who,
	           "plugin bug: annotation %s %zu of %zu refused (invalid service name, empty id%s, "
	           "or a text over %d bytes); nothing changed",
	           what, i + 1, n, strcmp(what, "to withdraw") ? " or state" : "", ANNOT_TEXT_MAX);
	return -EINVAL;
}

/* ---- the entries ---- */

/* Every item is put (unchanged ones keep their copy, a key given twice
 * ends with the last), then whatever this set did not give is dropped:
 * O(n + held) on average, no sort. */
int regent_annotations_set(regent_ctx *ctx, const regent_annotation *const *items, size_t n)
{
	if (n > annot_max) {
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "annotations refused: %zu items, at most %zu", n, annot_max);
		return -E2BIG;
	}
	for (size_t i = 0; i < n; i++)
		if (!put_ok(items[i]))
			return refuse(ctx, "item", i, n);
	if (!n || (ctx->annots && ctx->annots->source)) /* a source is replaced */
		regent_annotations_clear(ctx);
	if (!n)
		return 0;
	struct regent_annots *s = annots_of(ctx);
	s->gen = (s->gen + 1) & GEN_MASK;
	for (size_t i = 0; i < n; i++)
		put_one(s, items[i]);
	/* Sweep what this set did not give.  A removal shifts later entries of
	 * the cluster back into cell i: look at it again.  One shifted from
	 * the table's start to its end was already kept (seen) on the way. */
	for (size_t i = 0; i < s->cap;) {
		regent_annot *c = s->tab[i];
		if (c && c->gen != s->gen) {
			tab_remove_at(s, i);
			annot_free(s, c);
			s->stale = true;
			continue;
		}
		i++;
	}
	return 0;
}

/* Near the limit only: how many the instance would hold after the call
 * (deletions of held keys, puts of keys not held or deleted, each key
 * once).  O(k log k). */
static size_t count_after(struct regent_annots *s, const regent_annotation *const *put,
                          size_t nput, const regent_annotation *const *del, size_t ndel)
{
	size_t count = s->n;
	regent_annot **marked = regent_xmalloc((ndel + 1) * sizeof(*marked));
	size_t nmarked = 0;
	for (size_t i = 0; i < ndel && s->n; i++) {
		const char *service = FIELD(del[i], service), *id = FIELD(del[i], id);
		regent_annot *c = s->tab[tab_find(s, service, id, key_hash(service, id))];
		if (c && !c->mark) {
			c->mark = true;
			marked[nmarked++] = c;
			count--;
		}
	}
	const regent_annotation **fresh = regent_xmalloc((nput + 1) * sizeof(*fresh));
	size_t nfresh = 0;
	for (size_t i = 0; i < nput; i++) {
		const char *service = FIELD(put[i], service), *id = FIELD(put[i], id);
		regent_annot *c =
			s->cap ? s->tab[tab_find(s, service, id, key_hash(service, id))] : NULL;
		if (!c || c->mark)
			fresh[nfresh++] = put[i];
	}
	qsort(fresh, nfresh, sizeof(*fresh), cmp_item);
	for (size_t i = 0; i < nfresh; i++)
		if (i == 0 || cmp_key(fresh[i - 1], fresh[i]) != 0)
			count++;
	for (size_t i = 0; i < nmarked; i++)
		marked[i]->mark = false;
	free(marked);
	free(fresh);
	return count;
}

int regent_annotations_update(regent_ctx *ctx, const regent_annotation *const *put, size_t nput,
                              const regent_annotation *const *del, size_t ndel)
{
	if (nput > annot_max || ndel > annot_max) {
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "annotations refused: %zu to publish and %zu to withdraw, at most %zu each",
		           nput, ndel, annot_max);
		return -E2BIG;
	}
	for (size_t i = 0; i < ndel; i++)
		if (!del_ok(del[i]))
			return refuse(ctx, "to withdraw", i, ndel);
	for (size_t i = 0; i < nput; i++)
		if (!put_ok(put[i]))
			return refuse(ctx, "to publish", i, nput);
	if (!nput && !ndel)
		return 0;
	if (ctx->annots && ctx->annots->source) /* a source is replaced: from nothing */
		regent_annotations_clear(ctx);
	struct regent_annots *s = annots_of(ctx);
	if (s->n + nput > annot_max) {
		size_t after = count_after(s, put, nput, del, ndel);
		if (after > annot_max) {
			regent_log(REGENT_LOG_ERROR, ctx->who,
			           "annotations refused: %zu would be held, at most %zu; nothing changed",
			           after, annot_max);
			return -E2BIG;
		}
	}
	for (size_t i = 0; i < ndel; i++)
		del_one(s, del[i]);
	for (size_t i = 0; i < nput; i++)
		put_one(s, put[i]);
	return 0;
}

/* The instance's annotations in foreach's order: sorted again only after
 * a change (O(n log n) then, O(1) otherwise). */
static regent_annot **sorted_of(struct regent_annots *s)
{
	if (!s->stale && s->sorted)
		return s->sorted;
	free(s->sorted);
	s->sorted = regent_xmalloc((s->n + 1) * sizeof(*s->sorted));
	size_t k = 0;
	for (size_t i = 0; i < s->cap; i++)
		if (s->tab[i])
			s->sorted[k++] = s->tab[i];
	qsort(s->sorted, k, sizeof(*s->sorted), cmp_item); /* pub is each one's first member */
	s->stale = false;
	return s->sorted;
}

int regent_annotations_source(regent_ctx *ctx,
                              void (*source)(void *self,
                                             void (*emit)(void *emit_arg,
                                                          const regent_annotation *a),
                                             void *emit_arg),
                              void *self)
{
	regent_annotations_clear(ctx);
	if (source) {
		struct regent_annots *s = annots_of(ctx);
		s->source = source;
		s->self = self;
	}
	return 0;
}

/* One emitted item, copied whole into one block (skipped when
 * annotations_set would refuse it, or past the limit). */
static void scratch_emit(void *arg, const regent_annotation *a)
{
	struct regent_annot_scratch *sc = arg;
	if (!put_ok(a) || sc->n >= annot_max) {
		sc->skipped++;
		return;
	}
	const char *f[5] = {FIELD(a, service), FIELD(a, id), FIELD(a, label), FIELD(a, state),
	                    FIELD(a, detail)};
	size_t len[5], total = sizeof(regent_annotation);
	for (size_t i = 0; i < 5; i++) {
		len[i] = f[i] ? strlen(f[i]) + 1 : 0;
		total += len[i];
	}
	regent_annotation *c = regent_xmalloc(total);
	*c = (regent_annotation){.size = sizeof(*c), .since_wall_ns = since_of(a)};
	const char **dst[5] = {&c->service, &c->id, &c->label, &c->state, &c->detail};
	char *p = (char *)(c + 1);
	for (size_t i = 0; i < 5; i++) {
		if (!f[i])
			continue;
		memcpy(p, f[i], len[i]);
		*dst[i] = p;
		p += len[i];
	}
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? 2 * sc->cap : 64;
		sc->v = regent_xrealloc(sc->v, sc->cap * sizeof(*sc->v));
	}
	sc->v[sc->n++] = c;
}

void regent_annotations_scratch_free(regent_agent *a)
{
	while (a && a->annot_scratch) {
		struct regent_annot_scratch *sc = a->annot_scratch;
		a->annot_scratch = sc->next;
		for (size_t i = 0; i < sc->n; i++)
			free(sc->v[i]);
		free(sc->v);
		free(sc);
	}
}

static void on_scratch_timer(uv_timer_t *t)
{
	regent_agent *a = t->data;
	regent_annotations_scratch_free(a);
	regent_timer_close(&a->annot_timer);
}

/* A source's annotations now, sorted: copies on the agent's scratch list,
 * freed once control is back on the loop (a timer of 0 ms; without a loop,
 * by the next foreach or the agent's end). */
static struct regent_annot_scratch *source_read(regent_agent *a, regent_ctx *c)
{
	struct regent_annots *s = c->annots;
	struct regent_annot_scratch *sc = regent_xcalloc(1, sizeof(*sc));
	sc->next = a->annot_scratch;
	a->annot_scratch = sc;
	s->source(s->self, scratch_emit, sc);
	if (sc->skipped)
		regent_log(REGENT_LOG_ERROR, c->who,
		           "plugin bug: %zu annotation(s) of its source skipped (invalid service "
		           "name, empty id or state, a text over %d bytes, or over %zu items)",
		           sc->skipped, ANNOT_TEXT_MAX, annot_max);
	if (sc->n) /* an empty list has no array (qsort's first argument is nonnull) */
		qsort(sc->v, sc->n, sizeof(*sc->v), cmp_item);
	if (a->loop && !a->annot_timer) {
		a->annot_timer = regent_timer_new(a->loop, a);
		uv_timer_start(a->annot_timer, on_scratch_timer, 0, 0);
	}
	return sc;
}

void regent_annotations_foreach(regent_agent *a,
                                void (*fn)(void *arg, const char *publisher,
                                           const regent_annotation *an),
                                void *arg)
{
	if (a && !a->loop) /* no loop (a unit test): the last call's copies go now */
		regent_annotations_scratch_free(a);
	/* An instance on trial is not listed (the running one it is to
	 * replace speaks for the section, as in /healthz); one stopping is no
	 * longer on the list. */
	for (regent_ctx *c = a ? a->ctxs : NULL; c; c = c->next) {
		struct regent_annots *s = c->annots;
		if (c->replaces || !s)
			continue;
		if (s->source) {
			struct regent_annot_scratch *sc = source_read(a, c);
			for (size_t i = 0, n = sc->n; i < n; i++)
				fn(arg, c->sec->name, sc->v[i]);
			continue;
		}
		if (!s->n)
			continue;
		regent_annot **v = sorted_of(s);
		for (size_t i = 0, n = s->n; i < n; i++)
			fn(arg, c->sec->name, &v[i]->pub);
	}
}
