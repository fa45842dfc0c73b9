/* test_annot_cli.c - the haproxy sink's admin-socket client (plugins/
 * haproxy/cli.c) as the state poll uses it: the persistent connection
 * (hx_conn) against a fake prompt-mode socket, the kept answer buffer (over
 * 1 MiB only while big answers follow each other), the late read
 * (hx_cli_request_late) and the line mode (hx_cli_request_lines).  Part of
 * the haproxy_annot executable: its cases are listed in test_annot.c's
 * main (annot_cli_tests.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "annot_cli_tests.h"
#include "annot.h"
#include "core.h"
#include "host.h" /* regent_host_table */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static regent_agent fake_agent;
static regent_cfg_section fake_sec = {.name = "haproxy"};
static regent_ctx fake_ctx = {.agent = &fake_agent, .sec = &fake_sec, .who = "sink haproxy"};

/* ---- cli.c's persistent connection (hx_conn) against a fake prompt-mode
 * admin socket: every command of a line answered with its text and the
 * prompt, the prompt split over two writes; the answers of a request's
 * commands come back as the one-shot mode gives them; pipelined requests;
 * one connection for all until a reset; a connection lost mid-answer fails
 * the request and the next one waits a backoff. */

typedef struct fake_cli {
	uv_loop_t *loop;
	uv_pipe_t server;
	uv_pipe_t *peer;
	char line[512];
	size_t nline;
	int accepts;
	bool cut; /* close the connection instead of answering "cut" */
	hx_buf pending; /* what the split write sends 2 ms later */
	uv_timer_t timer;
} fake_cli;

static void fc_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
	(void)h;
	static char buf[1024];
	(void)n;
	*b = uv_buf_init(buf, sizeof(buf));
}

static void fc_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void fc_write(fake_cli *f, const char *p, size_t n)
{
	if (!n || !f->peer)
		return;
	uv_write_t *w = calloc(1, sizeof(*w) + n);
	char *copy = (char *)(w + 1);
	memcpy(copy, p, n);
	uv_buf_t b = uv_buf_init(copy, (unsigned)n);
	assert_int_equal(uv_write(w, (uv_stream_t *)f->peer, &b, 1, fc_written), 0);
}

static void fc_flush(uv_timer_t *t)
{
	fake_cli *f = t->data;
	fc_write(f, f->pending.data, f->pending.len);
	f->pending.len = 0;
}

static void fc_peer_closed(uv_handle_t *h)
{
	free(h);
}

/* One command's answer: its text, then "\n> " (the prompt line). */
static void fc_command(fake_cli *f, hx_buf *out, const char *cmd)
{
	if (strcmp(cmd, "prompt") == 0 || strcmp(cmd, "empty") == 0)
		hx_buf_puts(out, "\n> ");
	else if (strcmp(cmd, "show info") == 0)
		hx_buf_puts(out, "Name: HAProxy\nPid: 4242\n\n> ");
	else if (strcmp(cmd, "bad") == 0)
		hx_buf_puts(out, "No such server.\n\n> ");
	else if (strncmp(cmd, "echo ", 5) == 0)
		hx_buf_printf(out, "%s\n\n> ", cmd + 5);
	(void)f;
}

static void fc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	fake_cli *f = st->data;
	if (n < 0) {
		uv_close((uv_handle_t *)st, fc_peer_closed);
		if (f->peer == (uv_pipe_t *)st)
			f->peer = NULL;
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char ch = b->base[i];
		if (ch != '\n') {
			if (f->nline < sizeof(f->line) - 1)
				f->line[f->nline++] = ch;
			continue;
		}
		f->line[f->nline] = '\0';
		f->nline = 0;
		if (strcmp(f->line, "cut") == 0 && f->cut) {
			fc_write(f, "partial", 7);
			uv_close((uv_handle_t *)st, fc_peer_closed);
			f->peer = NULL;
			return;
		}
		hx_buf out = {.h = &regent_host_table};
		char *save = NULL;
		for (char *c = strtok_r(f->line, ";", &save); c; c = strtok_r(NULL, ";", &save))
			fc_command(f, &out, c);
		/* All but the last byte now, the rest (a split prompt) 2 ms later;
		 * behind bytes still pending, all of it later (in order). */
		f->pending.h = &regent_host_table;
		if (f->pending.len) {
			hx_buf_add(&f->pending, out.data, out.len);
		} else {
			fc_write(f, out.data, out.len - 1);
			hx_buf_add(&f->pending, out.data + out.len - 1, 1);
		}
		uv_timer_start(&f->timer, fc_flush, 2, 0);
		hx_buf_free(&out);
	}
}

