/* test_annotations.c - unit tests of core/annotations.c: what a plugin
 * publishes (host->annotations_set, the whole set; host->annotations_update,
 * ABI 1.5, only what changed) is listed by annotations_foreach sorted by
 * service then id; an annotation published again unchanged keeps its copy,
 * a changed one is copied again, a withdrawn one goes; a refused call
 * changes nothing (-EINVAL, -E2BIG at the limit); set and update mix; a
 * random mix of puts and deletions matches a plain model; a publisher that
 * stops drops its items and one on trial is not listed; a source (ABI
 * 1.8) is read at each foreach, sorted, its invalid items skipped, and set
 * or update replace it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static regent_annotation an(const char *svc, const char *id, const char *state,
                            const char *detail)
{
	return (regent_annotation){.size = sizeof(regent_annotation), .service = svc, .id = id,
	                           .label = NULL, .state = state, .detail = detail};
}

/* ---- what foreach lists ---- */

#define SEEN_MAX 4096

typedef struct seen {
	size_t n;
	const char *publisher[SEEN_MAX];
	const regent_annotation *a[SEEN_MAX];
} seen;

static void collect(void *arg, const char *publisher, const regent_annotation *a)
{
	seen *s = arg;
	assert_true(s->n < SEEN_MAX);
	s->publisher[s->n] = publisher;
	s->a[s->n++] = a;
}

/* A fake agent running the given contexts (foreach reads ctxs, replaces,
 * sec->name). */
typedef struct fixture {
	regent_agent agent;
	regent_cfg_section sec[3];
	regent_ctx ctx[3];
} fixture;

static void fixture_init(fixture *f, size_t n)
{
	memset(f, 0, sizeof(*f));
	static char *names[3] = {"haproxy", "haproxy edge", "other"};
	for (size_t i = 0; i < n; i++) {
		f->sec[i].name = names[i];
		f->ctx[i].sec = &f->sec[i];
		f->ctx[i].who = names[i];
		f->ctx[i].agent = &f->agent;
		f->ctx[i].next = i + 1 < n ? &f->ctx[i + 1] : NULL;
	}
	f->agent.ctxs = &f->ctx[0];
}

static void fixture_free(fixture *f)
{
	for (size_t i = 0; i < 3; i++)
		regent_annotations_clear(&f->ctx[i]);
	regent_annotations_scratch_free(&f->agent);
}

static seen *list(fixture *f)
{
	static seen s;
	s.n = 0;
	regent_annotations_foreach(&f->agent, collect, &s);
	return &s;
}

static void check(const seen *s, size_t i, const char *svc, const char *id, const char *state)
{
	assert_true(i < s->n);
	assert_string_equal(s->a[i]->service, svc);
	assert_string_equal(s->a[i]->id, id);
	assert_string_equal(s->a[i]->state, state);
}

static int update(regent_ctx *c, const regent_annotation *put, size_t nput,
                  const regent_annotation *del, size_t ndel)
{
	const regent_annotation *p[16], *d[16];
	assert_true(nput <= 16 && ndel <= 16);
	for (size_t i = 0; i < nput; i++)
		p[i] = &put[i];
	for (size_t i = 0; i < ndel; i++)
		d[i] = &del[i];
	return regent_annotations_update(c, nput ? p : NULL, nput, ndel ? d : NULL, ndel);
}

/* ---- annotations_set ---- */

