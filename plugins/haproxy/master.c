/* master.c - the managed haproxy (manage = true): starting it in
 * master-worker mode, adopting the one an earlier run of regent left (or
 * the one the instance this one replaces runs), watching it, restarting it
 * when it dies and stopping it when asked.  haproxy outlives regent: it
 * runs in its own session, writes its output to a file and is watched
 * through a pidfd when it is not regent's child (--check-config's
 * blocking `haproxy -c` is checkbin.c).
 *
 * Identity of an haproxy found on the master socket (never adopt or kill
 * a stranger): it answers `show proc`, the pid file (if there is one)
 * names the same master, and /proc/PID/cmdline has `-S <master socket>`
 * and `-f <config_file>`.
 *
 * A master SIGKILL takes its worker and the listeners with it at once;
 * fdkeep.c holds copies of the listening sockets and the restart after a
 * crash gets them with `-x`, so connections queue instead of being refused.
 *
 * Replacing an adopted master whose command line is not this instance's
 * (hx_sup_replace: another binary or other includes, which its own reloads
 * would never apply): make before break.  A new master starts beside it
 * with `-x` and the copies, so both workers accept on the same sockets;
 * once the new one has a worker the old master gets SIGUSR1 (its worker
 * finishes what it serves, then both exit).  A new master that fails
 * first is stopped the same soft way and the old one is kept: haproxy
 * renames its sockets over the master and admin socket paths as it binds,
 * before a later bind can fail, so those paths are hard-linked first
 * (PATH.regent-old) and renamed back, and the pid file rewritten.
 *
 * A binary replaced on disk (a package upgrade): the running master's
 * /proc/PID/exe ends in " (deleted)".  Looked at every HX_EXE_EVERY_MS; the
 * sink is told once (HX_SUP_EXE_REPLACED) and reloads: the master
 * re-executes its argv[0], which is the new file.
 *
 * Stopping it (hx_sup_stop with kill): SIGTERM, again every
 * HX_TERM_EVERY_MS while it runs, SIGKILL after HX_KILL_AFTER_MS, and a
 * SIGKILL when the core gives up waiting first (stop_timeout shorter):
 * a master that reads a `reload` regent sent just before the stop after
 * it acted on the SIGTERM re-executes as a new master that never saw it
 * (haproxy 2.6 handles pending signals before the CLI), and would serve
 * on with a new worker. */
#include "hx.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The supervisor                                                     */
/* ------------------------------------------------------------------ */

struct hx_sup {
	hx_sup_cfg c;
	char *bin, *config_file, *master_socket, *pid_file, *log_file, *state_file, *state_tmp;
	hx_sup_cb cb;
	void *arg;
	hx_master *child; /* spawned by this instance */
	long pid;         /* the master (child or adopted), 0: none */
	int pidfd;        /* adopted: exit notice */
	uv_poll_t *pidwatch;
	uv_timer_t *t_restart, *t_kill, *t_alive, *t_exe;
	bool exe_noted; /* its binary was found replaced on disk, and said */
	hx_poll *ready, *probe;
	hx_fdkeep *keep; /* copies of the listeners (NULL: none kept) */
	uv_fs_t *prep; /* the state file's removal before a start */
	bool prep_cancelled; /* freed: the removal's callback frees */
	regent_backoff backoff;
	uint64_t started_ms;
	/* The running master was started to replace one that died (not a first
	 * start, a reload's or an adoption): only its death counts as a crash in
	 * a row.  crash_pending: the next spawn is such a restart. */
	bool crash_start, crash_pending;
	uint64_t spawn_req_ns; /* hx_sup_spawn() called (uv_hrtime), for the log */
	unsigned term_sent; /* SIGTERMs sent by the stop so far */
	bool is_ready, stopping, killing;
	void (*adopt_done)(void *arg, int result, const char *why);
	void *adopt_arg;
	/* The adopted master's command line differs from the one this instance
	 * starts haproxy with (its binary or includes): what, until a start. */
	char *stale;
	long worker; /* the running worker, as the master last said */
	/* hx_sup_replace: the master being replaced (old_pid, through its
	 * pidfd), signalled once the new one has a worker, then watched until
	 * it exits (old_watch: reaped if it is this process's child). */
	bool replacing;
	long old_pid;
	int old_pidfd;
	uv_poll_t *old_watch;
	char *admin_path; /* the worker's admin socket (NULL: none) */
	bool yielding;    /* a new instance drives haproxy: no restart from here */
};

static void sup_log(hx_sup *s, regent_log_level lvl, const char *fmt, ...) REGENT_PRINTF(3, 4);
static void sup_log(hx_sup *s, regent_log_level lvl, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->c.h->log(s->c.ctx, lvl, "%s", msg);
}