static void fc_connection(uv_stream_t *server, int status)
{
	fake_cli *f = server->data;
	assert_int_equal(status, 0);
	uv_pipe_t *p = calloc(1, sizeof(*p));
	uv_pipe_init(f->loop, p, 0);
	p->data = f;
	assert_int_equal(uv_accept(server, (uv_stream_t *)p), 0);
	f->peer = p;
	f->accepts++;
	uv_read_start((uv_stream_t *)p, fc_alloc, fc_read);
}

typedef struct answer {
	int n, status;
	char text[256];
} answer;

static void on_conn_answer(void *arg, int status, const char *out, size_t len)
{
	answer *a = arg;
	a->n++;
	a->status = status;
	snprintf(a->text, sizeof(a->text), "%.*s", (int)len, out);
}

static void no_log(regent_ctx *ctx, regent_log_level lvl, const char *fmt, ...)
{
	(void)ctx;
	(void)lvl;
	(void)fmt;
}

static void run_until(uv_loop_t *loop, const int *n, int want)
{
	for (int i = 0; i < 2000 && *n < want; i++)
		uv_run(loop, UV_RUN_ONCE);
	assert_int_equal(*n, want);
}

void test_conn(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	regent_host h = regent_host_table;
	h.log = no_log;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/hxconn-%d.sock", (int)getpid());
	unlink(path);
	fake_cli f = {.loop = &loop};
	uv_pipe_init(&loop, &f.server, 0);
	f.server.data = &f;
	assert_int_equal(uv_pipe_bind(&f.server, path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&f.server, 8, fc_connection), 0);
	uv_timer_init(&loop, &f.timer);
	f.timer.data = &f;

	hx_conn *c = hx_conn_new(&h, &fake_ctx, &loop, path, NULL, NULL, NULL);
	answer a1 = {0}, a2 = {0}, a3 = {0};
	int err = 0;
	/* Two requests pipelined before the connection is even up. */
	assert_non_null(hx_conn_request(c, "echo a;bad;empty", 1000, on_conn_answer, &a1, &err));
	assert_non_null(hx_conn_request(c, "echo b", 1000, on_conn_answer, &a2, &err));
	run_until(&loop, &a2.n, 1);
	assert_int_equal(a1.n, 1);
	assert_int_equal(a1.status, 0);
	/* exactly the one-shot answer of "echo a;bad;empty": each command's
	 * text and its blank line, the prompts cut */
	assert_string_equal(a1.text, "a\n\nNo such server.\n\n\n");
	size_t elen = 0;
	const char *e = hx_cli_error(a1.text, &elen);
	assert_non_null(e);
	assert_int_equal(strncmp(e, "No such server.", elen), 0);
	assert_string_equal(a2.text, "b\n\n");
	/* later requests: the same connection */
	a1.n = 0;
	assert_non_null(hx_conn_request(c, "echo c", 1000, on_conn_answer, &a1, &err));
	run_until(&loop, &a1.n, 1);
	assert_string_equal(a1.text, "c\n\n");
	assert_int_equal(f.accepts, 1);
	assert_int_equal(hx_conn_opened(c), 1);
	/* a reset (a new worker): the next request opens another */
	hx_conn_reset(c, 0);
	a1.n = 0;
	assert_non_null(hx_conn_request(c, "echo d", 1000, on_conn_answer, &a1, &err));
	run_until(&loop, &a1.n, 1);
	assert_string_equal(a1.text, "d\n\n");
	assert_int_equal(f.accepts, 2);
	assert_int_equal(hx_conn_opened(c), 2);
	/* the connection lost mid-answer: the request fails, the next one
	 * waits the backoff (NULL with the cause at once) */
	f.cut = true;
	assert_non_null(hx_conn_request(c, "cut", 1000, on_conn_answer, &a3, &err));
	run_until(&loop, &a3.n, 1);
	assert_true(a3.status < 0);
	assert_null(hx_conn_request(c, "echo e", 1000, on_conn_answer, &a1, &err));
	assert_true(err < 0);
	/* a cancelled request is never answered; freeing drops it */
	hx_conn_reset(c, 0); /* no backoff for a new worker */
	a1.n = 0;
	hx_cli *r = hx_conn_request(c, "echo f", 1000, on_conn_answer, &a1, &err);
	assert_non_null(r);
	hx_cli_cancel(r);
	hx_conn_free(c);
	uv_close((uv_handle_t *)&f.server, NULL);
	uv_close((uv_handle_t *)&f.timer, NULL);
	if (f.peer)
		uv_close((uv_handle_t *)f.peer, fc_peer_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(a1.n, 0);
	hx_buf_free(&f.pending);
	assert_int_equal(uv_loop_close(&loop), 0);
	unlink(path);
}

/* ---- cli.c's kept answer buffer: kept for the next request; over 1 MiB
 * only for a big answer that follows another (after a one-off full `show
 * servers state`, what the answer before needed), shrunk to fit a much
 * smaller answer. */
struct srv1 {
	uv_pipe_t srv;
	uv_pipe_t conn;
	uv_write_t wr;
	char *answer;
	size_t n;
	int status;
	size_t got;
	bool done;
};

static void srv1_closed(uv_handle_t *h)
{
	(void)h;
}

static void srv1_written(uv_write_t *w, int status)
{
	struct srv1 *s = w->data;
	assert_int_equal(status, 0);
	uv_close((uv_handle_t *)&s->conn, srv1_closed);
}

static void srv1_accept(uv_stream_t *l, int status)
{
	struct srv1 *s = l->data;
	assert_int_equal(status, 0);
	uv_pipe_init(l->loop, &s->conn, 0);
	assert_int_equal(uv_accept(l, (uv_stream_t *)&s->conn), 0);
	uv_buf_t b = uv_buf_init(s->answer, (unsigned)s->n);
	s->wr.data = s;
	assert_int_equal(uv_write(&s->wr, (uv_stream_t *)&s->conn, &b, 1, srv1_written), 0);
}

static void cli_answered(void *arg, int status, const char *out, size_t len)
{
	struct srv1 *s = arg;
	(void)out;
	s->status = status;
	s->got = len;
	s->done = true;
	uv_close((uv_handle_t *)&s->srv, srv1_closed);
}

/* One request answered with n bytes (late_ms: hx_cli_request_late, the
 * time it took in cli_ms); returns the kept buffer's capacity once the
 * request freed itself. */
static uint64_t cli_ms;
static size_t cli_answer_of(const char *path, size_t n, uint64_t late_ms)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct srv1 s = {.n = n};
	s.answer = malloc(n);
	assert_non_null(s.answer);
	memset(s.answer, 'x', n);
	unlink(path);
	uv_pipe_init(&loop, &s.srv, 0);
	s.srv.data = &s;
	assert_int_equal(uv_pipe_bind(&s.srv, path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s.srv, 4, srv1_accept), 0);
	int err = 0;
	uint64_t t0 = uv_now(&loop);
	hx_cli *c = late_ms ? hx_cli_request_late(&regent_host_table, &loop, path, "show servers state",
	                                          5000, late_ms, cli_answered, &s, &err)
	                    : hx_cli_request(&regent_host_table, &loop, path, "show servers state", 5000,
	                                     cli_answered, &s, &err);
	assert_non_null(c);
	uv_run(&loop, UV_RUN_DEFAULT); /* until every handle, the request's too, is closed */
	uv_update_time(&loop);
	cli_ms = uv_now(&loop) - t0;
	assert_true(s.done);
	assert_int_equal(s.status, 0);
	assert_int_equal(s.got, n);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(s.answer);
	unlink(path);
	return hx_cli_spare_cap();
}

