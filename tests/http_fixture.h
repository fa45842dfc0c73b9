/*
 * http_fixture.h - what test_http.c's fixture shares with test_http_reuse.c:
 * a loop and a client per test (fixture), one request's observations
 * (call), the test server's unix socket, and the helpers that start a
 * request and run the loop until it is done.
 */
#ifndef REGENT_TEST_HTTP_FIXTURE_H
#define REGENT_TEST_HTTP_FIXTURE_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

#define MAX_LINES 64

typedef struct fixture {
	uv_loop_t loop;
	regent_http *h;
} fixture;

typedef struct call {
	fixture *f;
	regent_http_req *req;
	unsigned flags;
	int done;   /* on_done calls */
	int *total; /* optional shared counter of on_done calls */
	int error;
	long status;
	bool body_null, body_nul_terminated;
	char *body;
	size_t body_len;
	char error_msg[512];
	char x_echo[64], x_method[16], ctype[64], x_transport[16];
	bool have_x_echo, missing_is_null;
	int data_calls;
	char *lines[MAX_LINES];
	int nlines;
	bool line_had_newline;
	char *data;
	size_t data_len;
	int cancel_at_line; /* cancel itself from on_data at this line */
	int abort_at_line;  /* return non-zero from on_data at this line */
	bool abort_chunks;  /* return non-zero from on_data in chunk mode */
	regent_http_req *cancel_other;   /* cancel this one from on_done */
	regent_http_req *cancel_other_in_data; /* ... from on_data (inside curl) */
	bool close_in_done;              /* close the client from on_done */
	bool cancel_self_in_done;
	struct call *start_from_data;    /* start this call's request from on_data */
	struct call *start_from_done;    /* ... or from on_done */
	const char *chain_url;
	uint64_t t_start, t_done;
	int spin_ms;       /* on_data busy for this long per call (a slow consumer) */
	int spin_first_ms; /* on_data busy for this long on its first call only */
	int *ticks;        /* with spin_ms: the ticker's count, recorded per line */
	int ticks_at[MAX_LINES];
} call;

/* The test server's unix socket (test_http.c's group setup). */
extern char sock_path[128];
/* Its private temp directory. */
extern char tmp_dir[64];

/* Runs loop until *counter reaches target or ms pass: whether it did. */
bool run_until(uv_loop_t *loop, const int *counter, int target, uint64_t ms);
/* Runs loop for ms. */
void run_for(uv_loop_t *loop, uint64_t ms);
/* uv_close callback that frees the handle. */
void free_handle(uv_handle_t *h);
/* The callbacks start() sets: arg is the call. */
void on_done(void *arg, const regent_http_result *res);
int on_data(void *arg, const char *data, size_t len);
/* Frees what a call collected (body, data, lines) and clears them. */
void call_free(call *c);
/* Starts c's request with o (callbacks and arg set here); *err its error. */
regent_http_req *start(call *c, regent_http_opts *o, int *err);
/* The test server's TCP URL of path, in one of 8 rotating buffers. */
const char *url(int slot, const char *path);

/* test_http_cancel.c */
void test_cancel_in_on_data(void **state);
void test_abort_from_on_data(void **state);
void test_cancel_pending(void **state);
void test_cancel_connecting(void **state);
void test_cancel_other_from_on_data(void **state);
void test_requests_from_callbacks(void **state);
void test_close_from_on_done(void **state);
void test_close_with_pending(void **state);

/* test_http_reuse.c */
void test_reuse_options(void **state);
void test_reuse_kept_shape(void **state);
void test_reuse_pool_bounded(void **state);

#endif
