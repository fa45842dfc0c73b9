/* proc.c - the haproxy sink's child processes and file writes, all on the
 * loop: a short command with its output captured ("haproxy -c", a reload
 * command), the long-running managed haproxy master (its output logged
 * line by line), and atomic file writes (temp file, fsync, rename, fsync
 * of the directory) run on libuv's threadpool.  Each object owns its
 * handles and frees itself once they are closed. */
#include "hx.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* A short command with its output captured                           */
/* ------------------------------------------------------------------ */

struct hx_run {
	uv_process_t proc;
	uv_pipe_t out[2];
	uv_timer_t timer;
	hx_buf text;
	hx_run_cb cb;
	void *arg;
	int open_handles;
	int open_streams;  /* pipes not at EOF yet */
	bool exited, done, timed_out;
	int status;
};

static void run_on_close(uv_handle_t *h)
{
	hx_run *r = h->data;
	if (--r->open_handles > 0)
		return;
	hx_buf_free(&r->text);
	free(r);
}

static void run_close(hx_run *r)
{
	uv_handle_t *hs[] = {(uv_handle_t *)&r->out[0], (uv_handle_t *)&r->out[1],
	                     (uv_handle_t *)&r->timer};
	for (size_t i = 0; i < 3; i++)
		if (!uv_is_closing(hs[i]))
			uv_close(hs[i], run_on_close);
	if (r->exited && !uv_is_closing((uv_handle_t *)&r->proc))
		uv_close((uv_handle_t *)&r->proc, run_on_close);
}

static void run_maybe_finish(hx_run *r)
{
	if (!r->exited || r->open_streams > 0)
		return;
	run_close(r);
	if (r->done)
		return;
	r->done = true;
	r->cb(r->arg, r->timed_out ? -ETIMEDOUT : r->status, hx_buf_str(&r->text));
}

static void run_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char scratch[8192];
	buf->base = scratch;
	buf->len = sizeof(scratch);
}

static void run_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	hx_run *r = s->data;
	if (nread > 0) {
		if (r->text.len < (256u << 10))
			hx_buf_add(&r->text, buf->base, (size_t)nread);
		return;
	}
	if (nread < 0) {
		uv_read_stop(s);
		r->open_streams--;
		run_maybe_finish(r);
	}
}

static void run_exit(uv_process_t *p, int64_t status, int sig)
{
	hx_run *r = p->data;
	r->exited = true;
	r->status = sig ? 128 + sig : (int)status;
	uv_timer_stop(&r->timer);
	run_maybe_finish(r);
}

static void run_timeout(uv_timer_t *t)
{
	hx_run *r = t->data;
	r->timed_out = true;
	uv_process_kill(&r->proc, SIGKILL);
}

hx_run *hx_run_start(uv_loop_t *loop, char *const *argv, uint64_t timeout_ms, hx_run_cb cb,
                     void *arg, int *err)
{
	hx_run *r = calloc(1, sizeof(*r));
	if (!r) {
		*err = -ENOMEM;
		return NULL;
	}
	r->cb = cb;
	r->arg = arg;
	uv_pipe_init(loop, &r->out[0], 0);
	uv_pipe_init(loop, &r->out[1], 0);
	uv_timer_init(loop, &r->timer);
	r->proc.data = r->out[0].data = r->out[1].data = r->timer.data = r;
	r->open_handles = 3;
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out[0]},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out[1]},
	};
	uv_process_options_t o = {
		.exit_cb = run_exit,
		.file = argv[0],
		.args = (char **)argv,
		.stdio_count = 3,
		.stdio = stdio,
	};
	int rc = uv_spawn(loop, &r->proc, &o);
	if (rc < 0) {
		*err = rc;
		r->done = true;
		/* uv_spawn initialised the process handle: close it too. */
		r->exited = true;
		r->open_handles++;
		run_close(r);
		return NULL;
	}
	r->open_handles++;
	r->open_streams = 2;
	uv_read_start((uv_stream_t *)&r->out[0], run_alloc, run_read);
	uv_read_start((uv_stream_t *)&r->out[1], run_alloc, run_read);
	uv_timer_start(&r->timer, run_timeout, timeout_ms ? timeout_ms : 30000, 0);
	return r;
}

void hx_run_cancel(hx_run *r)
{
	if (!r || r->done)
		return;
	r->done = true; /* no callback; the process is killed and reaped */
	if (!r->exited)
		uv_process_kill(&r->proc, SIGKILL);
	else
		run_close(r);
}

/* ------------------------------------------------------------------ */
/* The managed master                                                 */
/* ------------------------------------------------------------------ */

/* haproxy must outlive regent: it runs in its own session (no signal of
 * regent's terminal or process group reaches it) and writes its output to
 * a file, never to a pipe that would break when regent exits. */
