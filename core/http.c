/*
 * http.c - the core's asynchronous HTTP client (see http.h, and the HTTP
 * section of regent/plugin.h for the contract plugins rely on).
 *
 * Owns:
 *  - the one-time curl_global_init() of the process;
 *  - per client (regent_http): the libcurl multi handle, the uv_timer_t that
 *    carries curl's timeout (CURLMOPT_TIMERFUNCTION) and one uv_poll_t per
 *    socket curl asks us to watch (CURLMOPT_SOCKETFUNCTION), kept while
 *    the connection lives (see Sockets);
 *  - per request (regent_http_req): the easy handle (from the client's
 *    pool of reset handles, given back to it: http_setup.c), its header list, the
 *    captured response headers, the buffered body or partial line, and an
 *    optional uv_timer_t for the idle timeout.
 *
 * Setting up a request's easy handle from its options is in http_setup.c;
 * the structs both files use are in http_int.h.
 *
 * Nothing here blocks: transfers only advance through
 * curl_multi_socket_action() called from loop callbacks.
 *
 * Re-entrancy.  The user's callbacks run while the client is "busy"
 * (h->busy > 0): on_data even runs inside libcurl, where adding or removing
 * easy handles is forbidden.  So while busy, regent_http_request() only
 * queues the new request (REQ_QUEUED), regent_http_cancel() only marks the
 * request (REQ_ZOMBIE, no callback fires any more) and regent_http_close()
 * only marks the client; leave() does the queued work once the outermost
 * entry point is about to return to the loop.  A request is in REQ_DONE
 * from the moment finish() takes it out of curl until it is freed right
 * after its on_done returned; cancelling it then only suppresses on_done.
 *
 * Memory of a request with an idle timer, and of the client itself, is
 * released from uv_close() callbacks, so run the loop after closing.
 *
 * Pacing (LINES mode).  A stream that fell behind (a watch's backlog:
 * megabytes arriving in one read) must not hold the loop: lines are handed
 * to on_data for at most PACE_NS per loop callback (checked after each
 * line); what arrived beyond that waits in the request's backlog, and
 * while it does, curl is paused (CURL_WRITEFUNC_PAUSE: the data stays in
 * curl, the socket is not read, the sender is held back by TCP).  The
 * `pace` idle handle (the next loop turn, after the I/O that waited)
 * hands over the next PACE_NS worth, and unpauses curl once the backlog
 * is gone.  A transfer that ends with a backlog is finished (the final
 * line, on_done) once the backlog is delivered.
 *
 * Details beyond plugin.h: only http and https URLs are accepted; POST,
 * PUT and PATCH without a body send an empty one; "Expect:" is suppressed
 * unless the caller sets it; the idle timer runs from the creation of the
 * request (so it also bounds connecting) and restarts on every header or
 * body byte; in LINES mode lines are NUL-terminated, a line longer than
 * max_body fails with -EFBIG, and the final unterminated line is delivered
 * only when the transfer succeeded.
 */
#include "http_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static bool curl_ready;

static int global_init(void)
{
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -EIO;
		curl_ready = true;
	}
	return 0;
}

static void maybe_free_client(regent_http *h)
{
	if (h->torn_down && h->open_handles == 0) {
		free(h->ours);
		free(h);
	}
}

/* ---- Requests: buffers, headers, freeing ---- */

static int buf_append(regent_http_req *req, const char *data, size_t n)
{
	if (req->cap - req->len <= n) {
		size_t cap = req->cap ? req->cap : 1024;
		while (cap - req->len <= n) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		char *p = realloc(req->buf, cap);
		if (!p)
			return -ENOMEM;
		req->buf = p;
		req->cap = cap;
	}
	if (n)
		memcpy(req->buf + req->len, data, n);
	req->len += n;
	req->buf[req->len] = '\0';
	return 0;
}

static void clear_headers(regent_http_req *req)
{
	req->hlen = 0;
}

