/* spawn.c - host->spawn (ABI 1.4): a command run on the loop in its own
 * process group, stdout and stderr captured into one bounded text, a
 * timeout that kills the whole group, the exit status reported once.  Each
 * spawn owns its process, pipes and timer and frees itself once they are
 * all closed. */
#include "helpers.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* The 1.4 opts end at `arg`: a plugin built against 1.4 passes that size,
 * and a core whose opts grew must read a later field only when o->size
 * covers it (never refuse the 1.4 size). */
#define SPAWN_OPTS_SIZE_1_4 (offsetof(regent_spawn_opts, arg) + sizeof(void *))

#define SPAWN_OUTPUT_DEFAULT (64u << 10)
#define SPAWN_EOF_GRACE_MS 1000 /* after the exit, for a descendant holding the output */

struct regent_spawn {
	uv_process_t proc;
	uv_pipe_t out[2];
	uv_timer_t timer;
	regent_buf text;
	size_t max, dropped;
	regent_spawn_cb cb;
	void *arg;
	int open_handles;
	int open_streams; /* pipes not at EOF yet */
	bool exited, finished, timed_out, cancelled;
	int exit_status, term_signal;
	uint64_t start_ms, deadline_ms;
};

static void on_close(uv_handle_t *h)
{
	regent_spawn *s = h->data;
	if (--s->open_handles > 0)
		return;
	regent_buf_free(&s->text);
	free(s);
}

static void close_handle(regent_spawn *s, uv_handle_t *h)
{
	if (!uv_is_closing(h)) {
		s->open_handles++;
		uv_close(h, on_close);
	}
}

/* Closes what is open: the pipes and the timer now, the process once it
 * has exited (a closed process handle is never reaped). */
static void close_all(regent_spawn *s)
{
	close_handle(s, (uv_handle_t *)&s->out[0]);
	close_handle(s, (uv_handle_t *)&s->out[1]);
	close_handle(s, (uv_handle_t *)&s->timer);
	if (s->exited)
		close_handle(s, (uv_handle_t *)&s->proc);
}

static void finish(regent_spawn *s)
{
	if (s->finished)
		return;
	s->finished = true;
	if (!s->cancelled) {
		regent_buf_add(&s->text, "", 0); /* output is never NULL */
		regent_spawn_result r = {
			.size = sizeof(r),
			.error = s->timed_out ? -ETIMEDOUT : 0,
			.exit_status = s->exit_status,
			.term_signal = s->term_signal,
			.output = s->text.data,
			.output_len = s->text.len,
			.output_dropped = s->dropped,
			.elapsed_ms = regent_now_ms() - s->start_ms,
		};
		s->cb(s->arg, &r);
	}
	close_all(s);
}

static void kill_group(regent_spawn *s)
{
	/* Its own process group (setsid): the command and what it started. */
	if (s->proc.pid > 0 && kill(-s->proc.pid, SIGKILL) != 0)
		kill(s->proc.pid, SIGKILL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char scratch[16384]; /* one loop thread: read at once in on_read */
	buf->base = scratch;
	buf->len = sizeof(scratch);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	regent_spawn *s = st->data;
	if (nread > 0) {
		size_t n = (size_t)nread, room = s->max > s->text.len ? s->max - s->text.len : 0;
		size_t keep = n < room ? n : room;
		regent_buf_add(&s->text, buf->base, keep);
		s->dropped += n - keep;
		return;
	}
	if (nread < 0) {
		uv_read_stop(st);
		s->open_streams--;
		if (s->exited && s->open_streams == 0)
			finish(s);
	}
}

static void on_timer(uv_timer_t *t)
{
	regent_spawn *s = t->data;
	if (!s->exited) {
		s->timed_out = true;
		kill_group(s);
		return; /* on_proc_exit follows */
	}
	finish(s); /* exited, a descendant still holds the output open */
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	regent_spawn *s = p->data;
	s->exited = true;
	s->exit_status = sig ? -1 : (int)status;
	s->term_signal = sig;
	if (s->cancelled || s->finished) {
		close_all(s);
		return;
	}
	if (s->open_streams == 0) {
		finish(s);
		return;
	}
	uint64_t now = regent_now_ms(), grace = SPAWN_EOF_GRACE_MS;
	if (s->deadline_ms && !s->timed_out && s->deadline_ms > now && s->deadline_ms - now < grace)
		grace = s->deadline_ms - now;
	uv_timer_start(&s->timer, on_timer, grace, 0);
}

regent_spawn *regent_spawn_start(uv_loop_t *loop, const regent_spawn_opts *o, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	if (!loop || !o || o->size < SPAWN_OPTS_SIZE_1_4 || !o->argv || !o->argv[0] ||
	    !o->on_done) {
		*err = -EINVAL;
		return NULL;
	}
	regent_spawn *s = regent_xcalloc(1, sizeof(*s));
	s->cb = o->on_done;
	s->arg = o->arg;
	s->max = o->max_output ? o->max_output : SPAWN_OUTPUT_DEFAULT;
	s->start_ms = regent_now_ms();
	uv_pipe_init(loop, &s->out[0], 0);
	uv_pipe_init(loop, &s->out[1], 0);
	uv_timer_init(loop, &s->timer);
	s->proc.data = s->out[0].data = s->out[1].data = s->timer.data = s;
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&s->out[0]},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&s->out[1]},
	};
	uv_process_options_t po = {
		.exit_cb = on_proc_exit,
		.file = o->argv[0],
		.args = (char **)o->argv,
		.env = (char **)o->env,
		.cwd = o->cwd,
		.flags = UV_PROCESS_DETACHED, /* setsid: its own process group */
		.stdio_count = 3,
		.stdio = stdio,
	};
	int rc = uv_spawn(loop, &s->proc, &po);
	if (rc < 0) {
		*err = rc;
		/* uv_spawn initialised the process handle: close it too. */
		s->finished = s->cancelled = s->exited = true;
		close_all(s);
		return NULL;
	}
	s->open_streams = 2;
	uv_read_start((uv_stream_t *)&s->out[0], on_alloc, on_read);
	uv_read_start((uv_stream_t *)&s->out[1], on_alloc, on_read);
	if (o->timeout_ms) {
		s->deadline_ms = s->start_ms + o->timeout_ms;
		uv_timer_start(&s->timer, on_timer, o->timeout_ms, 0);
	}
	*err = 0;
	return s;
}

void regent_spawn_cancel(regent_spawn *s)
{
	if (!s || s->finished || s->cancelled)
		return;
	s->cancelled = true; /* no callback */
	if (!s->exited) {
		kill_group(s);
		uv_timer_stop(&s->timer);
		return; /* on_proc_exit reaps it and closes everything */
	}
	s->finished = true;
	close_all(s);
}