static void set_sorted_and_kept(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	/* unsorted input: listed sorted */
	regent_annotation a[4] = {an("web", "n/2", "up", NULL), an("api", "n/1", "up", "ok"),
	                          an("web", "n/1", "down", "refused"), an("web", "n/3", "up", NULL)};
	const regent_annotation *items[4] = {&a[0], &a[1], &a[2], &a[3]};
	assert_int_equal(regent_annotations_set(ctx, items, 4), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 4);
	check(s, 0, "api", "n/1", "up");
	check(s, 1, "web", "n/1", "down");
	check(s, 2, "web", "n/2", "up");
	check(s, 3, "web", "n/3", "up");
	assert_string_equal(s->publisher[0], "haproxy");
	assert_string_equal(s->a[1]->detail, "refused");
	assert_null(s->a[2]->detail);
	assert_ptr_not_equal(s->a[0]->service, a[1].service); /* copied */
	const regent_annotation *api = s->a[0], *w1 = s->a[1], *w3 = s->a[3];

	/* again: api unchanged (its copy kept), web n/1 changed (new copy),
	 * web n/2 gone, web n/3 unchanged, web n/4 new */
	regent_annotation b[4] = {an("api", "n/1", "up", "ok"), an("web", "n/1", "up", NULL),
	                          an("web", "n/3", "up", NULL), an("web", "n/4", "drain", NULL)};
	const regent_annotation *items2[4] = {&b[0], &b[1], &b[2], &b[3]};
	assert_int_equal(regent_annotations_set(ctx, items2, 4), 0);
	s = list(&f);
	assert_int_equal(s->n, 4);
	check(s, 0, "api", "n/1", "up");
	check(s, 1, "web", "n/1", "up");
	check(s, 2, "web", "n/3", "up");
	check(s, 3, "web", "n/4", "drain");
	assert_ptr_equal(s->a[0], api);
	assert_ptr_equal(s->a[2], w3);
	assert_ptr_not_equal(s->a[1], w1);
	assert_null(s->a[1]->detail);

	/* the detail alone changed: a new copy with the new detail */
	regent_annotation c[1] = {an("api", "n/1", "up", "slow")};
	const regent_annotation *items3[1] = {&c[0]};
	assert_int_equal(regent_annotations_set(ctx, items3, 1), 0);
	s = list(&f);
	assert_int_equal(s->n, 1);
	assert_ptr_not_equal(s->a[0], api);
	assert_string_equal(s->a[0]->detail, "slow");

	/* a refused set changes nothing */
	const regent_annotation *kept = s->a[0];
	regent_annotation bad[1] = {an("web", "", "up", NULL)};
	const regent_annotation *items4[2] = {&b[0], &bad[0]};
	assert_int_equal(regent_annotations_set(ctx, items4, 2), -EINVAL);
	s = list(&f);
	assert_int_equal(s->n, 1);
	assert_ptr_equal(s->a[0], kept);

	/* a key given twice keeps the last; an empty set clears */
	regent_annotation d[3] = {an("web", "n/1", "up", NULL), an("web", "n/1", "down", NULL),
	                          an("web", "n/0", "up", NULL)};
	const regent_annotation *items5[3] = {&d[0], &d[1], &d[2]};
	assert_int_equal(regent_annotations_set(ctx, items5, 3), 0);
	s = list(&f);
	assert_int_equal(s->n, 2);
	check(s, 0, "web", "n/0", "up");
	check(s, 1, "web", "n/1", "down");
	assert_int_equal(regent_annotations_set(ctx, NULL, 0), 0);
	assert_int_equal(regent_annotations_count(ctx), 0);
	assert_int_equal(list(&f)->n, 0);
	fixture_free(&f);
}

/* ---- annotations_update ---- */

