/* test_localset.c - the local set reports only real changes, a full
 * resync takes down exactly what vanished, and an id reported by a source
 * and its replacement on trial is counted once: retiring either one takes
 * down only what the other does not report; claims handed to a source's
 * heir (a reload starting a failed source afresh) stay up until the heir
 * has reported or dropped them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "localset.h"

typedef struct rec {
	char log[4096];
} rec;

static void on_up(void *arg, regent_inst *inst, regent_inst *old)
{
	rec *r = arg;
	size_t l = strlen(r->log);
	snprintf(r->log + l, sizeof(r->log) - l, "%s %s:%u;", old ? "chg" : "up", inst->pub.id,
	         inst->pub.port);
}

static void on_down(void *arg, regent_inst *inst)
{
	rec *r = arg;
	size_t l = strlen(r->log);
	snprintf(r->log + l, sizeof(r->log) - l, "down %s;", inst->pub.id);
}

static const int src_a = 1, src_b = 2, src_a2 = 3, src_h = 4;

/* src_a2 is src_a's replacement (a reload's new instance); src_b is an
 * unrelated source. */
static bool may_share(void *arg, const void *owner, const void *other)
{
	(void)arg;
	return (owner == &src_a && other == &src_a2) || (owner == &src_a2 && other == &src_a);
}

static const regent_localset_ops ops = {on_up, on_down, may_share};

static regent_inst *mk(const char *id, uint16_t port)
{
	regent_instance i = {.service = "web", .id = id, .address = "127.0.0.1", .port = port};
	return regent_inst_copy(&i, "n", NULL, 0);
}

static void diffing(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	assert_int_equal(regent_localset_up(ls, &src_a, mk("a", 1)), 0);
	assert_int_equal(regent_localset_up(ls, &src_a, mk("b", 2)), 0);
	assert_string_equal(r.log, "up a:1;up b:2;");
	r.log[0] = '\0';
	/* identical report: nothing */
	assert_int_equal(regent_localset_up(ls, &src_a, mk("a", 1)), 0);
	assert_string_equal(r.log, "");
	/* changed port: one change */
	assert_int_equal(regent_localset_up(ls, &src_a, mk("a", 5)), 0);
	assert_string_equal(r.log, "chg a:5;");
	r.log[0] = '\0';
	/* another source may not take over an id */
	assert_int_equal(regent_localset_up(ls, &src_b, mk("a", 9)), -17);
	assert_int_equal(regent_localset_down(ls, &src_b, "a"), -2);
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_down(ls, &src_a, "a"), 0);
	assert_int_equal(regent_localset_down(ls, &src_a, "a"), -2);
	assert_string_equal(r.log, "down a;");
	assert_int_equal(regent_localset_size(ls), 1);
	regent_localset_free(ls);
}

static void resync(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a, mk("c", 3));
	regent_localset_up(ls, &src_b, mk("x", 7));
	r.log[0] = '\0';
	regent_localset_resync_begin(ls, &src_a);
	regent_localset_up(ls, &src_a, mk("a", 1)); /* same */
	regent_localset_up(ls, &src_a, mk("c", 4)); /* changed */
	regent_localset_up(ls, &src_a, mk("d", 5)); /* new */
	regent_localset_resync_end(ls, &src_a);
	/* b vanished; x belongs to another source and stays */
	assert_string_equal(r.log, "chg c:4;up d:5;down b;");
	assert_int_equal(regent_localset_size(ls), 4);
	r.log[0] = '\0';
	regent_localset_drop_owner(ls, &src_b);
	assert_string_equal(r.log, "down x;");
	r.log[0] = '\0';
	regent_localset_forget_owner(ls, &src_a);
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_size(ls), 0);
	regent_localset_free(ls);
}

static void count(void *arg, regent_inst *inst)
{
	rec *r = arg;
	size_t l = strlen(r->log);
	snprintf(r->log + l, sizeof(r->log) - l, "%s:%u;", inst->pub.id, inst->pub.port);
}

