/* filepatch.c - host->file_patch (ABI 1.6): ranges written in place over
 * a file of a known length (pwrite, fdatasync unless
 * REGENT_FILE_PATCH_NO_SYNC), through a descriptor kept from one patch to
 * the next while it is the file at the path (checked by lstat), by the
 * core's one patch writer thread; and the result handed back on the loop.
 *
 * Why a thread of its own and not libuv's pool: the haproxy sink patches
 * its config file once per change, and on the bench VM every sleep and
 * wakeup of a thread costs 50-200 us of CPU, more than the patch.  Through
 * the pool a patch cost three: the worker woken by the queue's condition
 * signal, sent while the loop still held the queue's mutex, then woken
 * again for that mutex (futex wait, wake), and the loop woken by the
 * pool's async handle for the result, most often just before haproxy's
 * answer to the same change woke it again.  Here the loop signals after
 * it let go of the mutex (one wakeup of the writer), and the writer only
 * marks the patch done (an atomic store; no wakeup of the loop): the loop
 * looks at each of its patches in flight before every sleep (a
 * uv_prepare_t, not holding the loop alive) and, in case nothing else
 * wakes it, once CHECK_FIRST_MS after the patch was queued, then at
 * doubling intervals up to CHECK_MAX_MS (a uv_timer_t, holding the loop
 * alive until the patch ends).  A patch's on_done thus comes at the loop
 * turn after the write ended, at most CHECK_FIRST_MS late when the loop
 * had nothing else to do.  The thread starts with the first patch and is
 * joined by regent_file_patch_forget_all(); if it cannot start, patches
 * go to libuv's pool as before. */
#include "filewrite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_FIRST_MS 5
#define CHECK_MAX_MS 100

/* ---- the kept descriptor of a patched file ---- */

/* A file patched once keeps its descriptor open for the next patch (the
 * haproxy sink patches its config file once per change: open, fstat and
 * close were 3 of a change's ~26 system calls).  Safety: the descriptor is
 * written through only while it is the file at the path.  Each patch
 * lstat()s the path (no symlink followed) and compares its device and
 * inode with the kept descriptor's: while we hold the descriptor its
 * inode cannot be freed and its number reused, so equal means the same
 * file; anything else (renamed over by the core's file_write, by a
 * plugin's own rename such as the haproxy sink's candidate swap, replaced
 * or removed by someone else, a symlink now) closes it and the path is
 * opened anew, exactly as without a kept one.  A whole-file write of the
 * core drops the path's descriptor as it renames, under the same lock, and
 * any error of a patch drops it too.  The lock serialises the writer
 * thread's patches (or the pool's, without one) and that rename
 * (regent_file_rename_over, on a pool thread): never taken on the loop.
 * At most KEEP_MAX files (the least recently patched goes);
 * regent_file_patch_forget_all() closes them at the agent's end. */
#define KEEP_MAX 4

typedef struct kept_fd {
	char *path;
	int fd;
	dev_t dev;
	ino_t ino;
	uint64_t used; /* patch_clock when last used: the oldest is evicted */
} kept_fd;

static pthread_mutex_t keep_lock = PTHREAD_MUTEX_INITIALIZER;
static kept_fd keep[KEEP_MAX];
static uint64_t patch_clock;
/* open() calls made by patches (tests: the descriptor is kept). */
static uint64_t patch_opens;

uint64_t regent_file_patch_opens(void)
{
	return __atomic_load_n(&patch_opens, __ATOMIC_RELAXED);
}

static kept_fd *keep_find(const char *path) /* keep_lock held */
{
	for (size_t i = 0; i < KEEP_MAX; i++)
		if (keep[i].path && strcmp(keep[i].path, path) == 0)
			return &keep[i];
	return NULL;
}

static void keep_drop(kept_fd *k) /* keep_lock held */
{
	if (!k || !k->path)
		return;
	close(k->fd);
	free(k->path);
	*k = (kept_fd){.fd = -1};
}