static void update_put_replace_delete(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	assert_int_equal(update(ctx, NULL, 0, NULL, 0), 0); /* nothing: fine */
	regent_annotation p1[3] = {an("web", "b", "up", NULL), an("api", "x", "down", "refused"),
	                           an("web", "a", "up", "ok")};
	assert_int_equal(update(ctx, p1, 3, NULL, 0), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 3);
	check(s, 0, "api", "x", "down");
	check(s, 1, "web", "a", "up");
	check(s, 2, "web", "b", "up");
	const regent_annotation *api = s->a[0], *wa = s->a[1], *wb = s->a[2];

	/* replace one (new copy), put one unchanged (copy kept), add one */
	regent_annotation p2[3] = {an("web", "a", "drain", NULL), an("api", "x", "down", "refused"),
	                           an("web", "c", "maint", NULL)};
	assert_int_equal(update(ctx, p2, 3, NULL, 0), 0);
	s = list(&f);
	assert_int_equal(s->n, 4);
	check(s, 0, "api", "x", "down");
	check(s, 1, "web", "a", "drain");
	check(s, 2, "web", "b", "up");
	check(s, 3, "web", "c", "maint");
	assert_ptr_equal(s->a[0], api);
	assert_ptr_not_equal(s->a[1], wa);
	assert_ptr_equal(s->a[2], wb);
	assert_null(s->a[1]->detail);

	/* delete by key (state and detail not read), an unknown key does
	 * nothing; the label counts as a published field */
	regent_annotation d1[3] = {{.size = sizeof(regent_annotation), .service = "web", .id = "b"},
	                           an("web", "zz", "up", NULL), an("nope", "x", "up", NULL)};
	assert_int_equal(update(ctx, NULL, 0, d1, 3), 0);
	s = list(&f);
	assert_int_equal(s->n, 3);
	check(s, 0, "api", "x", "down");
	check(s, 1, "web", "a", "drain");
	check(s, 2, "web", "c", "maint");
	regent_annotation lab = an("web", "c", "maint", NULL);
	lab.label = "web/s3";
	assert_int_equal(update(ctx, &lab, 1, NULL, 0), 0);
	s = list(&f);
	assert_string_equal(s->a[2]->label, "web/s3");

	/* deletions first, then puts in order: a key in both is put, a key
	 * put twice ends with the last */
	regent_annotation p3[3] = {an("web", "a", "up", "back"), an("web", "d", "up", NULL),
	                           an("web", "d", "down", NULL)};
	regent_annotation d3[2] = {an("web", "a", "x", NULL), an("api", "x", "x", NULL)};
	assert_int_equal(update(ctx, p3, 3, d3, 2), 0);
	s = list(&f);
	assert_int_equal(s->n, 3);
	check(s, 0, "web", "a", "up");
	check(s, 1, "web", "c", "maint");
	check(s, 2, "web", "d", "down");
	assert_string_equal(s->a[0]->detail, "back");
	assert_int_equal(regent_annotations_count(ctx), 3);

	/* everything withdrawn: nothing listed */
	regent_annotation d4[3] = {an("web", "a", "-", NULL), an("web", "c", "-", NULL),
	                           an("web", "d", "-", NULL)};
	assert_int_equal(update(ctx, NULL, 0, d4, 3), 0);
	assert_int_equal(list(&f)->n, 0);
	assert_int_equal(regent_annotations_count(ctx), 0);
	fixture_free(&f);
}

/* A producer's struct of an older, shorter layout: the core reads no field
 * past its size (detail absent here). */
/* The texts annotations share (service, state, detail) are held once per
 * publisher: one annotation going or changing leaves the others' texts
 * intact (ASan: no use after free), and an equal text from the caller's
 * own buffer is found again. */