hx_sup *hx_sup_new(const hx_sup_cfg *cfg, hx_sup_cb cb, void *arg)
{
	hx_sup *s = cfg->h->xcalloc(1, sizeof(*s));
	s->c = *cfg;
	s->bin = cfg->h->xstrdup(cfg->bin);
	s->config_file = cfg->h->xstrdup(cfg->config_file);
	s->master_socket = cfg->h->xstrdup(cfg->master_socket);
	s->pid_file = cfg->h->xstrdup(cfg->pid_file);
	s->log_file = cfg->h->xstrdup(cfg->log_file);
	s->state_file = cfg->h->xstrdup(cfg->state_file);
	s->state_tmp = cfg->h->xstrdup(cfg->state_tmp);
	s->cb = cb;
	s->arg = arg;
	s->pidfd = -1;
	s->old_pidfd = -1;
	s->backoff = (regent_backoff){.initial_ms = 500, .max_ms = 30000};
	s->t_restart = s->c.h->timer_new(s->c.ctx, s);
	s->t_kill = s->c.h->timer_new(s->c.ctx, s);
	s->t_alive = s->c.h->timer_new(s->c.ctx, s);
	s->t_exe = s->c.h->timer_new(s->c.ctx, s);
	if (cfg->admin_socket && cfg->fd_socket)
		s->keep = hx_fdkeep_new(cfg->ctx, cfg->h, cfg->loop, cfg->admin_socket, cfg->fd_socket);
	s->admin_path = cfg->admin_socket ? cfg->h->xstrdup(cfg->admin_socket) : NULL;
	s->c.admin_socket = s->c.fd_socket = NULL; /* the keeper has its copies */
	return s;
}

/* A master's exit, read on its pidfd (pidwatch_open), and the end of it. */
static uv_poll_t *pidwatch_open(hx_sup *s, int fd, uv_poll_cb cb)
{
	uv_poll_t *w = s->c.h->xcalloc(1, sizeof(*w));
	uv_poll_init(s->c.loop, w, fd);
	w->data = s;
	uv_poll_start(w, UV_READABLE, cb);
	return w;
}

