/* http_setup.c - the core's HTTP client (http.c): the client's pool of
 * idle easy handles, one request's easy handle set up from the plugin's
 * regent_http_opts (method, URL scheme, headers, body, timeouts, TLS
 * files, unix socket), and the method check.
 *
 * Reuse.  A finished request's easy handle goes back to the client's pool
 * (at most HTTP_POOL_MAX) after curl_easy_reset(), which returns every
 * option to its default; the next request takes it and sets every option
 * it needs from scratch, exactly as on a new handle, so nothing of an
 * earlier request (headers, body, method, timeouts, unix socket, TLS
 * files, callbacks, private pointer) carries over.  What reuse keeps is
 * what the multi handle owns anyway (its connection and DNS caches) and
 * the handle's own buffers: no curl_easy_init() and its allocations per
 * request.  A handle that was ever paused (line pacing) is not reused.
 *
 * Shapes.  The requests a registry agent makes for every change are all
 * alike (a buffered POST with a body and a timeout over TCP, no TLS
 * files): for such a shape (regent_http_shape) the handle is not reset
 * but keeps its options, and the next request of the same shape sets
 * only those that every request of it sets anyway (URL, body, headers,
 * timeouts, max_body, the request's own pointers): the same options as
 * after a reset, without the reset and the dozen options that would be
 * set to the same values again (a reset and a full setup were ~5% of the
 * agent's instructions per change).  A kept handle lets go of what points
 * into the finished request (private pointer, error buffer, callback
 * data, header list) and of the body's copy when it is pooled.  A request
 * of another shape takes a kept handle only after resetting it.
 *
 * Owns the pooled handles (freed by regent_http_pool_free at teardown);
 * what setup allocates (the header list) belongs to the request, freed by
 * http.c. */
#include "http_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool regent_http_valid_method(const char *m)
{
	if (!*m)
		return false;
	for (; *m; m++) {
		unsigned char c = (unsigned char)*m;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", c)))
			return false;
	}
	return true;
}

enum { SHAPE_NONE, SHAPE_POST, SHAPE_GET };

unsigned regent_http_shape(const regent_http_opts *o)
{
	if (o->unix_socket || o->ca_file || o->cert_file || o->key_file || o->on_data ||
	    !o->timeout_ms)
		return SHAPE_NONE;
	if (o->body && o->method && !strcmp(o->method, "POST"))
		return SHAPE_POST;
	if (!o->body && (!o->method || !strcmp(o->method, "GET")))
		return SHAPE_GET;
	return SHAPE_NONE;
}

CURL *regent_http_easy_get(regent_http *h, unsigned shape, bool *kept)
{
	*kept = false;
	if (h->npool > 0) {
		size_t i = h->npool - 1;
		for (size_t k = h->npool; shape != SHAPE_NONE && k-- > 0;)
			if (h->pool_shape[k] == shape) {
				i = k;
				*kept = true;
				break;
			}
		CURL *easy = h->pool[i];
		if (!*kept && h->pool_shape[i] != SHAPE_NONE)
			curl_easy_reset(easy);
		h->npool--;
		h->pool[i] = h->pool[h->npool];
		h->pool_shape[i] = h->pool_shape[h->npool];
		return easy;
	}
	CURL *easy = curl_easy_init();
	if (easy)
		h->easy_created++;
	return easy;
}

void regent_http_easy_put(regent_http *h, CURL *easy, bool reuse, unsigned shape)
{
	if (!easy)
		return;
	if (reuse && !h->closing && !h->torn_down && h->npool < HTTP_POOL_MAX) {
		if (shape == SHAPE_NONE) {
			curl_easy_reset(easy);
		} else {
			/* nothing left pointing into the finished request */
			curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
			curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
			curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
			curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
			curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
			if (shape == SHAPE_POST) /* frees the body's copy (the next sets it again) */
				curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
		}
		h->pool_shape[h->npool] = shape;
		h->pool[h->npool++] = easy;
		return;
	}
	curl_easy_cleanup(easy);
}

void regent_http_pool_free(regent_http *h)
{
	while (h->npool > 0)
		curl_easy_cleanup(h->pool[--h->npool]);
}

void regent_http_easy_stats(const regent_http *h, size_t *created, size_t *pooled)
{
	if (created)
		*created = h ? h->easy_created : 0;
	if (pooled)
		*pooled = h ? h->npool : 0;
}