static void update_shared_texts(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	char detail[32], svc[16];
	snprintf(detail, sizeof(detail), "L4CON Connection refused");
	snprintf(svc, sizeof(svc), "web");
	regent_annotation put[3] = {an(svc, "a", "down", detail), an(svc, "b", "down", detail),
	                            an("db", "c", "down", NULL)};
	assert_int_equal(update(ctx, put, 3, NULL, 0), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 3);
	assert_ptr_equal(s->a[1]->detail, s->a[2]->detail); /* web/a, web/b: one copy */
	assert_ptr_equal(s->a[0]->state, s->a[1]->state);
	assert_ptr_equal(s->a[1]->service, s->a[2]->service);
	memset(detail, 'x', sizeof(detail) - 1); /* the caller's buffers are not held */
	memset(svc, 'y', sizeof(svc) - 1);
	/* web/a goes, web/b changes its detail: db/c keeps "down" */
	regent_annotation del = an("web", "a", "", NULL);
	regent_annotation chg = an("web", "b", "up", "L4OK");
	assert_int_equal(update(ctx, &chg, 1, &del, 1), 0);
	s = list(&f);
	assert_int_equal(s->n, 2);
	check(s, 0, "db", "c", "down");
	assert_null(s->a[0]->detail);
	check(s, 1, "web", "b", "up");
	assert_string_equal(s->a[1]->detail, "L4OK");
	/* the last user of "down" and of "web" went and came back */
	regent_annotation back[2] = {an("web", "b", "down", "L4CON Connection refused"),
	                             an("db", "c", "up", NULL)};
	assert_int_equal(update(ctx, back, 2, NULL, 0), 0);
	s = list(&f);
	check(s, 0, "db", "c", "up");
	check(s, 1, "web", "b", "down");
	assert_string_equal(s->a[1]->detail, "L4CON Connection refused");
	fixture_free(&f);
}

static void update_short_struct(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_annotation a = an("web", "a", "up", "never read");
	a.size = offsetof(regent_annotation, detail);
	assert_int_equal(update(&f.ctx[0], &a, 1, NULL, 0), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 1);
	assert_null(s->a[0]->detail);
	/* a key cut off by the size is no key: refused */
	regent_annotation k = an("web", "a", "up", NULL);
	k.size = offsetof(regent_annotation, id);
	assert_int_equal(update(&f.ctx[0], NULL, 0, &k, 1), -EINVAL);
	assert_int_equal(regent_annotations_count(&f.ctx[0]), 1);
	fixture_free(&f);
}

/* since_wall_ns (ABI 1.5): copied and handed on; a new time alone is a
 * change (a new copy); a producer of the 1.4 layout (ending after detail)
 * reads 0 (the field past its size is never read), and its struct with
 * an unchanged text is the same as a held copy whose time is 0. */
static void update_since(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	regent_annotation a = an("web", "a", "up", "ok");
	a.since_wall_ns = 1234567890123456789ull;
	assert_int_equal(update(ctx, &a, 1, NULL, 0), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 1);
	assert_int_equal(s->a[0]->size, sizeof(regent_annotation));
	assert_int_equal(s->a[0]->since_wall_ns, 1234567890123456789ull);
	const regent_annotation *was = s->a[0];
	assert_int_equal(update(ctx, &a, 1, NULL, 0), 0); /* the same: the copy stays */
	assert_ptr_equal(list(&f)->a[0], was);
	a.since_wall_ns += 1000000000ull; /* the time alone: a new copy */
	assert_int_equal(update(ctx, &a, 1, NULL, 0), 0);
	s = list(&f);
	assert_int_equal(s->a[0]->since_wall_ns, 1234567891123456789ull);
	/* the older layout: the field past its size is garbage, never read */
	regent_annotation old = an("web", "a", "up", "ok");
	old.since_wall_ns = 42;
	old.size = offsetof(regent_annotation, since_wall_ns);
	assert_int_equal(update(ctx, &old, 1, NULL, 0), 0);
	s = list(&f);
	assert_int_equal(s->n, 1);
	assert_int_equal(s->a[0]->since_wall_ns, 0);
	assert_string_equal(s->a[0]->detail, "ok");
	was = s->a[0];
	assert_int_equal(update(ctx, &old, 1, NULL, 0), 0);
	assert_ptr_equal(list(&f)->a[0], was);
	/* annotations_set copies it too */
	const regent_annotation *items[1] = {&a};
	assert_int_equal(regent_annotations_set(ctx, items, 1), 0);
	assert_int_equal(list(&f)->a[0]->since_wall_ns, 1234567891123456789ull);
	fixture_free(&f);
}

