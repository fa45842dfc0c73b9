/*
 * test_http.c - core/http.c against tests/http_test_server.py.
 *
 * The group setup starts the Python server (TCP on 127.0.0.1 plus a unix
 * socket in a private temp directory) and the group teardown kills and
 * reaps it; every test gets its own uv loop and client.
 */
#include "http.h"
#include "http_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ------------------------------------------------------------------ */
/* The server child                                                   */
/* ------------------------------------------------------------------ */

static pid_t server_pid = -1;
static int server_stdin = -1;
static int server_port;
char tmp_dir[64];
char sock_path[128];

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		while (waitpid(server_pid, NULL, 0) < 0 && errno == EINTR)
			;
		server_pid = -1;
	}
	if (server_stdin >= 0) {
		close(server_stdin);
		server_stdin = -1;
	}
	if (sock_path[0]) {
		unlink(sock_path);
		sock_path[0] = '\0';
	}
	if (tmp_dir[0]) {
		rmdir(tmp_dir);
		tmp_dir[0] = '\0';
	}
}

static int group_setup(void **state)
{
	(void)state;
	const char *py = getenv("PYTHON3");
	if (!py || !*py)
		py = "python3";
	char script[PATH_MAX];
	const char *dir = getenv("REGENT_TEST_DIR");
	if (dir && *dir) {
		snprintf(script, sizeof script, "%s/http_test_server.py", dir);
	} else {
		/* Fallback: next to this source file. */
		snprintf(script, sizeof script, "%s", __FILE__);
		char *slash = strrchr(script, '/');
		if (slash)
			snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "http_test_server.py");
		else
			snprintf(script, sizeof script, "http_test_server.py");
	}

	snprintf(tmp_dir, sizeof tmp_dir, "/tmp/regent-http-XXXXXX");
	if (!mkdtemp(tmp_dir)) {
		tmp_dir[0] = '\0';
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(sock_path, sizeof sock_path, "%s/http.sock", tmp_dir);
	atexit(stop_server);

	int out[2], in[2];
	if (pipe2(out, O_CLOEXEC) != 0)
		return -1;
	if (pipe2(in, O_CLOEXEC) != 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(out[0]);
		close(out[1]);
		close(in[0]);
		close(in[1]);
		return -1;
	}
	if (pid == 0) {
		/* dup2 clears close-on-exec on the new descriptors. */
		dup2(in[0], 0);
		dup2(out[1], 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp(py, py, script, "--port", "0", "--unix", sock_path, "--exit-on-stdin-eof",
		       (char *)NULL);
		_exit(127);
	}
	server_pid = pid;
	close(in[0]);
	close(out[1]);
	server_stdin = in[1];

	/* The first line is the port, printed once every listener is bound. */
	char line[64];
	size_t len = 0;
	int rc = -1;
	while (len < sizeof line - 1) {
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		int pr = poll(&pfd, 1, 20000);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t r = read(out[0], line + len, 1);
		if (r <= 0)
			break;
		if (line[len] == '\n') {
			line[len] = '\0';
			server_port = atoi(line);
			rc = server_port > 0 ? 0 : -1;
			break;
		}
		len++;
	}
	close(out[0]);
	if (rc != 0) {
		fprintf(stderr, "test server (%s %s) did not start\n", py, script);
		stop_server();
	}
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	stop_server();
	return 0;
}

/* ------------------------------------------------------------------ */
/* Fixture: a loop and a client per test                              */
/* ------------------------------------------------------------------ */


static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	if (!f || uv_loop_init(&f->loop) != 0)
		return -1;
	if (regent_http_init(&f->h, &f->loop) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	if (f->h)
		regent_http_close(f->h);
	f->h = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&f->loop);
	if (rc != 0)
		fprintf(stderr, "uv_loop_close: %s (handles left open)\n", uv_strerror(rc));
	free(f);
	return rc == 0 ? 0 : -1;
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static void watchdog_fired(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

void free_handle(uv_handle_t *h)
{
	free(h);
}

/* Runs the loop until *counter >= target or ms elapsed.  Returns whether
 * the target was reached.  The callbacks call uv_stop() so that
 * UV_RUN_ONCE returns without waiting for the next event. */
bool run_until(uv_loop_t *loop, const int *counter, int target, uint64_t ms)
{
	bool expired = false;
	uv_timer_t *wd = malloc(sizeof *wd);
	assert_non_null(wd);
	assert_int_equal(uv_timer_init(loop, wd), 0);
	wd->data = &expired;
	assert_int_equal(uv_timer_start(wd, watchdog_fired, ms, 0), 0);
	while (*counter < target && !expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)wd, free_handle);
	return *counter >= target;
}

void run_for(uv_loop_t *loop, uint64_t ms)
{
	int never = 0;
	run_until(loop, &never, 1, ms);
}

/* ------------------------------------------------------------------ */
/* One request's observations                                         */
/* ------------------------------------------------------------------ */


void call_free(call *c)
{
	free(c->body);
	free(c->data);
	for (int i = 0; i < c->nlines; i++)
		free(c->lines[i]);
	memset(c->lines, 0, sizeof c->lines);
	c->body = c->data = NULL;
	c->nlines = 0;
}

static void copy_header(call *c, const char *name, char *dst, size_t cap, bool *found)
{
	const char *v = regent_http_header(c->req, name);
	if (found)
		*found = v != NULL;
	snprintf(dst, cap, "%s", v ? v : "");
}

void on_done(void *arg, const regent_http_result *res)
{
	call *c = arg;
	c->done++;
	uv_stop(&c->f->loop); /* let run_until() look at the counters now */
	if (c->total)
		(*c->total)++;
	c->t_done = now_ms();
	assert_true(res->size >= sizeof(regent_http_result));
	c->error = res->error;
	c->status = res->status;
	snprintf(c->error_msg, sizeof c->error_msg, "%s", res->error_msg ? res->error_msg : "(null)");
	c->body_null = res->body == NULL;
	free(c->body);
	c->body = NULL;
	if (res->body) {
		c->body = malloc(res->body_len + 1);
		assert_non_null(c->body);
		memcpy(c->body, res->body, res->body_len);
		c->body[res->body_len] = '\0';
		c->body_len = res->body_len;
		c->body_nul_terminated = res->body[res->body_len] == '\0';
	}
	copy_header(c, "x-echo", c->x_echo, sizeof c->x_echo, &c->have_x_echo);
	copy_header(c, "X-METHOD", c->x_method, sizeof c->x_method, NULL);
	copy_header(c, "X-Transport", c->x_transport, sizeof c->x_transport, NULL);
	copy_header(c, "Content-Type", c->ctype, sizeof c->ctype, NULL);
	c->missing_is_null = regent_http_header(c->req, "X-Not-There") == NULL;

	if (c->cancel_self_in_done)
		regent_http_cancel(c->req);
	if (c->cancel_other)
		regent_http_cancel(c->cancel_other);
	if (c->start_from_done) {
		regent_http_opts o = {.size = sizeof o, .url = c->start_from_done->chain_url};
		int err = 0;
		assert_non_null(start(c->start_from_done, &o, &err));
		assert_int_equal(err, 0);
	}
	if (c->close_in_done) {
		regent_http_close(c->f->h);
		c->f->h = NULL;
	}
}

int on_data(void *arg, const char *data, size_t len)
{
	call *c = arg;
	c->data_calls++;
	uv_stop(&c->f->loop);
	if (c->spin_ms || (c->spin_first_ms && c->data_calls == 1)) {
		uint64_t until = now_ms() + (uint64_t)(c->spin_ms ? c->spin_ms : c->spin_first_ms);
		while (now_ms() < until)
			;
	}
	if (c->flags & REGENT_HTTP_LINES) {
		assert_true(c->nlines < MAX_LINES);
		if (c->ticks)
			c->ticks_at[c->nlines] = *c->ticks;
		if (memchr(data, '\n', len))
			c->line_had_newline = true;
		char *l = malloc(len + 1);
		assert_non_null(l);
		memcpy(l, data, len);
		l[len] = '\0';
		c->lines[c->nlines++] = l;
	} else {
		char *p = realloc(c->data, c->data_len + len + 1);
		assert_non_null(p);
		memcpy(p + c->data_len, data, len);
		c->data = p;
		c->data_len += len;
		c->data[c->data_len] = '\0';
	}
	if (c->start_from_data) {
		call *n = c->start_from_data;
		c->start_from_data = NULL;
		regent_http_opts o = {.size = sizeof o, .url = n->chain_url};
		int err = 0;
		assert_non_null(start(n, &o, &err));
		assert_int_equal(err, 0);
	}
	if (c->cancel_other_in_data) {
		regent_http_cancel(c->cancel_other_in_data);
		c->cancel_other_in_data = NULL;
	}
	if (c->cancel_at_line && c->nlines == c->cancel_at_line) {
		regent_http_cancel(c->req);
		regent_http_cancel(c->req); /* idempotent */
		return 0;
	}
	if (c->abort_at_line && c->nlines == c->abort_at_line)
		return 1;
	if (c->abort_chunks)
		return 1;
	return 0;
}

regent_http_req *start(call *c, regent_http_opts *o, int *err)
{
	o->on_done = on_done;
	if ((c->flags & REGENT_HTTP_LINES) || (o->flags & REGENT_HTTP_LINES) || o->on_data) {
		o->on_data = on_data;
	}
	o->flags |= c->flags;
	o->arg = c;
	c->t_start = now_ms();
	c->req = regent_http_request(c->f->h, o, err);
	return c->req;
}

static char url_buf[8][256];

const char *url(int slot, const char *path)
{
	snprintf(url_buf[slot], sizeof url_buf[slot], "http://127.0.0.1:%d%s", server_port, path);
	return url_buf[slot];
}

/* ------------------------------------------------------------------ */
/* Tests                                                              */
/* ------------------------------------------------------------------ */

static void test_get(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/hello"), .timeout_ms = 5000};
	int err = 1;
	assert_non_null(start(&c, &o, &err));
	assert_int_equal(err, 0);
	assert_int_equal(regent_http_pending(f->h), 1);
	assert_int_equal(c.done, 0); /* never synchronous */

	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.done, 1);
	assert_int_equal(c.error, 0);
	assert_string_equal(c.error_msg, "");
	assert_int_equal(c.status, 200);
	assert_false(c.body_null);
	assert_true(c.body_nul_terminated);
	assert_int_equal(c.body_len, 11);
	assert_string_equal(c.body, "hello world");
	assert_string_equal(c.ctype, "text/plain");
	assert_true(c.missing_is_null);
	assert_int_equal(regent_http_pending(f->h), 0);
	run_for(&f->loop, 50);
	assert_int_equal(c.done, 1); /* exactly once */
	call_free(&c);

	/* Headers of an interim 1xx response are dropped. */
	call e = {.f = f};
	regent_http_opts oe = {.size = sizeof oe, .url = url(1, "/hints"), .timeout_ms = 5000};
	assert_non_null(start(&e, &oe, &err));
	assert_true(run_until(&f->loop, &e.done, 1, 5000));
	assert_int_equal(e.error, 0);
	assert_int_equal(e.status, 200);
	assert_string_equal(e.body, "final");
	assert_string_equal(e.x_echo, "final");
	call_free(&e);
}