static void pidwatch_close(uv_poll_t **w, int *fd)
{
	if (*w) {
		uv_poll_stop(*w);
		uv_close((uv_handle_t *)*w, (uv_close_cb)free);
		*w = NULL;
	}
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void unwatch(hx_sup *s)
{
	pidwatch_close(&s->pidwatch, &s->pidfd);
	uv_timer_stop(s->t_alive);
}

static void restart_now(uv_timer_t *t);
static void replace_abort(hx_sup *s, int err, const char *why);
static void on_pidfd(uv_poll_t *p, int status, int events);

/* How a master ended, for a message: "exited", "was killed by signal 9",
 * "exited with status 1" (the status known for a child only). */
static const char *exit_words(char *buf, size_t n, int64_t status, int sig, bool known)
{
	if (!known)
		snprintf(buf, n, "exited");
	else if (sig)
		snprintf(buf, n, "was killed by signal %d", sig);
	else
		snprintf(buf, n, "exited with status %lld", (long long)status);
	return buf;
}

/* The master is gone (exit status known for a child only). */
static void gone(hx_sup *s, int64_t status, int sig, bool known)
{
	long pid = s->pid;
	char how[64], why[512];
	exit_words(how, sizeof(how), status, sig, known);
	if (s->replacing) {
		if (sig)
			snprintf(why, sizeof(why), "the new haproxy (pid %ld) %s before it had a worker",
			         pid, how);
		else
			snprintf(why, sizeof(why), "the new haproxy (pid %ld) %s before it had a worker "
			         "(its output: %s)", pid, how, s->log_file);
		replace_abort(s, -ECHILD, why);
		return;
	}
	s->pid = 0;
	s->is_ready = false;
	hx_poll_cancel(s->ready);
	s->ready = NULL;
	unwatch(s);
	if (s->child) {
		hx_master_release(s->child, false);
		s->child = NULL;
	}
	if (s->killing || s->stopping) {
		hx_fdkeep_unserve(s->keep);
		hx_fdkeep_drop(s->keep);
		uv_timer_stop(s->t_kill);
		if (s->killing) {
			s->killing = false;
			sup_log(s, REGENT_LOG_INFO, "haproxy (pid %ld) stopped", pid);
			s->cb(s->arg, HX_SUP_STOPPED, 0, NULL);
		}
		return;
	}
	if (s->yielding) {
		/* Replaced by the new instance (or died meanwhile): that one runs
		 * haproxy; this one starts one again only if it drives again. */
		sup_log(s, REGENT_LOG_INFO, "haproxy (pid %ld) exited while a new instance takes over "
		        "haproxy: not restarted by this one", pid);
		s->cb(s->arg, HX_SUP_DOWN, 0, NULL);
		return;
	}
	/* The first crash restarts at once; only crashes in a row (a restarted
	 * master dying again within crash_window) back off.  A master regent has
	 * just started for another reason, or adopted, is not a restart. */
	uint64_t now = s->c.h->now_ms();
	uint64_t d = 0;
	if (s->crash_start && now - s->started_ms < s->c.crash_window)
		d = s->c.h->backoff_next(&s->backoff);
	else
		s->c.h->backoff_reset(&s->backoff);
	s->crash_pending = true;
	if (d && hx_fdkeep_count(s->keep)) {
		/* Sockets no process serves would hold connections for the whole
		 * backoff: refused is the better answer meanwhile. */
		sup_log(s, REGENT_LOG_INFO,
		        "closing the copies of haproxy's listening sockets: a crash in a row waits %llu ms",
		        (unsigned long long)d);
		hx_fdkeep_unserve(s->keep);
		hx_fdkeep_drop(s->keep);
	}
	snprintf(why, sizeof(why), "haproxy (pid %ld) %s; restarting in %llu ms", pid, how,
	         (unsigned long long)d);
	sup_log(s, REGENT_LOG_ERROR, "%s", why);
	uv_timer_start(s->t_restart, restart_now, d, 0);
	s->cb(s->arg, HX_SUP_DOWN, 0, why);
}

static void on_child_exit(void *arg, int64_t status, int sig)
{
	gone(arg, status, sig, true);
}

static void on_pidfd(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	hx_sup *s = p->data;
	/* Our own child left by the instance this one replaced: reap it
	 * (ECHILD for one an earlier regent started). */
	int64_t st;
	int sig;
	if (hx_pidfd_reaped(s->pidfd, &st, &sig)) {
		gone(s, st, sig, true);
		return;
	}
	gone(s, 0, 0, false);
}

/* Without pidfd_open (kernel < 5.3): kill(pid, 0) every 100 ms. */
static void on_alive_timer(uv_timer_t *t)
{
	hx_sup *s = t->data;
	if (s->pid && kill((pid_t)s->pid, 0) < 0 && errno == ESRCH)
		gone(s, 0, 0, false);
}

static void watch(hx_sup *s)
{
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)s->pid, 0);
	if (fd >= 0) {
		s->pidfd = fd;
		s->pidwatch = pidwatch_open(s, fd, on_pidfd);
		return;
	}
	uv_timer_start(s->t_alive, on_alive_timer, 100, 100);
}

static void send_signal(hx_sup *s, int sig)
{
	if (s->child)
		hx_master_kill(s->child, sig);
	else if (s->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0);
	else if (s->pid > 1)
		kill((pid_t)s->pid, sig);
}

/* ---- replacing a master: make before break ---- */

static long read_pid_file(const char *path);

#define HX_REPLACE_WAIT_MS 15000

static void old_unwatch(hx_sup *s)
{
	pidwatch_close(&s->old_watch, &s->old_pidfd);
	s->old_pid = 0;
}

static void on_old_exit(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	hx_sup *s = p->data;
	int64_t st;
	int sig;
	(void)hx_pidfd_reaped(s->old_pidfd, &st, &sig); /* ours: reaped; else init's */
	sup_log(s, REGENT_LOG_INFO, "the replaced haproxy (master pid %ld) has exited", s->old_pid);
	old_unwatch(s);
}

/* The socket paths the old master and worker answer on, hard-linked
 * (keep), then dropped (the new ones answer) or renamed back (restore). */
enum { PATHS_KEEP, PATHS_DROP, PATHS_RESTORE };

static void old_paths(hx_sup *s, int how)
{
	const char *paths[] = {s->master_socket, s->admin_path};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		if (!paths[i])
			continue;
		char *kept = s->c.h->xasprintf("%s.regent-old", paths[i]);
		if (how == PATHS_KEEP) {
			(void)unlink(kept);
			if (link(paths[i], kept) < 0)
				sup_log(s, REGENT_LOG_DEBUG, "cannot link %s to %s: %s (not restored if the "
				        "new master fails)", paths[i], kept, strerror(errno));
		} else if (how == PATHS_DROP) {
			(void)unlink(kept);
		} else if (rename(kept, paths[i]) < 0 && errno != ENOENT) {
			sup_log(s, REGENT_LOG_WARN, "cannot rename %s back to %s: %s", kept, paths[i],
			        strerror(errno));
		}
		free(kept);
	}
	if (how != PATHS_RESTORE || !s->pid_file[0])
		return;
	long named = read_pid_file(s->pid_file);
	if (named == s->old_pid || named < 0)
		return;
	/* the failed one may have written its own (small local file) */
	FILE *f = fopen(s->pid_file, "we");
	if (f) {
		fprintf(f, "%ld\n", s->old_pid);
		fclose(f);
	}
}

