/* filewrite_int.h - what filewrite.c (whole-file writes, on libuv's
 * threadpool) and filepatch.c (in-place patches, on the core's patch
 * writer thread) share: the handle both return, its error text, its end
 * on the loop, and the rename that drops a patched file's kept
 * descriptor. */
#ifndef REGENT_CORE_FILEWRITE_INT_H
#define REGENT_CORE_FILEWRITE_INT_H

#include "helpers.h"

#include <stdbool.h>
#include <stdint.h>

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
	/* a patch on the writer thread (filepatch.c): set by the thread when
	 * the patch is done (read with acquire), the loop's handles that look
	 * for it, the next check's delay, the writer's queue link */
	int done;
	uv_prepare_t look;
	uv_timer_t check;
	unsigned check_ms;
	int open_handles;
	struct regent_file_write *qnext;
	char why[768];
};

/* w->status = -err and w->why "WHAT NAME: strerror(err)"; returns -err. */
int regent_file_write_fail(regent_file_write *w, int err, const char *what, const char *name);
/* The end of a write or a patch on the loop: its callback (unless
 * cancelled; -ECANCELED when libuv cancelled the work, status), then w
 * is freed.  Also libuv's after_work callback (req->data is w). */
void regent_file_write_done(uv_work_t *req, int status);
/* Frees w without a callback (a write that could not start). */
void regent_file_write_free(regent_file_write *w);
/* rename(w->tmp, w->path), and the descriptor a patch kept for w->path
 * closed under the same lock (it is not the file there any more); 0 or
 * the failure in w (regent_file_write_fail). */
int regent_file_rename_over(regent_file_write *w);

#endif