/* Every refusal changes nothing. */
static void update_refused(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	regent_annotation base[2] = {an("web", "a", "up", NULL), an("web", "b", "up", NULL)};
	assert_int_equal(update(ctx, base, 2, NULL, 0), 0);
	const regent_annotation *a0 = list(&f)->a[0];
	char big[300];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	regent_annotation good = an("web", "c", "up", NULL);
	regent_annotation bad_put[] = {
		an("Web!", "c", "up", NULL), /* invalid service name */
		an("web", "", "up", NULL),   /* empty id */
		an("web", "c", "", NULL),    /* empty state */
		an("web", "c", NULL, NULL),  /* no state */
		an("web", "c", "up", big),   /* a text over 256 bytes */
		an("web", big, "up", NULL),
	};
	for (size_t i = 0; i < sizeof(bad_put) / sizeof(bad_put[0]); i++) {
		regent_annotation two[2] = {good, bad_put[i]};
		regent_annotation del = an("web", "a", "up", NULL);
		assert_int_equal(update(ctx, two, 2, &del, 1), -EINVAL);
	}
	regent_annotation bad_del[] = {an("", "a", "-", NULL), an("web", "", "-", NULL),
	                               an("web", NULL, "-", NULL), an("web", big, "-", NULL)};
	for (size_t i = 0; i < sizeof(bad_del) / sizeof(bad_del[0]); i++)
		assert_int_equal(update(ctx, &good, 1, &bad_del[i], 1), -EINVAL);
	const regent_annotation *null_item = NULL;
	assert_int_equal(regent_annotations_update(ctx, &null_item, 1, NULL, 0), -EINVAL);
	assert_int_equal(regent_annotations_update(ctx, NULL, 0, &null_item, 1), -EINVAL);
	/* a 256-byte text is within the limit */
	big[256] = '\0';
	regent_annotation edge = an("web", "a", "up", big);
	assert_int_equal(update(ctx, &edge, 1, NULL, 0), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 2);
	assert_ptr_not_equal(s->a[0], a0);
	assert_int_equal(strlen(s->a[0]->detail), 256);
	check(s, 1, "web", "b", "up");
	fixture_free(&f);
}

/* The limit (lowered to 10 here; 1,000,000 in the agent) holds for both
 * entries, counted exactly: what the instance would hold after the call. */
static void limits(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	regent_annotations_set_max(10);
	char ids[12][8];
	regent_annotation a[12];
	const regent_annotation *items[12];
	for (size_t i = 0; i < 12; i++) {
		snprintf(ids[i], sizeof(ids[i]), "i%02zu", i);
		a[i] = an("web", ids[i], "up", NULL);
		items[i] = &a[i];
	}
	assert_int_equal(regent_annotations_set(ctx, items, 11), -E2BIG);
	assert_int_equal(regent_annotations_count(ctx), 0);
	assert_int_equal(regent_annotations_set(ctx, items, 10), 0);
	/* one more key: refused, nothing changed */
	assert_int_equal(update(ctx, &a[10], 1, NULL, 0), -E2BIG);
	assert_int_equal(update(ctx, &a[10], 1, &a[11], 1), -E2BIG); /* deleting an unknown key */
	assert_int_equal(regent_annotations_count(ctx), 10);
	/* replacing held keys, or one in for one out: fine */
	regent_annotation r = an("web", "i03", "down", NULL);
	assert_int_equal(update(ctx, &r, 1, NULL, 0), 0);
	assert_int_equal(update(ctx, &a[10], 1, &a[0], 1), 0);
	/* a key put twice counts once; a deleted key put again counts */
	regent_annotation twice[3] = {a[11], a[11], a[1]};
	regent_annotation gone[2] = {a[1], a[2]};
	assert_int_equal(update(ctx, twice, 3, gone, 2), 0);
	assert_int_equal(regent_annotations_count(ctx), 10);
	seen *s = list(&f);
	assert_int_equal(s->n, 10);
	check(s, 0, "web", "i01", "up");
	check(s, 1, "web", "i03", "down");
	check(s, 9, "web", "i11", "up");
	/* more than the limit in one call */
	assert_int_equal(regent_annotations_update(ctx, items, 11, NULL, 0), -E2BIG);
	assert_int_equal(regent_annotations_update(ctx, NULL, 0, items, 11), -E2BIG);
	assert_int_equal(regent_annotations_count(ctx), 10);
	regent_annotations_set_max(0);
	assert_int_equal(regent_annotations_update(ctx, NULL, 1000001, NULL, 0), -E2BIG);
	assert_int_equal(regent_annotations_set(ctx, NULL, 1000001), -E2BIG);
	assert_int_equal(update(ctx, &a[2], 1, NULL, 0), 0); /* 11: fine again */
	assert_int_equal(regent_annotations_count(ctx), 11);
	fixture_free(&f);
}

