/*
 * http_sock.c - the core's HTTP client (http.c): the libcurl multi handle's
 * sockets and timer on the libuv loop.
 *
 * Owns, per client: one uv_poll_t per socket curl asks to watch
 * (CURLMOPT_SOCKETFUNCTION), kept while the connection lives (see Sockets
 * below), the record of which fds are connection sockets curl opened
 * through open_cb, and the timer callback that carries curl's timeout
 * (CURLMOPT_TIMERFUNCTION; the uv_timer_t itself is the client's, http.c).
 * The loop callbacks here (socket ready, timeout) drive the transfers
 * through curl_multi_socket_action() and hand finished ones to
 * regent_http_complete().
 */
#include "http_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
			continue; /* a zombie: http.c's flush() removes it */
		regent_http_complete(req, code);
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
	regent_http_enter(h);
	socket_action(h, CURL_SOCKET_TIMEOUT, 0);
	regent_http_leave(h);
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
	regent_http_enter(h);
	socket_action(h, s->fd, ev);
	regent_http_leave(h);
}

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
 * server closed it), on_poll stops the handle once and curl finds it dead.
 * Only an established socket is parked: one curl asked to read, so its
 * connect is done.  A socket still connecting when its transfer ends (a
 * request cancelled mid-connect) is closed by libcurl 7.88.0-8.1.x
 * without close_cb (curl issue 11439, fixed in 8.2.0; Debian 12 ships
 * 7.88.1): a handle parked on it would stay started on a closed fd, and
 * libuv's next epoll_ctl on that fd fails (EBADF) and abort()s, without a
 * word, in uv_run (consul_restart's client, a service's read cancelled as
 * the service left the catalog).  So such a socket's handle is closed on
 * REMOVE and the fd forgotten as ours; and a handle still kept for an fd
 * number open_cb gets again belonged to a socket closed behind our back:
 * closed there. */

static void sock_closed(uv_handle_t *handle)
{
	http_sock *s = handle->data;
	regent_http *h = s->h;
	free(s);
	h->open_handles--;
	regent_http_maybe_free(h);
}

void regent_http_sock_close(regent_http *h, http_sock *s)
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
	http_sock *stale = sock_find(h, fd);
	if (stale) /* its socket was closed without close_cb: see Sockets */
		regent_http_sock_close(h, stale);
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
			regent_http_sock_close(h, s); /* before the fd can be reused */
	}
	return close(fd);
}

int regent_http_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	regent_http *h = userp;
	http_sock *s = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (s && is_ours(h, fd) && s->established && !h->torn_down) {
			s->parked = true; /* still started with s->events: see Sockets */
			return 0;
		}
		if (is_ours(h, fd) && !(s && s->established))
			h->ours[fd] = 0; /* maybe closed without close_cb: see Sockets */
		if (s)
			regent_http_sock_close(h, s);
		return 0;
	}
	if (h->torn_down)
		return 0;
	if (!s && is_ours(h, fd) && (s = sock_find(h, fd)) != NULL && s->parked) {
		s->parked = false;
		if (curl_multi_assign(h->multi, fd, s) != CURLM_OK) {
			regent_http_sock_close(h, s);
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
			regent_http_sock_close(h, s);
			return -1;
		}
	}
	int ev = 0;
	if (what & CURL_POLL_IN) {
		ev |= UV_READABLE;
		s->established = true; /* connecting, curl asks only to write */
	}
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

int regent_http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	regent_http *h = userp;
	(void)multi;
	if (timeout_ms < 0 || h->torn_down)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}
