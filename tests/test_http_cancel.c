/*
 * test_http_cancel.c - core/http.c's cancel, abort and close paths: a
 * request cancelled or aborted from its own callbacks or another's, a
 * pending one cancelled, one cancelled while its socket connects,
 * requests started from callbacks, the client closed from on_done or
 * with requests pending.  Part of the test_http
 * executable (its fixture: http_fixture.h).
 */
#include "http_fixture.h"
#include "http_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

void test_cancel_in_on_data(void **state)
{
	fixture *f = *state;
	call c = {.f = f, .flags = REGENT_HTTP_LINES, .cancel_at_line = 2};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=20&delay_ms=30")};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_false(run_until(&f->loop, &c.done, 1, 1000));
	assert_int_equal(c.done, 0);
	assert_int_equal(c.nlines, 2);
	assert_int_equal(c.data_calls, 2);
	assert_int_equal(regent_http_pending(f->h), 0);
	call_free(&c);

	/* All lines in one chunk: nothing after the cancelling line. */
	call b = {.f = f, .flags = REGENT_HTTP_LINES, .cancel_at_line = 2};
	regent_http_opts ob = {.size = sizeof ob, .url = url(1, "/stream?n=10&burst=1")};
	assert_non_null(start(&b, &ob, &err));
	assert_false(run_until(&f->loop, &b.done, 1, 300));
	assert_int_equal(b.nlines, 2);
	assert_int_equal(b.data_calls, 2);
	assert_int_equal(regent_http_pending(f->h), 0);
	call_free(&b);

	/* The client still works. */
	call g = {.f = f};
	regent_http_opts o2 = {.size = sizeof o2, .url = url(0, "/hello")};
	assert_non_null(start(&g, &o2, &err));
	assert_true(run_until(&f->loop, &g.done, 1, 5000));
	assert_string_equal(g.body, "hello world");
	call_free(&g);
}

void test_abort_from_on_data(void **state)
{
	fixture *f = *state;
	call c = {.f = f, .flags = REGENT_HTTP_LINES, .abort_at_line = 2};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=20&delay_ms=30")};
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	assert_true(run_until(&f->loop, &c.done, 1, 5000));
	assert_int_equal(c.error, -ECANCELED);
	assert_int_equal(c.nlines, 2);
	assert_string_not_equal(c.error_msg, "");
	run_for(&f->loop, 100);
	assert_int_equal(c.done, 1);
	call_free(&c);

	call b = {.f = f, .flags = REGENT_HTTP_LINES, .abort_at_line = 3};
	regent_http_opts ob = {.size = sizeof ob, .url = url(1, "/stream?n=10&burst=1")};
	assert_non_null(start(&b, &ob, &err));
	assert_true(run_until(&f->loop, &b.done, 1, 5000));
	assert_int_equal(b.error, -ECANCELED);
	assert_int_equal(b.nlines, 3);
	call_free(&b);

	/* Chunk mode aborts too. */
	call k = {.f = f, .abort_chunks = true};
	regent_http_opts ok = {.size = sizeof ok, .url = url(2, "/stream?n=10&delay_ms=20"),
	                       .on_data = on_data};
	assert_non_null(start(&k, &ok, &err));
	assert_true(run_until(&f->loop, &k.done, 1, 5000));
	assert_int_equal(k.error, -ECANCELED);
	assert_int_equal(k.data_calls, 1);
	call_free(&k);
}

static void cancel_timer_cb(uv_timer_t *t)
{
	call *c = t->data;
	regent_http_cancel(c->req);
	uv_close((uv_handle_t *)t, free_handle);
}