/* set and update on one instance: set still replaces everything (an
 * update's unchanged items keep their copies through it), update changes
 * a set's items. */
static void set_and_update(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	regent_annotation p[3] = {an("web", "a", "up", NULL), an("web", "b", "up", NULL),
	                          an("web", "c", "up", NULL)};
	assert_int_equal(update(ctx, p, 3, NULL, 0), 0);
	const regent_annotation *wb = list(&f)->a[1];
	const regent_annotation *items[2] = {&p[1], &p[2]};
	assert_int_equal(regent_annotations_set(ctx, items, 2), 0);
	seen *s = list(&f);
	assert_int_equal(s->n, 2);
	check(s, 0, "web", "b", "up");
	check(s, 1, "web", "c", "up");
	assert_ptr_equal(s->a[0], wb);
	regent_annotation q = an("web", "b", "drain", NULL);
	assert_int_equal(update(ctx, &q, 1, &p[2], 1), 0);
	s = list(&f);
	assert_int_equal(s->n, 1);
	check(s, 0, "web", "b", "drain");
	fixture_free(&f);
}

/* Random puts and deletions against a plain model (every key's state or
 * absent): after each batch, foreach lists exactly the model, sorted.
 * Keys collide in the table on purpose (many ids, a small table growing):
 * removals that shift clusters back, across the table's end too. */
#define RK_SVC 7
#define RK_ID 60

