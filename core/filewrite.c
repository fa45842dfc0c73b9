/* filewrite.c - host->file_write (ABI 1.4): a file replaced atomically
 * (temporary file created with O_EXCL|O_NOFOLLOW, written, fsynced, renamed
 * over the file, directory fsynced; neither fsync with
 * REGENT_FILE_WRITE_NO_SYNC), and host->file_patch (ABI 1.6): ranges
 * written in place over a file of a known length (pwrite, fdatasync unless
 * REGENT_FILE_PATCH_NO_SYNC), through a descriptor kept from one patch to
 * the next while it is the file at the path (checked by lstat); the
 * blocking steps on libuv's threadpool and the result reported on the
 * loop.  Each write holds its data (a copy, or with host->file_write_take,
 * ABI 1.8, the plugin's own buffer, released once: never copied) and frees
 * itself after its callback. */
#include "helpers.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The 1.4 opts end at `arg`: a plugin built against 1.4 passes that size,
 * and a core whose opts grew must read a later field only when o->size
 * covers it (never refuse the 1.4 size). */
#define FILE_WRITE_OPTS_SIZE_1_4 (offsetof(regent_file_write_opts, arg) + sizeof(void *))

struct regent_file_write {
	uv_work_t work;
	char *path, *tmp, *dir;
	const char *data;
	size_t len;
	/* data's one release, after the callback (or when the write cannot
	 * start): free() of the core's copy, or the plugin's release */
	void (*release)(void *arg);
	void *release_arg;
	unsigned mode;
	/* a patch (file_patch): the ranges, their bytes in data one after
	 * another; the file's expected length */
	regent_file_range *ranges;
	size_t nranges;
	uint64_t expect_len;
	bool no_sync; /* REGENT_FILE_WRITE_NO_SYNC, REGENT_FILE_PATCH_NO_SYNC */
	regent_file_write_cb cb;
	void *arg;
	bool cancelled;
	int status;
	char why[768];
};

static int fail(regent_file_write *w, int err, const char *what, const char *name)
{
	w->status = -err;
	snprintf(w->why, sizeof(w->why), "%s %s: %s", what, name, strerror(err));
	return -err;
}

/* Creates the temporary file; one left by a crash is removed first when it
 * is a regular file of ours, anything else there is refused. */
static int create_tmp(regent_file_write *w)
{
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	for (int attempt = 0;; attempt++) {
		int fd = open(w->tmp, flags, (mode_t)(w->mode & 07777));
		if (fd >= 0)
			return fd;
		int err = errno;
		if (err == EINTR)
			continue;
		if (err != EEXIST || attempt > 0)
			return fail(w, err, "cannot create the temporary file", w->tmp);
		struct stat st;
		if (lstat(w->tmp, &st) != 0)
			continue; /* gone meanwhile: try again */
		if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
			w->status = -EEXIST;
			snprintf(w->why, sizeof(w->why),
			         "cannot create the temporary file %s: it exists and is %s: left alone",
			         w->tmp,
			         S_ISLNK(st.st_mode)  ? "a symbolic link"
			         : !S_ISREG(st.st_mode) ? "not a regular file"
			         : st.st_uid != geteuid() ? "another user's file"
			                                  : "a file with several links");
			return -EEXIST;
		}
		if (unlink(w->tmp) != 0 && errno != ENOENT)
			return fail(w, errno, "cannot remove the stale temporary file", w->tmp);
	}
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

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
 * any error of a patch drops it too.  The lock serialises patches and that
 * rename (pool threads only, never the loop).  At most KEEP_MAX files (the
 * least recently patched goes); regent_file_patch_forget_all() closes
 * them at the agent's end. */
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

/* The path's descriptor is no longer the file there (a rename over
 * it); keep_lock held. */
static void keep_forget_locked(const char *path)
{
	keep_drop(keep_find(path));
}

void regent_file_patch_forget_all(void)
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

/* fsync calls made by whole-file writes, the file's and the directory's
 * (tests: REGENT_FILE_WRITE_NO_SYNC). */
static uint64_t write_syncs;

uint64_t regent_file_write_syncs(void)
{
	return __atomic_load_n(&write_syncs, __ATOMIC_RELAXED);
}

static int sync_fd(const regent_file_write *w, int fd)
{
	if (w->no_sync)
		return 0;
	__atomic_add_fetch(&write_syncs, 1, __ATOMIC_RELAXED);
	return fsync(fd);
}

/* The whole-file write.  With REGENT_FILE_WRITE_NO_SYNC neither fsync
 * (the file's, the directory's): the steps that make the replacement
 * atomic for a reader (O_EXCL|O_NOFOLLOW, the rename) stay; what goes is
 * the promise that the new file is on the disk at on_done.  Why the
 * haproxy sink may when it starts haproxy itself (manage = true): that
 * haproxy reads config_file only after the sink's start read the file
 * back (haproxy.c recover), compared it with its render (mirror.c
 * hx_mirror_same) and rewrote it when they differ, and the state file
 * only after this run wrote it (each start unlinks it first: master.c
 * hx_sup_spawn); a power loss stops every haproxy, so whatever it left
 * on the disk (the old file, the new one, an empty or partly zeroed one,
 * none) is read back by regent before any haproxy reads it, and a file
 * that is not the render is written again; until a power loss, every
 * reader sees the page cache.  2 fsyncs (file, directory) per write, 5-50
 * ms each on the bench VM under load, on the cold start's and a reload's
 * path. */
