/* test_helpers_spawn.c - host->spawn and host->process_start/reap
 * (core/spawn.c), part of the test_helpers executable (its fixture:
 * test_helpers.h): output, exit status, the bound on output, a timeout
 * that kills the process group and counts from the spawn (not from the
 * loop's clock), cancel, a missing or unrunnable command refused before
 * anything starts, what the child gets (descriptors, session, signals,
 * cwd) and a uv_spawn child beside ours.  Nothing here assumes how soon
 * a child runs: a test waits for what the child did, and whatever a
 * pending callback may still write is the fixture's (fx_keep). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "test_helpers.h"
#include "util.h"

typedef struct sstate {
	bool done;
	regent_spawn_result r;
	char out[70000];
} sstate;

static void on_spawned(void *arg, const regent_spawn_result *r)
{
	sstate *s = arg;
	s->done = true;
	s->r = *r;
	assert_int_equal(strlen(r->output), r->output_len);
	memcpy(s->out, r->output, r->output_len + 1);
	s->r.output = s->out;
}

/* sh -c script started; its state is the fixture's. */
static sstate *spawn_start(fixture *f, const char *script, uint64_t timeout_ms, size_t max_output)
{
	sstate *s = fx_keep(f, sizeof(*s));
	const char *argv[] = {"sh", "-c", script, NULL};
	regent_spawn_opts o = {.size = sizeof(o), .argv = argv, .timeout_ms = timeout_ms,
	                       .max_output = max_output, .on_done = on_spawned, .arg = s};
	int err = 1;
	assert_non_null(H->spawn(&f->ctx, &o, &err));
	assert_int_equal(err, 0);
	return s;
}

static sstate *spawn_run(fixture *f, const char *script, uint64_t timeout_ms, size_t max_output)
{
	sstate *s = spawn_start(f, script, timeout_ms, max_output);
	assert_true(run_until(f, &s->done, 20000));
	return s;
}