static void test_post_echo(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	char body[] = {'p', 'i', 'n', 'g', '\0', 'p', 'o', 'n', 'g'};
	const char *hdrs[] = {"X-Test: abc123", "Content-Type: application/octet-stream"};
	regent_http_opts o = {
		.size = sizeof o, .url = url(0, "/echo"), .body = body, .body_len = sizeof body,
		.headers = hdrs, .nheaders = 2, .timeout_ms = 5000,
	};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	memset(body, 'Z', sizeof body); /* the core copied it */
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 200);
	assert_int_equal(c.body_len, 9);
	assert_memory_equal(c.body, "ping\0pong", 9);
	assert_true(c.have_x_echo);
	assert_string_equal(c.x_echo, "abc123");
	assert_string_equal(c.x_method, "POST");
	assert_true(c.missing_is_null);
	call_free(&c);

	/* Any method through CUSTOMREQUEST. */
	call p = {.f = f};
	const char *hdrs2[] = {"x-test: put-it"};
	regent_http_opts o2 = {
		.size = sizeof o2, .method = "PUT", .url = url(0, "/echo"), .body = "data",
		.body_len = 4, .headers = hdrs2, .nheaders = 1, .timeout_ms = 5000,
	};
	assert_non_null(start(&p, &o2, &err));
	assert_true(run_until(&f->loop, &p.done, 1, 5000));
	assert_int_equal(p.error, 0);
	assert_int_equal(p.status, 200);
	assert_string_equal(p.body, "data");
	assert_string_equal(p.x_method, "PUT");
	assert_string_equal(p.x_echo, "put-it");
	call_free(&p);

	call d = {.f = f};
	regent_http_opts o3 = {.size = sizeof o3, .method = "DELETE", .url = url(0, "/echo")};
	assert_non_null(start(&d, &o3, &err));
	assert_true(run_until(&f->loop, &d.done, 1, 5000));
	assert_int_equal(d.error, 0);
	assert_string_equal(d.x_method, "DELETE");
	assert_false(d.have_x_echo && d.x_echo[0]);
	call_free(&d);
}

