/*
 * test_http_reuse.c - core/http.c's easy-handle pool (http_setup.c): one
 * handle reused across requests, each request's options its own, a kept
 * shape's options not set again, the pool bounded.  Part of the test_http
 * executable (its fixture: http_fixture.h).
 */
#include "http_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static size_t easy_created(fixture *f)
{
	size_t created = 0;
	regent_http_easy_stats(f->h, &created, NULL);
	return created;
}

/* Starts one request and runs it to its on_done. */
static void run_one(fixture *f, call *c, regent_http_opts *o)
{
	int err = 1;
	assert_non_null(start(c, o, &err));
	assert_int_equal(err, 0);
	assert_true(run_until(&f->loop, &c->done, 1, 5000));
	assert_int_equal(c->done, 1);
}

/* A plain GET of /echo (over the unix socket `sock`, or TCP when NULL)
 * after other requests on the same handle: no header, body, method or
 * transport of theirs. */
static void echo_get_bare(fixture *f, const char *sock)
{
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = sock ? "http://localhost/echo" : url(0, "/echo"),
	                      .unix_socket = sock};
	run_one(f, &c, &o);
	assert_int_equal(c.error, 0);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.x_echo, "");
	assert_string_equal(c.x_method, "GET");
	assert_string_equal(c.x_transport, sock ? "unix" : "tcp");
	assert_int_equal(c.body_len, 0);
	call_free(&c);
}

/* Requests one after another share one easy handle, and each one's
 * options are its own: nothing of the one before (headers, body, method,
 * unix socket, timeout, max_body, HEAD, streaming callbacks) carries over,
 * also after a stream, a timeout, an error and a cancel. */