static void work(uv_work_t *req)
{
	regent_file_write *w = req->data;
	int fd = create_tmp(w);
	if (fd < 0)
		return;
	int err;
	if (fchmod(fd, (mode_t)(w->mode & 07777)) != 0) /* the umask is not ours to apply */
		fail(w, errno, "cannot set the mode of", w->tmp);
	else if ((err = write_all(fd, w->data, w->len)) != 0)
		fail(w, err, "cannot write", w->tmp);
	else if (sync_fd(w, fd) != 0)
		fail(w, errno, "cannot fsync", w->tmp);
	if (close(fd) != 0 && !w->status)
		fail(w, errno, "cannot close", w->tmp);
	if (!w->status) {
		/* the kept patch descriptor (below) is not the file at the path
		 * once this rename is done: dropped with it, under its lock */
		pthread_mutex_lock(&keep_lock);
		if (rename(w->tmp, w->path) != 0)
			fail(w, errno, "cannot rename the temporary file over", w->path);
		else
			keep_forget_locked(w->path);
		pthread_mutex_unlock(&keep_lock);
	}
	if (w->status) {
		unlink(w->tmp); /* ours: created above */
		return;
	}
	/* The new file is in place; the directory's fsync makes the rename
	 * durable (a failure there weakens only that). */
	if (w->no_sync)
		return;
	int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)sync_fd(w, dfd);
		close(dfd);
	}
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
		fail(w, errno, "cannot write", w->path);
		return -1;
	}
	if (fstat(fd, st) != 0) {
		fail(w, errno, "cannot stat", w->path);
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
					fail(w, n < 0 ? errno : EIO, "cannot write", w->path);
					break;
				}
				done += (size_t)n;
			}
			p += r->len;
		}
		if (!w->status && !w->no_sync) {
			__atomic_add_fetch(&patch_syncs, 1, __ATOMIC_RELAXED);
			if (fdatasync(fd) != 0)
				fail(w, errno, "cannot fdatasync", w->path);
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

static void write_free(regent_file_write *w)
{
	free(w->ranges);
	free(w->path);
	free(w->tmp);
	free(w->dir);
	if (w->release)
		w->release(w->release_arg);
	free(w);
}

static void after(uv_work_t *req, int status)
{
	regent_file_write *w = req->data;
	if (status == UV_ECANCELED && !w->status) {
		w->status = -ECANCELED;
		snprintf(w->why, sizeof(w->why), "writing %s: cancelled", w->path);
	}
	if (!w->cancelled)
		w->cb(w->arg, w->status, w->status ? w->why : "");
	write_free(w);
}

/* Checks the opts; NULL with *err when they cannot start a write. */
static bool write_opts_ok(uv_loop_t *loop, const regent_file_write_opts *o)
{
	if (!loop || !o || o->size < FILE_WRITE_OPTS_SIZE_1_4 || !o->path || o->path[0] != '/' ||
	    !o->on_done || (o->len && !o->data) || (o->tmp_path && o->tmp_path[0] != '/'))
		return false;
	return strrchr(o->path, '/')[1] != '\0'; /* not a directory path */
}

/* Queues the write of data (held by w->release from here on). */
static regent_file_write *write_start(uv_loop_t *loop, const regent_file_write_opts *o,
                                      const char *data, void (*release)(void *), void *rarg,
                                      int *err)
{
	const char *slash = strrchr(o->path, '/');
	regent_file_write *w = regent_xcalloc(1, sizeof(*w));
	w->data = data;
	w->release = release;
	w->release_arg = rarg;
	w->path = regent_xstrdup(o->path);
	w->tmp = o->tmp_path ? regent_xstrdup(o->tmp_path) : regent_xasprintf("%s.tmp", o->path);
	w->dir = slash == o->path ? regent_xstrdup("/")
	                          : regent_xasprintf("%.*s", (int)(slash - o->path), o->path);
	w->len = o->len;
	w->mode = o->mode ? o->mode : 0644;
	w->no_sync = o->size >= offsetof(regent_file_write_opts, flags) + sizeof(o->flags) &&
	             (o->flags & REGENT_FILE_WRITE_NO_SYNC);
	w->cb = o->on_done;
	w->arg = o->arg;
	w->work.data = w;
	int rc = uv_queue_work(loop, &w->work, work, after);
	if (rc != 0) {
		write_free(w);
		*err = rc;
		return NULL;
	}
	*err = 0;
	return w;
}

regent_file_write *regent_file_write_start(uv_loop_t *loop, const regent_file_write_opts *o,
                                           int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	if (!write_opts_ok(loop, o)) {
		*err = -EINVAL;
		return NULL;
	}
	char *copy = regent_xmalloc(o->len ? o->len : 1);
	if (o->len)
		memcpy(copy, o->data, o->len);
	return write_start(loop, o, copy, free, copy, err);
}

regent_file_write *regent_file_write_take_start(uv_loop_t *loop, const regent_file_write_opts *o,
                                                void (*release)(void *arg), void *release_arg,
                                                int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	/* The buffer is released once whatever happens: here when refused */
	void *data = o && o->size >= FILE_WRITE_OPTS_SIZE_1_4 ? (void *)(uintptr_t)o->data : NULL;
	if (!release) {
		release = free;
		release_arg = data;
	}
	if (!write_opts_ok(loop, o)) {
		release(release_arg);
		*err = -EINVAL;
		return NULL;
	}
	return write_start(loop, o, data, release, release_arg, err);
}

void regent_file_write_cancel(regent_file_write *w)
{
	if (w)
		w->cancelled = true; /* a write under way finishes; after() frees it */
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
	int rc = uv_queue_work(loop, &w->work, patch_work, after);
	if (rc != 0) {
		write_free(w);
		*err = rc;
		return NULL;
	}
	*err = 0;
	return w;
}