void test_spawn(void **state)
{
	fixture *f = *state;
	sstate *s = spawn_run(f, "echo out; echo err >&2; exit 3", 10000, 0);
	assert_int_equal(s->r.error, 0);
	assert_int_equal(s->r.exit_status, 3);
	assert_int_equal(s->r.term_signal, 0);
	assert_non_null(strstr(s->out, "out\n"));
	assert_non_null(strstr(s->out, "err\n"));
	assert_int_equal(s->r.output_dropped, 0);

	/* Output past max_output: kept up to it, the rest counted. */
	s = spawn_run(f, "head -c 5000 /dev/zero | tr '\\0' x", 10000, 1000);
	assert_int_equal(s->r.exit_status, 0);
	assert_int_equal(s->r.output_len, 1000);
	assert_int_equal(s->r.output_dropped, 4000);

	/* The timeout kills the command and what it started (its process
	 * group): a grandchild holding the output open does not keep it.
	 * However late the command runs: the loop (whose timer kills it) runs
	 * only once the grandchild's pid file is in place, which the command
	 * renames there after it wrote "started". */
	char pidfile[128], cmd[512];
	snprintf(pidfile, sizeof(pidfile), "%s/grandchild.pid", f->dir);
	snprintf(cmd, sizeof(cmd), "sleep 60 & echo started; echo $! > '%s.tmp'; mv '%s.tmp' '%s'; wait",
	         pidfile, pidfile, pidfile);
	uint64_t t0 = regent_now_ms();
	s = spawn_start(f, cmd, 300, 0);
	char *pid = NULL;
	for (uint64_t end = t0 + 20000; !(pid = slurp(pidfile)) && regent_now_ms() < end;)
		usleep(2000);
	assert_non_null(pid);
	uint64_t ready = regent_now_ms() - t0;
	assert_true(run_until(f, &s->done, 20000));
	assert_int_equal(s->r.error, -ETIMEDOUT);
	assert_int_equal(s->r.term_signal, SIGKILL);
	assert_int_equal(s->r.exit_status, -1);
	assert_non_null(strstr(s->out, "started"));
	assert_true(s->r.elapsed_ms >= 300 && s->r.elapsed_ms < ready + 10000);
	pid_t gp = (pid_t)atoi(pid);
	free(pid);
	bool gone = false; /* killed, then reaped by init */
	for (int i = 0; i < 500 && !gone; i++) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/%d/stat", (int)gp);
		char *st = slurp(proc);
		gone = !st || strstr(st, ") Z ") != NULL;
		free(st);
		if (!gone)
			usleep(10000);
	}
	assert_true(gone);

	/* Cancelled: killed, no callback. */
	char marker[128];
	snprintf(marker, sizeof(marker), "%s/marker", f->dir);
	snprintf(cmd, sizeof(cmd), "sleep 0.5; touch '%s'", marker);
	sstate *c = fx_keep(f, sizeof(*c));
	const char *argv[] = {"sh", "-c", cmd, NULL};
	regent_spawn_opts o = {.size = sizeof(o), .argv = argv, .on_done = on_spawned, .arg = c};
	int err;
	regent_spawn *sp = H->spawn(&f->ctx, &o, &err);
	assert_non_null(sp);
	H->spawn_cancel(sp);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	usleep(800000);
	assert_false(c->done);
	assert_int_not_equal(access(marker, F_OK), 0);

	/* A missing command: refused before anything starts, no callback
	 * (looked up by spawn itself: also under valgrind, whose fork-like
	 * clone hides glibc's report of a failed exec). */
	const char *nope[] = {"regent-no-such-command", NULL};
	o.argv = nope;
	assert_null(H->spawn(&f->ctx, &o, &err));
	assert_int_equal(err, -ENOENT);
	const char *abs_nope[] = {"/nonexistent/regent-no-such-command", NULL};
	o.argv = abs_nope;
	assert_null(H->spawn(&f->ctx, &o, &err));
	assert_int_equal(err, -ENOENT);
	const char *empty[] = {"", NULL};
	o.argv = empty;
	assert_null(H->spawn(&f->ctx, &o, &err));
	assert_int_equal(err, -ENOENT);
	o.argv = NULL;
	assert_null(H->spawn(&f->ctx, &o, &err));
	assert_int_equal(err, -EINVAL);
	/* In PATH but not executable: -EACCES, unless a later PATH entry has
	 * one that runs (as execvp). */
	char noexec[160], fake_sh[160];
	snprintf(noexec, sizeof(noexec), "%s/regent-noexec", f->dir);
	snprintf(fake_sh, sizeof(fake_sh), "%s/sh", f->dir);
	FILE *fp = fopen(noexec, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(chmod(noexec, 0644), 0);
	assert_int_equal(link(noexec, fake_sh), 0);
	char *path0 = strdup(getenv("PATH") ? getenv("PATH") : "/bin:/usr/bin");
	char *path1 = H->xasprintf("%s:%s", f->dir, path0);
	setenv("PATH", path1, 1);
	const char *ne[] = {"regent-noexec", NULL};
	o.argv = ne;
	regent_spawn *r1 = H->spawn(&f->ctx, &o, &err);
	int err1 = err;
	const char *later[] = {"sh", "-c", "exit 6", NULL};
	o.argv = later;
	sstate *l = fx_keep(f, sizeof(*l));
	o.arg = l;
	regent_spawn *r2 = H->spawn(&f->ctx, &o, &err);
	setenv("PATH", path0, 1);
	free(path0);
	free(path1);
	assert_null(r1);
	assert_int_equal(err1, -EACCES);
	assert_non_null(r2);
	assert_true(run_until(f, &l->done, 20000));
	assert_int_equal(l->r.exit_status, 6);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_false(c->done);
}

/* The timeout counts from the spawn, not from the loop's clock (the time
 * its turn began): a spawn made late in a long turn keeps its whole
 * timeout_ms. */
void test_spawn_deadline(void **state)
{
	fixture *f = *state;
	uv_run(&f->loop, UV_RUN_NOWAIT); /* the loop's clock: now */
	usleep(150000);                  /* a long turn: the clock stays behind */
	sstate *s = spawn_start(f, "exec sleep 30", 300, 0);
	assert_true(run_until(f, &s->done, 20000));
	assert_int_equal(s->r.error, -ETIMEDOUT);
	assert_int_equal(s->r.term_signal, SIGKILL);
	if (s->r.elapsed_ms < 300)
		fail_msg("killed %llu ms after the spawn, before its timeout of 300 ms",
		         (unsigned long long)s->r.elapsed_ms);
}