static void test_status_not_error(void **state)
{
	fixture *f = *state;
	call c = {.f = f}, c5 = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/status/404")};
	regent_http_opts o5 = {.size = sizeof o5, .url = url(1, "/status/503")};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_non_null(start(&c5, &o5, &err));
	int total = 0;
	c.total = c5.total = &total;
	assert_true(run_until(&f->loop, &total, 2, 5000));
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 404);
	assert_string_equal(c.body, "status 404");
	assert_string_equal(c.error_msg, "");
	assert_int_equal(c5.error, 0);
	assert_int_equal(c5.status, 503);
	call_free(&c);
	call_free(&c5);
}

static void check_stream_lines(fixture *f, const char *path)
{
	call c = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts o = {.size = sizeof o, .url = url(0, path)};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 200);
	assert_true(c.body_null); /* streamed */
	assert_false(c.line_had_newline);
	assert_int_equal(c.nlines, 6);
	for (int i = 0; i < 5; i++) {
		char want[32];
		snprintf(want, sizeof want, "{\"i\":%d}", i);
		assert_string_equal(c.lines[i], want);
	}
	assert_string_equal(c.lines[5], "{\"done\":true}");
	assert_int_equal(c.data_calls, 6);
	call_free(&c);
}

static void test_stream_lines(void **state)
{
	fixture *f = *state;
	check_stream_lines(f, "/stream?n=5&delay_ms=50");
	/* CRLF endings are stripped; lines split over chunks are joined. */
	check_stream_lines(f, "/stream?n=5&delay_ms=20&crlf=1&split=1");
}

