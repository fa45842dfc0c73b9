/* test_write.c - the haproxy sink's file writes on a real loop and a
 * temporary directory: host->file_write with the options the sink gives it
 * (pipeline.c write_file: mode 0640, a per-instance temporary path) lands
 * the file with mode 0640; a stale temp file of ours left by a killed run
 * is replaced; a symlink or a directory planted at the temp path is never
 * followed or removed (the write fails with EEXIST and the link's target
 * is intact); a write into a directory that is not there reports the
 * error.  The checked candidate's swap (proc.c hx_rename) replaces the
 * file and reports a missing candidate.  host->file_patch (ABI 1.6, the
 * mirror's in-place write of changed server lines) writes its ranges in
 * place and refuses a file of another length, a range past the end, a
 * symlink, a missing file.  REGENT_FILE_WRITE_NO_SYNC and
 * REGENT_FILE_PATCH_NO_SYNC drop the syncs (counted), nothing else.  A
 * patch's descriptor is kept for the next one only while it is the file
 * at the path.  Patches have a writer thread of their own: one is written
 * and reported while libuv's pool is taken, patches land in the order
 * they were asked, a cancelled one is not reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host.h" /* the core's host table and ctx (regent_core) */
#include "helpers.h" /* regent_file_patch_syncs, _opens, regent_file_write_syncs */
#include "hx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int setup(void **st)
{
	(void)st;
	const char *td = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/hxwrite-XXXXXX", td && *td ? td : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void on_done(void *arg, int status, const char *why)
{
	*(int *)arg = status;
	if (status < 0)
		assert_non_null(strstr(why, dir)); /* the cause names the file */
}

/* Writes text to dir/name through dir/name.tmp as the sink does (opts
 * of size bytes, flags); returns the status. */
static int write_opts(const char *name, const char *text, size_t size, unsigned flags)
{
	char path[300], tmp[310];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	uv_loop_t loop;
	uv_loop_init(&loop);
	regent_agent agent = {.loop = &loop};
	regent_ctx ctx = {.agent = &agent, .who = "haproxy test", .healthy = true};
	int status = 1, err = 0;
	regent_file_write_opts o = {.size = size, .path = path, .tmp_path = tmp, .data = text,
	                            .len = strlen(text), .mode = 0640, .on_done = on_done,
	                            .arg = &status, .flags = flags};
	if (!regent_host_table.file_write(&ctx, &o, &err))
		status = err;
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return status;
}

static int write_one(const char *name, const char *text)
{
	return write_opts(name, text, sizeof(regent_file_write_opts), 0);
}

static void on_renamed(void *arg, int status)
{
	*(int *)arg = status;
}

static int rename_one(const char *from, const char *to)
{
	char f[300], t[300];
	snprintf(f, sizeof(f), "%s/%s", dir, from);
	snprintf(t, sizeof(t), "%s/%s", dir, to);
	uv_loop_t loop;
	uv_loop_init(&loop);
	int status = 1, err = 0;
	if (!hx_rename(&loop, f, t, true, on_renamed, &status, &err))
		status = err;
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return status;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[4096];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_mode_0640(void **st)
{
	(void)st;
	mode_t old = umask(0);
	assert_int_equal(write_one("a.cfg", "hello\n"), 0);
	umask(old);
	char p[300];
	snprintf(p, sizeof(p), "%s/a.cfg", dir);
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);
	assert_string_equal(slurp(p), "hello\n");
}

/* Writes text to path (a fixture file the test then checks). */
static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_stale_tmp_replaced(void **st)
{
	(void)st;
	char tmp[310], p[300];
	snprintf(p, sizeof(p), "%s/b.cfg", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	put_file(tmp, "stale half-written text");
	assert_int_equal(write_one("b.cfg", "fresh\n"), 0);
	assert_string_equal(slurp(p), "fresh\n");
	assert_int_equal(access(tmp, F_OK), -1);
}

static void test_symlink_not_followed(void **st)
{
	(void)st;
	char tmp[310], target[300], p[300];
	snprintf(p, sizeof(p), "%s/c.cfg", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	snprintf(target, sizeof(target), "%s/victim", dir);
	put_file(target, "precious\n");
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(write_one("c.cfg", "evil\n"), -EEXIST);
	assert_string_equal(slurp(target), "precious\n");
	struct stat sb;
	assert_int_equal(lstat(tmp, &sb), 0);
	assert_true(S_ISLNK(sb.st_mode)); /* left alone */
	assert_int_equal(access(p, F_OK), -1);
}

static void test_directory_in_the_way(void **st)
{
	(void)st;
	char tmp[310];
	snprintf(tmp, sizeof(tmp), "%s/d.cfg.tmp", dir);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(write_one("d.cfg", "x\n"), -EEXIST);
	struct stat sb;
	assert_int_equal(stat(tmp, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
}

static void test_missing_dir_reports(void **st)
{
	(void)st;
	assert_int_equal(write_one("no/such/dir.cfg", "x\n"), -ENOENT);
}

static void test_swap(void **st)
{
	(void)st;
	assert_int_equal(write_one("e.cfg", "old\n"), 0);
	assert_int_equal(write_one("e.cfg.new", "checked\n"), 0);
	assert_int_equal(rename_one("e.cfg.new", "e.cfg"), 0);
	char p[300];
	snprintf(p, sizeof(p), "%s/e.cfg", dir);
	assert_string_equal(slurp(p), "checked\n");
	snprintf(p, sizeof(p), "%s/e.cfg.new", dir);
	assert_int_equal(access(p, F_OK), -1);
	assert_int_equal(rename_one("e.cfg.new", "e.cfg"), UV_ENOENT); /* no candidate */
}

/* host->file_patch (ABI 1.6, the mirror's in-place write) over dir/name;
 * returns the status. */
static int patch_opts(const char *name, uint64_t expect_len, const regent_file_range *r, size_t n,
                      size_t size, unsigned flags)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uv_loop_t loop;
	uv_loop_init(&loop);
	regent_agent agent = {.loop = &loop};
	regent_ctx ctx = {.agent = &agent, .who = "haproxy test", .healthy = true};
	int status = 1, err = 0;
	regent_file_patch_opts o = {.size = size, .path = path, .expect_len = expect_len,
	                            .ranges = r, .nranges = n, .on_done = on_done, .arg = &status,
	                            .flags = flags};
	if (!regent_host_table.file_patch(&ctx, &o, &err))
		status = err;
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return status;
}

static int patch_one(const char *name, uint64_t expect_len, const regent_file_range *r, size_t n)
{
	return patch_opts(name, expect_len, r, n, sizeof(regent_file_patch_opts), 0);
}

/* REGENT_FILE_PATCH_NO_SYNC: the bytes land, with no fdatasync; without
 * it, or from a plugin whose opts end before flags (an older one), one. */
static void test_patch_no_sync(void **st)
{
	(void)st;
	assert_int_equal(write_one("n.cfg", "    server s1 0.0.0.0:0 disabled\n"), 0);
	char p[300];
	snprintf(p, sizeof(p), "%s/n.cfg", dir);
	regent_file_range r = {.off = 14, .data = "1.2.3.4", .len = 7};
	uint64_t n0 = regent_file_patch_syncs();
	assert_int_equal(patch_opts("n.cfg", 33, &r, 1, sizeof(regent_file_patch_opts),
	                            REGENT_FILE_PATCH_NO_SYNC), 0);
	assert_string_equal(slurp(p), "    server s1 1.2.3.4:0 disabled\n");
	assert_int_equal(regent_file_patch_syncs(), n0);
	assert_int_equal(patch_one("n.cfg", 33, &r, 1), 0);
	assert_int_equal(regent_file_patch_syncs(), n0 + 1);
	assert_int_equal(patch_opts("n.cfg", 33, &r, 1, offsetof(regent_file_patch_opts, flags),
	                            REGENT_FILE_PATCH_NO_SYNC), 0);
	assert_int_equal(regent_file_patch_syncs(), n0 + 2);
}

/* REGENT_FILE_WRITE_NO_SYNC (a managed haproxy's files: pipeline.c
 * hx_write_file): the file replaced as always (mode 0640, a new inode by
 * the rename, the temporary file gone, a symlink planted at the
 * temporary path refused), with no fsync; without it, or from a plugin
 * whose opts end before flags (an older one), two (file, directory). */
static void test_write_no_sync(void **st)
{
	(void)st;
	char p[300], tmp[310], target[300];
	snprintf(p, sizeof(p), "%s/w.cfg", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	assert_int_equal(write_one("w.cfg", "old\n"), 0);
	struct stat s0, s1;
	assert_int_equal(stat(p, &s0), 0);
	uint64_t n0 = regent_file_write_syncs();
	assert_int_equal(write_opts("w.cfg", "new\n", sizeof(regent_file_write_opts),
	                            REGENT_FILE_WRITE_NO_SYNC), 0);
	assert_int_equal(regent_file_write_syncs(), n0);
	assert_string_equal(slurp(p), "new\n");
	assert_int_equal(stat(p, &s1), 0);
	assert_true(s0.st_ino != s1.st_ino); /* renamed over, not written in place */
	assert_int_equal(s1.st_mode & 0777, 0640);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(write_one("w.cfg", "synced\n"), 0);
	assert_int_equal(regent_file_write_syncs(), n0 + 2);
	assert_int_equal(write_opts("w.cfg", "older plugin\n", offsetof(regent_file_write_opts, flags),
	                            REGENT_FILE_WRITE_NO_SYNC), 0);
	assert_int_equal(regent_file_write_syncs(), n0 + 4);
	assert_string_equal(slurp(p), "older plugin\n");
	/* still O_EXCL|O_NOFOLLOW: a symlink at the temporary path is refused */
	snprintf(target, sizeof(target), "%s/victim3", dir);
	put_file(target, "precious\n");
	assert_int_equal(symlink(target, tmp), 0);
	assert_int_equal(write_opts("w.cfg", "evil\n", sizeof(regent_file_write_opts),
	                            REGENT_FILE_WRITE_NO_SYNC), -EEXIST);
	assert_string_equal(slurp(target), "precious\n");
	assert_string_equal(slurp(p), "older plugin\n");
}

/* Ranges land in place (same inode, same length, the rest untouched); a
 * file of another length than the plugin expects is left alone (-ESTALE);
 * a range past the end is refused before anything runs; a symlink at the
 * path is not followed; a missing file is not created. */
static void test_patch(void **st)
{
	(void)st;
	const char *text = "    server s1 10.0.0.1:80 check  # a\n    server s2 0.0.0.0:0 check disabled\n";
	size_t len = strlen(text);
	assert_int_equal(write_one("p.cfg", text), 0);
	char p[300];
	snprintf(p, sizeof(p), "%s/p.cfg", dir);
	struct stat s0, s1;
	assert_int_equal(stat(p, &s0), 0);
	regent_file_range r[2] = {{.off = 14, .data = "10.0.0.9:81", .len = 11},
	                          {.off = len - 9, .data = "disabled", .len = 8}};
	assert_int_equal(patch_one("p.cfg", len, r, 2), 0);
	assert_string_equal(slurp(p), "    server s1 10.0.0.9:81 check  # a\n    server s2 0.0.0.0:0 check disabled\n");
	assert_int_equal(stat(p, &s1), 0);
	assert_true(s0.st_ino == s1.st_ino); /* in place: no new file */
	assert_int_equal((size_t)s1.st_size, len);
	/* another length: replaced behind the writer's back */
	regent_file_range bad = {.off = 0, .data = "X", .len = 1};
	assert_int_equal(patch_one("p.cfg", len + 1, &bad, 1), -ESTALE);
	assert_string_equal(slurp(p), "    server s1 10.0.0.9:81 check  # a\n    server s2 0.0.0.0:0 check disabled\n");
	/* past the end */
	regent_file_range past = {.off = len - 1, .data = "XY", .len = 2};
	assert_int_equal(patch_one("p.cfg", len, &past, 1), -EINVAL);
	assert_int_equal(patch_one("p.cfg", len, NULL, 0), -EINVAL);
	/* a symlink is not followed */
	char target[300], link[300];
	snprintf(target, sizeof(target), "%s/victim2", dir);
	snprintf(link, sizeof(link), "%s/q.cfg", dir);
	put_file(target, "precious\n");
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(patch_one("q.cfg", 9, &bad, 1), -ELOOP);
	assert_string_equal(slurp(target), "precious\n");
	/* never created */
	assert_int_equal(patch_one("none.cfg", 1, &bad, 1), -ENOENT);
	snprintf(p, sizeof(p), "%s/none.cfg", dir);
	assert_int_equal(access(p, F_OK), -1);
}

/* The descriptor a patch keeps for the next patch of the path: not opened
 * again while it is the file there; the file at the path patched (never
 * the kept one) once something else is there: the core's whole-file
 * write, a rename over it from outside, the file moved away and another
 * put there, a symlink to the very same file (refused, as a first patch
 * of it is); after any of these, and after forget_all, opened anew. */
static void test_patch_kept_fd(void **st)
{
	(void)st;
	const char *t0 = "    server s1 0.0.0.0:0 disabled\n";
	size_t len = strlen(t0);
	char p[300], q[300], old[300];
	snprintf(p, sizeof(p), "%s/k.cfg", dir);
	snprintf(q, sizeof(q), "%s/k.new", dir);
	snprintf(old, sizeof(old), "%s/k.old", dir);
	assert_int_equal(write_one("k.cfg", t0), 0);
	regent_file_range a = {.off = 14, .data = "1.1.1.1", .len = 7},
	                  b = {.off = 14, .data = "2.2.2.2", .len = 7};
	uint64_t n0 = regent_file_patch_opens();
	assert_int_equal(patch_one("k.cfg", len, &a, 1), 0);
	assert_int_equal(regent_file_patch_opens(), n0 + 1);
	assert_int_equal(patch_one("k.cfg", len, &b, 1), 0); /* kept: no open */
	assert_int_equal(regent_file_patch_opens(), n0 + 1);
	assert_string_equal(slurp(p), "    server s1 2.2.2.2:0 disabled\n");
	/* the core's whole-file write renames over it */
	assert_int_equal(write_one("k.cfg", t0), 0);
	assert_int_equal(patch_one("k.cfg", len, &a, 1), 0);
	assert_string_equal(slurp(p), "    server s1 1.1.1.1:0 disabled\n");
	assert_int_equal(regent_file_patch_opens(), n0 + 2);
	/* renamed over from outside (as the sink's candidate swap does) */
	put_file(q, t0);
	assert_int_equal(rename(q, p), 0);
	assert_int_equal(patch_one("k.cfg", len, &b, 1), 0);
	assert_string_equal(slurp(p), "    server s1 2.2.2.2:0 disabled\n");
	assert_int_equal(regent_file_patch_opens(), n0 + 3);
	/* moved away, another file put there: the one at the path changes */
	assert_int_equal(rename(p, old), 0);
	put_file(p, t0);
	assert_int_equal(patch_one("k.cfg", len, &a, 1), 0);
	assert_string_equal(slurp(p), "    server s1 1.1.1.1:0 disabled\n");
	assert_string_equal(slurp(old), "    server s1 2.2.2.2:0 disabled\n");
	assert_int_equal(regent_file_patch_opens(), n0 + 4);
	/* a symlink at the path to the kept file itself: not followed */
	assert_int_equal(rename(p, old), 0);
	assert_int_equal(symlink(old, p), 0);
	assert_int_equal(patch_one("k.cfg", len, &b, 1), -ELOOP);
	assert_string_equal(slurp(old), "    server s1 1.1.1.1:0 disabled\n");
	assert_int_equal(unlink(p), 0);
	/* gone: not created, and an error drops what was kept */
	assert_int_equal(patch_one("k.cfg", len, &b, 1), -ENOENT);
	put_file(p, t0);
	assert_int_equal(patch_one("k.cfg", len, &b, 1), 0);
	uint64_t n1 = regent_file_patch_opens();
	regent_file_patch_forget_all();
	assert_int_equal(patch_one("k.cfg", len, &a, 1), 0);
	assert_int_equal(regent_file_patch_opens(), n1 + 1);
	assert_string_equal(slurp(p), "    server s1 1.1.1.1:0 disabled\n");
}

/* ---- the patch writer thread (core/filepatch.c) ---- */

/* libuv's pool held by works that wait until the patch is done (or 5 s):
 * patches have a thread of their own, so one is written and reported
 * while every pool thread is taken (by a reload's fsyncs, say).  Through
 * the pool it would wait behind them: the 5 s guard ends the wait and the
 * test fails instead of hanging. */
#define BUSY 16 /* more than the pool's threads (UV_THREADPOOL_SIZE, 4 by default) */
typedef struct busy {
	uv_mutex_t mu;
	uv_cond_t cond;
	bool release;
	int patched; /* the patch's status, 1 until on_done */
	bool timed_out;
	uv_timer_t guard;
	uv_work_t works[BUSY];
} busy;

static void busy_work(uv_work_t *req)
{
	busy *b = req->data;
	uv_mutex_lock(&b->mu);
	while (!b->release)
		uv_cond_wait(&b->cond, &b->mu);
	uv_mutex_unlock(&b->mu);
}

static void busy_after(uv_work_t *req, int status)
{
	(void)req;
	assert_int_equal(status, 0);
}

static void busy_release(busy *b)
{
	uv_mutex_lock(&b->mu);
	b->release = true;
	uv_cond_broadcast(&b->cond);
	uv_mutex_unlock(&b->mu);
	if (!uv_is_closing((uv_handle_t *)&b->guard))
		uv_close((uv_handle_t *)&b->guard, NULL);
}

static void busy_patched(void *arg, int status, const char *why)
{
	busy *b = arg;
	(void)why;
	b->patched = status;
	busy_release(b);
}

static void busy_guard(uv_timer_t *t)
{
	busy *b = t->data;
	b->timed_out = true;
	busy_release(b);
}

static void test_patch_beside_busy_pool(void **st)
{
	(void)st;
	const char *text = "    server s1 0.0.0.0:0 disabled\n";
	assert_int_equal(write_one("busy.cfg", text), 0);
	char p[300];
	snprintf(p, sizeof(p), "%s/busy.cfg", dir);
	uv_loop_t loop;
	uv_loop_init(&loop);
	busy *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	uv_mutex_init(&b->mu);
	uv_cond_init(&b->cond);
	b->patched = 1;
	for (int i = 0; i < BUSY; i++) {
		b->works[i].data = b;
		assert_int_equal(uv_queue_work(&loop, &b->works[i], busy_work, busy_after), 0);
	}
	uv_timer_init(&loop, &b->guard);
	b->guard.data = b;
	uv_timer_start(&b->guard, busy_guard, 5000, 0);
	regent_agent agent = {.loop = &loop};
	regent_ctx ctx = {.agent = &agent, .who = "haproxy test", .healthy = true};
	regent_file_range r = {.off = 14, .data = "1.2.3.4", .len = 7};
	regent_file_patch_opts o = {.size = sizeof(o), .path = p, .expect_len = strlen(text),
	                            .ranges = &r, .nranges = 1, .on_done = busy_patched, .arg = b,
	                            .flags = REGENT_FILE_PATCH_NO_SYNC};
	int err = 0;
	assert_non_null(regent_host_table.file_patch(&ctx, &o, &err));
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_false(b->timed_out);
	assert_int_equal(b->patched, 0);
	assert_string_equal(slurp(p), "    server s1 1.2.3.4:0 disabled\n");
	uv_cond_destroy(&b->cond);
	uv_mutex_destroy(&b->mu);
	free(b);
}

/* Patches queued one after another land in that order (one writer), each
 * reported once; a cancelled one is written but not reported; the writer
 * stops with forget_all and the next patch starts it again. */
typedef struct seen {
	int n;
	int status[3];
} seen;

static void on_seen(void *arg, int status, const char *why)
{
	seen *s = arg;
	(void)why;
	assert_true(s->n < 3);
	s->status[s->n++] = status;
}

static void test_patch_order_cancel(void **st)
{
	(void)st;
	const char *text = "    server s1 0.0.0.0:0 disabled\n";
	assert_int_equal(write_one("ord.cfg", text), 0);
	char p[300];
	snprintf(p, sizeof(p), "%s/ord.cfg", dir);
	for (int round = 0; round < 2; round++) {
		uv_loop_t loop;
		uv_loop_init(&loop);
		regent_agent agent = {.loop = &loop};
		regent_ctx ctx = {.agent = &agent, .who = "haproxy test", .healthy = true};
		seen s = {0};
		const char *addrs[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"};
		regent_file_write *w[4];
		for (int i = 0; i < 4; i++) {
			regent_file_range r = {.off = 14, .data = addrs[i], .len = 7};
			regent_file_patch_opts o = {.size = sizeof(o), .path = p,
			                            .expect_len = strlen(text), .ranges = &r, .nranges = 1,
			                            .on_done = on_seen, .arg = &s,
			                            .flags = REGENT_FILE_PATCH_NO_SYNC};
			int err = 0;
			w[i] = regent_host_table.file_patch(&ctx, &o, &err);
			assert_non_null(w[i]);
		}
		regent_file_write_cancel(w[3]);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(uv_loop_close(&loop), 0);
		assert_int_equal(s.n, 3);
		assert_int_equal(s.status[0] | s.status[1] | s.status[2], 0);
		assert_string_equal(slurp(p), "    server s1 4.4.4.4:0 disabled\n");
		regent_file_patch_forget_all(); /* the writer joined; round 2 starts it again */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode_0640),
		cmocka_unit_test(test_stale_tmp_replaced),
		cmocka_unit_test(test_symlink_not_followed),
		cmocka_unit_test(test_directory_in_the_way),
		cmocka_unit_test(test_missing_dir_reports),
		cmocka_unit_test(test_swap),
		cmocka_unit_test(test_patch),
		cmocka_unit_test(test_patch_no_sync),
		cmocka_unit_test(test_write_no_sync),
		cmocka_unit_test(test_patch_kept_fd),
		cmocka_unit_test(test_patch_beside_busy_pool),
		cmocka_unit_test(test_patch_order_cancel),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