/* The new master has a worker: the old one finishes what it serves. */
static void retire_old(hx_sup *s)
{
	s->replacing = false;
	old_paths(s, PATHS_DROP);
	syscall(SYS_pidfd_send_signal, s->old_pidfd, SIGUSR1, NULL, 0);
	s->old_watch = pidwatch_open(s, s->old_pidfd, on_old_exit);
}

/* The new master did not get a worker (why): it is stopped the soft way
 * (what its worker took, if any, it finishes), the old one kept. */
static void replace_abort(hx_sup *s, int err, const char *why)
{
	hx_poll_cancel(s->ready);
	s->ready = NULL;
	if (s->child) {
		hx_master_kill(s->child, SIGUSR1);
		hx_master_release(s->child, false);
		s->child = NULL;
	}
	hx_fdkeep_unserve(s->keep);
	old_paths(s, PATHS_RESTORE);
	s->replacing = false;
	s->pid = s->old_pid;
	s->old_pid = 0;
	/* watched again through the pidfd held since the replacement began
	 * (gone at once if it died meanwhile) */
	s->pidfd = s->old_pidfd;
	s->old_pidfd = -1;
	s->pidwatch = pidwatch_open(s, s->pidfd, on_pidfd);
	s->is_ready = true; /* it kept serving */
	if (s->stopping) {
		sup_log(s, REGENT_LOG_INFO, "the replacement of haproxy (master pid %ld) is called off "
		        "(stopping): %s", s->pid, why);
		return;
	}
	sup_log(s, REGENT_LOG_ERROR, "cannot replace haproxy (master pid %ld): %s; it keeps serving "
	        "with its own command line", s->pid, why);
	s->cb(s->arg, HX_SUP_REPLACE_FAILED, err, why);
}

static void spawn_now(hx_sup *s);

int hx_sup_replace(hx_sup *s)
{
	if (!s->stale)
		return -EINVAL;
	if (!s->pid || !s->is_ready || s->replacing || s->stopping || s->prep || s->probe)
		return -EAGAIN;
	if (!hx_fdkeep_count(s->keep))
		return -ENOTCONN; /* no copies of the listeners to hand it */
	int fd = s->pidfd;
	if (s->child || fd < 0) { /* this process's child, or watched without a pidfd */
		fd = (int)syscall(SYS_pidfd_open, (pid_t)s->pid, 0);
		if (fd < 0)
			return -errno;
	} else {
		s->pidfd = -1; /* taken over: unwatch() leaves it open */
	}
	old_unwatch(s); /* one replaced before, still finishing: not watched any more */
	unwatch(s);
	if (s->child) {
		hx_master_release(s->child, false); /* its exit is read on the pidfd */
		s->child = NULL;
	}
	s->old_pid = s->pid;
	s->old_pidfd = fd;
	old_paths(s, PATHS_KEEP);
	s->pid = 0;
	s->is_ready = false;
	s->replacing = true;
	hx_poll_cancel(s->ready);
	s->ready = NULL;
	s->spawn_req_ns = uv_hrtime();
	sup_log(s, REGENT_LOG_INFO, "replacing haproxy (master pid %ld), started with another command "
	        "line (%s): a new master starts beside it on the same listening sockets",
	        s->old_pid, s->stale);
	spawn_now(s);
	return 0;
}

long hx_sup_worker(const hx_sup *s)
{
	return s->worker;
}

void hx_sup_yield(hx_sup *s, bool yielding)
{
	s->yielding = yielding;
}

/* ---- its binary replaced on disk ---- */

#define HX_EXE_EVERY_MS 5000