static void test_stream_chunks(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=3&delay_ms=20"),
	                      .on_data = on_data};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, 0);
	assert_true(c.body_null);
	assert_true(c.data_calls >= 2);
	assert_string_equal(c.data, "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"done\":true}");
	call_free(&c);
}

static void test_unix_socket(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = "http://localhost/hello",
	                      .unix_socket = sock_path, .timeout_ms = 5000};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.body, "hello world");
	call_free(&c);

	/* A socket nobody listens on. */
	call n = {.f = f};
	char missing[160];
	snprintf(missing, sizeof missing, "%s/none.sock", tmp_dir);
	regent_http_opts o2 = {.size = sizeof o2, .url = "http://localhost/hello",
	                       .unix_socket = missing};
	assert_non_null(start(&n, &o2, &err));
	assert_true(run_until(&f->loop, &n.done, 1, 5000));
	assert_int_equal(n.error, -ECONNREFUSED);
	assert_int_equal(n.status, 0);
	assert_string_not_equal(n.error_msg, "");
	call_free(&n);
}

static void tick(uv_timer_t *t)
{
	(*(int *)t->data)++;
}

static void test_timeout_loop_responsive(void **state)
{
	fixture *f = *state;
	int ticks = 0;
	uv_timer_t *ticker = malloc(sizeof *ticker);
	assert_non_null(ticker);
	assert_int_equal(uv_timer_init(&f->loop, ticker), 0);
	ticker->data = &ticks;
	assert_int_equal(uv_timer_start(ticker, tick, 20, 20), 0);

	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/hang"), .timeout_ms = 300};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	bool done = run_until(&f->loop, &c.done, 1, 5000);
	uv_close((uv_handle_t *)ticker, free_handle);
	assert_true(done);
	uint64_t elapsed = c.t_done - c.t_start;
	assert_int_equal(c.error, -ETIMEDOUT);
	assert_int_equal(c.status, 0);
	assert_string_not_equal(c.error_msg, "");
	assert_in_range(elapsed, 250, 2000);
	assert_true(ticks >= 5);
	call_free(&c);
}