/* process_start / process_reap (ABI 1.7): a process nothing watches, its
 * output on the fd given (or /dev/null), reaped by its pid alone. */
void test_process(void **state)
{
	(void)state;
	char path[] = "/tmp/regent-test-process-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 4", NULL};
	regent_spawn_opts o = {.size = sizeof(o), .argv = argv};
	int pid = 0, status = 99, sig = 99;
	assert_int_equal(H->process_start(&o, fd, &pid), 0);
	assert_true(pid > 0);
	assert_int_equal(H->process_reap(pid, true, &status, &sig), 1);
	assert_int_equal(status, 4);
	assert_int_equal(sig, 0);
	char buf[64] = {0};
	assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0), 8);
	assert_string_equal(buf, "out\nerr\n");
	close(fd);
	unlink(path);
	/* Reaped once: a second reap is -ECHILD, read as a signal's end. */
	assert_int_equal(H->process_reap(pid, false, &status, &sig), -ECHILD);
	assert_int_equal(status, -1);

	/* Running: 0 without waiting; killed: the signal; cwd and env given. */
	const char *env[] = {"REGENT_T=x", NULL};
	const char *sargv[] = {"sh", "-c", "[ \"$REGENT_T\" = x ] && [ \"$(pwd)\" = / ] && exec sleep 30", NULL};
	regent_spawn_opts so = {.size = sizeof(so), .argv = sargv, .env = env, .cwd = "/"};
	assert_int_equal(H->process_start(&so, -1, &pid), 0);
	usleep(200000);
	assert_int_equal(H->process_reap(pid, false, &status, &sig), 0);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(H->process_reap(pid, true, &status, &sig), 1);
	assert_int_equal(sig, SIGTERM);
	assert_int_equal(status, -1);

	/* Errors: no such command, no argv, a pid that is not ours. */
	const char *bad[] = {"regent-no-such-command", NULL};
	regent_spawn_opts bo = {.size = sizeof(bo), .argv = bad};
	assert_int_equal(H->process_start(&bo, -1, &pid), -ENOENT);
	regent_spawn_opts no = {.size = sizeof(no)};
	assert_int_equal(H->process_start(&no, -1, &pid), -EINVAL);
	assert_int_equal(H->process_reap(1, false, &status, &sig), -ECHILD);
	assert_int_equal(H->process_reap(0, false, &status, &sig), -EINVAL);
}

/* What the child gets (posix_spawn, not a fork of the agent): only fds
 * 0-2 (and what the agent inherited), its own session, no blocked or
 * ignored signal, the cwd asked for;
 * and libuv's own SIGCHLD handling still serves a uv_spawn next to it. */
typedef struct uvchild {
	bool done;
	int64_t status;
} uvchild;

static void on_uv_exit(uv_process_t *p, int64_t status, int sig)
{
	(void)sig;
	uvchild *c = p->data;
	c->done = true;
	c->status = status;
	uv_close((uv_handle_t *)p, NULL);
}

