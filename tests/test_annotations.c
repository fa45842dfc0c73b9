/* test_annotations.c - unit tests of core/annotations.c: what a plugin
 * publishes (host->annotations_set) is kept sorted by service then id, an
 * annotation published again unchanged keeps its copy (the publish is a
 * merge of two sorted lists, not a copy of everything), a changed one is
 * copied again, a dropped one goes, and a refused set changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static regent_annotation an(const char *svc, const char *id, const char *state,
                            const char *detail)
{
	return (regent_annotation){.size = sizeof(regent_annotation), .service = svc, .id = id,
	                           .label = NULL, .state = state, .detail = detail};
}

static const regent_annotation *at(const regent_ctx *c, size_t i)
{
	/* a kept annotation begins with its public struct (annotations.c) */
	return (const regent_annotation *)(const void *)c->annots[i];
}

static void check(const regent_ctx *c, size_t i, const char *svc, const char *id,
                  const char *state)
{
	assert_true(i < c->nannots);
	assert_string_equal(at(c, i)->service, svc);
	assert_string_equal(at(c, i)->id, id);
	assert_string_equal(at(c, i)->state, state);
}

static void sorted_and_kept(void **st)
{
	(void)st;
	regent_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.who = "sink test";
	/* unsorted input: kept sorted */
	regent_annotation a[4] = {an("web", "n/2", "up", NULL), an("api", "n/1", "up", "ok"),
	                          an("web", "n/1", "down", "refused"), an("web", "n/3", "up", NULL)};
	const regent_annotation *items[4] = {&a[0], &a[1], &a[2], &a[3]};
	assert_int_equal(regent_annotations_set(&ctx, items, 4), 0);
	assert_int_equal(ctx.nannots, 4);
	check(&ctx, 0, "api", "n/1", "up");
	check(&ctx, 1, "web", "n/1", "down");
	check(&ctx, 2, "web", "n/2", "up");
	check(&ctx, 3, "web", "n/3", "up");
	assert_string_equal(at(&ctx, 1)->detail, "refused");
	assert_null(at(&ctx, 2)->detail);
	const regent_annotation *api = at(&ctx, 0), *w1 = at(&ctx, 1), *w2 = at(&ctx, 2);

	/* again, sorted: api unchanged (its copy kept), web n/1 changed (new
	 * copy), web n/2 gone, web n/3 unchanged, web n/4 new */
	regent_annotation b[4] = {an("api", "n/1", "up", "ok"), an("web", "n/1", "up", NULL),
	                          an("web", "n/3", "up", NULL), an("web", "n/4", "drain", NULL)};
	const regent_annotation *items2[4] = {&b[0], &b[1], &b[2], &b[3]};
	const regent_annotation *w3 = at(&ctx, 3);
	assert_int_equal(regent_annotations_set(&ctx, items2, 4), 0);
	assert_int_equal(ctx.nannots, 4);
	check(&ctx, 0, "api", "n/1", "up");
	check(&ctx, 1, "web", "n/1", "up");
	check(&ctx, 2, "web", "n/3", "up");
	check(&ctx, 3, "web", "n/4", "drain");
	assert_ptr_equal(at(&ctx, 0), api);
	assert_ptr_equal(at(&ctx, 2), w3);
	assert_ptr_not_equal(at(&ctx, 1), w1);
	assert_null(at(&ctx, 1)->detail);
	(void)w2;

	/* the detail alone changed: a new copy with the new detail */
	regent_annotation c[1] = {an("api", "n/1", "up", "slow")};
	const regent_annotation *items3[1] = {&c[0]};
	assert_int_equal(regent_annotations_set(&ctx, items3, 1), 0);
	assert_int_equal(ctx.nannots, 1);
	assert_ptr_not_equal(at(&ctx, 0), api);
	assert_string_equal(at(&ctx, 0)->detail, "slow");

	/* a refused set changes nothing */
	const regent_annotation *kept = at(&ctx, 0);
	regent_annotation bad[1] = {an("web", "", "up", NULL)};
	const regent_annotation *items4[2] = {&b[0], &bad[0]};
	assert_int_equal(regent_annotations_set(&ctx, items4, 2), -EINVAL);
	assert_int_equal(ctx.nannots, 1);
	assert_ptr_equal(at(&ctx, 0), kept);

	/* duplicates of one id are both kept; an empty set clears */
	regent_annotation d[2] = {an("web", "n/1", "up", NULL), an("web", "n/1", "down", NULL)};
	const regent_annotation *items5[2] = {&d[0], &d[1]};
	assert_int_equal(regent_annotations_set(&ctx, items5, 2), 0);
	assert_int_equal(ctx.nannots, 2);
	assert_int_equal(regent_annotations_set(&ctx, NULL, 0), 0);
	assert_int_equal(ctx.nannots, 0);
	regent_annotations_clear(&ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sorted_and_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