static void keep_drop_all(void)
{
	pthread_mutex_lock(&keep_lock);
	for (size_t i = 0; i < KEEP_MAX; i++)
		keep_drop(&keep[i]);
	pthread_mutex_unlock(&keep_lock);
}

/* Keeps fd (st: its fstat) for path; keep_lock held.  The slot of path,
 * else a free one, else the least recently used one. */
static void keep_put(const char *path, int fd, const struct stat *st)
{
	kept_fd *k = keep_find(path), *old = &keep[0];
	for (size_t i = 0; !k && i < KEEP_MAX; i++) {
		if (!keep[i].path) {
			k = &keep[i];
			break;
		}
		if (keep[i].used < old->used)
			old = &keep[i];
	}
	if (!k)
		k = old;
	keep_drop(k);
	*k = (kept_fd){.path = regent_xstrdup(path), .fd = fd, .dev = st->st_dev, .ino = st->st_ino,
	               .used = ++patch_clock};
}

/* fdatasync calls made by patches (tests: REGENT_FILE_PATCH_NO_SYNC). */
static uint64_t patch_syncs;

uint64_t regent_file_patch_syncs(void)
{
	return __atomic_load_n(&patch_syncs, __ATOMIC_RELAXED);
}

/* The file at w->path for a patch, with *st its stat, from the kept
 * descriptor when it is still the file there, else opened anew (and kept
 * by the caller on success); -1 with w->status on failure.  keep_lock
 * held. */
static int patch_fd(regent_file_write *w, struct stat *st, bool *fresh)
{
	kept_fd *k = keep_find(w->path);
	*fresh = false;
	if (k) {
		if (lstat(w->path, st) == 0 && st->st_dev == k->dev && st->st_ino == k->ino) {
			k->used = ++patch_clock;
			return k->fd;
		}
		keep_drop(k); /* another file at the path now, or none */
	}
	__atomic_add_fetch(&patch_opens, 1, __ATOMIC_RELAXED);
	int fd = open(w->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		regent_file_write_fail(w, errno, "cannot write", w->path);
		return -1;
	}
	if (fstat(fd, st) != 0) {
		regent_file_write_fail(w, errno, "cannot stat", w->path);
		close(fd);
		return -1;
	}
	*fresh = true;
	return fd;
}

/* The patch: the file as the plugin knows it (a regular file of
 * expect_len bytes), each range by one pwrite, then fdatasync, unless
 * the plugin said no (REGENT_FILE_PATCH_NO_SYNC).  Why the haproxy sink
 * may: the sync bounds how long the disk lags, it does not make a patch
 * atomic (a power loss between the pwrite and the sync's end, or a range
 * crossing a page written back alone, leaves a line half old, half new:
 * with or without it, the file after a power loss may not be one haproxy
 * accepts).  What makes it safe is the reader: a managed haproxy is only
 * started (haproxy.c hx_kick: installed_once) after the sink's start
 * rendered the file, compared it with the text read from disk
 * (mirror.c hx_mirror_same, the recovered text) and, when they differ,
 * replaced it atomically and fsynced (file_write); nothing is adopted
 * after a power loss (no haproxy runs), and a haproxy that outlived
 * regent reads the page cache, not the disk.  A haproxy regent only
 * drives (manage = false) is started by the system, maybe before regent:
 * its file keeps the sync.  The sync was ~130 us of the thread's CPU
 * and 3 context switches per patch, ext4 on the bench VM, vs ~35 us for
 * open, fstat, pwrite and close (a change's CPU at 10,000 instances is
 * ~0.7 ms); with the kept descriptor (above) a patch is lstat and pwrite. */
