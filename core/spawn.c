/* spawn.c - host->spawn (ABI 1.4): a command run on the loop in its own
 * process group, stdout and stderr captured into one bounded text, a
 * timeout that kills the whole group, the exit status reported once.  Each
 * spawn owns its process, pipe, SIGCHLD watcher and timer and frees itself
 * once they are all closed.
 *
 * The child is started with posix_spawn, not uv_spawn: libuv (1.44) forks,
 * which marks every page of the agent's heap copy-on-write, and each page
 * the agent writes afterwards takes a fault (at 100,000 instances, seconds
 * of kernel time per `haproxy -c`).  glibc's posix_spawn uses
 * clone(CLONE_VM | CLONE_VFORK): nothing is copied.  The exit is reaped
 * with waitpid(pid, WNOHANG) of this spawn's own pid when SIGCHLD comes
 * (a uv_signal_t; libuv's own SIGCHLD watcher for uv_spawn users also
 * waits only for its own pids).  argv[0] is looked up in PATH here
 * (find_command), not by posix_spawnp: a missing command is refused
 * before anything starts wherever the libc cannot report a failed exec.
 * The timeout counts from the spawn in regent_now_ms, not from the loop's
 * clock (see on_timer). */
#include "helpers.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The 1.4 opts end at `arg`: a plugin built against 1.4 passes that size,
 * and a core whose opts grew must read a later field only when o->size
 * covers it (never refuse the 1.4 size). */
#define SPAWN_OPTS_SIZE_1_4 (offsetof(regent_spawn_opts, arg) + sizeof(void *))

#define SPAWN_OUTPUT_DEFAULT (64u << 10)
#define SPAWN_EOF_GRACE_MS 1000 /* after the exit, for a descendant holding the output */

struct regent_spawn {
	uv_signal_t sigchld;
	uv_pipe_t out; /* stdout and stderr, one pipe: the output as it came */
	uv_timer_t timer;
	pid_t pid;
	regent_buf text;
	size_t max, dropped;
	regent_spawn_cb cb;
	void *arg;
	int open_handles;
	bool reading;     /* the pipe is not at EOF yet */
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

/* Closes what is open: the pipe and the timer now, the SIGCHLD watcher
 * once the process is reaped (never leave a zombie behind). */
static void close_all(regent_spawn *s)
{
	close_handle(s, (uv_handle_t *)&s->out);
	close_handle(s, (uv_handle_t *)&s->timer);
	if (s->exited)
		close_handle(s, (uv_handle_t *)&s->sigchld);
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
	if (s->pid > 0 && !s->exited && kill(-s->pid, SIGKILL) != 0)
		kill(s->pid, SIGKILL);
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
		s->reading = false;
		if (s->exited)
			finish(s);
	}
}

static void on_timer(uv_timer_t *t)
{
	regent_spawn *s = t->data;
	if (!s->exited) {
		/* The timer counted from the loop's clock, which is the time of
		 * its turn's start: a spawn made late in a long turn (or after
		 * the loop's thread waited) would be killed before timeout_ms. */
		uint64_t now = regent_now_ms();
		if (now < s->deadline_ms) {
			uv_timer_start(t, on_timer, s->deadline_ms - now, 0);
			return;
		}
		s->timed_out = true;
		kill_group(s);
		return; /* on_sigchld follows */
	}
	finish(s); /* exited, a descendant still holds the output open */
}

/* Any child's SIGCHLD: reaps this spawn's own pid only, once it exited. */
static void on_sigchld(uv_signal_t *h, int signum)
{
	(void)signum;
	regent_spawn *s = h->data;
	int r = regent_process_reap(s->pid, false, &s->exit_status, &s->term_signal);
	if (r == 0 || (r < 0 && r != -ECHILD))
		return; /* still running */
	uv_signal_stop(h);
	s->exited = true;
	if (s->cancelled || s->finished) {
		close_all(s);
		return;
	}
	if (!s->reading) {
		finish(s);
		return;
	}
	uint64_t now = regent_now_ms(), grace = SPAWN_EOF_GRACE_MS;
	if (s->deadline_ms && !s->timed_out && s->deadline_ms > now && s->deadline_ms - now < grace)
		grace = s->deadline_ms - now;
	uv_timer_start(&s->timer, on_timer, grace, 0);
}

/* 0 when path is a regular file this process may execute, else -errno. */
static int executable(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0)
		return -EACCES;
	return 0;
}

/* The file execvp would run for cmd: cmd itself when it has a '/', else
 * the first executable file of that name in the agent's PATH (unset:
 * /bin:/usr/bin; an empty entry is the working directory), into buf.
 * Looked up here rather than left to posix_spawnp, so that a missing
 * command is refused before anything starts on any platform: glibc
 * reports an exec failure from its CLONE_VM child, which a libc that
 * forks, or valgrind (it runs that clone as a fork), cannot; the spawn
 * then "succeeded" and its child exited 127.  0, -ENOENT, -EACCES (one
 * was found but cannot be run) or -ENAMETOOLONG. */