/* A source replaced by a reload: the new one reports beside the old one. */
static void shared_by_replacement(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a, mk("c", 3));
	r.log[0] = '\0';
	/* the new source reports a (same), b (another port) and d (new) */
	regent_localset_resync_begin(ls, &src_a2);
	assert_int_equal(regent_localset_up(ls, &src_a2, mk("a", 1)), 0);
	assert_int_equal(regent_localset_up(ls, &src_a2, mk("b", 7)), 0);
	assert_int_equal(regent_localset_up(ls, &src_a2, mk("d", 4)), 0);
	regent_localset_resync_end(ls, &src_a2);
	/* shared ids are counted once; the old source's version stands */
	assert_string_equal(r.log, "up d:4;");
	assert_int_equal(regent_localset_size(ls), 4);
	r.log[0] = '\0';
	regent_localset_foreach(ls, count, &r);
	assert_string_equal(r.log, "a:1;b:2;c:3;d:4;");
	/* an unrelated source still may not report them */
	assert_int_equal(regent_localset_up(ls, &src_b, mk("a", 9)), -17);
	/* the old source re-reporting its own version changes nothing */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_up(ls, &src_a, mk("b", 2)), 0);
	assert_string_equal(r.log, "");
	/* the old source is retired: a stays without a blink, b changes to the
	 * new source's version, c (only the old one saw it) goes */
	regent_localset_drop_owner(ls, &src_a);
	/* (in the map's order) */
	assert_true(strcmp(r.log, "chg b:7;down c;") == 0 || strcmp(r.log, "down c;chg b:7;") == 0);
	assert_int_equal(regent_localset_size(ls), 3);
	/* the new one is the only owner now */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_down(ls, &src_a2, "a"), 0);
	assert_string_equal(r.log, "down a;");
	regent_localset_free(ls);
}

/* The replacement fails its trial: the old source and its ids stay. */
static void replacement_fails(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a2, mk("a", 5));
	regent_localset_up(ls, &src_a2, mk("x", 6));
	assert_string_equal(r.log, "up a:1;up b:2;up x:6;");
	r.log[0] = '\0';
	regent_localset_drop_owner(ls, &src_a2);
	assert_string_equal(r.log, "down x;");
	r.log[0] = '\0';
	regent_localset_foreach(ls, count, &r);
	assert_string_equal(r.log, "a:1;b:2;");
	/* a down from the replacement alone: not its id any more */
	assert_int_equal(regent_localset_down(ls, &src_a2, "a"), -2);
	/* the old source's own down still works, once */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_down(ls, &src_a, "a"), 0);
	assert_string_equal(r.log, "down a;");
	/* shutdown: forgotten without reports, even when shared */
	regent_localset_up(ls, &src_a2, mk("b", 2));
	r.log[0] = '\0';
	regent_localset_forget_owner(ls, &src_a2);
	regent_localset_forget_owner(ls, &src_a);
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_size(ls), 0);
	regent_localset_free(ls);
}

/* A resync of one owner leaves the other's claims alone. */
static void resync_of_one_owner(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a2, mk("a", 1));
	regent_localset_up(ls, &src_a2, mk("n", 3));
	r.log[0] = '\0';
	regent_localset_resync_begin(ls, &src_a);
	regent_localset_resync_end(ls, &src_a); /* the old one lists nothing */
	assert_string_equal(r.log, "");       /* a: the new one still has it */
	regent_localset_resync_begin(ls, &src_a2);
	regent_localset_up(ls, &src_a2, mk("n", 3));
	regent_localset_resync_end(ls, &src_a2);
	assert_string_equal(r.log, "down a;");
	assert_int_equal(regent_localset_size(ls), 1);
	regent_localset_free(ls);
}

static bool down_in(const rec *r, const char *id)
{
	char want[64];
	snprintf(want, sizeof(want), "down %s;", id);
	return strstr(r->log, want) != NULL;
}

/* A source started afresh (src_h) inherits src_a's claims: nothing is
 * reported; its first resync keeps what it lists and takes down the rest. */
