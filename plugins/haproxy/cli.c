/* cli.c - one request on haproxy's admin socket or master CLI, without
 * blocking the loop: uv_pipe_t connect, write the command line, shut the
 * write side, read to EOF, with a timeout.  The request owns its handles
 * and frees itself once both are closed.  Also the one "poll a CLI until
 * an answer says so" helper (hx_poll) every wait on the master CLI or the
 * admin socket uses.  It keeps the biggest answer's buffer for the next
 * request (see spare). */
#include "hx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

struct hx_cli {
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_connect_t conn;
	uv_write_t wr;
	uv_shutdown_t sh;
	char *cmd;
	hx_buf out;
	hx_cli_cb cb;
	void *arg;
	bool done;
	int open_handles;
};

/* The buffer of the biggest answer so far is kept for the next request
 * (one loop thread, every instance of the sink): the state of 10,000
 * servers (~1.5 MB, asked every server_state_interval and after changes)
 * grown from nothing again on each request cost a dozen reallocs and a
 * page fault per fresh 4 KB each time, tens of ms of the agent's CPU per
 * answer on a loaded VM.  Only a buffer of SPARE_MIN or more is kept, at
 * most one (the biggest); it is freed when the plugin is unloaded or the
 * agent exits (spare_free).  A buffer over SPARE_MAX is kept whole only
 * for an answer over SPARE_MAX that follows another: a one-off big answer
 * (a full `show stat` or `show servers state` after a start or before a
 * reload: 3.9 and 1.2 MB at 16,000 slots) shrinks it to what the answer
 * before needed (last_len), an answer under a quarter of it shrinks it to
 * fit, and periodic answers keep their size (annot.c's chunks, ~0.4 MB; a
 * single service of 10,000 servers polled every interval, ~5 MB, from its
 * second poll). */
#define SPARE_MIN (64u << 10)
#define SPARE_MAX (1u << 20)
static regent_buffer spare;
static size_t last_len; /* the length of the answer before */

__attribute__((destructor)) static void spare_free(void)
{
	free(spare.data); /* taken over from the host's buffer (plugin.h allows free) */
	spare = (regent_buffer){0};
}

size_t hx_cli_spare_cap(void)
{
	return spare.cap;
}

static void on_close(uv_handle_t *h)
{
	hx_cli *c = h->data;
	if (--c->open_handles > 0)
		return;
	free(c->cmd);
	size_t len = c->out.len, want = 0;
	if (c->out.cap > SPARE_MAX && len > SPARE_MAX && last_len <= SPARE_MAX)
		want = last_len + 1; /* a one-off */
	else if (c->out.cap > SPARE_MAX && len < c->out.cap / 4)
		want = len + 1;
	last_len = len;
	if (want) {
		size_t cap = SPARE_MIN;
		while (cap < want)
			cap *= 2;
		c->out.data = c->out.h->xrealloc(c->out.data, cap);
		c->out.cap = cap;
		c->out.len = 0; /* the answer was read (finish); only the room is kept */
		c->out.data[0] = '\0';
	}
	if (c->out.cap >= SPARE_MIN && c->out.cap > spare.cap) {
		free(spare.data);
		spare = c->out.rb;
		c->out.rb = (regent_buffer){0};
	}
	hx_buf_free(&c->out);
	free(c);
}

static void close_all(hx_cli *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, on_close);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, on_close);
}

static void finish(hx_cli *c, int status)
{
	if (c->done)
		return;
	c->done = true;
	close_all(c); /* the buffer stays valid until the close callbacks */
	c->cb(c->arg, status, hx_buf_str(&c->out), c->out.len);
}