/* A fresh directory (dir, a mkdtemp template) and the socket path in it. */
static void tmp_socket(char *dir, char *path, size_t n)
{
	assert_non_null(mkdtemp(dir));
	snprintf(path, n, "%s/admin.sock", dir);
}

void test_cli_spare(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_annot.XXXXXX", path[64];
	tmp_socket(dir, path, sizeof(path));
	size_t big = 4u << 20, mid = 512u << 10, low = 256u << 10, min = 64u << 10;
	assert_int_equal(cli_answer_of(path, 2500000, 0), min); /* one-off: back to the answer before */
	assert_int_equal(cli_answer_of(path, 2400000, 0), big); /* a second big one: kept whole */
	assert_int_equal(cli_answer_of(path, 2500000, 0), big); /* reused */
	assert_int_equal(cli_answer_of(path, 300000, 0), mid);  /* a quarter or less: shrunk to fit */
	assert_int_equal(cli_answer_of(path, 200000, 0), mid);  /* at most 1 MiB: kept as it is */
	assert_int_equal(cli_answer_of(path, 2500000, 0), low); /* one-off: to the 200 KB before */
	assert_int_equal(cli_answer_of(path, 1000, 0), low);    /* at most 1 MiB: kept as it is */
	/* read late: the whole answer (haproxy closed after writing it into the
	 * socket's buffer), not before late_ms */
	cli_answer_of(path, 40000, 60);
	assert_true(cli_ms >= 60);
	rmdir(dir);
}