/* Pacing: 50 lines arriving in one read, to a consumer that takes 2 ms a
 * line, are handed over across several loop turns (a timer runs between
 * them), all of them, in order. */
static void test_lines_paced(void **state)
{
	fixture *f = *state;
	int ticks = 0;
	uv_timer_t *ticker = malloc(sizeof *ticker);
	assert_non_null(ticker);
	assert_int_equal(uv_timer_init(&f->loop, ticker), 0);
	ticker->data = &ticks;
	assert_int_equal(uv_timer_start(ticker, tick, 1, 1), 0);
	call c = {.f = f, .flags = REGENT_HTTP_LINES, .spin_ms = 2, .ticks = &ticks};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=50&burst=1")};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	bool done = run_until(&f->loop, &c.done, 1, 10000);
	uv_close((uv_handle_t *)ticker, free_handle);
	assert_true(done);
	assert_int_equal(c.error, 0);
	assert_int_equal(c.nlines, 51);
	for (int i = 0; i < 50; i++) {
		char want[32];
		snprintf(want, sizeof want, "{\"i\":%d}", i);
		assert_string_equal(c.lines[i], want);
	}
	assert_string_equal(c.lines[50], "{\"done\":true}");
	/* 100 ms of work, at most ~10 ms per loop callback: the ticker ran
	 * in between, several times */
	assert_true(c.ticks_at[49] - c.ticks_at[0] >= 3);
	call_free(&c);
}

/* Pacing meets the line limit: a line longer than max_body whose start
 * waited in the backlog while curl was paused.  Line 0 takes 15 ms, so the
 * rest of curl's first 16 KiB read waits in the backlog and the next read
 * is held in curl (paused); once the backlog is handed over, unpausing
 * gives that read back at once and the line passes the limit inside
 * curl_easy_pause().  The request must end with -EFBIG then, not stall
 * (it used to: the write error was returned by curl_easy_pause(), which
 * nobody looked at, and curl no longer watched the socket). */
static void test_lines_too_long_paced(void **state)
{
	fixture *f = *state;
	/* A connection already open: no connect-time curl timer still due that
	 * would drive curl again by chance (its 200 ms happy-eyeballs timer did,
	 * on a fresh connection). */
	call w = {.f = f};
	regent_http_opts ow = {.size = sizeof ow, .url = url(0, "/hello")};
	int err = 0;
	assert_non_null(start(&w, &ow, &err));
	assert_true(run_until(&f->loop, &w.done, 1, 5000));
	assert_int_equal(w.error, 0);
	call_free(&w);

	call c = {.f = f, .flags = REGENT_HTTP_LINES, .spin_first_ms = 15};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=1&burst=1&long=100000"),
	                      .max_body = 20000, .timeout_ms = 60000};
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 3000));
	assert_int_equal(c.error, -EFBIG);
	assert_non_null(strstr(c.error_msg, "line longer than 20000 bytes"));
	assert_int_equal(c.nlines, 1);
	assert_string_equal(c.lines[0], "{\"i\":0}");
	call_free(&c);

	/* The same with on_data aborting at a line of that second read
	 * (lines of ~600 bytes: line 40 is past the first 16 KiB). */
	call a = {.f = f, .flags = REGENT_HTTP_LINES, .spin_first_ms = 15, .abort_at_line = 40};
	regent_http_opts oa = {.size = sizeof oa, .url = url(0, "/stream?n=60&burst=1&pad=600"),
	                       .timeout_ms = 60000};
	assert_non_null(start(&a, &oa, &err));
	assert_true(run_until(&f->loop, &a.done, 1, 3000));
	assert_int_equal(a.error, -ECANCELED);
	assert_int_equal(a.nlines, 40);
	call_free(&a);
}