struct hx_master {
	uv_process_t proc;
	hx_exit_cb on_exit;
	void *arg;
	bool exited, released, closed;
	int pid;
};

static void master_on_close(uv_handle_t *h)
{
	free(h->data);
}

static void master_exit(uv_process_t *p, int64_t status, int sig)
{
	hx_master *m = p->data;
	m->exited = true;
	if (!m->released && m->on_exit)
		m->on_exit(m->arg, status, sig);
	else if (m->released && !m->closed) {
		m->closed = true;
		uv_close((uv_handle_t *)&m->proc, master_on_close);
	}
}

hx_master *hx_master_spawn(uv_loop_t *loop, char *const *argv, int out_fd, hx_exit_cb on_exit,
                           void *arg, int *err)
{
	hx_master *m = calloc(1, sizeof(*m));
	if (!m) {
		*err = -ENOMEM;
		return NULL;
	}
	m->on_exit = on_exit;
	m->arg = arg;
	m->proc.data = m;
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_IGNORE},
		{.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
		{.flags = out_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE, .data.fd = out_fd},
	};
	uv_process_options_t o = {
		.exit_cb = master_exit,
		.file = argv[0],
		.args = (char **)argv,
		.stdio_count = 3,
		.stdio = stdio,
		.flags = UV_PROCESS_DETACHED,
	};
	int rc = uv_spawn(loop, &m->proc, &o);
	if (rc < 0) {
		*err = rc;
		m->closed = true;
		uv_close((uv_handle_t *)&m->proc, master_on_close);
		return NULL;
	}
	m->pid = m->proc.pid;
	return m;
}

int hx_master_pid(const hx_master *m)
{
	return m ? m->pid : 0;
}

void hx_master_kill(hx_master *m, int sig)
{
	if (m && !m->exited)
		uv_process_kill(&m->proc, sig);
}

void hx_master_release(hx_master *m)
{
	if (!m || m->released)
		return;
	m->released = true;
	/* A running master is left running: the handle is closed at once so
	 * that nothing keeps the loop (and regent's exit) waiting; whoever
	 * adopts it reaps it through its pidfd (master.c). */
	if (!m->closed) {
		m->closed = true;
		uv_close((uv_handle_t *)&m->proc, master_on_close);
	}
}

/* ------------------------------------------------------------------ */
/* Atomic file writes                                                  */
/* ------------------------------------------------------------------ */

typedef enum {
	W_LSTAT, /* a stale temp file is in the way */
	W_UNLINK,
	W_OPEN,
	W_WRITE,
	W_FSYNC,
	W_CLOSE,
	W_RENAME,
	W_DIROPEN,
	W_DIRFSYNC,
	W_DIRCLOSE,
} w_step;

struct hx_write {
	uv_loop_t *loop;
	uv_fs_t req;
	w_step step;
	char *path, *tmp, *dir;
	char *data;
	size_t len, off;
	bool keep_tmp, stale_done;
	uv_file fd;
	int status; /* first error */
	hx_write_cb cb;
	void *arg;
	uv_stat_t st;
};

static void w_next(uv_fs_t *req);

/* Temp files: created, never opened through a link or over a file that
 * is there already; 0640 (haproxy's group may read, nobody else). */
static int w_open(hx_write *w)
{
	return uv_fs_open(w->loop, &w->req, w->tmp,
	                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640, w_next);
}

static void w_lstat_done(uv_fs_t *req)
{
	hx_write *w = req->data;
	if (req->result == 0)
		w->st = req->statbuf;
	w_next(req);
}

static void w_done(hx_write *w)
{
	if (w->cb)
		w->cb(w->arg, w->status);
	free(w->path);
	free(w->tmp);
	free(w->dir);
	free(w->data);
	free(w);
}

static void w_fail(hx_write *w, int rc)
{
	if (!w->status)
		w->status = rc;
}

