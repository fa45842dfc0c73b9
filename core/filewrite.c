/* filewrite.c - host->file_write (ABI 1.4): a file replaced atomically
 * (temporary file created with O_EXCL|O_NOFOLLOW, written, fsynced, renamed
 * over the file, directory fsynced; neither fsync with
 * REGENT_FILE_WRITE_NO_SYNC), and host->file_patch (ABI 1.6): ranges
 * written in place over a file of a known length (pwrite, fdatasync unless
 * REGENT_FILE_PATCH_NO_SYNC); the
 * blocking steps on libuv's threadpool and the result reported on the
 * loop.  Each write holds its data (a copy, or with host->file_write_take,
 * ABI 1.8, the plugin's own buffer, released once: never copied) and frees
 * itself after its callback. */
#include "helpers.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
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
	if (!w->status && rename(w->tmp, w->path) != 0)
		fail(w, errno, "cannot rename the temporary file over", w->path);
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
 * ~0.7 ms). */
static void patch_work(uv_work_t *req)
{
	regent_file_write *w = req->data;
	int fd = open(w->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fail(w, errno, "cannot write", w->path);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		fail(w, errno, "cannot stat", w->path);
	} else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != w->expect_len) {
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
	if (close(fd) != 0 && !w->status)
		fail(w, errno, "cannot close", w->path);
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