static void on_exe_timer(uv_timer_t *t)
{
	hx_sup *s = t->data;
	if (!s->pid || !s->is_ready || s->replacing || s->stopping)
		return;
	char path[64], exe[4096];
	snprintf(path, sizeof(path), "/proc/%ld/exe", s->pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0) {
		if (errno == EACCES || errno == EPERM) { /* another user's: not ours to read */
			sup_log(s, REGENT_LOG_DEBUG, "cannot read %s: %s; a replaced binary is not "
			        "noticed", path, strerror(errno));
			uv_timer_stop(t);
		}
		return;
	}
	exe[n] = '\0';
	static const char del[] = " (deleted)";
	bool deleted = (size_t)n > sizeof(del) - 1 && strcmp(exe + n - (sizeof(del) - 1), del) == 0;
	if (!deleted) {
		s->exe_noted = false;
		return;
	}
	if (s->exe_noted)
		return; /* said once; a reload did not change it */
	s->exe_noted = true;
	exe[n - (ssize_t)(sizeof(del) - 1)] = '\0';
	char why[4200];
	snprintf(why, sizeof(why), "%s was replaced on disk", exe);
	s->cb(s->arg, HX_SUP_EXE_REPLACED, 0, why);
}

/* ---- ready: the master has a worker ---- */

static int ready_answer(void *arg, int status, const char *out)
{
	hx_sup *s = arg;
	hx_proc_info pi;
	if (status == HX_POLL_EXPIRED) { /* replacing only: the others wait */
		s->ready = NULL;
		char why[160];
		snprintf(why, sizeof(why), "the new haproxy (pid %ld) had no worker after %d s", s->pid,
		         HX_REPLACE_WAIT_MS / 1000);
		replace_abort(s, -ETIMEDOUT, why);
		return 1;
	}
	if (status == -ETIMEDOUT || status != 0 || hx_parse_show_proc(out, &pi) < 0 || !pi.worker_pid ||
	    pi.master_pid != s->pid)
		return 0;
	s->ready = NULL;
	s->is_ready = true;
	s->worker = pi.worker_pid;
	if (!uv_is_active((uv_handle_t *)s->t_exe))
		uv_timer_start(s->t_exe, on_exe_timer, HX_EXE_EVERY_MS, HX_EXE_EVERY_MS);
	/* The new master has taken what it needed: copy this worker's (a
	 * replacement's once its worker answers on the admin socket: until
	 * then the old worker may, stopping; reload.c). */
	hx_fdkeep_unserve(s->keep);
	if (!s->replacing)
		hx_fdkeep_fetch(s->keep);
	sup_log(s, REGENT_LOG_INFO, "haproxy running: master %ld, worker %ld (%.1f ms after the start)",
	        pi.master_pid, pi.worker_pid,
	        s->spawn_req_ns ? (double)(uv_hrtime() - s->spawn_req_ns) / 1e6 : 0.0);
	if (s->replacing) {
		long old = s->old_pid;
		retire_old(s);
		free(s->stale);
		s->stale = NULL;
		sup_log(s, REGENT_LOG_INFO,
		        "replaced haproxy (master pid %ld) with master %ld running this configuration's "
		        "command line; the old one finishes its connections and exits (SIGUSR1)",
		        old, pi.master_pid);
		s->cb(s->arg, HX_SUP_REPLACED, 0, NULL);
		return 1;
	}
	s->cb(s->arg, HX_SUP_READY, 0, NULL);
	return 1;
}

static void ready_poll(hx_sup *s, uint64_t first_ms)
{
	hx_poll_cancel(s->ready);
	s->ready = hx_poll_start(s->c.h, s->c.loop, s->master_socket, "show proc", first_ms, 50,
	                         s->replacing ? HX_REPLACE_WAIT_MS : 0, s->c.cmd_timeout,
	                         ready_answer, s);
}

/* ---- spawn ---- */