static void random_against_model(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 1);
	regent_ctx *ctx = &f.ctx[0];
	static char svcs[RK_SVC][8], ids[RK_ID][8];
	static const char *states[] = {"up", "down", "drain", "maint"};
	int model[RK_SVC][RK_ID]; /* -1 absent, else a state */
	for (size_t i = 0; i < RK_SVC; i++) {
		snprintf(svcs[i], sizeof(svcs[i]), "s%zu", (i * 5) % RK_SVC);
		for (size_t j = 0; j < RK_ID; j++)
			model[i][j] = -1;
	}
	for (size_t j = 0; j < RK_ID; j++)
		snprintf(ids[j], sizeof(ids[j]), "%zx", j * 7919 % 997);
	uint64_t x = 88172645463325252ull;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
	for (int round = 0; round < 400; round++) {
		regent_annotation put[16], del[16];
		size_t np = RND() % 17, nd = RND() % 17;
		if (round % 50 == 49)
			np = 0, nd = 16; /* phases of mostly deleting */
		for (size_t k = 0; k < nd; k++) {
			size_t si = RND() % RK_SVC, ij = RND() % RK_ID;
			del[k] = an(svcs[si], ids[ij], "-", NULL);
			model[si][ij] = -1;
		}
		for (size_t k = 0; k < np; k++) {
			size_t si = RND() % RK_SVC, ij = RND() % RK_ID, w = RND() % 4;
			put[k] = an(svcs[si], ids[ij], states[w], NULL);
			model[si][ij] = (int)w;
		}
		if (round % 97 == 96) { /* now and then the whole set at once */
			const regent_annotation *all[RK_SVC * RK_ID];
			regent_annotation buf[RK_SVC * RK_ID];
			size_t n = 0; /* the model already holds this round's changes */
			for (size_t i = 0; i < RK_SVC; i++)
				for (size_t j = 0; j < RK_ID; j++)
					if (model[i][j] >= 0) {
						buf[n] = an(svcs[i], ids[j], states[model[i][j]], NULL);
						all[n] = &buf[n];
						n++;
					}
			assert_int_equal(regent_annotations_set(ctx, all, n), 0);
		} else {
			assert_int_equal(update(ctx, put, np, del, nd), 0);
		}
		if (round % 3)
			continue; /* foreach not after every change: it sorts after several */
		seen *s = list(&f);
		size_t want = 0;
		for (size_t i = 0; i < RK_SVC; i++)
			for (size_t j = 0; j < RK_ID; j++)
				want += model[i][j] >= 0;
		assert_int_equal(s->n, want);
		assert_int_equal(regent_annotations_count(ctx), want);
		for (size_t k = 0; k < s->n; k++) {
			if (k) {
				int c = strcmp(s->a[k - 1]->service, s->a[k]->service);
				assert_true(c < 0 || (c == 0 && strcmp(s->a[k - 1]->id, s->a[k]->id) < 0));
			}
			size_t si = 0, ij = 0;
			while (si < RK_SVC && strcmp(svcs[si], s->a[k]->service))
				si++;
			while (ij < RK_ID && strcmp(ids[ij], s->a[k]->id))
				ij++;
			assert_true(si < RK_SVC && ij < RK_ID);
			assert_true(model[si][ij] >= 0);
			assert_string_equal(s->a[k]->state, states[model[si][ij]]);
		}
	}
#undef RND
	fixture_free(&f);
}

/* Each publisher's items apart, in start order; one on trial is not
 * listed; one that stops is no longer listed and its context takes its
 * items with it when freed (the agent's path: ctx_stop unlinks it,
 * regent_ctx_free drops them; no leak under ASan). */
static void publishers(void **st)
{
	(void)st;
	fixture f;
	fixture_init(&f, 3);
	regent_annotation a = an("web", "a", "up", NULL), b = an("web", "b", "down", NULL);
	assert_int_equal(update(&f.ctx[0], &b, 1, NULL, 0), 0);
	assert_int_equal(update(&f.ctx[1], &a, 1, NULL, 0), 0);
	assert_int_equal(update(&f.ctx[2], &a, 1, NULL, 0), 0);
	f.ctx[2].replaces = &f.ctx[1]; /* on trial */
	seen *s = list(&f);
	assert_int_equal(s->n, 2);
	assert_string_equal(s->publisher[0], "haproxy");
	check(s, 0, "web", "b", "down");
	assert_string_equal(s->publisher[1], "haproxy edge");
	check(s, 1, "web", "a", "up");

	/* the first stops: off the running list, then freed with its items */
	regent_ctx *gone = regent_xcalloc(1, sizeof(*gone));
	gone->who = strdup("sink gone");
	gone->sec = &f.sec[0];
	assert_int_equal(update(gone, &a, 1, NULL, 0), 0);
	assert_int_equal(regent_annotations_count(gone), 1);
	f.agent.ctxs = &f.ctx[1];
	s = list(&f);
	assert_int_equal(s->n, 1);
	assert_string_equal(s->publisher[0], "haproxy edge");
	regent_ctx_free(gone);
	regent_annotations_clear(&f.ctx[0]);
	assert_int_equal(regent_annotations_count(&f.ctx[0]), 0);
	fixture_free(&f);
	assert_int_equal(list(&f)->n, 0);
}

/* ---- a source (annotations_source, ABI 1.8) ---- */