/* Two streams with a backlog share each loop turn: the newer one's, however
 * long, does not keep the older one from every turn.  (It did: on_pace
 * walks the requests newest first; the first spent the turn's PACE_NS and
 * every other one got no line while it kept a backlog, its idle timer
 * touched all the while: silent for as long as the other stream kept
 * sending.)  A (older): 40 lines of 5 ms each, behind after its first read;
 * B (newer): 3,000 lines of 1 ms each, always behind.  A must end long
 * before B. */
typedef struct heavy {
	int lines, done, error;
} heavy;

static int heavy_line(void *arg, const char *data, size_t len)
{
	(void)data;
	(void)len;
	heavy *b = arg;
	b->lines++;
	uint64_t until = now_ms() + 1;
	while (now_ms() < until)
		;
	return 0;
}

static void heavy_done(void *arg, const regent_http_result *res)
{
	heavy *b = arg;
	b->error = res->error;
	b->done++;
}

static void test_lines_paced_fair(void **state)
{
	fixture *f = *state;
	call a = {.f = f, .flags = REGENT_HTTP_LINES, .spin_ms = 5};
	regent_http_opts oa = {.size = sizeof oa, .url = url(0, "/stream?n=40&burst=1&pad=600"),
	                       .timeout_ms = 60000};
	int err = 0;
	assert_non_null(start(&a, &oa, &err));
	assert_true(run_until(&f->loop, &a.data_calls, 1, 3000)); /* A is reading */
	heavy b = {0};
	regent_http_opts ob = {.size = sizeof ob, .url = url(1, "/stream?n=3000&burst=1&pad=600"),
	                       .flags = REGENT_HTTP_LINES, .on_data = heavy_line,
	                       .on_done = heavy_done, .arg = &b, .timeout_ms = 60000};
	regent_http_req *rb = regent_http_request(f->h, &ob, &err);
	assert_non_null(rb);
	assert_true(run_until(&f->loop, &a.done, 1, 30000));
	assert_int_equal(a.error, 0);
	assert_int_equal(a.nlines, 41);
	/* B was still behind: A was not held until B's backlog was gone */
	assert_int_equal(b.done, 0);
	assert_true(b.lines < 2500);
	regent_http_cancel(rb);
	call_free(&a);
}

static void test_idle_timeout(void **state)
{
	fixture *f = *state;
	call c = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/slow-stream"),
	                      .idle_timeout_ms = 300};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	uint64_t elapsed = c.t_done - c.t_start;
	assert_int_equal(c.error, -ETIMEDOUT);
	assert_int_equal(c.status, 200);
	assert_int_equal(c.nlines, 1);
	assert_string_equal(c.lines[0], "{\"first\":true}");
	assert_non_null(strstr(c.error_msg, "300 ms"));
	assert_in_range(elapsed, 250, 2000);
	call_free(&c);

	/* A stream that keeps sending faster than the idle timeout is fine. */
	call s = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts o2 = {.size = sizeof o2, .url = url(0, "/stream?n=6&delay_ms=100"),
	                       .idle_timeout_ms = 400};
	assert_non_null(start(&s, &o2, &err));
	assert_true(run_until(&f->loop, &s.done, 1, 5000));
	assert_int_equal(s.error, 0);
	assert_int_equal(s.nlines, 7);
	call_free(&s);
}