static void req_closed(uv_handle_t *handle)
{
	regent_http_req *req = handle->data;
	regent_http *h = req->h;
	free(req);
	h->open_handles--;
	maybe_free_client(h);
}

static void unlink_req(regent_http_req *req)
{
	regent_http *h = req->h;
	if (req->prev)
		req->prev->next = req->next;
	else if (h->reqs == req)
		h->reqs = req->next;
	if (req->next)
		req->next->prev = req->prev;
	req->prev = req->next = NULL;
}

/* Never called from inside libcurl (h->busy == 1 in flush(), or outside
 * curl_multi_socket_action()). */
static void free_req(regent_http_req *req)
{
	regent_http *h = req->h;
	unlink_req(req);
	if (req->added) {
		curl_multi_remove_handle(h->multi, req->easy);
		req->added = false;
	}
	/* Reset or cleaned up while its header list still exists. */
	CURL *easy = req->easy;
	req->easy = NULL;
	regent_http_easy_put(h, easy, !req->was_paused, req->shape);
	curl_slist_free_all(req->hdr_list);
	clear_headers(req);
	free(req->hdrs);
	free(req->buf);
	free(req->back);
	if (req->idle_inited) {
		uv_timer_stop(&req->idle);
		uv_close((uv_handle_t *)&req->idle, req_closed);
	} else {
		free(req);
	}
}