static void patch_work(uv_work_t *req)
{
	regent_file_write *w = req->data;
	struct stat st;
	bool fresh;
	pthread_mutex_lock(&keep_lock);
	int fd = patch_fd(w, &st, &fresh);
	if (fd < 0) {
		pthread_mutex_unlock(&keep_lock);
		return;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != w->expect_len) {
		w->status = -ESTALE;
		snprintf(w->why, sizeof(w->why),
		         "cannot patch %s: it is %s, not the %llu bytes written last: left alone",
		         w->path, !S_ISREG(st.st_mode) ? "not a regular file" : "another length",
		         (unsigned long long)w->expect_len);
	} else {
		const char *p = w->data;
		for (size_t i = 0; i < w->nranges && !w->status; i++) {
			const regent_file_range *r = &w->ranges[i];
			size_t done = 0;
			while (done < r->len) {
				ssize_t n = pwrite(fd, p + done, r->len - done, (off_t)(r->off + done));
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					regent_file_write_fail(w, n < 0 ? errno : EIO, "cannot write", w->path);
					break;
				}
				done += (size_t)n;
			}
			p += r->len;
		}
		if (!w->status && !w->no_sync) {
			__atomic_add_fetch(&patch_syncs, 1, __ATOMIC_RELAXED);
			if (fdatasync(fd) != 0)
				regent_file_write_fail(w, errno, "cannot fdatasync", w->path);
		}
	}
	if (!w->status && fresh) {
		keep_put(w->path, fd, &st);
	} else if (w->status) {
		/* any error: nothing kept (a kept one is closed here) */
		if (fresh)
			close(fd);
		else
			keep_drop(keep_find(w->path));
	}
	pthread_mutex_unlock(&keep_lock);
}


/* ---- the writer thread ---- */

static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static regent_file_write *wq_head, *wq_tail; /* wq_lock */
static bool wq_quit;                         /* wq_lock */
static bool wq_running;                      /* wq_lock; the thread exists */
static pthread_t wq_thread;

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wq_lock);
	for (;;) {
		while (!wq_head && !wq_quit)
			pthread_cond_wait(&wq_cond, &wq_lock);
		regent_file_write *w = wq_head;
		if (!w)
			break; /* quit, and nothing left */
		wq_head = w->qnext;
		if (!wq_head)
			wq_tail = NULL;
		pthread_mutex_unlock(&wq_lock);
		patch_work(&w->work);
		/* w belongs to the loop from here on: not touched again */
		__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
		pthread_mutex_lock(&wq_lock);
	}
	pthread_mutex_unlock(&wq_lock);
	return NULL;
}

/* Stops and joins the thread once the patches queued are written. */
static void writer_stop(void)
{
	pthread_mutex_lock(&wq_lock);
	bool running = wq_running;
	wq_quit = true;
	pthread_mutex_unlock(&wq_lock);
	if (!running)
		return;
	pthread_cond_signal(&wq_cond);
	pthread_join(wq_thread, NULL);
	pthread_mutex_lock(&wq_lock);
	wq_running = false;
	wq_quit = false;
	pthread_mutex_unlock(&wq_lock);
}

/* ---- the loop's side ---- */

static void on_handle_closed(uv_handle_t *h)
{
	regent_file_write *w = h->data;
	if (--w->open_handles == 0)
		regent_file_write_done(&w->work, 0);
}

