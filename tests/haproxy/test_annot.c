/* test_annot.c - unit test of how the haproxy sink words a server's state
 * for the status page (plugins/haproxy/annot.c, hx_annot_describe): each
 * `show stat` status haproxy 2.6 writes, the check result and its reason,
 * since when, a transition in progress, and haproxy's text kept on one line;
 * and how a big fleet's poll is cut into chunks of services (hx_annot_chunk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "annot.h"
#include "core.h"
#include "host.h" /* regent_host_table */    /* regent_xcalloc */
#include "helpers.h" /* regent_h_strdup */

#include <string.h>

static void describe(const char *status, const char *chk, const char *desc, const char *last,
                     const char *since, const char *want_state, const char *want_detail)
{
	char st[24], detail[200];
	hx_annot_describe(status, chk, desc, last, since, st, sizeof(st), detail, sizeof(detail));
	assert_string_equal(st, want_state);
	assert_string_equal(detail, want_detail);
}

static void test_states(void **state)
{
	(void)state;
	describe("UP", "L7OK", "Layer7 check passed", "", "12", "up",
	         "L7OK Layer7 check passed, changed 12 s ago");
	describe("DOWN", "L4CON", "Layer4 connection problem", "Connection refused", "300", "down",
	         "L4CON Connection refused, changed 5 min ago");
	describe("DRAIN", "L4OK", "Layer4 check passed", "", "7", "drain",
	         "L4OK Layer4 check passed, changed 7 s ago");
	describe("MAINT", "", "", "", "7200", "maint", "changed 2 h ago");
	describe("MAINT (via web/s1)", "", "", "", "", "maint", "(via web/s1)");
	describe("no check", "", "", "", "5", "up", "not checked, changed 5 s ago");
	describe("UP 1/3", "* L7STS", "Layer7 wrong status", "HTTP status check returned code <503>",
	         "1", "up", "going down 1/3; L7STS HTTP status check returned code <503>, changed 1 s ago");
	describe("DOWN 1/2", "L4OK", "", "", "", "down", "going up 1/2; L4OK");
	describe("NOLB", NULL, NULL, NULL, NULL, "nolb", "");
	describe("", NULL, NULL, NULL, NULL, "unknown", "");
}

static void test_one_line(void **state)
{
	(void)state;
	/* Whatever haproxy quotes from a backend stays one line of text. */
	describe("DOWN", "L7RSP", "", "bad\r\nline", "3", "down", "L7RSP bad  line, changed 3 s ago");
	/* A long reason is cut, never overflows. */
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char st[24], detail[64];
	hx_annot_describe("DOWN", "L7STS", "", big, "1", st, sizeof(st), detail, sizeof(detail));
	assert_int_equal(strlen(detail), sizeof(detail) - 1);
	assert_string_equal(st, "down");
}

/* A cycle over the services haproxy runs, in name order, in chunks within
 * the server and command-length limits; a service that went is passed by
 * name; one bigger than a chunk goes alone. */
static void test_chunks(void **state)
{
	(void)state;
	regent_host h = regent_host_table; /* the core's own: the model and hx_buf grow through it */
	hx_model m;
	hx_model_init(&m, NULL, &h);
	const char *names[] = {"s5", "s1", "s3", "s2", "s4"};
	for (size_t i = 0; i < 5; i++) {
		svc *v = hx_svc_get(&m, names[i]);
		if (strcmp(names[i], "s3") != 0) { /* s3: not in haproxy's file */
			v->run.listen = strdup("listen x\n");
			v->run.nslots = 400;
		}
	}
	hx_model_sort(&m);
	hx_buf cmd = {.h = &h};
	bool last = false;
	const char *c = hx_annot_chunk(&m, NULL, 1000, 8000, &cmd, &last);
	assert_string_equal(c, "s2");
	assert_string_equal(hx_buf_str(&cmd), "show stat s1 4 -1;show stat s2 4 -1");
	assert_false(last);
	hx_buf_free(&cmd);
	c = hx_annot_chunk(&m, "s2", 1000, 8000, &cmd, &last);
	assert_string_equal(c, "s5");
	assert_string_equal(hx_buf_str(&cmd), "show stat s4 4 -1;show stat s5 4 -1");
	assert_true(last);
	hx_buf_free(&cmd);
	c = hx_annot_chunk(&m, "s25", 1000, 8000, &cmd, &last); /* went: the next by name */
	assert_string_equal(hx_buf_str(&cmd), "show stat s4 4 -1;show stat s5 4 -1");
	hx_buf_free(&cmd);
	c = hx_annot_chunk(&m, "s5", 1000, 8000, &cmd, &last);
	assert_null(c);
	assert_int_equal(cmd.len, 0);
	assert_true(last);
	hx_svc_find(&m, "s1")->run.nslots = 5000; /* bigger than a chunk: alone */
	c = hx_annot_chunk(&m, NULL, 1000, 8000, &cmd, &last);
	assert_string_equal(hx_buf_str(&cmd), "show stat s1 4 -1");
	hx_buf_free(&cmd);
	c = hx_annot_chunk(&m, "s1", 1000, 20, &cmd, &last); /* the command line's limit */
	assert_string_equal(hx_buf_str(&cmd), "show stat s2 4 -1");
	assert_false(last);
	hx_buf_free(&cmd);
	hx_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_one_line),
		cmocka_unit_test(test_chunks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