static int map_curl_error(CURLcode code)
{
	switch (code) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* Hands one line (the partial line buffer) to on_data.  Returns non-zero
 * when the transfer must stop (cancelled or aborted by on_data). */
static int emit_line(regent_http_req *req)
{
	size_t l = req->len;
	if (l && req->buf[l - 1] == '\r')
		l--;
	if (req->buf)
		req->buf[l] = '\0';
	int rc = req->on_data(req->arg, req->buf ? req->buf : "", l);
	req->len = 0;
	if (req->cancelled)
		return -1;
	if (rc) {
		req->abort_err = -ECANCELED;
		snprintf(req->msg, sizeof req->msg, "transfer aborted by on_data");
		return -1;
	}
	return 0;
}

static int deliver_backlog(regent_http_req *req, bool paced);
static void pace_later(regent_http *h);

/* Takes req out of curl and reports it (unless cancelled meanwhile), then
 * frees it.  Runs with h->busy > 0, outside libcurl. */
static void finish(regent_http_req *req, int err, const char *msg)
{
	regent_http *h = req->h;
	long status = 0;

	if (req->easy)
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (req->added) {
		curl_multi_remove_handle(h->multi, req->easy);
		req->added = false;
	}
	if (req->idle_inited)
		uv_timer_stop(&req->idle);
	if (req->state == REQ_QUEUED)
		h->nqueued--;
	req->state = REQ_DONE;
	h->npending--;

	if (req->blen > req->boff && !req->abort_err && !req->cancelled &&
	    deliver_backlog(req, false) != 0) {
		if (req->cancelled) {
			free_req(req);
			return;
		}
		err = req->abort_err;
		msg = req->msg;
	}
	if (err == 0 && req->on_data && (req->flags & REGENT_HTTP_LINES) && req->len > 0) {
		if (emit_line(req) != 0) {
			if (req->cancelled) {
				free_req(req);
				return;
			}
			err = req->abort_err;
			msg = req->msg;
		}
	}

	regent_http_result res = {
		.size = sizeof res,
		.error = err,
		.error_msg = msg ? msg : "",
		.status = status,
		.body = NULL,
		.body_len = 0,
	};
	if (!req->on_data) {
		res.body = req->buf ? req->buf : "";
		res.body_len = req->len;
	}
	if (!req->cancelled)
		req->on_done(req->arg, &res);
	free_req(req);
}

static void complete(regent_http_req *req, CURLcode code)
{
	if (req->blen > req->boff && !req->abort_err) { /* lines still to hand over, paced */
		req->fin_pending = true;
		req->fin_err = code == CURLE_OK ? 0 : map_curl_error(code);
		req->fin_msg = code == CURLE_OK ? ""
		               : req->errbuf[0] ? req->errbuf : curl_easy_strerror(code);
		pace_later(req->h);
		return;
	}
	if (req->abort_err) {
		finish(req, req->abort_err, req->msg);
	} else if (code != CURLE_OK) {
		finish(req, map_curl_error(code),
		       req->errbuf[0] ? req->errbuf : curl_easy_strerror(code));
	} else {
		finish(req, 0, "");
	}
}

/* ---- Entering and leaving the client from loop callbacks ---- */

static void teardown(regent_http *h);

static void start_req(regent_http_req *req)
{
	regent_http *h = req->h;
	CURLMcode mc = curl_multi_add_handle(h->multi, req->easy);
	if (mc != CURLM_OK) {
		snprintf(req->msg, sizeof req->msg, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
		finish(req, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO, req->msg);
		return;
	}
	req->added = true;
	req->state = REQ_ACTIVE;
	h->nqueued--;
}

/* Does what callbacks deferred: frees cancelled requests, adds queued ones
 * (an add failure reports through on_done, which may queue more). */
static void flush(regent_http *h)
{
	while (h->nzombies || h->nqueued) {
		regent_http_req *r, *next;
		for (r = h->reqs; r && h->nzombies; r = next) {
			next = r->next;
			if (r->state == REQ_ZOMBIE) {
				h->nzombies--;
				free_req(r);
			}
		}
		/* Callbacks below only mark other requests and prepend new
		 * ones, so `next` stays valid; only r itself may be freed. */
		for (r = h->reqs; r && h->nqueued; r = next) {
			next = r->next;
			if (r->state == REQ_QUEUED)
				start_req(r);
		}
	}
}

static void enter(regent_http *h)
{
	if (h->busy++ == 0)
		h->turn_t0 = uv_hrtime();
}

/* The last thing an entry point does: h may be gone afterwards. */
static void leave(regent_http *h)
{
	if (h->busy == 1)
		flush(h);
	if (--h->busy == 0 && h->closing)
		teardown(h);
}

static void check_multi_info(regent_http *h)
{
	CURLMsg *m;
	int left;
	while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURLcode code = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		regent_http_req *req = (regent_http_req *)priv;
		if (!req || req->cancelled || req->state != REQ_ACTIVE)
			continue; /* a zombie: flush() removes it */
		complete(req, code);
	}
}

static void socket_action(regent_http *h, curl_socket_t fd, int ev)
{
	int running = 0;
	if (!h->multi || h->closing)
		return;
	curl_multi_socket_action(h->multi, fd, ev, &running);
	check_multi_info(h);
}

static void on_timer(uv_timer_t *t)
{
	regent_http *h = t->data;
	enter(h);
	socket_action(h, CURL_SOCKET_TIMEOUT, 0);
	leave(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	http_sock *s = p->data;
	regent_http *h = s->h;
	int ev = 0;
	if (s->parked) { /* no transfer on it: see Sockets */
		uv_poll_stop(&s->poll);
		s->events = 0;
		return;
	}
	if (status < 0) {
		ev = CURL_CSELECT_ERR;
	} else {
		if (events & UV_READABLE)
			ev |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			ev |= CURL_CSELECT_OUT;
	}
	enter(h);
	socket_action(h, s->fd, ev);
	leave(h);
}

static void on_idle(uv_timer_t *t)
{
	regent_http_req *req = t->data;
	regent_http *h = req->h;
	if (req->cancelled || (req->state != REQ_ACTIVE && req->state != REQ_QUEUED))
		return;
	enter(h);
	snprintf(req->msg, sizeof req->msg, "no data received for %llu ms",
	         (unsigned long long)req->idle_ms);
	finish(req, -ETIMEDOUT, req->msg);
	leave(h);
}

static void touch_idle(regent_http_req *req)
{
	if (req->idle_inited)
		uv_timer_start(&req->idle, on_idle, req->idle_ms, 0);
}

/* ---- libcurl callbacks (run inside curl_multi_socket_action) ---- */

/* Sockets.  curl says CURL_POLL_REMOVE when a transfer on a kept-alive
 * connection ends, and asks again for the same socket on the next
 * transfer: initialising and closing a uv_poll_t each time costs seven
 * syscalls per request (libuv's epoll probe, FIONBIO, stop/close), where
 * stopping it and starting it again costs three.  So the handle of a
 * connection socket (one opened by open_cb: curl closes it through
 * close_cb, which closes the handle first) is parked on REMOVE and taken
 * up again by the next transfer on that socket; other sockets curl may
 * watch (the resolver's) are closed on REMOVE as before, since their fd
 * may be closed and reused without us knowing.
 * A parked handle stays started with its events (uv_poll_start/stop cost
 * an epoll_ctl each, even for the same events): the next transfer asking
 * for the same costs none; if the idle connection becomes readable (the
 * server closed it), on_poll stops the handle once and curl finds it dead. */

static void sock_closed(uv_handle_t *handle)
{
	http_sock *s = handle->data;
	regent_http *h = s->h;
	free(s);
	h->open_handles--;
	maybe_free_client(h);
}

static void sock_close(regent_http *h, http_sock *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static bool is_ours(const regent_http *h, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < h->nours && h->ours[fd];
}

/* The handle kept for fd, parked or not (a few connections: a short walk). */
static http_sock *sock_find(const regent_http *h, curl_socket_t fd)
{
	for (http_sock *s = h->socks; s; s = s->next)
		if (s->fd == fd)
			return s;
	return NULL;
}

curl_socket_t regent_http_open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	regent_http *h = clientp;
	(void)purpose;
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (fd == CURL_SOCKET_BAD || h->torn_down)
		return fd;
	if ((size_t)fd >= h->nours) {
		size_t n = (size_t)fd + 16;
		unsigned char *o = realloc(h->ours, n);
		if (!o)
			return fd; /* not parked then: closed on REMOVE as before */
		memset(o + h->nours, 0, n - h->nours);
		h->ours = o;
		h->nours = n;
	}
	h->ours[fd] = 1;
	return fd;
}

int regent_http_close_cb(void *clientp, curl_socket_t fd)
{
	regent_http *h = clientp;
	if (is_ours(h, fd)) {
		h->ours[fd] = 0;
		http_sock *s = sock_find(h, fd);
		if (s)
			sock_close(h, s); /* before the fd can be reused */
	}
	return close(fd);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	regent_http *h = userp;
	http_sock *s = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (s && is_ours(h, fd) && !h->torn_down) {
			s->parked = true; /* still started with s->events: see Sockets */
		} else if (s) {
			sock_close(h, s);
		}
		return 0;
	}
	if (h->torn_down)
		return 0;
	if (!s && is_ours(h, fd) && (s = sock_find(h, fd)) != NULL && s->parked) {
		s->parked = false;
		if (curl_multi_assign(h->multi, fd, s) != CURLM_OK) {
			sock_close(h, s);
			return -1;
		}
	} else if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return -1;
		if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
			free(s);
			return -1;
		}
		s->h = h;
		s->fd = fd;
		s->poll.data = s;
		s->next = h->socks;
		if (h->socks)
			h->socks->prev = s;
		h->socks = s;
		h->open_handles++;
		if (curl_multi_assign(h->multi, fd, s) != CURLM_OK) {
			sock_close(h, s);
			return -1;
		}
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	if (ev == s->events)
		return 0; /* started with these already (a parked handle taken up again) */
	if (ev)
		uv_poll_start(&s->poll, ev, on_poll);
	else
		uv_poll_stop(&s->poll);
	s->events = ev;
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	regent_http *h = userp;
	(void)multi;
	if (timeout_ms < 0 || h->torn_down)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

static bool turn_spent(const regent_http *h)
{
	return uv_hrtime() - h->turn_t0 > PACE_NS;
}

/* Lines mode: split data into lines, the partial one kept in buf.  With
 * `paced`, stops once this loop callback's time is spent: *used says how
 * far it got (everything when it did not stop). */
static int deliver_lines(regent_http_req *req, const char *data, size_t n, bool paced,
                         size_t *used)
{
	size_t pos = 0;
	*used = n;
	while (pos < n) {
		if (paced && turn_spent(req->h)) {
			*used = pos;
			return 0;
		}
		const char *nl = memchr(data + pos, '\n', n - pos);
		size_t seg = nl ? (size_t)(nl - (data + pos)) : n - pos;
		if (seg > req->max_body - req->len) {
			req->abort_err = -EFBIG;
			snprintf(req->msg, sizeof req->msg, "line longer than %zu bytes", req->max_body);
			return -1;
		}
		if (buf_append(req, data + pos, seg) != 0) {
			req->abort_err = -ENOMEM;
			snprintf(req->msg, sizeof req->msg, "out of memory");
			return -1;
		}
		pos += seg;
		if (!nl)
			break;
		pos++;
		if (emit_line(req) != 0)
			return -1;
	}
	return 0;
}

/* Hands over backlogged lines (paced: within this callback's time).
 * Returns non-zero when the transfer must stop. */
static int deliver_backlog(regent_http_req *req, bool paced)
{
	size_t used;
	int rc = deliver_lines(req, req->back + req->boff, req->blen - req->boff, paced, &used);
	req->boff += used;
	if (req->boff == req->blen)
		req->boff = req->blen = 0;
	return rc;
}

static void on_pace(uv_idle_t *t);

/* An idle handle, not a 0 ms timer: it runs once per loop iteration, after
 * the I/O (a timer re-armed from its own callback may run again in the
 * same iteration). */
static void pace_later(regent_http *h)
{
	if (!uv_is_active((uv_handle_t *)&h->pace))
		uv_idle_start(&h->pace, on_pace);
}

/* Keeps data[0..n) for later (see Pacing). */
static int backlog_add(regent_http_req *req, const char *data, size_t n)
{
	if (req->boff > 0 && req->boff == req->blen)
		req->boff = req->blen = 0;
	if (req->blen + n > req->bcap) {
		size_t cap = req->bcap ? req->bcap : 65536;
		while (cap < req->blen + n)
			cap *= 2;
		char *p = realloc(req->back, cap);
		if (!p)
			return -1;
		req->back = p;
		req->bcap = cap;
	}
	memcpy(req->back + req->blen, data, n);
	req->blen += n;
	pace_later(req->h);
	return 0;
}

/* The next loop turn's share of every backlog. */
static void on_pace(uv_idle_t *t)
{
	regent_http *h = t->data;
	uv_idle_stop(&h->pace);
	enter(h);
	bool more = false;
	regent_http_req *r, *next;
	for (r = h->reqs; r; r = next) {
		next = r->next;
		if (r->state != REQ_ACTIVE || r->cancelled || r->abort_err)
			continue;
		if (r->blen > r->boff) {
			touch_idle(r); /* the data is there: not idle */
			if (deliver_backlog(r, true) != 0) {
				if (!r->cancelled) /* aborted by on_data: not inside curl here */
					finish(r, r->abort_err, r->msg);
				continue;
			}
		}
		if (r->blen > r->boff) {
			more = true;
		} else if (r->fin_pending) {
			finish(r, r->fin_err, r->fin_msg);
		} else if (r->paused) {
			r->paused = false;
			curl_easy_pause(r->easy, CURLPAUSE_CONT); /* may call write_cb at once */
			more = more || r->blen > r->boff;
		}
	}
	if (more)
		pace_later(h);
	leave(h);
}

size_t regent_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	regent_http_req *req = userdata;
	size_t n = size * nmemb;

	if (req->cancelled || req->abort_err)
		return 0;
	touch_idle(req);
	if (!req->on_data) {
		if (n > req->max_body - req->len) {
			req->abort_err = -EFBIG;
			snprintf(req->msg, sizeof req->msg, "response body larger than %zu bytes",
			         req->max_body);
			return 0;
		}
		if (buf_append(req, ptr, n) != 0) {
			req->abort_err = -ENOMEM;
			snprintf(req->msg, sizeof req->msg, "out of memory");
			return 0;
		}
		return n;
	}
	if (req->flags & REGENT_HTTP_LINES) {
		if (req->blen > req->boff) { /* a backlog is waiting: keep this in curl */
			req->paused = req->was_paused = true;
			pace_later(req->h);
			return CURL_WRITEFUNC_PAUSE;
		}
		size_t used;
		if (deliver_lines(req, ptr, n, true, &used) != 0)
			return 0;
		if (used < n && backlog_add(req, ptr + used, n - used) != 0) {
			req->abort_err = -ENOMEM;
			snprintf(req->msg, sizeof req->msg, "out of memory");
			return 0;
		}
		return n;
	}
	int rc = req->on_data(req->arg, ptr, n);
	if (req->cancelled)
		return 0;
	if (rc) {
		req->abort_err = -ECANCELED;
		snprintf(req->msg, sizeof req->msg, "transfer aborted by on_data");
		return 0;
	}
	return n;
}