static void handed_to_heir(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a, mk("c", 3));
	r.log[0] = '\0';
	assert_int_equal(regent_localset_hand_over(ls, &src_a, &src_h), 3);
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_size(ls), 3);
	/* the predecessor owns nothing now: its drop (ctx_stop) reports nothing */
	regent_localset_drop_owner(ls, &src_a);
	assert_int_equal(regent_localset_down(ls, &src_a, "a"), -2);
	assert_string_equal(r.log, "");
	/* an unrelated source still may not report them */
	assert_int_equal(regent_localset_up(ls, &src_b, mk("a", 9)), -17);
	regent_localset_resync_begin(ls, &src_h);
	regent_localset_up(ls, &src_h, mk("a", 1)); /* same: nothing */
	regent_localset_up(ls, &src_h, mk("b", 7)); /* changed */
	regent_localset_up(ls, &src_h, mk("d", 4)); /* new */
	regent_localset_resync_end(ls, &src_h);
	assert_string_equal(r.log, "chg b:7;up d:4;down c;");
	/* what it reported is its own: nothing inherited is left */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_drop_inherited(ls, &src_h), 0);
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_size(ls), 3);
	regent_localset_free(ls);
}

/* The hand-over comes while the heir's listing is under way (a candidate
 * proven at once whose listing began in start()): its resync_end still
 * takes down what the listing did not report, inherited or not. */
static void handed_during_listing(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a, mk("c", 3));
	regent_localset_resync_begin(ls, &src_a2);
	regent_localset_up(ls, &src_a2, mk("a", 1)); /* a candidate: reported before the hand-over */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_hand_over(ls, &src_a, &src_a2), 2);
	regent_localset_drop_owner(ls, &src_a);
	regent_localset_up(ls, &src_a2, mk("b", 2)); /* after it */
	assert_string_equal(r.log, "");
	regent_localset_resync_end(ls, &src_a2);
	assert_string_equal(r.log, "down c;");
	assert_int_equal(regent_localset_size(ls), 2);
	regent_localset_free(ls);
}

/* A heir that reports one by one (no resync): drop_inherited (its ready, or
 * the bound) takes down what it did not report; a claim the heir already
 * had wins over the inherited one. */
static void heir_without_resync(void **state)
{
	(void)state;
	rec r = {""};
	regent_localset *ls = regent_localset_new(&ops, &r);
	regent_localset_up(ls, &src_a, mk("a", 1));
	regent_localset_up(ls, &src_a, mk("b", 2));
	regent_localset_up(ls, &src_a, mk("c", 3));
	regent_localset_up(ls, &src_a2, mk("c", 8)); /* shared (may_share) */
	r.log[0] = '\0';
	/* c: src_a2's own claim stays, src_a's goes (its version 8 published) */
	assert_int_equal(regent_localset_hand_over(ls, &src_a, &src_a2), 2);
	assert_string_equal(r.log, "chg c:8;");
	r.log[0] = '\0';
	regent_localset_up(ls, &src_a2, mk("a", 1));
	assert_string_equal(r.log, "");
	assert_int_equal(regent_localset_drop_inherited(ls, &src_a2), 1);
	assert_string_equal(r.log, "down b;");
	assert_false(down_in(&r, "a"));
	assert_int_equal(regent_localset_drop_inherited(ls, &src_a2), 0);
	r.log[0] = '\0';
	regent_localset_foreach(ls, count, &r);
	assert_string_equal(r.log, "a:1;c:8;");
	/* a heir stopped by a reload that removes its section drops all */
	r.log[0] = '\0';
	assert_int_equal(regent_localset_hand_over(ls, &src_a2, &src_h), 2);
	regent_localset_drop_owner(ls, &src_h);
	assert_true(down_in(&r, "a") && down_in(&r, "c"));
	assert_int_equal(regent_localset_size(ls), 0);
	regent_localset_free(ls);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(diffing),
		cmocka_unit_test(resync),
		cmocka_unit_test(shared_by_replacement),
		cmocka_unit_test(replacement_fails),
		cmocka_unit_test(resync_of_one_owner),
		cmocka_unit_test(handed_to_heir),
		cmocka_unit_test(handed_during_listing),
		cmocka_unit_test(heir_without_resync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