/* True (and the patch's end under way) when the writer is done with w. */
static bool look(regent_file_write *w)
{
	if (uv_is_closing((uv_handle_t *)&w->look) || !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
		return false;
	uv_close((uv_handle_t *)&w->look, on_handle_closed);
	uv_close((uv_handle_t *)&w->check, on_handle_closed);
	return true;
}

static void on_look(uv_prepare_t *p)
{
	look(p->data);
}

static void on_check(uv_timer_t *t)
{
	regent_file_write *w = t->data;
	if (look(w))
		return;
	w->check_ms = w->check_ms * 2 > CHECK_MAX_MS ? CHECK_MAX_MS : w->check_ms * 2;
	uv_timer_start(t, on_check, w->check_ms, 0);
}

/* Queues w for the writer thread (started on first use) and starts the
 * loop's look-outs for its end; a negative errno when the thread cannot
 * start (nothing queued then). */
static int writer_queue(uv_loop_t *loop, regent_file_write *w)
{
	pthread_mutex_lock(&wq_lock);
	if (!wq_running) {
		/* every signal blocked in the writer: they stay the loop's */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int rc = pthread_create(&wq_thread, NULL, writer_main, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc != 0) {
			pthread_mutex_unlock(&wq_lock);
			return -rc;
		}
		wq_running = true;
	}
	w->qnext = NULL;
	if (wq_tail)
		wq_tail->qnext = w;
	else
		wq_head = w;
	wq_tail = w;
	pthread_mutex_unlock(&wq_lock);
	pthread_cond_signal(&wq_cond); /* after the unlock: the writer wakes once */
	/* The look-outs (only this thread reads w->done: the writer may have
	 * marked it already) */
	w->open_handles = 2;
	w->check_ms = CHECK_FIRST_MS;
	uv_prepare_init(loop, &w->look);
	w->look.data = w;
	uv_prepare_start(&w->look, on_look);
	uv_unref((uv_handle_t *)&w->look);
	uv_timer_init(loop, &w->check);
	w->check.data = w;
	uv_timer_start(&w->check, on_check, w->check_ms, 0);
	return 0;
}

void regent_file_patch_forget_all(void)
{
	writer_stop();
	keep_drop_all();
}

int regent_file_rename_over(regent_file_write *w)
{
	pthread_mutex_lock(&keep_lock);
	int rc = 0;
	if (rename(w->tmp, w->path) != 0)
		rc = regent_file_write_fail(w, errno, "cannot rename the temporary file over", w->path);
	else
		keep_drop(keep_find(w->path));
	pthread_mutex_unlock(&keep_lock);
	return rc;
}

regent_file_write *regent_file_patch_start(uv_loop_t *loop, const regent_file_patch_opts *o,
                                           int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	if (!loop || !o || o->size < offsetof(regent_file_patch_opts, arg) + sizeof(void *) ||
	    !o->path || o->path[0] != '/' || !o->on_done || !o->nranges || !o->ranges) {
		*err = -EINVAL;
		return NULL;
	}
	size_t total = 0;
	for (size_t i = 0; i < o->nranges; i++) {
		const regent_file_range *r = &o->ranges[i];
		if ((r->len && !r->data) || r->off > o->expect_len || r->len > o->expect_len - r->off) {
			*err = -EINVAL;
			return NULL;
		}
		total += r->len;
	}
	regent_file_write *w = regent_xcalloc(1, sizeof(*w));
	w->path = regent_xstrdup(o->path);
	w->expect_len = o->expect_len;
	w->no_sync = o->size >= offsetof(regent_file_patch_opts, flags) + sizeof(o->flags) &&
	             (o->flags & REGENT_FILE_PATCH_NO_SYNC);
	w->nranges = o->nranges;
	w->ranges = regent_xmalloc(o->nranges * sizeof(*w->ranges));
	char *bytes = regent_xmalloc(total ? total : 1);
	w->data = bytes;
	w->release = free;
	w->release_arg = bytes;
	char *p = bytes;
	for (size_t i = 0; i < o->nranges; i++) {
		w->ranges[i] = o->ranges[i];
		w->ranges[i].data = NULL; /* the bytes are in w->data, in order */
		if (o->ranges[i].len)
			memcpy(p, o->ranges[i].data, o->ranges[i].len);
		p += o->ranges[i].len;
	}
	w->len = total;
	w->cb = o->on_done;
	w->arg = o->arg;
	w->work.data = w;
	int rc = writer_queue(loop, w);
	if (rc != 0) /* no writer thread: libuv's pool, as before it */
		rc = uv_queue_work(loop, &w->work, patch_work, regent_file_write_done);
	if (rc != 0) {
		regent_file_write_free(w);
		*err = rc;
		return NULL;
	}
	*err = 0;
	return w;
}