size_t regent_http_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	regent_http_req *req = userdata;
	size_t n = size * nmemb;
	size_t l = n;

	if (req->cancelled || req->abort_err)
		return 0;
	touch_idle(req);
	while (l && (ptr[l - 1] == '\n' || ptr[l - 1] == '\r'))
		l--;
	if (l >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
		clear_headers(req); /* a new response (after 1xx) starts */
		return n;
	}
	const char *colon = memchr(ptr, ':', l);
	if (!colon || colon == ptr)
		return n; /* blank line, folded continuation: ignored */
	size_t nlen = (size_t)(colon - ptr);
	const char *v = colon + 1;
	const char *end = ptr + l;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);

	/* One buffer for all of them (one allocation per request, not one
	 * per header): "name\0value\0", in order. */
	size_t need = req->hlen + nlen + vlen + 2;
	if (need > req->hcap) {
		size_t cap = req->hcap ? req->hcap : 512;
		while (cap < need)
			cap *= 2;
		char *p = realloc(req->hdrs, cap);
		if (!p)
			goto oom;
		req->hdrs = p;
		req->hcap = cap;
	}
	char *block = req->hdrs + req->hlen;
	memcpy(block, ptr, nlen);
	block[nlen] = '\0';
	memcpy(block + nlen + 1, v, vlen);
	block[nlen + 1 + vlen] = '\0';
	req->hlen = need;
	return n;