void test_spawn_child_state(void **state)
{
	fixture *f = *state;
	/* A descriptor the agent holds without O_CLOEXEC stays; ours must not
	 * leak (the pipe's read end, the loop's fds). */
	sstate *s = spawn_run(f,
	                      "cd /proc/$$/fd && echo fds *; "
	                      "echo sid $(cut -d' ' -f6 /proc/$$/stat) pid $$",
	                      10000, 0);
	assert_int_equal(s->r.exit_status, 0);
	/* Only 0-2 and what the agent holds without FD_CLOEXEC (inherited
	 * from whoever started it) reach the child; one more is the shell's
	 * own directory handle while it lists. */
	const char *fl = strstr(s->out, "fds ");
	assert_non_null(fl);
	int extra = 0;
	for (const char *q = fl + 4; *q && *q != '\n';) {
		char *end;
		long fd = strtol(q, &end, 10);
		assert_true(end > q);
		int fdfl = fd > 2 ? fcntl((int)fd, F_GETFD) : 0;
		if (fd > 2 && (fdfl < 0 || (fdfl & FD_CLOEXEC)))
			extra++;
		q = *end == ' ' ? end + 1 : end;
	}
	if (extra > 1)
		print_error("child's descriptors: %s\n", fl);
	assert_true(extra <= 1);
	int sid = -1, pid = -2;
	const char *p = strstr(s->out, "sid ");
	assert_non_null(p);
	assert_int_equal(sscanf(p, "sid %d pid %d", &sid, &pid), 2);
	assert_int_equal(sid, pid);
	assert_int_not_equal(sid, (int)getsid(0));

	/* Signals: none blocked, 1-31 at their default, whatever the agent
	 * blocks or ignores (read by grep itself: a shell clears its mask).
	 * glibc's posix_spawn leaves its two internal signals, 32 and 33,
	 * ignored; haproxy and sh use neither. */
	sigset_t blk, old;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR2);
	assert_int_equal(sigprocmask(SIG_BLOCK, &blk, &old), 0);
	struct sigaction ign = {.sa_handler = SIG_IGN}, oldsa;
	assert_int_equal(sigaction(SIGUSR1, &ign, &oldsa), 0);
	sstate *g = fx_keep(f, sizeof(*g));
	const char *gargv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
	regent_spawn_opts go = {.size = sizeof(go), .argv = gargv, .on_done = on_spawned, .arg = g};
	int gerr = 1;
	assert_non_null(H->spawn(&f->ctx, &go, &gerr));
	sigprocmask(SIG_SETMASK, &old, NULL);
	sigaction(SIGUSR1, &oldsa, NULL);
	assert_true(run_until(f, &g->done, 20000));
	assert_int_equal(g->r.exit_status, 0);
	if (!strstr(g->out, "SigBlk:\t0000000000000000\n"))
		print_error("child's signals: %s\n", g->out);
	assert_non_null(strstr(g->out, "SigBlk:\t0000000000000000\n"));
	const char *ig = strstr(g->out, "SigIgn:\t");
	assert_non_null(ig);
	assert_int_equal(strtoull(ig + 8, NULL, 16) & 0x7fffffffull, 0);

	/* cwd, and a uv_spawn child exiting while ours runs (and the other way
	 * round): each exit reaches its own owner. */
	uvchild *uc = fx_keep(f, sizeof(*uc));
	uv_process_t *up = fx_keep(f, sizeof(*up)); /* a handle: the teardown's loop may close it */
	up->data = uc;
	char *uargs[] = {"sh", "-c", "sleep 0.2; exit 5", NULL};
	uv_process_options_t uo = {.exit_cb = on_uv_exit, .file = "sh", .args = uargs};
	assert_int_equal(uv_spawn(&f->loop, up, &uo), 0);
	sstate *c = fx_keep(f, sizeof(*c));
	const char *argv[] = {"sh", "-c", "pwd; sleep 0.4; exit 4", NULL};
	regent_spawn_opts o = {.size = sizeof(o), .argv = argv, .cwd = f->dir,
	                       .on_done = on_spawned, .arg = c};
	int err = 1;
	assert_non_null(H->spawn(&f->ctx, &o, &err));
	assert_true(run_until(f, &c->done, 20000));
	assert_true(run_until(f, &uc->done, 20000));
	assert_int_equal(uc->status, 5);
	assert_int_equal(c->r.exit_status, 4);
	char want[300];
	snprintf(want, sizeof(want), "%s\n", f->dir);
	assert_string_equal(c->out, want);
	c->done = false;
	uvchild *uc2 = fx_keep(f, sizeof(*uc2));
	uv_process_t *up2 = fx_keep(f, sizeof(*up2));
	up2->data = uc2;
	char *uargs2[] = {"sh", "-c", "sleep 0.4; exit 6", NULL};
	uo.args = uargs2;
	assert_int_equal(uv_spawn(&f->loop, up2, &uo), 0);
	argv[2] = "exit 7";
	assert_non_null(H->spawn(&f->ctx, &o, &err));
	assert_true(run_until(f, &c->done, 20000));
	assert_int_equal(c->r.exit_status, 7);
	assert_true(run_until(f, &uc2->done, 20000));
	assert_int_equal(uc2->status, 6);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