typedef struct src {
	size_t n, calls;
	regent_annotation items[4];
} src;

/* Emits the items from a stack copy each time: the core must copy them. */
static void src_emit(void *self, void (*emit)(void *arg, const regent_annotation *a), void *arg)
{
	src *s = self;
	s->calls++;
	for (size_t i = 0; i < s->n; i++) {
		char label[32];
		snprintf(label, sizeof(label), "L%zu", i);
		regent_annotation a = s->items[i];
		a.label = label;
		emit(arg, &a);
		memset(label, 'x', sizeof(label) - 1); /* gone after the call */
	}
}

static void source(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 2);
	regent_ctx *ctx = &f.ctx[0];
	src s = {.n = 4,
	         .items = {an("web", "b", "up", NULL), an("api", "z", "down", "L4CON refused"),
	                   an("bad name", "x", "up", NULL), an("web", "a", "maint", NULL)}};
	assert_int_equal(regent_annotations_source(ctx, src_emit, &s), 0);
	regent_annotation other = an("api", "a", "up", NULL);
	const regent_annotation *po = &other;
	assert_int_equal(regent_annotations_set(&f.ctx[1], &po, 1), 0);
	seen *l = list(&f);
	assert_int_equal(s.calls, 1);
	assert_int_equal(l->n, 4); /* the invalid service name skipped */
	check(l, 0, "api", "z", "down");
	assert_string_equal(l->a[0]->detail, "L4CON refused");
	assert_string_equal(l->a[0]->label, "L1");
	check(l, 1, "web", "a", "maint");
	assert_string_equal(l->a[1]->label, "L3");
	check(l, 2, "web", "b", "up");
	assert_string_equal(l->publisher[2], "haproxy");
	check(l, 3, "api", "a", "up");
	assert_string_equal(l->publisher[3], "haproxy edge");
	assert_int_equal(regent_annotations_count(ctx), 0); /* nothing held */
	/* read again at each foreach: a change is there at once */
	s.items[0].state = "drain";
	l = list(&f);
	assert_int_equal(s.calls, 2);
	check(l, 2, "web", "b", "drain");
	/* on trial: not asked */
	f.ctx[0].replaces = &f.ctx[1];
	l = list(&f);
	assert_int_equal(s.calls, 2);
	f.ctx[0].replaces = NULL;
	/* an update replaces the source, from nothing */
	regent_annotation one = an("web", "c", "up", NULL);
	assert_int_equal(update(ctx, &one, 1, NULL, 0), 0);
	l = list(&f);
	assert_int_equal(s.calls, 2);
	assert_int_equal(l->n, 2);
	check(l, 0, "web", "c", "up");
	/* a source that has nothing to say yet (haproxy not answered): none
	 * listed, no sort of an empty list */
	size_t keep = s.n;
	s.n = 0;
	assert_int_equal(regent_annotations_source(ctx, src_emit, &s), 0);
	assert_int_equal(list(&f)->n, 1);
	assert_int_equal(s.calls, 3);
	s.n = keep;
	/* a source again, then none */
	assert_int_equal(regent_annotations_source(ctx, src_emit, &s), 0);
	assert_int_equal(regent_annotations_count(ctx), 0);
	assert_int_equal(list(&f)->n, 4);
	assert_int_equal(regent_annotations_source(ctx, NULL, NULL), 0);
	assert_int_equal(list(&f)->n, 1);
	assert_int_equal(s.calls, 4);
	fixture_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_sorted_and_kept),
		cmocka_unit_test(update_put_replace_delete),
		cmocka_unit_test(update_shared_texts),
		cmocka_unit_test(update_short_struct),
		cmocka_unit_test(update_since),
		cmocka_unit_test(update_refused),
		cmocka_unit_test(limits),
		cmocka_unit_test(set_and_update),
		cmocka_unit_test(random_against_model),
		cmocka_unit_test(publishers),
		cmocka_unit_test(source),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
