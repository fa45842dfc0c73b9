/* output.c - a managed haproxy's output file kept bounded.  haproxy's
 * stdout and stderr are appended to <state_dir>/<config name>.log (master.c;
 * never a pipe to regent, which haproxy outlives), and haproxy writes there
 * for good: a line or three per runtime change ("Server web/s3 is UP/READY
 * (leaving forced maintenance)"), one per server whose check fails (50,000
 * lines, 11 MB, at a cold start of 50,000 instances nothing answers for),
 * its warnings at each reload.  A daemon that runs for months would fill
 * /var/lib with it.
 *
 * Owned by a sink instance: every OUTPUT_CHECK_MS (and shortly after the
 * instance starts) one job on libuv's threadpool looks at the file's size
 * and, past output_max_size, copies it to <file>.1 (through <file>.1.tmp,
 * renamed over the one before) and truncates it to nothing, what
 * logrotate's copytruncate does: haproxy keeps its descriptor, opened with
 * O_APPEND, so its next line lands at the start of the emptied file.  A
 * line written between the copy's last read and the truncation (a few
 * microseconds) is lost.  The disk then holds at most about twice the
 * limit plus what haproxy writes within one check.  The loop only starts
 * the job and logs its outcome: nothing blocks it. */
#include "hx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUTPUT_CHECK_MS 60000
#define OUTPUT_FIRST_MS 1000

struct hx_output {
	regent_ctx *ctx;
	const regent_host *h;
	uv_loop_t *loop;
	char *path, *old, *tmp;
	uint64_t max;
	uint64_t every_ms;
	uv_timer_t *t;
	uv_work_t work;
	bool busy;  /* the job is queued or runs */
	bool dead;  /* freed while busy: the job's end frees */
	bool warned; /* the last job failed (warned once until one succeeds) */
	/* the job's outcome (set on the pool, read on the loop) */
	int err;
	const char *what; /* the step that failed */
	const char *file; /* the file it was on (path or tmp) */
	uint64_t moved;   /* bytes copied into old: 0 when under the limit */
};

/* write all of buf to fd */
static int write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The job's failure: the step, the file it was on, the cause. */
static void failed(hx_output *o, const char *what, const char *file, int err)
{
	o->what = what;
	o->file = file;
	o->err = err;
}

/* On the pool: stat, and past the limit copy, truncate, rename. */
static void job(uv_work_t *w)
{
	hx_output *o = w->data;
	o->err = 0;
	o->moved = 0;
	int in = open(o->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0) {
		if (errno != ENOENT) /* not written yet: nothing to do */
			failed(o, "open", o->path, -errno);
		return;
	}
	struct stat st;
	if (fstat(in, &st) < 0) {
		failed(o, "stat", o->path, -errno);
		close(in);
		return;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size <= o->max) {
		if (!S_ISREG(st.st_mode))
			failed(o, "trim (not a regular file)", o->path, -EINVAL);
		close(in);
		return;
	}
	int out = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (out < 0) {
		failed(o, "create", o->tmp, -errno);
		close(in);
		return;
	}
	char buf[32768];
	off_t off = 0;
	int err;
	for (;;) { /* to the end as it is now, however much it grew meanwhile */
		ssize_t n = pread(in, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			failed(o, "read", o->path, -errno);
			break;
		}
		if (n == 0)
			break;
		if ((err = write_all(out, buf, (size_t)n)) < 0) {
			failed(o, "write", o->tmp, err);
			break;
		}
		off += n;
	}
	if (!o->err && ftruncate(in, 0) < 0)
		failed(o, "truncate", o->path, -errno);
	if (close(out) < 0 && !o->err)
		failed(o, "write", o->tmp, -errno);
	close(in);
	if (!o->err && rename(o->tmp, o->old) < 0)
		failed(o, "rename", o->tmp, -errno);
	if (o->err)
		unlink(o->tmp);
	else
		o->moved = (uint64_t)off;
}

static void free_now(hx_output *o)
{
	free(o->path);
	free(o->old);
	free(o->tmp);
	free(o);
}

static void job_done(uv_work_t *w, int status)
{
	hx_output *o = w->data;
	o->busy = false;
	if (o->dead) {
		free_now(o);
		return;
	}
	if (status < 0)
		return; /* cancelled */
	if (o->err) {
		if (!o->warned)
			o->h->log(o->ctx, REGENT_LOG_WARN,
			          "haproxy's output %s: cannot keep it within output_max_size (%llu bytes): "
			          "cannot %s %s: %s; tried again every %llu %s",
			          o->path, (unsigned long long)o->max, o->what, o->file, strerror(-o->err),
			          (unsigned long long)(o->every_ms % 1000 ? o->every_ms : o->every_ms / 1000),
			          o->every_ms % 1000 ? "ms" : "s");
		o->warned = true;
		return;
	}
	o->warned = false;
	if (o->moved)
		o->h->log(o->ctx, REGENT_LOG_INFO,
		          "haproxy's output %s passed output_max_size (%llu bytes): its %llu bytes kept "
		          "as %s, the file started anew",
		          o->path, (unsigned long long)o->max, (unsigned long long)o->moved, o->old);
}

static void tick(uv_timer_t *t)
{
	hx_output *o = t->data;
	if (o->busy)
		return;
	o->work.data = o;
	if (uv_queue_work(o->loop, &o->work, job, job_done) == 0)
		o->busy = true;
}

hx_output *hx_output_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop, const char *path,
                         uint64_t max)
{
	if (!path || !max)
		return NULL;
	hx_output *o = h->xcalloc(1, sizeof(*o));
	o->ctx = ctx;
	o->h = h;
	o->loop = loop;
	o->path = h->xstrdup(path);
	o->old = h->xasprintf("%s.1", path);
	o->tmp = h->xasprintf("%s.1.tmp", path);
	o->max = max;
	o->every_ms = OUTPUT_CHECK_MS;
	/* tests: a check every N ms instead of every minute */
	const char *e = getenv("REGENT_HX_TEST_OUTPUT_CHECK_MS");
	if (e && atoi(e) > 0)
		o->every_ms = (uint64_t)atoi(e);
	o->t = h->timer_new(ctx, o);
	uv_timer_start(o->t, tick, o->every_ms < OUTPUT_FIRST_MS ? o->every_ms : OUTPUT_FIRST_MS,
	               o->every_ms);
	uv_unref((uv_handle_t *)o->t); /* never what keeps the loop alive */
	return o;
}

void hx_output_free(hx_output *o)
{
	if (!o)
		return;
	o->h->timer_close(&o->t);
	if (o->busy) {
		o->dead = true; /* the running job's end frees it */
		uv_cancel((uv_req_t *)&o->work);
		return;
	}
	free_now(o);
}
