/* test_localset.c - the local set reports only real changes, and a full
 * resync takes down exactly what vanished. */
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

static const regent_localset_ops ops = {on_up, on_down};

static regent_inst *mk(const char *id, uint16_t port)
{
	regent_instance i = {.service = "web", .id = id, .address = "127.0.0.1", .port = port};
	return regent_inst_copy(&i, "n", NULL, 0);
}

static const int src_a = 1, src_b = 2;

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

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(diffing), cmocka_unit_test(resync)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
