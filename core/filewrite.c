/* filewrite.c - host->file_write (ABI 1.4): a file replaced atomically
 * (temporary file created with O_EXCL|O_NOFOLLOW, written, fsynced, renamed
 * over the file, directory fsynced; neither fsync with
 * REGENT_FILE_WRITE_NO_SYNC), the blocking steps on libuv's threadpool and
 * the result reported on the loop; and the end every write and patch shares
 * (filewrite_int.h; the patches themselves are filepatch.c's).  Each write
 * holds its data (a copy, or with host->file_write_take, ABI 1.8, the
 * plugin's own buffer, released once: never copied) and frees itself after
 * its callback. */
#include "filewrite_int.h"
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

int regent_file_write_fail(regent_file_write *w, int err, const char *what, const char *name)
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
			return regent_file_write_fail(w, err, "cannot create the temporary file", w->tmp);
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
			return regent_file_write_fail(w, errno, "cannot remove the stale temporary file", w->tmp);
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
		regent_file_write_fail(w, errno, "cannot set the mode of", w->tmp);
	else if ((err = write_all(fd, w->data, w->len)) != 0)
		regent_file_write_fail(w, err, "cannot write", w->tmp);
	else if (sync_fd(w, fd) != 0)
		regent_file_write_fail(w, errno, "cannot fsync", w->tmp);
	if (close(fd) != 0 && !w->status)
		regent_file_write_fail(w, errno, "cannot close", w->tmp);
	if (!w->status) {
		/* a descriptor a patch kept for the path is not the file there
		 * once this rename is done: dropped with it (filepatch.c) */
		regent_file_rename_over(w);
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

void regent_file_write_free(regent_file_write *w)
{
	free(w->ranges);
	free(w->path);
	free(w->tmp);
	free(w->dir);
	if (w->release)
		w->release(w->release_arg);
	free(w);
}

void regent_file_write_done(uv_work_t *req, int status)
{
	regent_file_write *w = req->data;
	if (status == UV_ECANCELED && !w->status) {
		w->status = -ECANCELED;
		snprintf(w->why, sizeof(w->why), "writing %s: cancelled", w->path);
	}
	if (!w->cancelled)
		w->cb(w->arg, w->status, w->status ? w->why : "");
	regent_file_write_free(w);
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
	int rc = uv_queue_work(loop, &w->work, work, regent_file_write_done);
	if (rc != 0) {
		regent_file_write_free(w);
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
		w->cancelled = true; /* a write under way finishes; regent_file_write_done() frees it */
}