static void spawn_now(hx_sup *s)
{
	if (!s->replacing) { /* the master it starts runs this instance's command line */
		free(s->stale);
		s->stale = NULL;
	}
	char *mopt = s->c.h->xasprintf("%s,mode,600", s->master_socket);
	char **argv = s->c.h->xcalloc(12 + 2 * s->c.ninclude, sizeof(*argv));
	size_t n = 0;
	argv[n++] = s->bin;
	argv[n++] = "-W";
	argv[n++] = "-S";
	argv[n++] = mopt;
	argv[n++] = "-p";
	argv[n++] = s->pid_file;
	/* After a crash: the listening sockets from regent's copies (haproxy
	 * only warns and binds anew if that fails). */
	size_t nkeep = s->crash_pending || s->replacing ? hx_fdkeep_count(s->keep) : 0;
	if (nkeep) {
		int kerr = hx_fdkeep_serve(s->keep);
		if (kerr == 0) {
			argv[n++] = "-x";
			argv[n++] = (char *)hx_fdkeep_path(s->keep);
		} else {
			sup_log(s, REGENT_LOG_WARN, "cannot serve the listening sockets on %s: %s",
			        hx_fdkeep_path(s->keep), strerror(-kerr));
			nkeep = 0;
		}
	}
	for (size_t i = 0; i < s->c.ninclude; i++) {
		argv[n++] = "-f";
		argv[n++] = (char *)s->c.include[i];
	}
	argv[n++] = "-f";
	argv[n++] = s->config_file;
	argv[n] = NULL;
	/* Small local file, opened once per start. */
	int fd = open(s->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		sup_log(s, REGENT_LOG_WARN, "cannot open %s for haproxy's output: %s", s->log_file,
		        strerror(errno));
	int err = 0;
	s->started_ms = s->c.h->now_ms();
	s->crash_start = s->crash_pending;
	s->crash_pending = false;
	uint64_t t0 = uv_hrtime();
	s->child = hx_master_spawn(s->c.h, s->c.loop, argv, fd, on_child_exit, s, &err);
	uint64_t t1 = uv_hrtime();
	if (fd >= 0)
		close(fd);
	free(argv);
	free(mopt);
	if (!s->child && s->replacing) {
		char why[512];
		snprintf(why, sizeof(why), "cannot start %s: %s", s->bin, uv_strerror(err));
		replace_abort(s, err, why);
		return;
	}
	if (!s->child) {
		hx_fdkeep_unserve(s->keep);
		hx_fdkeep_drop(s->keep);
		uint64_t d = s->c.h->backoff_next(&s->backoff);
		char why[512];
		snprintf(why, sizeof(why), "cannot start %s: %s; retrying in %llu ms", s->bin,
		         uv_strerror(err), (unsigned long long)d);
		sup_log(s, REGENT_LOG_ERROR, "%s", why);
		uv_timer_start(s->t_restart, restart_now, d, 0);
		s->cb(s->arg, HX_SUP_FAILED, err, why);
		return;
	}
	s->pid = hx_master_pid(s->child);
	sup_log(s, REGENT_LOG_INFO, "started haproxy (master pid %ld) with %s%s%s; its output goes to %s",
	        s->pid, s->config_file, nkeep ? " and the copies of its listening sockets" : "",
	        s->replacing ? ", beside the one it replaces" : "", s->log_file);
	/* Where a (re)start's time goes: clearing the state file (threadpool)
	 * and the spawn itself (posix_spawn returns once the exec is done). */
	sup_log(s, REGENT_LOG_DEBUG, "spawn timing: state file cleared after %.1f ms, spawn+exec %.1f ms",
	        s->spawn_req_ns ? (double)(t0 - s->spawn_req_ns) / 1e6 : 0.0, (double)(t1 - t0) / 1e6);
	ready_poll(s, 20);
}

static void on_state_cleared(uv_fs_t *req)
{
	hx_sup *s = req->data;
	int status = (int)req->result;
	uv_fs_req_cleanup(req);
	free(req);
	if (s->prep_cancelled) {
		free(s);
		return;
	}
	s->prep = NULL;
	if (s->stopping)
		return;
	if (status < 0 && status != UV_ENOENT)
		sup_log(s, REGENT_LOG_WARN, "cannot remove the server-state file %s: %s", s->state_file,
		        uv_strerror(status));
	spawn_now(s);
}

void hx_sup_spawn(hx_sup *s)
{
	if (hx_sup_busy(s) || s->stopping)
		return;
	/* No state file first: its addresses would win over the file's (no
	 * fsync'd write on the way of a restart: haproxy only warns). */
	s->spawn_req_ns = uv_hrtime();
	s->prep = s->c.h->xcalloc(1, sizeof(*s->prep));
	s->prep->data = s;
	if (uv_fs_unlink(s->c.loop, s->prep, s->state_file, on_state_cleared) < 0) {
		free(s->prep);
		s->prep = NULL;
		spawn_now(s);
	}
}

static void restart_now(uv_timer_t *t)
{
	hx_sup_spawn(t->data);
}

void hx_sup_hold_restart(hx_sup *s)
{
	uv_timer_stop(s->t_restart);
}

/* ---- adoption ---- */

static long read_pid_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	long pid = 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

/* A master's command line, "a" "b" ... as haproxy's reloads run it again
 * (argv[0] from PATH, every -f in order), against this instance's: NULL
 * when the binary and the -f files before config_file are the same, else
 * what differs ("binary haproxy, not /opt/...; includes a.cfg, not a.cfg
 * b.cfg"), allocated. */
static char *cmdline_stale(hx_sup *s, const char *buf, size_t n)
{
	regent_buffer was = {0};
	bool same = true;
	size_t k = 0;
	for (const char *a = buf; a < buf + n; a += strlen(a) + 1) {
		const char *next = a + strlen(a) + 1;
		if (next >= buf + n || strcmp(a, "-f") != 0 || strcmp(next, s->config_file) == 0)
			continue;
		s->c.h->buf_printf(&was, "%s%s", was.len ? " " : "", next);
		same = same && k < s->c.ninclude && strcmp(next, s->c.include[k]) == 0;
		k++;
	}
	same = same && k == s->c.ninclude;
	regent_buffer out = {0};
	if (strcmp(buf, s->bin) != 0)
		s->c.h->buf_printf(&out, "binary %s, not %s", buf, s->bin);
	if (!same) {
		regent_buffer want = {0};
		for (size_t i = 0; i < s->c.ninclude; i++)
			s->c.h->buf_printf(&want, "%s%s", i ? " " : "", s->c.include[i]);
		s->c.h->buf_printf(&out, "%sincludes %s, not %s", out.len ? "; " : "",
		                   was.len ? was.data : "none", want.len ? want.data : "none");
		s->c.h->buf_free(&want);
	}
	s->c.h->buf_free(&was);
	return out.data; /* taken over (NULL: nothing differs) */
}

/* argv of pid has "-S" "<sock>[,...]" and "-f" "<config_file>", and the
 * pid file it names with "-p" (if any) says pid; *stale: what else in it
 * differs from this instance's (cmdline_stale). */
static bool cmdline_ours(hx_sup *s, long pid, char *why, size_t whylen, char **stale)
{
	char path[64], buf[8192];
	*stale = NULL;
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		return false;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		snprintf(why, whylen, "%s is empty", path);
		return false;
	}
	buf[n] = '\0';
	bool sock = false, file = false;
	size_t sl = strlen(s->master_socket);
	for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
		char *next = a + strlen(a) + 1;
		if (next >= buf + n)
			break;
		if (strcmp(a, "-S") == 0 && strncmp(next, s->master_socket, sl) == 0 &&
		    (next[sl] == '\0' || next[sl] == ','))
			sock = true;
		if (strcmp(a, "-f") == 0 && strcmp(next, s->config_file) == 0)
			file = true;
		if (strcmp(a, "-p") == 0) {
			long fpid = read_pid_file(next);
			if (fpid >= 0 && fpid != pid) {
				snprintf(why, whylen, "its pid file %s names %ld", next, fpid);
				return false;
			}
		}
	}
	if (!sock || !file)
		snprintf(why, whylen, "its command line has no %s", !file ? "-f <config_file>" : "-S <master_socket>");
	else
		*stale = cmdline_stale(s, buf, (size_t)n);
	return sock && file;
}