/* ---- cli.c's line mode (hx_cli_request_lines, the reload's state dump):
 * every line handed over in order as it is read, lines cut by the reads
 * joined, the last one without its newline too, then the callback with the
 * answer's length; the kept answer buffer neither taken nor grown; a line
 * over 64 KB fails the request (E2BIG). */
struct lines {
	struct srv1 s;      /* first: cli_answered's view of the argument */
	const char *answer; /* what the lines must add up to, newlines cut */
	size_t at;          /* how far they matched */
	size_t n;
	bool bad;
};

static void on_line(void *arg, char *line, size_t len)
{
	struct lines *l = arg;
	l->n++;
	if (strlen(line) != len || memcmp(l->answer + l->at, line, len) != 0)
		l->bad = true;
	l->at += len;
	if (l->answer[l->at] == '\n')
		l->at++;
}

/* One request answered with `answer` in line mode: its status, the lines
 * handed over (*nlines) and the answer's length as the callback had it. */
static int cli_lines_of(const char *path, const char *text, size_t *nlines, size_t *len)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct lines l = {.s = {.answer = (char *)text, .n = strlen(text)}, .answer = text};
	unlink(path);
	uv_pipe_init(&loop, &l.s.srv, 0);
	l.s.srv.data = &l.s;
	assert_int_equal(uv_pipe_bind(&l.s.srv, path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&l.s.srv, 4, srv1_accept), 0);
	int err = 0;
	hx_cli *c = hx_cli_request_lines(&regent_host_table, &loop, path, "show servers state", 5000,
	                                 on_line, cli_answered, &l, &err);
	assert_non_null(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_true(l.s.done);
	assert_int_equal(uv_loop_close(&loop), 0);
	unlink(path);
	assert_false(l.bad);
	*nlines = l.n;
	*len = l.s.got;
	if (l.s.status == 0)
		assert_int_equal(l.at, strlen(text));
	return l.s.status;
}

void test_cli_lines(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_annot.XXXXXX", path[64];
	tmp_socket(dir, path, sizeof(path));
	size_t cap0 = hx_cli_spare_cap();
	/* 20,000 rows of ~150 bytes (3 MB: many reads, rows cut by them), an
	 * empty line, and a last row without its newline */
	size_t rows = 20000, n = 0;
	char *a = malloc(rows * 160 + 64);
	assert_non_null(a);
	n += (size_t)sprintf(a + n, "1\n# be_id be_name srv_id\n");
	for (size_t i = 0; i < rows; i++)
		n += (size_t)sprintf(a + n, "%zu fleet%04zu %zu s%zu 127.1.%zu.%zu 2 0 1 1 %0100zu 1\n",
		                     i, i / 10, i % 16 + 1, i % 16 + 1, i / 250, i % 250, i);
	n += (size_t)sprintf(a + n, "\nlast 1 2 3");
	size_t nl = 0, len = 0;
	assert_int_equal(cli_lines_of(path, a, &nl, &len), 0);
	assert_int_equal(nl, rows + 4); /* "1", "#...", the rows, "", "last..." */
	assert_int_equal(len, n);
	assert_int_equal(hx_cli_spare_cap(), cap0); /* one line held, not the answer */
	/* a line over 64 KB: E2BIG, the lines before it handed over */
	memset(a, 'y', 70000);
	a[10] = '\n';
	a[70000] = '\0';
	assert_int_equal(cli_lines_of(path, a, &nl, &len), -E2BIG);
	assert_int_equal(nl, 1);
	free(a);
	rmdir(dir);
}

