/* annotations.c - what plugin instances publish about catalog instances
 * (host->annotations_set) and read back (host->annotations_foreach).
 * Each plugin instance's set lives in its context: one allocation per
 * annotation (the struct and its strings), sorted by service then id,
 * replaced whole by every publish and freed with the context.  The core
 * does not interpret them. */
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

static int cmp_annot(const void *x, const void *y)
{
	const regent_annot *a = *(regent_annot *const *)x, *b = *(regent_annot *const *)y;
	int c = strcmp(a->pub.service, b->pub.service);
	return c ? c : strcmp(a->pub.id, b->pub.id);
}

void regent_annotations_clear(regent_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nannots; i++)
		free(ctx->annots[i]);
	free(ctx->annots);
	ctx->annots = NULL;
	ctx->nannots = 0;
}

int regent_annotations_set(regent_ctx *ctx, const regent_annotation *const *items, size_t n)
{
	if (n > ANNOT_MAX) {
		regent_log(REGENT_LOG_ERROR, ctx->who,
		           "annotations refused: %zu items, at most %d", n, ANNOT_MAX);
		return -E2BIG;
	}
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
	}
	regent_annot **v = regent_xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = annot_copy(items[i]);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_annot);
	regent_annotations_clear(ctx);
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
