/* http.h - the core's async HTTP client: libcurl multi driven by the libuv loop. */
#ifndef REGENT_CORE_HTTP_H
#define REGENT_CORE_HTTP_H

#include <regent/plugin.h>

typedef struct regent_http regent_http;

/* Creates a client bound to loop.  Returns 0 or a negative errno. */
int regent_http_init(regent_http **out, uv_loop_t *loop);
/* Cancels every pending request (no callbacks fire) and frees the client
 * once its libuv handles have closed (run the loop afterwards). */
void regent_http_close(regent_http *h);
/* See regent_host.http_request / http_cancel / http_header in plugin.h. */
regent_http_req *regent_http_request(regent_http *h, const regent_http_opts *opts, int *err);
void regent_http_cancel(regent_http_req *req);
const char *regent_http_header(regent_http_req *req, const char *name);
/* Number of requests in flight (tests, shutdown). */
size_t regent_http_pending(const regent_http *h);
/* Easy handles created so far and idle in the pool (tests). */
void regent_http_easy_stats(const regent_http *h, size_t *created, size_t *pooled);

#endif