static void count_turn(uv_prepare_t *p)
{
	(*(int *)p->data)++;
}

/* The connection of a finished request stays watched (core/http.c,
 * Sockets): when the server closes it while idle, the loop is woken once
 * (the handle is stopped then), not on every turn, and the next request
 * simply opens a new connection. */
static void test_idle_connection_closed(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/then-close"), .timeout_ms = 5000};
	int err = 1;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.body, "bye");
	/* the server closes the idle connection 50 ms after answering */
	int turns = 0;
	uv_prepare_t turn;
	assert_int_equal(uv_prepare_init(&f->loop, &turn), 0);
	turn.data = &turns;
	assert_int_equal(uv_prepare_start(&turn, count_turn), 0);
	run_for(&f->loop, 400);
	uv_prepare_stop(&turn);
	uv_close((uv_handle_t *)&turn, NULL);
	/* the watchdog, the EOF, curl's timers: a handful of turns, not a spin */
	if (turns > 50)
		fail_msg("%d loop turns in 400 ms with an idle closed connection", turns);
	call d = {.f = f};
	o.url = url(0, "/hello");
	assert_non_null(start(&d, &o, &err));
	assert_true(run_until(&f->loop, &d.done, 1, 5000));
	assert_int_equal(d.error, 0);
	assert_int_equal(d.status, 200);
	assert_string_equal(d.body, "hello world");
	call_free(&c);
	call_free(&d);
}

static void test_connection_refused(void **state)
{
	fixture *f = *state;
	/* A port bound but not listening refuses connections. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t sl = sizeof sa;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	char u[64];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/hello", ntohs(sa.sin_port));

	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = u, .timeout_ms = 5000};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	bool done = run_until(&f->loop, &c.done, 1, 5000);
	close(fd);
	assert_true(done);
	assert_int_equal(c.error, -ECONNREFUSED);
	assert_int_equal(c.status, 0);
	assert_string_not_equal(c.error_msg, "");
	call_free(&c);
}

static void test_max_body(void **state)
{
	fixture *f = *state;
	int err = 0;
	int total = 0;
	/* Content-Length over the limit, chunked over the limit, a long line,
	 * exactly the limit, and a big body under the default limit. */
	call a = {.f = f, .total = &total}, b = {.f = f, .total = &total};
	call l = {.f = f, .total = &total, .flags = REGENT_HTTP_LINES};
	call e = {.f = f, .total = &total}, big = {.f = f, .total = &total};
	regent_http_opts oa = {.size = sizeof oa, .url = url(0, "/big?bytes=100000"), .max_body = 1000};
	regent_http_opts ob = {.size = sizeof ob, .url = url(1, "/big?bytes=100000&chunked=1"),
	                       .max_body = 1000};
	regent_http_opts ol = {.size = sizeof ol, .url = url(2, "/big?bytes=5000&chunked=1"),
	                       .max_body = 100};
	regent_http_opts oe = {.size = sizeof oe, .url = url(3, "/big?bytes=1000"), .max_body = 1000};
	regent_http_opts og = {.size = sizeof og, .url = url(4, "/big?bytes=3000000&chunked=1")};
	assert_non_null(start(&a, &oa, &err));
	assert_non_null(start(&b, &ob, &err));
	assert_non_null(start(&l, &ol, &err));
	assert_non_null(start(&e, &oe, &err));
	assert_non_null(start(&big, &og, &err));
	assert_true(run_until(&f->loop, &total, 5, 10000));

	assert_int_equal(a.error, -EFBIG);
	assert_string_not_equal(a.error_msg, "");
	assert_int_equal(b.error, -EFBIG);
	assert_int_equal(b.status, 200);
	assert_non_null(strstr(b.error_msg, "1000"));
	assert_int_equal(l.error, -EFBIG);
	assert_int_equal(l.nlines, 0);
	assert_int_equal(e.error, 0);
	assert_int_equal(e.body_len, 1000);
	assert_int_equal(big.error, 0);
	assert_int_equal(big.body_len, 3000000);
	assert_true(big.body_nul_terminated);
	for (size_t i = 0; i < big.body_len; i += 997)
		assert_int_equal(big.body[i], 'a' + (int)(i % 26));
	call_free(&a);
	call_free(&b);
	call_free(&l);
	call_free(&e);
	call_free(&big);
}

