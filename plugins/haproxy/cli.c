/* cli.c - requests on haproxy's admin socket or master CLI, without
 * blocking the loop.  One-shot: uv_pipe_t connect, write the command line,
 * shut the write side, read to EOF, with a timeout; the request owns its
 * handles and frees itself once both are closed.  Persistent (hx_conn):
 * one connection to the admin socket in haproxy's interactive "prompt"
 * mode, requests pipelined on it and their answers cut at the prompts.
 * It keeps the biggest one-shot answer's buffer for the next request (see
 * spare), hands a big answer over line by line as it is read when asked
 * (hx_cli_request_lines: no buffer of the whole answer), and counts a
 * one-shot request's CPU time on the loop when asked (hx_cli_meter).  The
 * "poll a CLI until" helper built on the one-shot requests is clipoll.c. */
#include "hx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

typedef struct hx_link hx_link;

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
	/* A request on a persistent connection (hx_conn_request) has no
	 * handles of its own: its link writes it and reads its answers. */
	hx_link *ln;
	hx_cli *next;     /* the link's queue, in the order sent */
	unsigned nleft;   /* prompts (one per command of the line) still due */
	size_t mark;      /* where the answer of its current command starts */
	uint64_t deadline;
	bool sent;
	/* hx_cli_request_late: the answer read from this long after the
	 * command was written, then within timeout_ms */
	uint64_t late_ms, timeout_ms;
	/* hx_cli_meter: the loop thread's CPU time of this request's callbacks
	 * is added to *meter (from meter_t0, the current callback's start)
	 * until its answer is handed over */
	uint64_t *meter;
	uint64_t meter_t0;
	/* hx_cli_request_lines: each line handed over as it is read; out holds
	 * only a line not complete yet, total counts the answer's bytes */
	hx_cli_line_cb line;
	size_t total;
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
 * fit, and periodic answers keep their size (annot.c's chunks, ~0.25 MB; a
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

/* The longest answer read (an answer past it fails with E2BIG): 8 MiB,
 * REGENT_HX_ANSWER_MAX (bytes) in tests, to show that the chunked reads
 * (statedump.c hx_state_next) carry a fleet whose whole answer would not
 * fit. */
size_t hx_cli_answer_max(void)
{
	static size_t max;
	if (!max) {
		const char *e = getenv("REGENT_HX_ANSWER_MAX");
		char *end = NULL;
		/* digits only (no sign, blank or trailing text), else the default */
		unsigned long long v = e && *e >= '0' && *e <= '9' ? strtoull(e, &end, 10) : 0;
		if (end && *end)
			v = 0;
		max = v >= 1024 && v <= (8u << 20) ? (size_t)v : (8u << 20);
	}
	return max;
}

uint64_t hx_thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A metered request's callback starts and ends (meter_out also before the
 * answer's callback, which counts its own part). */
static void meter_in(hx_cli *c)
{
	if (c->meter)
		c->meter_t0 = hx_thread_cpu_ns();
}

static void meter_out(hx_cli *c)
{
	if (c->meter) {
		uint64_t t = hx_thread_cpu_ns();
		*c->meter += t > c->meter_t0 ? t - c->meter_t0 : 0;
	}
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
	if (c->line) { /* its buffer held one line: not the answers' spare */
		hx_buf_free(&c->out);
		free(c);
		return;
	}
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
	if (c->line && status == 0 && c->out.len) /* the last line, without its newline */
		c->line(c->arg, c->out.data, c->out.len);
	if (c->done) /* cancelled by that line's callback */
		return;
	c->done = true;
	close_all(c); /* the buffer stays valid until the close callbacks */
	meter_out(c);
	c->meter = NULL; /* the callback counts its own part; the closes are not */
	if (c->line)
		c->cb(c->arg, status, "", c->total);
	else
		c->cb(c->arg, status, hx_buf_str(&c->out), c->out.len);
}

static void on_timeout(uv_timer_t *t)
{
	meter_in(t->data);
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

/* The longest line a line-mode request holds (a state row is ~200 bytes). */
#define LINE_MAX_BYTES (64u << 10)

/* Line mode: every complete line handed over from the read's own buffer
 * (the loop's scratch: writable, the newline made a NUL), the piece of a
 * line a read cut held in out until its end comes. */
static void read_lines(hx_cli *c, char *p, size_t n)
{
	char *end = p + n;
	while (p < end && !c->done) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (c->out.len + l > LINE_MAX_BYTES) {
			finish(c, -E2BIG);
			return;
		}
		if (!nl) {
			hx_buf_add(&c->out, p, l);
			return;
		}
		*nl = '\0';
		if (c->out.len) {
			hx_buf_add(&c->out, p, l);
			size_t ll = c->out.len;
			c->out.len = 0; /* emptied first: the callback may cancel */
			c->line(c->arg, c->out.data, ll);
		} else {
			c->line(c->arg, p, l);
		}
		p = nl + 1;
	}
}

static void read_in(hx_cli *c, ssize_t nread, const uv_buf_t *buf)
{
	if (nread > 0 && c->line) {
		c->total += (size_t)nread;
		if (c->total > hx_cli_answer_max())
			finish(c, -E2BIG);
		else
			read_lines(c, buf->base, (size_t)nread);
	} else if (nread > 0) {
		if (c->out.len + (size_t)nread > hx_cli_answer_max()) {
			finish(c, -E2BIG);
			return;
		}
		hx_buf_add(&c->out, buf->base, (size_t)nread);
	} else if (nread == UV_EOF) {
		finish(c, 0);
	} else if (nread < 0) {
		/* A reset after the answer (haproxy closing a connection whose
		 * write side we already shut) still leaves a full answer. */
		finish(c, nread == UV_ECONNRESET && (c->out.len || c->total) ? 0 : (int)nread);
	}
}

/* A one-shot request's: called by libuv right before each read(2), so a
 * metered request's read counts from here (the system call's copy
 * included) to on_read's end. */
static void on_alloc_cli(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	meter_in(h->data);
	on_alloc(h, suggested, buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	hx_cli *c = s->data;
	if (c->done)
		return;
	read_in(c, nread, buf); /* metered from on_alloc_cli */
	meter_out(c); /* nothing once finished (meter cleared); c lives until its closes */
}

/* A late request's read starts: the answer is in the socket's buffer by
 * now (or its first part: the rest is read as it comes). */
static void on_late(uv_timer_t *t)
{
	hx_cli *c = t->data;
	meter_in(c);
	uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
	int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc_cli, on_read);
	if (rc < 0)
		finish(c, rc);
	meter_out(c);
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
	meter_in(c);
	if (status < 0) {
		finish(c, status);
		return;
	}
	c->sh.data = c;
	uv_shutdown(&c->sh, (uv_stream_t *)&c->pipe, on_shutdown);
	if (c->late_ms)
		uv_timer_start(&c->timer, on_late, c->late_ms, 0);
	meter_out(c);
}

static void on_connect(uv_connect_t *req, int status)
{
	hx_cli *c = req->data;
	if (c->done)
		return;
	meter_in(c);
	if (status < 0) {
		finish(c, status);
		return;
	}
	int rc = c->late_ms ? 0 : uv_read_start((uv_stream_t *)&c->pipe, on_alloc_cli, on_read);
	if (rc < 0) {
		finish(c, rc);
		return;
	}
	uv_buf_t b = uv_buf_init(c->cmd, (unsigned)strlen(c->cmd));
	c->wr.data = c;
	rc = uv_write(&c->wr, (uv_stream_t *)&c->pipe, &b, 1, on_write);
	if (rc < 0)
		finish(c, rc);
	meter_out(c);
}

static hx_cli *request(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t timeout_ms, hx_cli_line_cb line, hx_cli_cb cb, void *arg, int *err)
{
	struct sockaddr_un sa;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	hx_cli *c = h->xcalloc(1, sizeof(*c));
	c->cmd = h->xasprintf("%s\n", cmd);
	c->out.h = h;
	c->line = line;
	if (spare.data && !line) { /* reused: length 0, its memory kept (plugin.h) */
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

hx_cli *hx_cli_request(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t timeout_ms, hx_cli_cb cb, void *arg, int *err)
{
	return request(h, loop, path, cmd, timeout_ms, NULL, cb, arg, err);
}

hx_cli *hx_cli_request_lines(const regent_host *h, uv_loop_t *loop, const char *path,
                             const char *cmd, uint64_t timeout_ms, hx_cli_line_cb line,
                             hx_cli_cb cb, void *arg, int *err)
{
	return request(h, loop, path, cmd, timeout_ms, line, cb, arg, err);
}

hx_cli *hx_cli_request_late(const regent_host *h, uv_loop_t *loop, const char *path,
                            const char *cmd, uint64_t timeout_ms, uint64_t late_ms, hx_cli_cb cb,
                            void *arg, int *err)
{
	hx_cli *c = hx_cli_request(h, loop, path, cmd, timeout_ms, cb, arg, err);
	if (c) { /* connected later, in the loop */
		c->late_ms = late_ms;
		c->timeout_ms = timeout_ms ? timeout_ms : 5000;
	}
	return c;
}

void hx_cli_meter(hx_cli *c, uint64_t *cpu_ns)
{
	if (c && !c->ln)
		c->meter = cpu_ns;
}

void hx_cli_cancel(hx_cli *c)
{
	if (!c || c->done)
		return;
	c->meter = NULL;
	c->done = true;
	if (!c->ln)
		close_all(c);
	/* else its link consumes its answer and frees it (callback not called) */
}

/* ------------------------------------------------------------------ */
/* A persistent connection in prompt mode                             */
/* ------------------------------------------------------------------ */

/* In prompt mode (haproxy 2.6 management guide, "interactive mode") haproxy
 * answers every command of a line (commands split at ';') with what the
 * one-shot mode writes, then the prompt "> ": the answer of a command ends
 * at the first "\n> " from its start (an empty answer is "\n> " itself).
 * The answers of a request's commands, prompts cut, are exactly what the
 * one-shot mode gives for the same line, so the callers read them as
 * before.  The connection's life:
 *  - opened by the first request (its "prompt" line first, then every
 *    queued line in one write); later requests are written at once,
 *    behind those in flight (haproxy runs them in order);
 *  - closed after LINK_IDLE_MS without a request (before haproxy's own
 *    `stats timeout`, 10 s by default, closes it) and retired after
 *    LINK_AGE_MS (a reload regent did not make is followed by then);
 *  - retired by hx_conn_reset (a new worker: an old worker keeps answering
 *    on its connections after a reload, so a new one is opened; the
 *    retired one finishes what it has in flight, then closes);
 *  - after a reset that names the new worker's pid, the first connection
 *    holds its requests until `show info` says it reached that worker: an
 *    old worker may still accept on the socket for a moment after the new
 *    one answered (both hold the listener), and a connection to it would
 *    carry every change for seconds; another pid: it is closed and the
 *    socket tried again at once (at most WRONG_MAX times);
 *  - asked for its worker's pid when opened (`show info`, behind the
 *    prompt line), and the socket asked again (one-shot) when it closes
 *    idle: another pid than the last one without a reset in between is a
 *    reload regent did not make (on_worker);
 *  - on an error, EOF or a timeout, the requests in flight get it (as a
 *    one-shot request would) and the next connection waits a backoff
 *    (requests in the meantime fail at once with the last error). */
#define LINK_IDLE_MS 5000
#define LINK_AGE_MS 10000
#define WRONG_MAX 50

struct hx_link {
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_connect_t creq;
	hx_conn *c;          /* NULL once closing */
	hx_link *next;       /* the connection's links */
	hx_cli *head, *tail; /* queued: those sent first, in order */
	unsigned long id; /* the connection's number, for logs */
	bool open, retired, closing;
	bool hold; /* user requests wait for `show info` (the worker is checked) */
	int err; /* a write that failed where no callback may run: reported by the timer */
	int handles;
	uint64_t born, last;
};

struct hx_conn {
	const regent_host *h;
	regent_ctx *ctx;
	uv_loop_t *loop;
	char *path;
	regent_metric *m_opened;
	hx_conn_worker_cb on_worker;
	void *worker_arg;
	long pid; /* the worker the active connection reached (0: not known since a reset) */
	long want_pid; /* the worker a reset named: the next connection must reach it */
	unsigned wrong;   /* connections that reached another one since */
	hx_cli *probe; /* the one-shot `show info` after an idle close */
	hx_link *active, *links;
	regent_backoff backoff;
	uint64_t retry_at;
	int last_err;
	unsigned long opened;
};

struct wreq {
	uv_write_t w;
	char data[];
};

static void req_free(hx_cli *r)
{
	free(r->cmd);
	hx_buf_free(&r->out);
	free(r);
}

static void link_closed(uv_handle_t *hd)
{
	hx_link *l = hd->data;
	if (--l->handles > 0)
		return;
	for (hx_cli *r = l->head, *n; r; r = n) { /* cancelled or never answered */
		n = r->next;
		req_free(r);
	}
	free(l);
}

/* Detaches l from its connection and closes it; queued requests are freed
 * without their callbacks (the caller took those it reports). */
static void link_close(hx_link *l)
{
	if (l->closing)
		return;
	l->closing = true;
	hx_conn *c = l->c;
	if (c) {
		if (c->active == l)
			c->active = NULL;
		for (hx_link **pp = &c->links; *pp; pp = &(*pp)->next)
			if (*pp == l) {
				*pp = l->next;
				break;
			}
	}
	l->c = NULL;
	uv_close((uv_handle_t *)&l->pipe, link_closed);
	uv_close((uv_handle_t *)&l->timer, link_closed);
}

/* The link failed (status < 0): every request on it gets status, the next
 * connection waits a backoff. */
static void link_fail(hx_link *l, int status)
{
	hx_conn *c = l->c;
	if (!c)
		return;
	uint64_t d = c->h->backoff_next(&c->backoff);
	c->retry_at = c->h->now_ms() + d;
	c->last_err = status;
	c->h->log(c->ctx, REGENT_LOG_DEBUG, "admin socket %s: connection lost (%s); next one in %llu ms",
	          c->path, uv_strerror(status), (unsigned long long)d);
	hx_cli *q = l->head;
	l->head = l->tail = NULL;
	link_close(l);
	for (hx_cli *r = q, *n; r; r = n) {
		n = r->next;
		if (!r->done && r->cb) {
			r->done = true;
			r->cb(r->arg, status, "", 0);
		}
		req_free(r);
	}
}

static void link_timer(uv_timer_t *t);

/* The next thing the link's timer waits for: the earliest deadline of its
 * requests, else its idle end (a retired link closes once empty). */
static void link_arm(hx_link *l)
{
	if (l->closing)
		return;
	uint64_t now = uv_now(l->c->loop), at;
	if (l->err) {
		at = now;
	} else if (l->head) {
		at = UINT64_MAX;
		for (hx_cli *r = l->head; r; r = r->next)
			if (r->deadline < at)
				at = r->deadline;
	} else if (l->retired) {
		link_close(l);
		return;
	} else {
		at = l->last + LINK_IDLE_MS;
	}
	uv_timer_start(&l->timer, link_timer, at > now ? at - now : 0, 0);
}

static void worker_seen(hx_conn *c, long pid)
{
	long was = c->pid;
	c->pid = pid;
	if (was && was != pid && c->on_worker)
		c->on_worker(c->worker_arg, was, pid);
}

static void probe_answer(void *arg, int status, const char *out, size_t len)
{
	hx_conn *c = arg;
	(void)len;
	c->probe = NULL;
	long pid = status == 0 ? hx_parse_info_pid(out) : 0;
	if (pid && !c->active) /* else the new connection's own `show info` tells */
		worker_seen(c, pid);
}

/* The active connection closes idle: which worker owns the socket now? */
static void probe(hx_conn *c)
{
	int err = 0;
	if (!c->probe && c->pid)
		c->probe = hx_cli_request(c->h, c->loop, c->path, "show info", 5000, probe_answer, c, &err);
}

static void link_timer(uv_timer_t *t)
{
	hx_link *l = t->data;
	uint64_t now = uv_now(l->c->loop);
	if (l->err) {
		link_fail(l, l->err);
		return;
	}
	if (!l->head) {
		if (l->retired) {
			link_close(l);
		} else if (now >= l->last + LINK_IDLE_MS) {
			hx_conn *c = l->c;
			link_close(l);
			probe(c);
		} else
			link_arm(l);
		return;
	}
	for (hx_cli *r = l->head; r; r = r->next)
		if (r->deadline <= now) {
			link_fail(l, UV_ETIMEDOUT); /* answers no longer line up */
			return;
		}
	link_arm(l);
}

static void on_wreq(uv_write_t *w, int status)
{
	hx_link *l = w->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED && !l->closing)
		link_fail(l, status);
}

/* Writes without blocking: what the socket takes now, the rest queued.
 * Returns 0 or a negative error (the caller fails the link). */
static int link_write(hx_link *l, const char *data, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
	int rc = uv_try_write((uv_stream_t *)&l->pipe, &b, 1);
	if (rc == (int)n)
		return 0;
	if (rc < 0 && rc != UV_EAGAIN)
		return rc;
	size_t done = rc > 0 ? (size_t)rc : 0;
	struct wreq *w = l->c->h->xcalloc(1, sizeof(*w) + n - done);
	memcpy(w->data, data + done, n - done);
	w->w.data = l;
	b = uv_buf_init(w->data, (unsigned)(n - done));
	rc = uv_write(&w->w, (uv_stream_t *)&l->pipe, &b, 1, on_wreq);
	if (rc < 0)
		free(w);
	return rc < 0 ? rc : 0;
}

/* Answers: each command's ends at the first "\n> " from its start. */
static void link_feed(hx_link *l, const char *p, size_t n)
{
	while (n && !l->closing) {
		hx_cli *r = l->head;
		if (!r || !r->sent) {
			link_fail(l, UV_EPROTO); /* bytes nobody asked for */
			return;
		}
		size_t base = r->out.len;
		if (base + n > hx_cli_answer_max()) {
			link_fail(l, UV_E2BIG);
			return;
		}
		hx_buf_add(&r->out, p, n);
		size_t from = base >= 2 ? base - 2 : 0; /* a prompt split over reads */
		if (from < r->mark)
			from = r->mark;
		const char *hit = memmem(r->out.data + from, r->out.len - from, "\n> ", 3);
		if (!hit)
			return;
		size_t k = (size_t)(hit - r->out.data), rest = r->out.len - (k + 3);
		p += n - rest; /* what follows the prompt: the next answer */
		n = rest;
		r->out.len = k + 1;
		r->out.data[k + 1] = '\0';
		r->mark = k + 1;
		if (--r->nleft)
			continue;
		l->head = r->next;
		if (!l->head)
			l->tail = NULL;
		hx_conn *c = l->c;
		l->last = uv_now(c->loop);
		c->h->backoff_reset(&c->backoff);
		if (!r->done && r->cb) {
			r->done = true;
			r->cb(r->arg, 0, hx_buf_str(&r->out), r->out.len);
		}
		req_free(r);
		/* The callback may have reset, failed or freed the connection:
		 * a closing link is left alone (its memory lives until closed). */
		if (!l->closing)
			link_arm(l);
	}
}

static void link_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	hx_link *l = st->data;
	if (l->closing)
		return;
	if (nread > 0) {
		link_feed(l, buf->base, (size_t)nread);
	} else if (nread < 0) {
		if (l->head)
			link_fail(l, nread == UV_EOF ? UV_ECONNRESET : (int)nread);
		else
			link_close(l); /* idle: haproxy's stats timeout, or its worker left */
	}
}

static void link_info(void *arg, int status, const char *out, size_t len);

static void link_connected(uv_connect_t *req, int status)
{
	hx_link *l = req->data;
	if (l->closing)
		return;
	if (status < 0) {
		link_fail(l, status);
		return;
	}
	int rc = uv_read_start((uv_stream_t *)&l->pipe, on_alloc, link_read);
	if (rc < 0) {
		link_fail(l, rc);
		return;
	}
	l->open = true;
	/* The prompt line and everything queued meanwhile: one write. */
	hx_buf b = {.h = l->c->h};
	for (hx_cli *r = l->head; r; r = r->next) {
		hx_buf_puts(&b, r->cmd);
		r->sent = true;
		if (l->hold && r->cb == link_info)
			break; /* the rest once the worker is the one expected */
	}
	rc = link_write(l, hx_buf_str(&b), b.len);
	hx_buf_free(&b);
	if (rc < 0)
		link_fail(l, rc);
}

static void link_push(hx_link *l, hx_cli *r)
{
	r->ln = l;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static hx_cli *req_new(hx_conn *c, const char *cmd, uint64_t timeout_ms, hx_cli_cb cb, void *arg)
{
	hx_cli *r = c->h->xcalloc(1, sizeof(*r));
	r->cmd = c->h->xasprintf("%s\n", cmd);
	r->out.h = c->h;
	r->cb = cb;
	r->arg = arg;
	r->nleft = 1;
	for (const char *q = cmd; *q; q++) /* haproxy answers each command of the line */
		r->nleft += *q == ';';
	r->deadline = uv_now(c->loop) + (timeout_ms ? timeout_ms : 5000);
	return r;
}

static hx_link *link_open(hx_conn *c, uint64_t timeout_ms);

/* The requests a held link kept back, written now. */
static void link_release(hx_link *l)
{
	l->hold = false;
	hx_buf b = {.h = l->c->h};
	for (hx_cli *r = l->head; r; r = r->next)
		if (!r->sent) {
			hx_buf_puts(&b, r->cmd);
			r->sent = true;
		}
	int rc = b.len ? link_write(l, hx_buf_str(&b), b.len) : 0;
	hx_buf_free(&b);
	if (rc < 0)
		link_fail(l, rc);
}

/* The `show info` asked on every new connection: which worker it reached. */
static void link_info(void *arg, int status, const char *out, size_t len)
{
	hx_link *l = arg;
	hx_conn *c = l->c;
	(void)len;
	long pid = status == 0 ? hx_parse_info_pid(out) : 0;
	if (!c || c->active != l) {
		if (c && l->hold) /* reset meanwhile: what it holds goes (as one-shot would) */
			link_release(l);
		return;
	}
	if (l->hold && pid != c->want_pid && ++c->wrong <= WRONG_MAX) {
		/* Not the worker the reset named (an old one still accepting):
		 * its requests, none sent yet, go to another connection. */
		hx_cli *q = l->head;
		l->head = l->tail = NULL;
		link_close(l);
		hx_link *n = link_open(c, 5000);
		for (hx_cli *r = q, *nx; r; r = nx) {
			nx = r->next;
			r->next = NULL;
			link_push(n, r);
		}
		link_arm(n);
		return;
	}
	if (l->hold) {
		if (pid != c->want_pid)
			c->h->log(c->ctx, REGENT_LOG_WARN,
			          "admin socket %s: still not worker %ld after %u connections (pid %ld): using it",
			          c->path, c->want_pid, c->wrong - 1, pid);
		c->want_pid = 0;
		c->wrong = 0;
		link_release(l);
	}
	if (pid && !l->closing)
		worker_seen(c, pid);
}

static hx_link *link_open(hx_conn *c, uint64_t timeout_ms)
{
	hx_link *l = c->h->xcalloc(1, sizeof(*l));
	l->c = c;
	l->id = ++c->opened;
	l->born = l->last = uv_now(c->loop);
	uv_pipe_init(c->loop, &l->pipe, 0);
	uv_timer_init(c->loop, &l->timer);
	l->pipe.data = l->timer.data = l->creq.data = l;
	l->handles = 2;
	l->hold = c->want_pid != 0;
	l->next = c->links;
	c->links = l;
	c->active = l;
	link_push(l, req_new(c, "prompt", timeout_ms, NULL, NULL));
	link_push(l, req_new(c, "show info", timeout_ms, link_info, l));
	uv_pipe_connect(&l->creq, &l->pipe, c->path, link_connected);
	if (c->m_opened)
		c->h->metric_add(c->m_opened, 1);
	c->h->log(c->ctx, REGENT_LOG_DEBUG, "admin socket %s: connection %lu opened (prompt mode)",
	          c->path, c->opened);
	return l;
}

hx_conn *hx_conn_new(const regent_host *h, regent_ctx *ctx, uv_loop_t *loop, const char *path,
                     regent_metric *opened, hx_conn_worker_cb on_worker, void *arg)
{
	hx_conn *c = h->xcalloc(1, sizeof(*c));
	c->h = h;
	c->ctx = ctx;
	c->loop = loop;
	c->path = h->xstrdup(path);
	c->m_opened = opened;
	c->on_worker = on_worker;
	c->worker_arg = arg;
	c->backoff = (regent_backoff){.initial_ms = 100, .max_ms = 2000};
	return c;
}

hx_cli *hx_conn_request(hx_conn *c, const char *cmd, uint64_t timeout_ms, hx_cli_cb cb, void *arg,
                        int *err)
{
	struct sockaddr_un sa;
	if (strlen(c->path) >= sizeof(sa.sun_path)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	uint64_t now = uv_now(c->loop);
	hx_link *l = c->active;
	if (l && now - l->born >= LINK_AGE_MS) {
		c->active = NULL; /* retired: it closes once what it has is answered */
		l->retired = true;
		link_arm(l);
		l = NULL;
	}
	if (!l) {
		if (now < c->retry_at) {
			*err = c->last_err;
			return NULL;
		}
		l = link_open(c, timeout_ms);
	}
	hx_cli *r = req_new(c, cmd, timeout_ms, cb, arg);
	link_push(l, r);
	if (l->open && !l->hold) {
		r->sent = true;
		int rc = link_write(l, r->cmd, strlen(r->cmd));
		if (rc < 0 && !l->err)
			l->err = rc; /* reported from the loop: no callback before we return */
	}
	link_arm(l);
	return r;
}

void hx_conn_reset(hx_conn *c, long pid)
{
	if (!c)
		return;
	c->want_pid = pid;
	c->wrong = 0;
	c->retry_at = 0; /* a new worker: no backoff from the old one's errors */
	c->pid = 0;
	hx_cli_cancel(c->probe);
	c->probe = NULL;
	c->h->backoff_reset(&c->backoff);
	hx_link *l = c->active;
	if (!l)
		return;
	c->active = NULL;
	l->retired = true;
	c->h->log(c->ctx, REGENT_LOG_DEBUG,
	          "admin socket %s: connection %lu left to the worker it reached (a new one answers now)",
	          c->path, l->id);
	link_arm(l);
}

unsigned long hx_conn_opened(const hx_conn *c)
{
	return c ? c->opened : 0;
}

void hx_conn_free(hx_conn *c)
{
	if (!c)
		return;
	hx_cli_cancel(c->probe);
	while (c->links)
		link_close(c->links);
	free(c->path);
	free(c);
}