void test_cancel_pending(void **state)
{
	fixture *f = *state;
	int err = 0;
	/* Cancelled before the loop ever ran. */
	call a = {.f = f};
	regent_http_opts oa = {.size = sizeof oa, .url = url(0, "/hang")};
	assert_non_null(start(&a, &oa, &err));
	/* Cancelled while connected and waiting. */
	call b = {.f = f};
	regent_http_opts ob = {.size = sizeof ob, .url = url(1, "/hang"), .idle_timeout_ms = 5000};
	assert_non_null(start(&b, &ob, &err));
	assert_int_equal(regent_http_pending(f->h), 2);
	regent_http_cancel(a.req);
	assert_int_equal(regent_http_pending(f->h), 1);

	uv_timer_t *t = malloc(sizeof *t);
	assert_non_null(t);
	assert_int_equal(uv_timer_init(&f->loop, t), 0);
	t->data = &b;
	assert_int_equal(uv_timer_start(t, cancel_timer_cb, 150, 0), 0);
	run_for(&f->loop, 500);
	assert_int_equal(a.done, 0);
	assert_int_equal(b.done, 0);
	assert_int_equal(regent_http_pending(f->h), 0);

	/* Cancelled from another request's on_done. */
	call victim = {.f = f};
	regent_http_opts ov = {.size = sizeof ov, .url = url(2, "/hang")};
	assert_non_null(start(&victim, &ov, &err));
	call killer = {.f = f, .cancel_other = victim.req};
	regent_http_opts ok = {.size = sizeof ok, .url = url(3, "/hello")};
	assert_non_null(start(&killer, &ok, &err));
	assert_true(run_until(&f->loop, &killer.done, 1, 5000));
	assert_int_equal(killer.error, 0);
	run_for(&f->loop, 300);
	assert_int_equal(victim.done, 0);
	assert_int_equal(regent_http_pending(f->h), 0);

	/* Cancelling oneself inside on_done is harmless. */
	call self = {.f = f, .cancel_self_in_done = true};
	regent_http_opts os = {.size = sizeof os, .url = url(4, "/hello")};
	assert_non_null(start(&self, &os, &err));
	assert_true(run_until(&f->loop, &self.done, 1, 5000));
	run_for(&f->loop, 50);
	assert_int_equal(self.done, 1);
	assert_int_equal(self.error, 0);

	call_free(&a);
	call_free(&b);
	call_free(&victim);
	call_free(&killer);
	call_free(&self);
}

void test_cancel_other_from_on_data(void **state)
{
	fixture *f = *state;
	int err = 0;
	/* Two streams; the second one's first line (delivered from inside
	 * libcurl) cancels the first one, which is mid-transfer. */
	call victim = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts ov = {.size = sizeof ov, .url = url(0, "/stream?n=10&delay_ms=40"),
	                       .idle_timeout_ms = 2000};
	assert_non_null(start(&victim, &ov, &err));
	assert_true(run_until(&f->loop, &victim.nlines, 1, 5000));
	call killer = {.f = f, .flags = REGENT_HTTP_LINES, .cancel_other_in_data = victim.req};
	regent_http_opts ok = {.size = sizeof ok, .url = url(1, "/stream?n=3&delay_ms=10")};
	assert_non_null(start(&killer, &ok, &err));
	assert_true(run_until(&f->loop, &killer.done, 1, 5000));
	assert_int_equal(killer.error, 0);
	assert_int_equal(killer.nlines, 4);
	int seen = victim.nlines;
	assert_true(seen < 10);
	run_for(&f->loop, 500);
	assert_int_equal(victim.done, 0);
	assert_int_equal(victim.nlines, seen);
	assert_int_equal(regent_http_pending(f->h), 0);
	call_free(&victim);
	call_free(&killer);
}

void test_requests_from_callbacks(void **state)
{
	fixture *f = *state;
	int err = 0;
	/* on_data (inside libcurl) starts n1; n1's on_done starts n2. */
	call n2 = {.f = f, .chain_url = url(1, "/status/201")};
	call n1 = {.f = f, .chain_url = url(2, "/hello"), .start_from_done = &n2};
	call s = {.f = f, .flags = REGENT_HTTP_LINES, .start_from_data = &n1};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/stream?n=2&delay_ms=10")};
	assert_non_null(start(&s, &o, &err));
	assert_true(run_until(&f->loop, &n2.done, 1, 5000));
	assert_int_equal(s.done, 1);
	assert_int_equal(s.error, 0);
	assert_int_equal(s.nlines, 3);
	assert_int_equal(n1.done, 1);
	assert_string_equal(n1.body, "hello world");
	assert_int_equal(n2.error, 0);
	assert_int_equal(n2.status, 201);
	assert_int_equal(regent_http_pending(f->h), 0);
	call_free(&s);
	call_free(&n1);
	call_free(&n2);
}

void test_close_from_on_done(void **state)
{
	fixture *f = *state;
	int err = 0;
	call pending = {.f = f};
	regent_http_opts op = {.size = sizeof op, .url = url(0, "/hang")};
	assert_non_null(start(&pending, &op, &err));
	call stream = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts os = {.size = sizeof os, .url = url(1, "/stream?n=30&delay_ms=20")};
	assert_non_null(start(&stream, &os, &err));
	call closer = {.f = f, .close_in_done = true};
	regent_http_opts oc = {.size = sizeof oc, .url = url(2, "/hello")};
	assert_non_null(start(&closer, &oc, &err));
	assert_true(run_until(&f->loop, &closer.done, 1, 5000));
	assert_null(f->h);
	/* Everything closes: the loop runs dry. */
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(closer.done, 1);
	assert_int_equal(pending.done, 0);
	assert_int_equal(stream.done, 0);
	call_free(&pending);
	call_free(&stream);
	call_free(&closer);
}