oom:
	req->abort_err = -ENOMEM;
	snprintf(req->msg, sizeof req->msg, "out of memory");
	return 0;
}

/* ---- Client ---- */

int regent_http_init(regent_http **out, uv_loop_t *loop)
{
	if (!out || !loop)
		return -EINVAL;
	*out = NULL;
	int rc = global_init();
	if (rc)
		return rc;
	regent_http *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->multi = curl_multi_init();
	if (!h->multi) {
		free(h);
		return -ENOMEM;
	}
	if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK) {
		curl_multi_cleanup(h->multi);
		free(h);
		return -EIO;
	}
	rc = uv_timer_init(loop, &h->timer);
	if (rc) {
		curl_multi_cleanup(h->multi);
		free(h);
		return rc;
	}
	h->timer.data = h;
	uv_idle_init(loop, &h->pace);
	h->pace.data = h;
	h->open_handles = 2;
	*out = h;
	return 0;
}

static void timer_closed(uv_handle_t *handle)
{
	regent_http *h = handle->data;
	h->open_handles--;
	maybe_free_client(h);
}

/* h->busy == 0 and h->closing: every request is already freed. */
static void teardown(regent_http *h)
{
	if (h->torn_down)
		return;
	while (h->reqs)
		free_req(h->reqs);
	regent_http_pool_free(h);
	h->torn_down = true;
	curl_multi_cleanup(h->multi); /* may still report CURL_POLL_REMOVE */
	h->multi = NULL;
	while (h->socks)
		sock_close(h, h->socks);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, timer_closed);
	uv_idle_stop(&h->pace);
	uv_close((uv_handle_t *)&h->pace, timer_closed);
}

