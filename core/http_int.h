/* http_int.h - what the files of the core's HTTP client share (http.c:
 * the client and its requests' lifetime; http_sock.c: the multi handle's
 * sockets and timer on the loop; http_body.c: response headers, body,
 * lines and their pacing; http_setup.c: the pool of easy handles and
 * setting one up for a request): the request and client structs and the
 * functions one calls in another.  Not for plugins (see http.h). */
#ifndef REGENT_CORE_HTTP_INT_H
#define REGENT_CORE_HTTP_INT_H

#include "http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#define HTTP_CONNECT_TIMEOUT_MS 5000u
#define HTTP_MAX_BODY ((size_t)16 * 1024 * 1024)
#define HTTP_MSG_SIZE 160
#define PACE_NS (10u * 1000000u) /* line delivery per loop callback, see Pacing */
/* libcurl adds "Expect: 100-continue" only to bodies above its
 * EXPECT_100_THRESHOLD (1 KiB in old releases, 1 MiB in current ones):
 * a body of at most this needs no "Expect:" to suppress it. */
#define HTTP_EXPECT_MIN 1024u
#define HTTP_POOL_MAX 8u /* idle easy handles kept for reuse (http_setup.c) */

typedef enum req_state {
	REQ_QUEUED, /* created while busy: not yet added to the multi handle */
	REQ_ACTIVE, /* added to the multi handle */
	REQ_DONE,   /* out of curl: final line / on_done running, then freed */
	REQ_ZOMBIE, /* cancelled while busy: flush() frees it */
} req_state;

struct regent_http_req {
	regent_http *h;
	struct regent_http_req *prev, *next;
	req_state state;
	bool added;     /* easy is in h->multi */
	bool cancelled; /* no user callback fires any more */
	bool idle_inited;
	CURL *easy;
	struct curl_slist *hdr_list;
	regent_http_data_cb on_data;
	regent_http_done_cb on_done;
	void *arg;
	unsigned flags;
	size_t max_body;
	uint64_t idle_ms;
	uv_timer_t idle;
	int abort_err; /* set when one of our callbacks aborted the transfer */
	char *buf;     /* buffered body, or the partial line in LINES mode */
	size_t len, cap;
	char *back;    /* LINES mode: bytes received, not yet split (see Pacing) */
	size_t boff, blen, bcap; /* back[boff..blen) is pending */
	bool paused;   /* write_cb returned CURL_WRITEFUNC_PAUSE */
	bool was_paused; /* ever paused: its easy handle is not reused */
	unsigned shape;  /* regent_http_shape() of its options */
	bool fin_pending;     /* the transfer ended with a backlog: finish after it */
	int fin_err;
	const char *fin_msg;  /* errbuf, msg or a static curl string */
	char *hdrs;    /* the response's headers, one buffer: "name\0value\0" each */
	size_t hlen, hcap;
	char msg[HTTP_MSG_SIZE]; /* our own error text (curl owns errbuf) */
	char errbuf[CURL_ERROR_SIZE];
};

typedef struct http_sock {
	uv_poll_t poll;
	regent_http *h;
	curl_socket_t fd;
	bool parked; /* curl stopped watching it; kept for the socket's next transfer */
	bool established; /* curl asked to read it: connected (see Sockets, http_sock.c) */
	int events;  /* UV_READABLE/UV_WRITABLE the handle is started with (0: stopped) */
	struct http_sock *prev, *next;
} http_sock;

struct regent_http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	uv_idle_t pace;      /* backlog delivery on the next loop turns */
	uint64_t turn_t0;    /* uv_hrtime() when the outermost callback started */
	regent_http_req *reqs; /* every request not yet freed */
	http_sock *socks;
	unsigned char *ours; /* per fd: a connection socket opened by open_cb, not yet closed */
	size_t nours;
	size_t npending;     /* requests the user still waits for */
	size_t nqueued;      /* REQ_QUEUED requests */
	size_t nzombies;     /* REQ_ZOMBIE requests */
	unsigned busy;       /* nesting depth of our loop callbacks */
	size_t open_handles; /* uv handles not yet through their close callback */
	bool closing, torn_down;
	CURL *pool[HTTP_POOL_MAX]; /* idle easy handles, ready for reuse */
	unsigned pool_shape[HTTP_POOL_MAX]; /* each one's options kept (0: reset) */
	size_t npool;
	size_t easy_created; /* curl_easy_init() calls (tests) */
};

/* http.c: the request's end and the client's entry points. */
/* Frees the client once torn down and its last uv handle closed. */
void regent_http_maybe_free(regent_http *h);
/* Every loop callback into the client: enter first, leave last (leave does
 * what callbacks deferred, and may free h). */
void regent_http_enter(regent_http *h);
void regent_http_leave(regent_http *h);
/* Takes req out of curl, reports it (unless cancelled) and frees it;
 * busy, outside libcurl. */
void regent_http_finish(regent_http_req *req, int err, const char *msg);
/* A transfer curl finished with code: finished now, or once its backlog
 * of lines is handed over. */
void regent_http_complete(regent_http_req *req, CURLcode code);
/* Data arrived: the idle timeout starts again. */
void regent_http_touch_idle(regent_http_req *req);
/* http_sock.c: the multi handle's socket and timer callbacks (userp: the
 * client), libcurl's open/close socket callbacks (clientp: the client),
 * and closing a watched socket's handle (teardown). */
int regent_http_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp);
int regent_http_timer_cb(CURLM *multi, long timeout_ms, void *userp);
curl_socket_t regent_http_open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a);
int regent_http_close_cb(void *clientp, curl_socket_t fd);
void regent_http_sock_close(regent_http *h, http_sock *s);
/* http_body.c: libcurl's write and header callbacks (userdata: the request). */
size_t regent_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
size_t regent_http_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
/* Hands the partial line buffer to on_data; non-zero when the transfer
 * must stop (cancelled, or aborted by on_data). */
int regent_http_emit_line(regent_http_req *req);
/* Hands over backlogged lines (paced: within this loop callback's time);
 * non-zero when the transfer must stop. */
int regent_http_deliver_backlog(regent_http_req *req, bool paced);
/* Backlogs are handed over on the next loop turn. */
void regent_http_pace_later(regent_http *h);
/* http_setup.c */
bool regent_http_valid_method(const char *m);
/* The shape of a request's options (http_setup.c, Reuse): 0, or a
 * kind whose handles keep their options between requests. */
unsigned regent_http_shape(const regent_http_opts *o);
/* An easy handle for a new request of that shape: a pooled one or a new
 * one (NULL when out of memory); *kept tells that it still has the
 * options of an earlier request of the same shape. */
CURL *regent_http_easy_get(regent_http *h, unsigned shape, bool *kept);
/* Gives back a request's easy handle (out of the multi handle): pooled
 * when `reuse` and the pool has room (reset unless its shape keeps its
 * options), else cleaned up. */
void regent_http_easy_put(regent_http *h, CURL *easy, bool reuse, unsigned shape);
/* Cleans up every pooled handle (teardown). */
void regent_http_pool_free(regent_http *h);
/* Sets up req->easy from o (only what differs between requests of its
 * shape when `kept`); returns 0 or a negative errno. */
int regent_http_setup_easy(regent_http_req *req, const regent_http_opts *o, bool kept);

#endif
