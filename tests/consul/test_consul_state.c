/* test_consul_state.c - the Consul store's state file (plugins/consul/
 * consul_state.c) written through the host's asynchronous file_write: two
 * instances of one section in one process (a reload's old and new) decide
 * on the file while writes are still on the threadpool.  Checked: a read
 * made while a write is pending sees what was decided last (the new
 * instance's claim, not the disk); a write decided earlier never lands
 * after one decided later; a failed trial puts the old text back, a
 * removed section's "deregistering" mark and removal land in that order;
 * nothing is left pending or allocated (the queue frees itself).  The host
 * is the core's own table with the ctx-bound entries pointed at this
 * test's loop and state directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "consul_int.h"
#include "helpers.h" /* regent_timer_new, regent_file_write_start (regent_core) */
#include "host.h"    /* regent_host_table (regent_core) */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uv_loop_t loop;
static char dir[64];
static char path[128];
static regent_host host;

static uv_loop_t *f_loop(regent_ctx *ctx)
{
	(void)ctx;
	return &loop;
}
static const char *f_state_dir(regent_ctx *ctx)
{
	(void)ctx;
	return dir;
}
static const char *f_name(regent_ctx *ctx)
{
	(void)ctx;
	return "consul";
}
static const char *f_node(regent_ctx *ctx)
{
	(void)ctx;
	return "n1";
}
static void f_log(regent_ctx *ctx, regent_log_level l, const char *fmt, ...)
{
	(void)ctx;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "log %d: ", (int)l);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
static uv_timer_t *f_timer_new(regent_ctx *ctx, void *data)
{
	(void)ctx;
	return regent_timer_new(&loop, data);
}
static int writes_started;
static regent_file_write *f_file_write(regent_ctx *ctx, const regent_file_write_opts *o, int *err)
{
	(void)ctx;
	writes_started++;
	return regent_file_write_start(&loop, o, err);
}

static int setup(void **state)
{
	(void)state;
	host = regent_host_table; /* the ctx-free helpers (x*, map_*) as they are */
	host.loop = f_loop;
	host.state_dir = f_state_dir;
	host.instance_name = f_name;
	host.node = f_node;
	host.log = f_log;
	host.timer_new = f_timer_new;
	host.file_write = f_file_write;
	assert_int_equal(uv_loop_init(&loop), 0);
	snprintf(dir, sizeof(dir), "/tmp/regent-cstate-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/consul.consul", dir);
	writes_started = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0); /* no write or timer left behind */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* An instance as consul.c makes one, holding no service. */
static consul *instance(void)
{
	consul *c = calloc(1, sizeof(*c));
	c->h = &host;
	c->ctx = (regent_ctx *)c; /* opaque: the fake entries ignore it */
	c->shown = strdup("127.0.0.1:8500");
	c->regs = host.map_new();
	consul_state_open(c);
	return c;
}

static void instance_free(consul *c)
{
	consul_state_close(c);
	host.map_free(c->regs, NULL);
	free(c->shown);
	free(c);
}

/* The file on the disk (malloc'd), NULL when absent. */
static char *disk(void)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static char *owner_line(const consul *c)
{
	char *l = malloc(80);
	snprintf(l, 80, "\nowner=%s\n", c->token);
	return l;
}

/* Runs the loop until no write is pending (the queue freed itself). */
static void settle(void)
{
	uv_run(&loop, UV_RUN_DEFAULT);
}

/* A reload: old claims; new opens while old's write is on the
 * threadpool, claims in turn; old, stopped REPLACED before either write
 * landed, reads the new instance's claim; the disk ends with the new
 * owner, not the old one's earlier write. */
static void test_handoff_order(void **state)
{
	(void)state;
	consul *old = instance();
	consul_state_claim(old); /* write 1 starts, not landed yet */
	assert_int_equal(writes_started, 1);
	char *ol = owner_line(old);

	consul *new = instance();
	/* what the new instance found: the old claim, though still in flight */
	assert_non_null(new->state_prev);
	assert_non_null(strstr(new->state_prev, ol));
	consul_state_claim(new); /* waits for write 1 */
	assert_int_equal(writes_started, 1);
	const char *because = "";
	consul_state_on_stop(old, REGENT_STOP_REPLACED, &because);
	assert_string_equal(because, "the new instance at the same agent holds them");
	settle();
	assert_int_equal(writes_started, 2); /* the two claims, in order */
	char *nl = owner_line(new), *text = disk();
	assert_non_null(text);
	assert_non_null(strstr(text, nl));
	assert_null(strstr(text, ol));
	free(text);
	free(nl);
	free(ol);
	instance_free(old);
	instance_free(new);
	settle();
	struct stat st;
	assert_int_equal(stat(path, &st), 0); /* the file outlives the instances */
}

/* A failed trial: the new instance claimed (write in flight) and is then
 * stopped FAILED; the old text goes back, after the claim, never before. */
static void test_failed_trial_restores(void **state)
{
	(void)state;
	consul *old = instance();
	consul_state_claim(old);
	settle();
	char *before = disk();
	assert_non_null(before);
	consul *new = instance();
	consul_state_claim(new); /* on the threadpool now */
	const char *because = "";
	consul_state_on_stop(new, REGENT_STOP_FAILED, &because);
	assert_string_equal(because, "this instance never took over; the running one keeps them");
	/* the old owner reads its own claim again and rewrites it (100 ms on) */
	char *ol = owner_line(old);
	consul_state_changed(old);
	instance_free(new); /* destroyed with its restore pending: it still lands */
	settle();
	char *after = disk();
	assert_non_null(after);
	assert_non_null(strstr(after, ol));
	assert_string_equal(after, before);
	free(after);
	free(before);
	free(ol);
	instance_free(old);
}

/* A removed section: "deregistering" marked, then removed once the
 * deregistrations are answered; the removal waits for the mark's write. */
static void test_removed_marks_then_removes(void **state)
{
	(void)state;
	consul *c = instance();
	consul_state_claim(c);
	settle();
	/* one known service, so that a deregistration is due */
	reg r = {0};
	r.cid = "backend-1:web1";
	r.known = true;
	c->head = &r;
	const char *because = "";
	assert_int_equal(consul_state_on_stop(c, REGENT_STOP_REMOVED, &because), 1);
	assert_true(c->state_removing);
	/* a restarted section at the same agent waits for it */
	consul *again = instance();
	assert_true(consul_state_gate(again));
	consul_state_stopped(c); /* the deregistrations answered: removal queued */
	assert_false(consul_state_gate(again));
	c->head = NULL;
	settle();
	struct stat st;
	assert_int_equal(stat(path, &st), -1); /* removed, after the mark landed */
	instance_free(c);
	instance_free(again);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handoff_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_trial_restores, setup, teardown),
		cmocka_unit_test_setup_teardown(test_removed_marks_then_removes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