static int probe_answer(void *arg, int status, const char *out)
{
	hx_sup *s = arg;
	s->probe = NULL;
	hx_proc_info pi;
	void (*done)(void *, int, const char *) = s->adopt_done;
	s->adopt_done = NULL;
	if (status < 0 || hx_parse_show_proc(out, &pi) < 0 || pi.master_pid <= 1) {
		done(s->adopt_arg, 0, NULL);
		return 1;
	}
	char why[512] = "", *stale = NULL;
	cmdline_ours(s, pi.master_pid, why, sizeof(why), &stale);
	free(s->stale);
	s->stale = stale;
	if (why[0]) {
		char msg[800];
		snprintf(msg, sizeof(msg),
		         "an haproxy that is not ours (master pid %ld) answers on %s (%s); it is left "
		         "alone",
		         pi.master_pid, s->master_socket, why);
		sup_log(s, REGENT_LOG_ERROR, "%s", msg);
		done(s->adopt_arg, -EEXIST, msg);
		return 1;
	}
	s->pid = pi.master_pid;
	s->started_ms = s->c.h->now_ms();
	s->crash_start = s->crash_pending = false;
	watch(s);
	sup_log(s, REGENT_LOG_INFO, "adopted the running haproxy (master pid %ld, worker %ld) on %s",
	        pi.master_pid, pi.worker_pid, s->master_socket);
	if (s->stale)
		sup_log(s, REGENT_LOG_WARN,
		        "the running haproxy (master pid %ld) was started with another command line "
		        "(%s): its own reloads would run that one again, so it is replaced at the "
		        "next reload (a new master beside it, make before break)",
		        pi.master_pid, s->stale);
	done(s->adopt_arg, 1, NULL);
	ready_poll(s, 0);
	return 1;
}

void hx_sup_adopt(hx_sup *s, void (*done)(void *arg, int result, const char *why), void *arg)
{
	s->adopt_done = done;
	s->adopt_arg = arg;
	s->probe = hx_poll_start(s->c.h, s->c.loop, s->master_socket, "show proc", 0, 0, 0,
	                         s->c.cmd_timeout, probe_answer, s);
}

void hx_sup_listeners_changed(hx_sup *s)
{
	if (s->pid && !s->stopping)
		hx_fdkeep_fetch(s->keep);
}