void test_reuse_options(void **state)
{
	fixture *f = *state;
	int err = 0;

	/* POST with a header and a body, over the unix socket. */
	call a = {.f = f};
	const char *hdr[] = {"X-Test: one"};
	regent_http_opts oa = {.size = sizeof oa, .url = "http://localhost/echo", .method = "POST",
	                       .headers = hdr, .nheaders = 1, .body = "abc", .body_len = 3,
	                       .unix_socket = sock_path, .timeout_ms = 5000};
	run_one(f, &a, &oa);
	assert_int_equal(a.error, 0);
	assert_string_equal(a.x_echo, "one");
	assert_string_equal(a.x_method, "POST");
	assert_string_equal(a.x_transport, "unix");
	assert_string_equal(a.body, "abc");
	call_free(&a);
	assert_int_equal(easy_created(f), 1);

	/* A plain GET over TCP on the same handle: no header, body, method or
	 * socket of the POST. */
	echo_get_bare(f, NULL);
	assert_int_equal(easy_created(f), 1);

	/* A stream, then a buffered request: the body is buffered again and
	 * the stream's on_data is not called. */
	call s = {.f = f, .flags = REGENT_HTTP_LINES};
	regent_http_opts os = {.size = sizeof os, .url = url(0, "/stream?n=3&delay_ms=10")};
	run_one(f, &s, &os);
	assert_int_equal(s.error, 0);
	assert_int_equal(s.nlines, 4);
	call g = {.f = f};
	regent_http_opts og = {.size = sizeof og, .url = url(0, "/hello")};
	run_one(f, &g, &og);
	assert_int_equal(g.error, 0);
	assert_int_equal(g.data_calls, 0);
	assert_false(g.body_null);
	assert_string_equal(g.body, "hello world");
	assert_int_equal(s.nlines, 4);
	assert_int_equal(s.data_calls, 4);
	call_free(&s);
	call_free(&g);

	/* A timeout, then a slower request without one: it is not cut at the
	 * earlier 200 ms. */
	call t = {.f = f};
	regent_http_opts ot = {.size = sizeof ot, .url = url(0, "/hang"), .timeout_ms = 200};
	run_one(f, &t, &ot);
	assert_int_equal(t.error, -ETIMEDOUT);
	call w = {.f = f};
	regent_http_opts ow = {.size = sizeof ow, .url = url(0, "/stream?n=4&delay_ms=100")};
	run_one(f, &w, &ow);
	assert_int_equal(w.error, 0);
	assert_true(w.t_done - w.t_start >= 300);
	assert_non_null(strstr(w.body, "{\"done\":true}"));
	call_free(&t);
	call_free(&w);

	/* An error (a unix socket nobody listens on), then a PUT without a
	 * body over TCP. */
	call e = {.f = f};
	char missing[160];
	snprintf(missing, sizeof missing, "%s/none.sock", tmp_dir);
	regent_http_opts oe = {.size = sizeof oe, .url = "http://localhost/hello",
	                       .unix_socket = missing};
	run_one(f, &e, &oe);
	assert_int_equal(e.error, -ECONNREFUSED);
	call p = {.f = f};
	regent_http_opts op = {.size = sizeof op, .url = url(0, "/echo"), .method = "PUT"};
	run_one(f, &p, &op);
	assert_int_equal(p.error, 0);
	assert_string_equal(p.x_method, "PUT");
	assert_string_equal(p.x_transport, "tcp");
	assert_int_equal(p.body_len, 0);
	call_free(&e);
	call_free(&p);

	/* max_body, HEAD and a custom method do not stay. */
	call m = {.f = f};
	regent_http_opts om = {.size = sizeof om, .url = url(0, "/big?bytes=5000"), .max_body = 1000};
	run_one(f, &m, &om);
	assert_int_equal(m.error, -EFBIG);
	call hd = {.f = f};
	regent_http_opts ohd = {.size = sizeof ohd, .url = url(0, "/hello"), .method = "HEAD"};
	run_one(f, &hd, &ohd);
	assert_int_equal(hd.error, 0);
	assert_int_equal(hd.body_len, 0);
	call dl = {.f = f};
	regent_http_opts odl = {.size = sizeof odl, .url = url(0, "/echo"), .method = "DELETE"};
	run_one(f, &dl, &odl);
	assert_string_equal(dl.x_method, "DELETE");
	call big = {.f = f};
	regent_http_opts obig = {.size = sizeof obig, .url = url(0, "/big?bytes=5000")};
	run_one(f, &big, &obig);
	assert_int_equal(big.error, 0);
	assert_string_equal(big.x_method, "");
	assert_int_equal(big.body_len, 5000);
	call_free(&m);
	call_free(&hd);
	call_free(&dl);
	call_free(&big);

	/* A stream cancelled from its on_data, then a POST. */
	call k = {.f = f, .flags = REGENT_HTTP_LINES, .cancel_at_line = 1};
	regent_http_opts ok = {.size = sizeof ok, .url = url(0, "/stream?n=20&delay_ms=20")};
	assert_non_null(start(&k, &ok, &err));
	assert_false(run_until(&f->loop, &k.done, 1, 300));
	assert_int_equal(k.nlines, 1);
	call q = {.f = f};
	const char *hq[] = {"X-Test: two"};
	regent_http_opts oq = {.size = sizeof oq, .url = url(0, "/echo"), .method = "POST",
	                       .headers = hq, .nheaders = 1, .body = "xyz", .body_len = 3};
	run_one(f, &q, &oq);
	assert_int_equal(q.error, 0);
	assert_string_equal(q.x_echo, "two");
	assert_string_equal(q.body, "xyz");
	assert_int_equal(k.nlines, 1);
	call_free(&k);
	call_free(&q);
	/* Every request above ran on the first handle. */
	assert_int_equal(easy_created(f), 1);
}

/* A POST of the kept shape (a body, a timeout, TCP) to /echo: it sees
 * only its own headers and body. */
static void echo_post(fixture *f, const char *const *hdr, size_t nh, const char *body,
                      const char *want_echo)
{
	call c = {.f = f};
	regent_http_opts o = {.size = sizeof o, .url = url(0, "/echo"), .method = "POST",
	                      .headers = hdr, .nheaders = nh, .body = body, .body_len = strlen(body),
	                      .timeout_ms = 5000};
	run_one(f, &c, &o);
	assert_int_equal(c.error, 0);
	assert_string_equal(c.x_echo, want_echo);
	assert_string_equal(c.x_method, "POST");
	assert_string_equal(c.x_transport, "tcp");
	assert_string_equal(c.body, body);
	call_free(&c);
}

