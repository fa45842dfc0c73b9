/*
 * http_body.c - the core's HTTP client (http.c): what a response brings.
 *
 * Owns, per request: the captured response headers (one buffer,
 * "name\0value\0" each), the buffered body (or, in LINES mode, the
 * partial line), the backlog of streamed bytes not yet split into lines,
 * and, per client, the `pace` idle handle's callback that hands the
 * backlogs over.  libcurl's write and header callbacks are here.
 *
 * Pacing (LINES mode).  A stream that fell behind (a watch's backlog:
 * megabytes arriving in one read) must not hold the loop: lines are handed
 * to on_data for at most PACE_NS per loop callback (checked after each
 * line; each request with lines waiting gets one at least, so that none
 * waits behind another's backlog for as long as that one keeps growing);
 * what arrived beyond that waits in the request's backlog, and
 * while it does, curl is paused (CURL_WRITEFUNC_PAUSE: the data stays in
 * curl, the socket is not read, the sender is held back by TCP).  The
 * `pace` idle handle (the next loop turn, after the I/O that waited)
 * hands over the next PACE_NS worth, and unpauses curl once the backlog
 * is gone.  A transfer that ends with a backlog is finished (the final
 * line, on_done) once the backlog is delivered.
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

/* Hands one line (the partial line buffer) to on_data.  Returns non-zero
 * when the transfer must stop (cancelled or aborted by on_data). */
int regent_http_emit_line(regent_http_req *req)
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

static bool turn_spent(const regent_http *h)
{
	return uv_hrtime() - h->turn_t0 > PACE_NS;
}

/* Lines mode: split data into lines, the partial one kept in buf.  With
 * `paced`, stops once this loop callback's time is spent, but after one
 * line at least: *used says how far it got (everything when it did not
 * stop).  (At least one: on_pace walks the requests in one order every
 * turn, and one whose turn always came after a stream with a backlog
 * longer than the turn got no line at all, for as long as that stream
 * kept sending.) */
static int deliver_lines(regent_http_req *req, const char *data, size_t n, bool paced,
                         size_t *used)
{
	size_t pos = 0;
	*used = n;
	while (pos < n) {
		if (paced && pos > 0 && turn_spent(req->h)) {
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
		if (regent_http_emit_line(req) != 0)
			return -1;
	}
	return 0;
}

/* Hands over backlogged lines (paced: within this callback's time).
 * Returns non-zero when the transfer must stop. */
int regent_http_deliver_backlog(regent_http_req *req, bool paced)
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
void regent_http_pace_later(regent_http *h)
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
	regent_http_pace_later(req->h);
	return 0;
}

/* The next loop turn's share of every backlog. */
static void on_pace(uv_idle_t *t)
{
	regent_http *h = t->data;
	uv_idle_stop(&h->pace);
	regent_http_enter(h);
	bool more = false;
	regent_http_req *r, *next;
	for (r = h->reqs; r; r = next) {
		next = r->next;
		if (r->state != REQ_ACTIVE || r->cancelled || r->abort_err)
			continue;
		if (r->blen > r->boff) {
			regent_http_touch_idle(r); /* the data is there: not idle */
			if (regent_http_deliver_backlog(r, true) != 0) {
				if (!r->cancelled) /* aborted by on_data: not inside curl here */
					regent_http_finish(r, r->abort_err, r->msg);
				continue;
			}
		}
		if (r->blen > r->boff) {
			more = true;
		} else if (r->fin_pending) {
			regent_http_finish(r, r->fin_err, r->fin_msg);
		} else if (r->paused) {
			r->paused = false;
			/* May call write_cb at once with what curl held.  If write_cb
			 * refuses it (a line over the limit, on_data aborting), the
			 * error is returned here, and only here: curl does not report
			 * it through the multi handle nor watch the socket again, so
			 * the transfer would sit silent (a watch: until its idle
			 * timeout).  It ends now. */
			CURLcode cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
			if (r->cancelled)
				continue; /* a zombie now: freed when the client is left */
			if (cc != CURLE_OK || r->abort_err) {
				regent_http_complete(r, cc);
				continue;
			}
			more = more || r->blen > r->boff;
		}
	}
	if (more)
		regent_http_pace_later(h);
	regent_http_leave(h);
}

size_t regent_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	regent_http_req *req = userdata;
	size_t n = size * nmemb;

	if (req->cancelled || req->abort_err)
		return 0;
	regent_http_touch_idle(req);
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
			regent_http_pace_later(req->h);
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
	regent_http_touch_idle(req);
	while (l && (ptr[l - 1] == '\n' || ptr[l - 1] == '\r'))
		l--;
	if (l >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
		req->hlen = 0; /* a new response (after 1xx) starts */
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