void test_close_with_pending(void **state)
{
	fixture *f = *state;
	int err = 0;
	call c[3] = {{.f = f}, {.f = f}, {.f = f, .flags = REGENT_HTTP_LINES}};
	regent_http_opts o0 = {.size = sizeof o0, .url = url(0, "/hang"), .idle_timeout_ms = 1000};
	regent_http_opts o1 = {.size = sizeof o1, .url = url(1, "/hello")};
	regent_http_opts o2 = {.size = sizeof o2, .url = url(2, "/slow-stream")};
	assert_non_null(start(&c[0], &o0, &err));
	assert_non_null(start(&c[1], &o1, &err));
	assert_non_null(start(&c[2], &o2, &err));
	run_for(&f->loop, 100);
	regent_http_close(f->h);
	f->h = NULL;
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(c[0].done, 0);
	assert_int_equal(c[2].done, 0);
	for (int i = 0; i < 3; i++)
		call_free(&c[i]);
}

/* ---- a request cancelled while its socket connects ---- */

typedef struct connecting {
	fixture *f;
	call *c;
	bool cancelled;
	int fd; /* the connecting socket the cancel closed */
} connecting;

/* Before the loop's poll of the turn in which curl started the connect
 * (its uv_poll_t started for writing, not yet given to epoll): cancel. */
static void cancel_when_connecting(uv_prepare_t *p)
{
	connecting *k = p->data;
	http_sock *s = k->f->h->socks;
	if (k->cancelled || !s || !(s->events & UV_WRITABLE))
		return;
	k->fd = s->fd;
	k->cancelled = true;
	regent_http_cancel(k->c->req);
	uv_prepare_stop(p);
}

/* libcurl 7.88.0-8.1.x closes a socket still connecting without
 * close_cb when its transfer is removed (curl issue 11439): its handle
 * must not be kept.  A parked one stayed started on the closed fd and
 * libuv abort()ed at the next poll (epoll_ctl: EBADF); consul_restart's
 * client died so.  The connect is held pending by a listener whose
 * accept queue is full (SYNs to it are dropped). */
void test_cancel_connecting(void **state)
{
	fixture *f = *state;
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof sa;
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(ls, 0), 0);
	assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &slen), 0);
	int fill[3];
	for (size_t i = 0; i < 3; i++) { /* the queue's one place taken, then SYNs dropped */
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fill[i] >= 0);
		(void)connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
	}
	usleep(50 * 1000);

	char u[64];
	snprintf(u, sizeof u, "http://127.0.0.1:%u/", (unsigned)ntohs(sa.sin_port));
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = u, .timeout_ms = 5000};
	connecting k = {.f = f, .c = &c, .fd = -1};
	uv_prepare_t *p = malloc(sizeof *p);
	assert_non_null(p);
	uv_prepare_init(&f->loop, p);
	p->data = &k;
	uv_prepare_start(p, cancel_when_connecting);
	int err = 0;
	assert_non_null(start(&c, &o, &err));
	run_for(&f->loop, 300); /* the poll after the cancel: an abort() here before the fix */
	assert_true(k.cancelled);
	assert_int_equal(c.done, 0);
	/* nothing kept for the closed socket, nor its fd number taken as ours */
	for (http_sock *s = f->h->socks; s; s = s->next)
		assert_int_not_equal(s->fd, k.fd);
	assert_true((size_t)k.fd >= f->h->nours || !f->h->ours[k.fd]);
	uv_close((uv_handle_t *)p, free_handle);

	/* The client still works, also on the closed socket's fd number. */
	call g = {.f = f};
	regent_http_opts og = {.size = sizeof og, .url = url(0, "/hello")};
	assert_non_null(start(&g, &og, &err));
	assert_true(run_until(&f->loop, &g.done, 1, 5000));
	assert_int_equal(g.error, 0);
	assert_string_equal(g.body, "hello world");
	call_free(&g);
	for (size_t i = 0; i < 3; i++)
		close(fill[i]);
	close(ls);
}