/* Requests of one shape (a POST with a body and a timeout over TCP, a
 * GET with a timeout) keep their handle's options between them instead
 * of a reset: each one still has only its own headers, body, method,
 * timeout and max_body, also after a timeout and an error, and a request
 * of another shape (a unix socket, no timeout) after them has none of
 * theirs. */
void test_reuse_kept_shape(void **state)
{
	fixture *f = *state;
	const char *h1[] = {"X-Test: one", "X-Other: 1"};
	echo_post(f, h1, 2, "abc", "one");
	/* the same shape without headers, another body: no X-Test left */
	echo_post(f, NULL, 0, "defgh", "");
	/* a GET that times out, then a slower one with a longer timeout: not
	 * cut at the earlier one's */
	call t = {.f = f};
	regent_http_opts ot = {.size = sizeof ot, .url = url(0, "/hang"), .timeout_ms = 200};
	run_one(f, &t, &ot);
	assert_int_equal(t.error, -ETIMEDOUT);
	call_free(&t);
	call w = {.f = f};
	regent_http_opts ow = {.size = sizeof ow, .url = url(0, "/stream?n=4&delay_ms=100"),
	                       .timeout_ms = 5000};
	run_one(f, &w, &ow);
	assert_int_equal(w.error, 0);
	assert_true(w.t_done - w.t_start >= 300);
	call_free(&w);
	/* a GET with a timeout and a small max_body, then one without it */
	call m = {.f = f};
	regent_http_opts om = {.size = sizeof om, .url = url(0, "/big?bytes=5000"), .max_body = 1000,
	                       .timeout_ms = 5000};
	run_one(f, &m, &om);
	assert_int_equal(m.error, -EFBIG);
	call_free(&m);
	call g = {.f = f};
	regent_http_opts og = {.size = sizeof og, .url = url(0, "/big?bytes=5000"), .timeout_ms = 5000};
	run_one(f, &g, &og);
	assert_int_equal(g.error, 0);
	assert_int_equal(g.body_len, 5000);
	call_free(&g);
	/* back to a POST with a header after the GETs */
	const char *h2[] = {"X-Test: two"};
	echo_post(f, h2, 1, "xyz", "two");
	/* another shape: a GET over the unix socket without a timeout gets
	 * no header, body or method of the POSTs */
	echo_get_bare(f, sock_path);
	/* and a POST of the shape after it */
	echo_post(f, NULL, 0, "r", "");
	assert_int_equal(easy_created(f), 1);
}

/* The pool is bounded: 20 requests at once need 20 handles; 8 of them
 * (HTTP_POOL_MAX) are kept, the rest cleaned up. */
void test_reuse_pool_bounded(void **state)
{
	fixture *f = *state;
	enum { N = 20 };
	call c[N];
	int total = 0;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++) {
			memset(&c[i], 0, sizeof c[i]);
			c[i].f = f;
			c[i].total = &total;
			regent_http_opts o = {.size = sizeof o, .url = url(0, "/hello"), .timeout_ms = 5000};
			int err = 0;
			assert_non_null(start(&c[i], &o, &err));
		}
		assert_true(run_until(&f->loop, &total, N * (round + 1), 10000));
		for (int i = 0; i < N; i++) {
			assert_int_equal(c[i].error, 0);
			assert_string_equal(c[i].body, "hello world");
			call_free(&c[i]);
		}
		size_t created = 0, pooled = 0;
		regent_http_easy_stats(f->h, &created, &pooled);
		assert_int_equal(pooled, 8);
		/* round 2 took the 8 pooled handles and created 12 more */
		assert_int_equal(created, round == 0 ? N : N + N - 8);
	}
}
