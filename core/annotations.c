/* annotations.c - what plugin instances publish about catalog instances
 * (host->annotations_set) and read back (host->annotations_foreach).
 * Each plugin instance's set lives in its context: one allocation per
 * annotation (the struct and its strings), sorted by service then id,
 * replaced by every publish (an unchanged annotation keeps its copy) and
 * freed with the context.  The core does not interpret them. */
#include "host.h"
#include "log.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ANNOT_TEXT_MAX 256
#define ANNOT_MAX 1000000

typedef struct regent_annot {
	regent_annotation pub; /* every pointer points into this allocation */
} regent_annot;

/* Reads a field of a producer's struct only if its size covers it. */
#define FIELD(a, f) \
	((a)->size >= offsetof(regent_annotation, f) + sizeof((a)->f) ? (a)->f : NULL)

static bool text_ok(const char *s, bool required)
{
	if (!s)
		return !required;
	size_t n = strlen(s);
	return (n > 0 || !required) && n <= ANNOT_TEXT_MAX;
}

static regent_annot *annot_copy(const regent_annotation *a)
{
	const char *f[5] = {FIELD(a, service), FIELD(a, id), FIELD(a, label), FIELD(a, state),
	                    FIELD(a, detail)};
	size_t len[5], total = sizeof(regent_annot);
	for (size_t i = 0; i < 5; i++) {
		len[i] = f[i] ? strlen(f[i]) + 1 : 0;
		total += len[i];
	}
	regent_annot *c = regent_xcalloc(1, total);
	char *p = (char *)(c + 1);
	const char **dst[5] = {&c->pub.service, &c->pub.id, &c->pub.label, &c->pub.state,
	                       &c->pub.detail};
	for (size_t i = 0; i < 5; i++) {
		if (!f[i])
			continue;
		memcpy(p, f[i], len[i]);
		*dst[i] = p;
		p += len[i];
	}
	c->pub.size = sizeof(c->pub);
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

/* Whether a kept copy says what a producer's item says. */
static bool same_annot(const regent_annot *c, const regent_annotation *a)
{
	return text_eq(c->pub.service, FIELD(a, service)) && text_eq(c->pub.id, FIELD(a, id)) &&
	       text_eq(c->pub.label, FIELD(a, label)) && text_eq(c->pub.state, FIELD(a, state)) &&
	       text_eq(c->pub.detail, FIELD(a, detail));
}

void regent_annotations_clear(regent_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nannots; i++)
		free(ctx->annots[i]);
	free(ctx->annots);
	ctx->annots = NULL;
	ctx->nannots = 0;
}

/* Replaces the set in one pass over the old and the new (both sorted by
 * service, id): an annotation published again unchanged keeps its copy,
 * so a publish costs O(n) comparisons plus one allocation per changed
 * annotation (O(n log n) only when the producer's items are not sorted). */
int regent_annotations_set(regent_ctx *ctx, const regent_annotation *const *items, size_t n)
{
	if (n > ANNOT_MAX) {
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "annotations refused: %zu items, at most %d", n, ANNOT_MAX);
		return -E2BIG;
	}
	bool sorted = true;
	for (size_t i = 0; i < n; i++) {
		const regent_annotation *a = items[i];
		const char *service = a ? FIELD(a, service) : NULL;
		if (!a || !service || !regent_valid_service(service) || !text_ok(FIELD(a, id), true) ||
		    !text_ok(FIELD(a, state), true) || !text_ok(FIELD(a, label), false) ||
		    !text_ok(FIELD(a, detail), false)) {
			regent_log(REGENT_LOG_ERROR, ctx->who,
			           "plugin bug: annotation %zu of %zu refused (invalid service name, empty "
			           "id or state, or a text over %d bytes); none published",
			           i + 1, n, ANNOT_TEXT_MAX);
			return -EINVAL;
		}
		if (i > 0 && sorted && cmp_key(items[i - 1], a) > 0)
			sorted = false;
	}
	const regent_annotation **in = NULL;
	if (!sorted) {
		in = regent_xmalloc((n + 1) * sizeof(*in));
		memcpy(in, items, n * sizeof(*in));
		qsort(in, n, sizeof(*in), cmp_item);
		items = in;
	}
	regent_annot **v = regent_xcalloc(n + 1, sizeof(*v));
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		while (o < ctx->nannots && cmp_key(&ctx->annots[o]->pub, items[i]) < 0)
			o++; /* not published again: freed below */
		if (o < ctx->nannots && ctx->annots[o] && same_annot(ctx->annots[o], items[i])) {
			v[i] = ctx->annots[o]; /* unchanged: the copy moves over */
			ctx->annots[o++] = NULL;
		} else {
			v[i] = annot_copy(items[i]);
		}
	}
	free(in);
	regent_annotations_clear(ctx); /* what did not move over */
	ctx->annots = v;
	ctx->nannots = n;
	return 0;
}

void regent_annotations_foreach(regent_agent *a,
                                void (*fn)(void *arg, const char *publisher,
                                           const regent_annotation *an),
                                void *arg)
{
	/* An instance on trial is not listed (the running one it is to
	 * replace speaks for the section, as in /healthz). */
	for (regent_ctx *c = a ? a->ctxs : NULL; c; c = c->next) {
		if (c->replaces)
			continue;
		for (size_t i = 0; i < c->nannots; i++)
			fn(arg, c->sec->name, &c->annots[i]->pub);
	}
}