bool hx_sup_busy(const hx_sup *s)
{
	return s->pid || s->prep || s->probe || uv_is_active((uv_handle_t *)s->t_restart);
}

bool hx_sup_ready(const hx_sup *s)
{
	return s->is_ready;
}

long hx_sup_pid(const hx_sup *s)
{
	return s->pid;
}

const char *hx_sup_stale(const hx_sup *s)
{
	return s->stale;
}

#define HX_TERM_EVERY_MS 500
#define HX_KILL_AFTER_MS 3000

static void on_kill_timer(uv_timer_t *t)
{
	hx_sup *s = t->data;
	if (s->term_sent * HX_TERM_EVERY_MS < HX_KILL_AFTER_MS) {
		if (s->term_sent == 1)
			sup_log(s, REGENT_LOG_INFO,
			        "haproxy (pid %ld) still runs %d ms after SIGTERM: SIGTERM again every %d ms "
			        "(a master that took a reload after the signal runs on as a new one)",
			        s->pid, HX_TERM_EVERY_MS, HX_TERM_EVERY_MS);
		s->term_sent++;
		send_signal(s, SIGTERM);
		return;
	}
	uv_timer_stop(t);
	sup_log(s, REGENT_LOG_WARN, "haproxy (pid %ld) ignored SIGTERM for %d ms: SIGKILL", s->pid,
	        HX_KILL_AFTER_MS);
	send_signal(s, SIGKILL);
}

static void quiesce(hx_sup *s)
{
	hx_poll_cancel(s->ready);
	s->ready = NULL;
	hx_poll_cancel(s->probe);
	s->probe = NULL;
	uv_timer_stop(s->t_restart);
	uv_timer_stop(s->t_exe);
}

bool hx_sup_stop(hx_sup *s, bool kill)
{
	s->stopping = true;
	if (s->replacing)
		replace_abort(s, -ECANCELED, "regent stops");
	quiesce(s);
	hx_fdkeep_unserve(s->keep);
	if (kill)
		hx_fdkeep_drop(s->keep);
	if (!kill || !s->pid) {
		if (s->pid && s->yielding)
			sup_log(s, REGENT_LOG_INFO, "leaving haproxy (master pid %ld) running, to the new "
			        "instance", s->pid);
		else if (s->pid)
			sup_log(s, REGENT_LOG_INFO, "leaving haproxy (master pid %ld) running with %s",
			        s->pid, s->config_file);
		return false;
	}
	sup_log(s, REGENT_LOG_INFO, "stopping haproxy (pid %ld)", s->pid);
	s->killing = true;
	s->term_sent = 1;
	send_signal(s, SIGTERM);
	uv_timer_start(s->t_kill, on_kill_timer, HX_TERM_EVERY_MS, HX_TERM_EVERY_MS);
	return true;
}

void hx_sup_free(hx_sup *s)
{
	if (!s)
		return;
	if (s->killing && s->pid) {
		/* The core stopped waiting (stop_timeout) before it exited: a
		 * master this stop was to end is never left running. */
		sup_log(s, REGENT_LOG_WARN, "haproxy (pid %ld) still runs as the sink stops: SIGKILL",
		        s->pid);
		send_signal(s, SIGKILL);
	}
	bool killed = s->killing && s->pid;
	s->stopping = true;
	s->killing = false;
	if (s->replacing)
		replace_abort(s, -ECANCELED, "regent stops");
	old_unwatch(s);
	quiesce(s);
	/* Adopted: a child of this process if the instance it replaced started
	 * it (reaped through the pidfd, once the watch's handle is closed:
	 * one poll handle an fd), init's otherwise. */
	int reap_fd = killed && !s->child ? s->pidfd : -1;
	if (reap_fd >= 0)
		s->pidfd = -1;
	unwatch(s);
	if (reap_fd >= 0)
		hx_pidfd_reap(s->c.loop, reap_fd);
	hx_master_release(s->child, killed); /* left running, or reaped once dead */
	hx_fdkeep_free(s->keep);
	s->c.h->timer_close(&s->t_restart);
	s->c.h->timer_close(&s->t_kill);
	s->c.h->timer_close(&s->t_alive);
	s->c.h->timer_close(&s->t_exe);
	free(s->bin);
	free(s->admin_path);
	free(s->stale);
	free(s->config_file);
	free(s->master_socket);
	free(s->pid_file);
	free(s->log_file);
	free(s->state_file);
	free(s->state_tmp);
	if (s->prep)
		s->prep_cancelled = true; /* on_state_cleared frees it */
	else
		free(s);
}