static void on_timeout(uv_timer_t *t)
{
	finish(t->data, -ETIMEDOUT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char scratch[16384]; /* single loop thread: one read at a time */
	buf->base = scratch;
	buf->len = sizeof(scratch);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	hx_cli *c = s->data;
	if (c->done)
		return;
	if (nread > 0) {
		if (c->out.len + (size_t)nread > (8u << 20)) {
			finish(c, -E2BIG);
			return;
		}
		hx_buf_add(&c->out, buf->base, (size_t)nread);
	} else if (nread == UV_EOF) {
		finish(c, 0);
	} else if (nread < 0) {
		/* A reset after the answer (haproxy closing a connection whose
		 * write side we already shut) still leaves a full answer. */
		finish(c, nread == UV_ECONNRESET && c->out.len ? 0 : (int)nread);
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status; /* the peer may have closed first: the read side decides */
}

static void on_write(uv_write_t *req, int status)
{
	hx_cli *c = req->data;
	if (c->done)
		return;
	if (status < 0) {
		finish(c, status);
		return;
	}
	c->sh.data = c;
	uv_shutdown(&c->sh, (uv_stream_t *)&c->pipe, on_shutdown);
}

static void on_connect(uv_connect_t *req, int status)
{
	hx_cli *c = req->data;
	if (c->done)
		return;
	if (status < 0) {
		finish(c, status);
		return;
	}
	int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	if (rc < 0) {
		finish(c, rc);
		return;
	}
	uv_buf_t b = uv_buf_init(c->cmd, (unsigned)strlen(c->cmd));
	c->wr.data = c;
	rc = uv_write(&c->wr, (uv_stream_t *)&c->pipe, &b, 1, on_write);
	if (rc < 0)
		finish(c, rc);
}

hx_cli *hx_cli_request(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t timeout_ms, hx_cli_cb cb, void *arg, int *err)
{
	struct sockaddr_un sa;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	hx_cli *c = h->xcalloc(1, sizeof(*c));
	c->cmd = h->xasprintf("%s\n", cmd);
	c->out.h = h;
	if (spare.data) { /* reused: length 0, its memory kept (plugin.h) */
		c->out.rb = spare;
		c->out.len = 0;
		c->out.data[0] = '\0';
		spare = (regent_buffer){0};
	}
	c->cb = cb;
	c->arg = arg;
	uv_pipe_init(loop, &c->pipe, 0);
	uv_timer_init(loop, &c->timer);
	c->pipe.data = c->timer.data = c->conn.data = c;
	c->open_handles = 2;
	uv_timer_start(&c->timer, on_timeout, timeout_ms ? timeout_ms : 5000, 0);
	uv_pipe_connect(&c->conn, &c->pipe, path, on_connect);
	return c;
}

void hx_cli_cancel(hx_cli *c)
{
	if (!c || c->done)
		return;
	c->done = true;
	close_all(c);
}

/* ------------------------------------------------------------------ */
/* Poll a CLI until                                                   */
/* ------------------------------------------------------------------ */

struct hx_poll {
	const regent_host *h;
	uv_loop_t *loop;
	char *path, *cmd;
	uint64_t interval, deadline, cmd_timeout;
	hx_poll_fn fn;
	void *arg;
	hx_cli *req;
	uv_timer_t timer;
	bool done;
};

static void poll_free(uv_handle_t *h)
{
	hx_poll *p = h->data;
	free(p->path);
	free(p->cmd);
	free(p);
}

static void poll_finish(hx_poll *p)
{
	p->done = true;
	uv_close((uv_handle_t *)&p->timer, poll_free);
}

static void poll_send(uv_timer_t *t);

static void poll_answer(void *arg, int status, const char *out, size_t len)
{
	hx_poll *p = arg;
	(void)len;
	p->req = NULL;
	/* fn may cancel p itself (p stays allocated until its close). */
	if (p->fn(p->arg, status, status == 0 ? out : "") != 0) {
		if (!p->done)
			poll_finish(p);
		return;
	}
	if (p->done)
		return;
	if (p->deadline && uv_now(p->loop) >= p->deadline) {
		p->fn(p->arg, -ETIMEDOUT, "");
		if (!p->done)
			poll_finish(p);
		return;
	}
	uv_timer_start(&p->timer, poll_send, p->interval, 0);
}

static void poll_send(uv_timer_t *t)
{
	hx_poll *p = t->data;
	int err = 0;
	p->req = hx_cli_request(p->h, p->loop, p->path, p->cmd, p->cmd_timeout, poll_answer, p, &err);
	if (!p->req)
		poll_answer(p, err, "", 0);
}

hx_poll *hx_poll_start(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t first_ms, uint64_t interval_ms, uint64_t timeout_ms,
                       uint64_t cmd_timeout_ms, hx_poll_fn fn, void *arg)
{
	hx_poll *p = h->xcalloc(1, sizeof(*p));
	p->h = h;
	p->path = h->xstrdup(path);
	p->cmd = h->xstrdup(cmd);
	p->loop = loop;
	p->interval = interval_ms;
	p->deadline = timeout_ms ? uv_now(loop) + timeout_ms : 0;
	p->cmd_timeout = cmd_timeout_ms;
	p->fn = fn;
	p->arg = arg;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, poll_send, first_ms, 0);
	return p;
}

void hx_poll_cancel(hx_poll *p)
{
	if (!p || p->done)
		return;
	hx_cli_cancel(p->req);
	p->req = NULL;
	poll_finish(p);
}