#define NCONC 50

static void test_many_concurrent(void **state)
{
	fixture *f = *state;
	static call calls[NCONC];
	static char bodies[NCONC][32], hdrs[NCONC][48];
	int total = 0, err = 0;
	for (int i = 0; i < NCONC; i++) {
		memset(&calls[i], 0, sizeof calls[i]);
		calls[i].f = f;
		calls[i].total = &total;
		snprintf(bodies[i], sizeof bodies[i], "request-%d", i);
		snprintf(hdrs[i], sizeof hdrs[i], "X-Test: %d", i * 7);
		const char *hv[] = {hdrs[i]};
		regent_http_opts o = {
			.size = sizeof o, .url = url(0, "/echo"), .body = bodies[i],
			.body_len = strlen(bodies[i]), .headers = hv, .nheaders = 1, .timeout_ms = 20000,
		};
		assert_non_null(start(&calls[i], &o, &err));
		assert_int_equal(err, 0);
	}
	assert_int_equal(regent_http_pending(f->h), NCONC);
	assert_true(run_until(&f->loop, &total, NCONC, 30000));
	for (int i = 0; i < NCONC; i++) {
		char want[16];
		snprintf(want, sizeof want, "%d", i * 7);
		assert_int_equal(calls[i].done, 1);
		assert_int_equal(calls[i].error, 0);
		assert_int_equal(calls[i].status, 200);
		assert_string_equal(calls[i].body, bodies[i]);
		assert_string_equal(calls[i].x_echo, want);
		call_free(&calls[i]);
	}
	assert_int_equal(regent_http_pending(f->h), 0);
}

static void test_invalid_args(void **state)
{
	fixture *f = *state;
	call c = {.f = f};
	int err = 0;
	regent_http_opts o = {.size = sizeof o, .url = NULL};
	assert_null(start(&c, &o, &err));
	assert_int_equal(err, -EINVAL);

	regent_http_opts m = {.size = sizeof m, .url = url(0, "/hello"), .method = "GET /x HTTP/1.1\r\n"};
	err = 0;
	assert_null(start(&c, &m, &err));
	assert_int_equal(err, -EINVAL);

	const char *bad[] = {"X-A: b\r\nX-Injected: 1"};
	regent_http_opts hh = {.size = sizeof hh, .url = url(0, "/hello"), .headers = bad, .nheaders = 1};
	err = 0;
	assert_null(start(&c, &hh, &err));
	assert_int_equal(err, -EINVAL);

	regent_http_opts nd = {.size = sizeof nd, .url = url(0, "/hello")};
	err = 0;
	assert_null(regent_http_request(f->h, &nd, &err)); /* no on_done */
	assert_int_equal(err, -EINVAL);

	regent_http_opts small = {.size = 8, .url = url(0, "/hello"), .on_done = on_done, .arg = &c};
	err = 0;
	assert_null(regent_http_request(f->h, &small, &err));
	assert_int_equal(err, -EINVAL);

	regent_http_opts ftp = {.size = sizeof ftp, .url = "ftp://127.0.0.1/x"};
	err = 0;
	assert_non_null(start(&c, &ftp, &err)); /* refused by curl at run time */
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, -EIO);

	assert_int_equal(regent_http_pending(f->h), 0);
	run_for(&f->loop, 20);
	assert_int_equal(c.done, 1);
	call_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_not_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lines_paced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lines_too_long_paced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lines_paced_fair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_loop_responsive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_connection_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_in_on_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_from_on_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_connecting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_other_from_on_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_from_callbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_from_on_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reuse_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reuse_kept_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reuse_pool_bounded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