static void w_next(uv_fs_t *req)
{
	hx_write *w = req->data;
	ssize_t res = req->result;
	uv_fs_req_cleanup(req);
	int rc = 0;
	switch (w->step) {
	case W_LSTAT:
		/* Removed only when it is a regular file of ours (a symlink or
		 * somebody else's file planted there is left alone: EEXIST). */
		if (res < 0 || !S_ISREG(w->st.st_mode) || w->st.st_uid != geteuid()) {
			w_fail(w, res < 0 ? (int)res : UV_EEXIST);
			w_done(w);
			return;
		}
		w->step = W_UNLINK;
		rc = uv_fs_unlink(w->loop, req, w->tmp, w_next);
		break;
	case W_UNLINK:
		if (res < 0 && res != UV_ENOENT) {
			w_fail(w, (int)res);
			w_done(w);
			return;
		}
		w->step = W_OPEN;
		rc = w_open(w);
		break;
	case W_OPEN:
		if (res == UV_EEXIST && !w->stale_done) {
			w->stale_done = true;
			w->step = W_LSTAT;
			rc = uv_fs_lstat(w->loop, req, w->tmp, w_lstat_done);
			break;
		}
		if (res < 0) {
			w_fail(w, (int)res);
			w_done(w);
			return;
		}
		w->fd = (uv_file)res;
		w->step = W_WRITE;
		res = 0;
		/* fall through */
	case W_WRITE:
		if (res < 0)
			w_fail(w, (int)res);
		else
			w->off += (size_t)res;
		if (!w->status && w->off < w->len) {
			uv_buf_t b = uv_buf_init(w->data + w->off, (unsigned)(w->len - w->off));
			rc = uv_fs_write(w->loop, req, w->fd, &b, 1, -1, w_next);
			break;
		}
		if (!w->status) {
			w->step = W_FSYNC;
			rc = uv_fs_fsync(w->loop, req, w->fd, w_next);
			break;
		}
		w->step = W_CLOSE;
		rc = uv_fs_close(w->loop, req, w->fd, w_next);
		break;
	case W_FSYNC:
		if (res < 0)
			w_fail(w, (int)res);
		w->step = W_CLOSE;
		rc = uv_fs_close(w->loop, req, w->fd, w_next);
		break;
	case W_CLOSE:
		if (res < 0)
			w_fail(w, (int)res);
		if (w->status || w->keep_tmp) {
			if (w->status) {
				uv_fs_unlink(w->loop, req, w->tmp, NULL); /* best effort */
				uv_fs_req_cleanup(req);
			}
			w_done(w);
			return;
		}
		w->step = W_RENAME;
		rc = uv_fs_rename(w->loop, req, w->tmp, w->path, w_next);
		break;
	case W_RENAME:
		if (res < 0) {
			w_fail(w, (int)res);
			w_done(w);
			return;
		}
		w->step = W_DIROPEN;
		rc = uv_fs_open(w->loop, req, w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, w_next);
		break;
	case W_DIROPEN:
		if (res < 0) { /* renamed already: the directory fsync is a bonus */
			w_done(w);
			return;
		}
		w->fd = (uv_file)res;
		w->step = W_DIRFSYNC;
		rc = uv_fs_fsync(w->loop, req, w->fd, w_next);
		break;
	case W_DIRFSYNC:
		w->step = W_DIRCLOSE;
		rc = uv_fs_close(w->loop, req, w->fd, w_next);
		break;
	case W_DIRCLOSE:
		w_done(w);
		return;
	}
	if (rc < 0) {
		w_fail(w, rc);
		w_done(w);
	}
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *d = strdup(dirname(copy));
	free(copy);
	return d;
}

hx_write *hx_write_file(uv_loop_t *loop, const char *path, const char *tmp_path, const char *data,
                        size_t len, bool keep_tmp, hx_write_cb cb, void *arg, int *err)
{
	hx_write *w = calloc(1, sizeof(*w));
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->loop = loop;
	w->path = strdup(path);
	w->tmp = strdup(tmp_path);
	w->dir = dir_of(path);
	w->data = malloc(len + 1);
	if (!w->path || !w->tmp || !w->dir || !w->data) {
		free(w->path);
		free(w->tmp);
		free(w->dir);
		free(w->data);
		free(w);
		*err = -ENOMEM;
		return NULL;
	}
	memcpy(w->data, data, len);
	w->len = len;
	w->keep_tmp = keep_tmp;
	w->cb = cb;
	w->arg = arg;
	w->req.data = w;
	w->step = W_OPEN;
	int rc = w_open(w);
	if (rc < 0) {
		*err = rc;
		w->cb = NULL;
		w_done(w);
		return NULL;
	}
	return w;
}

hx_write *hx_rename(uv_loop_t *loop, const char *from, const char *to, hx_write_cb cb, void *arg,
                    int *err)
{
	hx_write *w = calloc(1, sizeof(*w));
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->loop = loop;
	w->path = strdup(to);
	w->tmp = strdup(from);
	w->dir = dir_of(to);
	if (!w->path || !w->tmp || !w->dir) {
		w->cb = NULL;
		w_done(w);
		*err = -ENOMEM;
		return NULL;
	}
	w->cb = cb;
	w->arg = arg;
	w->req.data = w;
	w->step = W_RENAME;
	int rc = uv_fs_rename(loop, &w->req, w->tmp, w->path, w_next);
	if (rc < 0) {
		*err = rc;
		w->cb = NULL;
		w_done(w);
		return NULL;
	}
	return w;
}

void hx_write_cancel(hx_write *w)
{
	if (w)
		w->cb = NULL; /* the threadpool work finishes; nobody hears about it */
}
