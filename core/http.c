/*
 * http.c - the core's asynchronous HTTP client (see http.h, and the HTTP
 * section of regent/plugin.h for the contract plugins rely on).
 *
 * Owns:
 *  - the one-time curl_global_init() of the process;
 *  - per client (regent_http): the libcurl multi handle and its lifetime
 *    (init, close, teardown once no callback runs), the list of requests;
 *  - per request (regent_http_req): its lifetime from regent_http_request()
 *    to on_done (queued, active, done, cancelled), its header list and
 *    an optional uv_timer_t for the idle timeout.
 *
 * The other files of the client (their structs in http_int.h):
 *  - http_sock.c: the multi handle's sockets and timer on the loop (one
 *    uv_poll_t per socket curl watches, kept while the connection lives);
 *  - http_body.c: what arrives: the response headers, the buffered body,
 *    streamed lines and their pacing;
 *  - http_setup.c: the pool of easy handles and setting one up for a
 *    request from its options.
 *
 * Nothing here blocks: transfers only advance through
 * curl_multi_socket_action() called from loop callbacks.
 *
 * Re-entrancy.  The user's callbacks run while the client is "busy"
 * (h->busy > 0): on_data even runs inside libcurl, where adding or removing
 * easy handles is forbidden.  So while busy, regent_http_request() only
 * queues the new request (REQ_QUEUED), regent_http_cancel() only marks the
 * request (REQ_ZOMBIE, no callback fires any more) and regent_http_close()
 * only marks the client; regent_http_leave() does the queued work once the
 * outermost entry point is about to return to the loop.  A request is in
 * REQ_DONE from the moment regent_http_finish() takes it out of curl until
 * it is freed right after its on_done returned; cancelling it then only
 * suppresses on_done.
 *
 * Memory of a request with an idle timer, and of the client itself, is
 * released from uv_close() callbacks, so run the loop after closing.
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
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool curl_ready;

/* Debian's libcurl links libssh2 (scp, sftp), whose global init, run by
 * curl_global_init, initialises OpenSSL's libcrypto for it (ciphers,
 * engines, the configuration file): ~1.4 MB of libcrypto's pages and its
 * heap in an agent that never enables those protocols (CURLOPT_PROTOCOLS:
 * http and https; TLS is libcurl's own backend, GnuTLS or OpenSSL, set up
 * by libcurl itself).  When libssh2 is in the process, its global init is
 * done first without crypto (LIBSSH2_INIT_NO_CRYPTO, libssh2 >= 1.2.5):
 * libcurl's libssh2_init(0) then finds it done.  Never cleaned up, as
 * curl_global_init is not. */
#define SSH2_INIT_NO_CRYPTO 0x0001
static void ssh2_init_light(void)
{
	void *lib = dlopen("libssh2.so.1", RTLD_LAZY | RTLD_NOLOAD);
	if (!lib)
		return; /* a libcurl without SSH: nothing to do */
	int (*init)(int);
	void *sym = dlsym(lib, "libssh2_init");
	memcpy(&init, &sym, sizeof(init)); /* POSIX: a function's address */
	if (sym)
		init(SSH2_INIT_NO_CRYPTO);
	dlclose(lib); /* a reference dropped: libcurl's link keeps it loaded */
}

static int global_init(void)
{
	if (!curl_ready) {
		ssh2_init_light();
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -EIO;
		curl_ready = true;
	}
	return 0;
}

void regent_http_maybe_free(regent_http *h)
{
	if (h->torn_down && h->open_handles == 0) {
		free(h->ours);
		free(h);
	}
}

/* ---- Requests: freeing ---- */

static void req_closed(uv_handle_t *handle)
{
	regent_http_req *req = handle->data;
	regent_http *h = req->h;
	free(req);
	h->open_handles--;
	regent_http_maybe_free(h);
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
	req->hlen = 0;
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

/* Takes req out of curl and reports it (unless cancelled meanwhile), then
 * frees it.  Runs with h->busy > 0, outside libcurl. */
void regent_http_finish(regent_http_req *req, int err, const char *msg)
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
	    regent_http_deliver_backlog(req, false) != 0) {
		if (req->cancelled) {
			free_req(req);
			return;
		}
		err = req->abort_err;
		msg = req->msg;
	}
	if (err == 0 && req->on_data && (req->flags & REGENT_HTTP_LINES) && req->len > 0) {
		if (regent_http_emit_line(req) != 0) {
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

void regent_http_complete(regent_http_req *req, CURLcode code)
{
	if (req->blen > req->boff && !req->abort_err) { /* lines still to hand over, paced */
		req->fin_pending = true;
		req->fin_err = code == CURLE_OK ? 0 : map_curl_error(code);
		req->fin_msg = code == CURLE_OK ? ""
		               : req->errbuf[0] ? req->errbuf : curl_easy_strerror(code);
		regent_http_pace_later(req->h);
		return;
	}
	if (req->abort_err) {
		regent_http_finish(req, req->abort_err, req->msg);
	} else if (code != CURLE_OK) {
		regent_http_finish(req, map_curl_error(code),
		       req->errbuf[0] ? req->errbuf : curl_easy_strerror(code));
	} else {
		regent_http_finish(req, 0, "");
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
		regent_http_finish(req, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO, req->msg);
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

void regent_http_enter(regent_http *h)
{
	if (h->busy++ == 0)
		h->turn_t0 = uv_hrtime();
}

/* The last thing an entry point does: h may be gone afterwards. */
void regent_http_leave(regent_http *h)
{
	if (h->busy == 1)
		flush(h);
	if (--h->busy == 0 && h->closing)
		teardown(h);
}

static void on_idle(uv_timer_t *t)
{
	regent_http_req *req = t->data;
	regent_http *h = req->h;
	if (req->cancelled || (req->state != REQ_ACTIVE && req->state != REQ_QUEUED))
		return;
	regent_http_enter(h);
	snprintf(req->msg, sizeof req->msg, "no data received for %llu ms",
	         (unsigned long long)req->idle_ms);
	regent_http_finish(req, -ETIMEDOUT, req->msg);
	regent_http_leave(h);
}

void regent_http_touch_idle(regent_http_req *req)
{
	if (req->idle_inited)
		uv_timer_start(&req->idle, on_idle, req->idle_ms, 0);
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
	if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, regent_http_sock_cb) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
	    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, regent_http_timer_cb) != CURLM_OK ||
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
	regent_http_maybe_free(h);
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
		regent_http_sock_close(h, h->socks);
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
		regent_http_touch_idle(req);
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
		return; /* inside its final on_data / on_done: regent_http_finish() frees it */
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