static int find_command(const char *cmd, char *buf, size_t len)
{
	size_t cl = strlen(cmd);
	if (!cl)
		return -ENOENT;
	if (strchr(cmd, '/')) {
		if (cl >= len)
			return -ENAMETOOLONG;
		memcpy(buf, cmd, cl + 1);
		return executable(buf);
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin";
	int rc = -ENOENT;
	for (const char *p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t dl = end ? (size_t)(end - p) : strlen(p);
		if (dl + 2 + cl < len) {
			if (dl)
				memcpy(buf, p, dl);
			else
				buf[dl++] = '.';
			buf[dl] = '/';
			memcpy(buf + dl + 1, cmd, cl + 1);
			int r = executable(buf);
			if (r == 0)
				return 0;
			if (r == -EACCES)
				rc = -EACCES; /* as execvp: said if nothing later runs */
		}
		if (!end)
			return rc;
		p = end;
	}
}

/* host->process_start (ABI 1.7), and the child of every spawn: argv[0]
 * (looked up in the agent's PATH, by find_command) in a new session (its
 * own process group), stdin /dev/null, stdout and stderr on out_fd (< 0:
 * /dev/null), every signal at its default and none blocked (as uv_spawn
 * did).  Returns 0 or -errno (a missing command before anything starts,
 * an exec failure too where glibc reports it). */
int regent_process_start(const regent_spawn_opts *o, int out_fd, int *pid)
{
	if (!o || !o->argv || !o->argv[0] || !pid)
		return -EINVAL;
	char file[PATH_MAX];
	int found = find_command(o->argv[0], file, sizeof(file));
	if (found < 0)
		return found;
	int low = -1; /* stdin is set first: an out_fd among 0-2 is moved */
	if (out_fd >= 0 && out_fd < 3) {
		low = out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
		if (out_fd < 0)
			return -errno;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	int rc = posix_spawn_file_actions_init(&fa);
	if (rc == 0 && (rc = posix_spawnattr_init(&at)) != 0)
		posix_spawn_file_actions_destroy(&fa);
	if (rc) {
		if (low >= 0)
			close(low);
		return -rc;
	}
	pid_t p = 0;
	if (!(rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) &&
	    !(rc = out_fd >= 0 ? posix_spawn_file_actions_adddup2(&fa, out_fd, 1)
	                       : posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_RDWR, 0)) &&
	    !(rc = posix_spawn_file_actions_adddup2(&fa, 1, 2)) &&
	    !(rc = o->cwd ? posix_spawn_file_actions_addchdir_np(&fa, o->cwd) : 0) &&
	    !(rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	                                             POSIX_SPAWN_SETSIGDEF)) &&
	    !(rc = posix_spawnattr_setsigmask(&at, &none)) &&
	    !(rc = posix_spawnattr_setsigdefault(&at, &all)))
		rc = posix_spawn(&p, file, &fa, &at, (char *const *)o->argv,
		                 o->env ? (char *const *)o->env : environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	if (low >= 0)
		close(low);
	if (rc == 0)
		*pid = p;
	return -rc;
}

/* host->process_reap (ABI 1.7): waitpid of that pid only. */
int regent_process_reap(int pid, bool wait, int *exit_status, int *term_signal)
{
	if (pid <= 0)
		return -EINVAL;
	int st = 0;
	pid_t r;
	do
		r = waitpid(pid, &st, wait ? 0 : WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	if (r < 0 && errno != ECHILD)
		return -errno;
	/* ECHILD (reaped by someone else: never by regent) reads as exit -1. */
	if (term_signal)
		*term_signal = r > 0 && WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	if (exit_status)
		*exit_status = r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return r > 0 ? 1 : -ECHILD;
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
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		*err = -errno;
		return NULL;
	}
	regent_spawn *s = regent_xcalloc(1, sizeof(*s));
	s->cb = o->on_done;
	s->arg = o->arg;
	s->max = o->max_output ? o->max_output : SPAWN_OUTPUT_DEFAULT;
	s->start_ms = regent_now_ms();
	uv_pipe_init(loop, &s->out, 0);
	uv_timer_init(loop, &s->timer);
	uv_signal_init(loop, &s->sigchld);
	s->sigchld.data = s->out.data = s->timer.data = s;
	/* Watching before the child exists: its SIGCHLD cannot be missed. */
	int rc = uv_signal_start(&s->sigchld, on_sigchld, SIGCHLD);
	int pid = 0;
	if (rc == 0 && (rc = regent_process_start(o, pfd[1], &pid)) == 0)
		s->pid = pid;
	close(pfd[1]);
	if (rc == 0)
		rc = uv_pipe_open(&s->out, pfd[0]);
	else
		close(pfd[0]);
	if (rc < 0 && s->pid > 0) { /* started, its output unreadable: stop it */
		kill_group(s);
		close(pfd[0]);
		s->finished = s->cancelled = true; /* reaped by on_sigchld, no callback */
		close_all(s);
		*err = rc;
		return NULL;
	}
	if (rc < 0) {
		*err = rc;
		s->finished = s->cancelled = s->exited = true;
		close_all(s);
		return NULL;
	}
	s->reading = true;
	uv_read_start((uv_stream_t *)&s->out, on_alloc, on_read);
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
		return; /* on_sigchld reaps it and closes everything */
	}
	s->finished = true;
	close_all(s);
}