void regent_http_close(regent_http *h)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	regent_http_req *r, *next;
	for (r = h->reqs; r; r = next) {
		next = r->next;
		regent_http_cancel(r);
	}
	if (h->busy == 0)
		teardown(h);
}

size_t regent_http_pending(const regent_http *h)
{
	return h ? h->npending : 0;
}

/* ---- Requests ---- */

regent_http_req *regent_http_request(regent_http *h, const regent_http_opts *opts, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	*err = 0;
	if (!h || !opts || opts->size < offsetof(regent_http_opts, on_done) + sizeof(regent_http_done_cb)) {
		*err = -EINVAL;
		return NULL;
	}
	/* Never read past the size the caller was built with. */
	regent_http_opts o;
	memset(&o, 0, sizeof o);
	memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	if (!o.url || !o.on_done || (o.body_len && !o.body) || (o.nheaders && !o.headers) ||
	    (o.method && !regent_http_valid_method(o.method))) {
		*err = -EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < o.nheaders; i++) {
		if (!o.headers[i] || strpbrk(o.headers[i], "\r\n") || !strchr(o.headers[i], ':')) {
			*err = -EINVAL;
			return NULL;
		}
	}
	if (h->closing) {
		*err = -ESHUTDOWN;
		return NULL;
	}

	regent_http_req *req = calloc(1, sizeof *req);
	if (!req) {
		*err = -ENOMEM;
		return NULL;
	}
	req->h = h;
	req->on_data = o.on_data;
	req->on_done = o.on_done;
	req->arg = o.arg;
	req->flags = o.flags;
	req->max_body = o.max_body ? o.max_body : HTTP_MAX_BODY;
	req->idle_ms = o.idle_timeout_ms;
	req->state = REQ_QUEUED;
	req->next = h->reqs;
	if (h->reqs)
		h->reqs->prev = req;
	h->reqs = req;

	int rc;
	bool kept = false;
	req->shape = regent_http_shape(&o);
	req->easy = regent_http_easy_get(h, req->shape, &kept);
	if (!req->easy) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = regent_http_setup_easy(req, &o, kept);
	if (rc)
		goto fail;
	if (req->idle_ms) {
		rc = uv_timer_init(h->loop, &req->idle);
		if (rc)
			goto fail;
		req->idle.data = req;
		req->idle_inited = true;
		h->open_handles++;
		touch_idle(req);
	}
	if (h->busy == 0) {
		CURLMcode mc = curl_multi_add_handle(h->multi, req->easy);
		if (mc != CURLM_OK) {
			rc = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
			goto fail;
		}
		req->added = true;
		req->state = REQ_ACTIVE;
	} else {
		h->nqueued++; /* added by flush() once the callback returns */
	}
	h->npending++;
	return req;
fail:
	req->shape = 0; /* half set up: reset before it is reused */
	free_req(req);
	*err = rc;
	return NULL;
}

void regent_http_cancel(regent_http_req *req)
{
	if (!req || req->cancelled)
		return;
	regent_http *h = req->h;
	req->cancelled = true;
	if (req->state == REQ_DONE)
		return; /* inside its final on_data / on_done: finish() frees it */
	h->npending--;
	if (req->idle_inited)
		uv_timer_stop(&req->idle);
	if (req->state == REQ_QUEUED)
		h->nqueued--;
	if (h->busy > 0) {
		req->state = REQ_ZOMBIE;
		h->nzombies++;
		return;
	}
	free_req(req);
}

const char *regent_http_header(regent_http_req *req, const char *name)
{
	if (!req || !name)
		return NULL;
	for (size_t at = 0; at < req->hlen;) {
		const char *n = req->hdrs + at, *v = n + strlen(n) + 1;
		if (!strcasecmp(n, name))
			return v;
		at = (size_t)(v + strlen(v) + 1 - req->hdrs);
	}
	return NULL;
}