/* ---- clipoll.c: one slow answer is not the poll's deadline.  The reload's
 * confirmation polls the master CLI for up to 15 s, each request bounded by
 * command_timeout; a master busy re-executing (a big configuration) may not
 * answer one request in time.  That request's -ETIMEDOUT is a failure like
 * another (asked again); only the deadline says HX_POLL_EXPIRED.  (Both were
 * -ETIMEDOUT: the reload was failed at the first slow answer, "the new
 * worker did not show up in time", with an error, a forced reload and the
 * server states re-read.)  The fake socket holds its first connection
 * unanswered and answers the next ones at once. */
struct slowsrv {
	uv_pipe_t srv;
	uv_pipe_t held, conn;
	uv_write_t wr;
	int accepted;
	int statuses[8], n, last;
	bool answered, expired;
};

static void slow_written(uv_write_t *w, int status)
{
	struct slowsrv *s = w->data;
	assert_int_equal(status, 0);
	uv_close((uv_handle_t *)&s->conn, srv1_closed);
}

static void slow_accept(uv_stream_t *l, int status)
{
	struct slowsrv *s = l->data;
	assert_int_equal(status, 0);
	if (s->accepted++ == 0) { /* held: never answered */
		uv_pipe_init(l->loop, &s->held, 0);
		assert_int_equal(uv_accept(l, (uv_stream_t *)&s->held), 0);
		return;
	}
	uv_pipe_init(l->loop, &s->conn, 0);
	assert_int_equal(uv_accept(l, (uv_stream_t *)&s->conn), 0);
	static char ok_line[] = "ok\n";
	uv_buf_t b = uv_buf_init(ok_line, 3);
	s->wr.data = s;
	assert_int_equal(uv_write(&s->wr, (uv_stream_t *)&s->conn, &b, 1, slow_written), 0);
}

static int slow_fn(void *arg, int status, const char *out)
{
	struct slowsrv *s = arg;
	if (s->n < 8)
		s->statuses[s->n++] = status;
	s->last = status;
	if (status == HX_POLL_EXPIRED) {
		s->expired = true;
		return 1;
	}
	if (status == 0 && strncmp(out, "ok", 2) == 0) {
		s->answered = true;
		return 1;
	}
	return 0; /* ask again */
}

void test_poll_slow_answer(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_annot.XXXXXX", path[64];
	tmp_socket(dir, path, sizeof(path));
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct slowsrv s = {0};
	uv_pipe_init(&loop, &s.srv, 0);
	s.srv.data = &s;
	assert_int_equal(uv_pipe_bind(&s.srv, path), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s.srv, 4, slow_accept), 0);
	/* each request 100 ms at most, the poll 3 s */
	hx_poll *p = hx_poll_start(&regent_host_table, &loop, path, "show proc", 0, 20, 3000, 100,
	                           slow_fn, &s);
	assert_non_null(p);
	while (!s.answered && !s.expired)
		uv_run(&loop, UV_RUN_ONCE);
	assert_true(s.n >= 2);
	assert_int_equal(s.statuses[0], -ETIMEDOUT); /* the held request's own timeout */
	assert_false(s.expired);                     /* not taken for the deadline */
	assert_true(s.answered);                     /* asked again, answered */
	uv_close((uv_handle_t *)&s.held, srv1_closed);
	uv_close((uv_handle_t *)&s.srv, srv1_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	unlink(path);
	rmdir(dir);

	/* The deadline still ends it: nothing answers at all. */
	char dir2[] = "/tmp/test_annot.XXXXXX", path2[64];
	tmp_socket(dir2, path2, sizeof(path2));
	uv_loop_init(&loop);
	struct slowsrv z = {0};
	p = hx_poll_start(&regent_host_table, &loop, path2, "show proc", 0, 20, 300, 100, slow_fn, &z);
	assert_non_null(p);
	while (!z.answered && !z.expired && uv_run(&loop, UV_RUN_ONCE))
		; /* (ends when the poll ended, whatever it said last) */
	assert_true(z.expired);
	assert_int_equal(z.last, HX_POLL_EXPIRED);
	assert_int_equal(z.statuses[0], -ENOENT); /* no socket: failures, asked again */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	rmdir(dir2);
}