static int setopt_error(CURLcode c)
{
	switch (c) {
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_UNKNOWN_OPTION:
	case CURLE_NOT_BUILT_IN:
		return -ENOTSUP;
	default:
		return -EINVAL;
	}
}

static long clamp_ms(uint64_t ms)
{
	return ms > (uint64_t)LONG_MAX ? LONG_MAX : (long)ms;
}

#define SETOPT(opt, val)                                          \
	do {                                                          \
		CURLcode c_ = curl_easy_setopt(req->easy, opt, val);      \
		if (c_ != CURLE_OK) {                                     \
			rc = setopt_error(c_);                                \
			goto fail;                                            \
		}                                                         \
	} while (0)

/* Configures req->easy from o.  Returns 0 or a negative errno.  A kept
 * handle (Shapes) has the options of an earlier request of the same
 * shape: those that are the same for every request of it are not set
 * again; every other one is (each one set below for its shape is set for
 * every request of that shape). */
int regent_http_setup_easy(regent_http_req *req, const regent_http_opts *o, bool kept)
{
	int rc = 0;
	bool has_body = o->body != NULL;
	const char *m = o->method;

	SETOPT(CURLOPT_PRIVATE, (void *)req);
	SETOPT(CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(CURLOPT_URL, o->url);
	SETOPT(CURLOPT_WRITEDATA, (void *)req);
	SETOPT(CURLOPT_HEADERDATA, (void *)req);
	if (!kept) {
		SETOPT(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
		SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
		SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
		SETOPT(CURLOPT_WRITEFUNCTION, regent_http_write_cb);
		SETOPT(CURLOPT_HEADERFUNCTION, regent_http_header_cb);
		SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
		SETOPT(CURLOPT_OPENSOCKETFUNCTION, regent_http_open_cb);
		SETOPT(CURLOPT_OPENSOCKETDATA, (void *)req->h);
		SETOPT(CURLOPT_CLOSESOCKETFUNCTION, regent_http_close_cb);
		SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)req->h);
	}
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS,
	       clamp_ms(o->connect_timeout_ms ? o->connect_timeout_ms : HTTP_CONNECT_TIMEOUT_MS));
	if (o->timeout_ms)
		SETOPT(CURLOPT_TIMEOUT_MS, clamp_ms(o->timeout_ms));
	if (o->unix_socket)
		SETOPT(CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);
	if (o->ca_file)
		SETOPT(CURLOPT_CAINFO, o->ca_file);
	if (o->cert_file)
		SETOPT(CURLOPT_SSLCERT, o->cert_file);
	if (o->key_file)
		SETOPT(CURLOPT_SSLKEY, o->key_file);
	if (!o->on_data)
		SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);

	/* Methods that carry a body get Content-Length: 0 without one. */
	if (!has_body && m &&
	    (!strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH")))
		has_body = true;
	if (has_body) {
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
		/* COPYPOSTFIELDS: curl keeps its own copy of the body. */
		SETOPT(CURLOPT_COPYPOSTFIELDS, o->body ? (const char *)o->body : "");
	}
	if (m) {
		if (!strcmp(m, "HEAD"))
			SETOPT(CURLOPT_NOBODY, 1L);
		else if (!strcmp(m, "GET") && !has_body)
			SETOPT(CURLOPT_HTTPGET, 1L);
		else if (strcmp(m, "POST") != 0)
			SETOPT(CURLOPT_CUSTOMREQUEST, m);
	}

	bool have_expect = false;
	for (size_t i = 0; i < o->nheaders; i++) {
		const char *hv = o->headers[i];
		if (!strncasecmp(hv, "Expect:", 7))
			have_expect = true;
		struct curl_slist *l = curl_slist_append(req->hdr_list, hv);
		if (!l)
			return -ENOMEM;
		req->hdr_list = l;
	}
	if (!have_expect && has_body && o->body_len > HTTP_EXPECT_MIN) {
		/* No "Expect: 100-continue" round trip for large bodies (curl
		 * asks for one only above HTTP_EXPECT_MIN: a smaller body, every
		 * registry write of one change, needs no header to say so). */
		struct curl_slist *l = curl_slist_append(req->hdr_list, "Expect:");
		if (!l)
			return -ENOMEM;
		req->hdr_list = l;
	}
	if (req->hdr_list || kept)
		SETOPT(CURLOPT_HTTPHEADER, req->hdr_list);
	return 0;
fail:
	return rc;
}
