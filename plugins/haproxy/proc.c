/* proc.c - the haproxy sink's own child process and file swap, on the
 * loop: the environment haproxy runs with (the huge-page malloc tunable),
 * the long-running managed haproxy master (its output appended to a file;
 * posix_spawn, reaped on SIGCHLD), and the checked candidate renamed over
 * the file (rename, fsync of the directory, on libuv's threadpool).  Short commands
 * ("haproxy -c", a reload command) run with host->spawn and the files are
 * written with host->file_write (pipeline.c, reload.c).  Each object owns
 * its handles and frees itself once they are closed. */
#include "hx.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* haproxy's environment                                              */
/* ------------------------------------------------------------------ */

extern char **environ;

/* glibc's malloc in haproxy asks for transparent huge pages (madvise), so
 * that parsing a big file does not fault in every 4 KiB page one by one:
 * at 16,000 server lines (3,840 bytes each in haproxy 2.6) that is 20,000
 * page faults per parse, most of haproxy -c's and the reloading master's
 * time on a VM; with the tunable, about 1,000.  Older glibc ignores the
 * tunable; one the environment already sets for hugetlb is kept. */
#define HX_TUNABLE "glibc.malloc.hugetlb=1"

char **hx_haproxy_env(const regent_host *h)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = h->xcalloc(n + 2, sizeof(*env));
	bool seen = false;
	for (size_t i = 0; i < n; i++) {
		const char *e = environ[i];
		if (strncmp(e, "GLIBC_TUNABLES=", 15) == 0 && !seen) {
			seen = true;
			if (!strstr(e, "glibc.malloc.hugetlb="))
				env[i] = e[15] ? h->xasprintf("%s:" HX_TUNABLE, e)
				               : h->xstrdup("GLIBC_TUNABLES=" HX_TUNABLE);
			else
				env[i] = h->xstrdup(e);
			continue;
		}
		env[i] = h->xstrdup(e);
	}
	if (!seen)
		env[n] = h->xstrdup("GLIBC_TUNABLES=" HX_TUNABLE);
	return env;
}

void hx_env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/* ------------------------------------------------------------------ */
/* The managed master                                                 */
/* ------------------------------------------------------------------ */

/* haproxy must outlive regent: it runs in its own session (no signal of
 * regent's terminal or process group reaches it) and writes its output to
 * a file, never to a pipe that would break when regent exits.
 *
 * Started with host->process_start (posix_spawn, never a fork of the
 * agent's heap, as host->spawn).  Its exit is reaped with
 * host->process_reap (waitpid of its own pid) when SIGCHLD comes. */
struct hx_master {
	uv_signal_t sigchld;
	const regent_host *h;
	hx_exit_cb on_exit;
	void *arg;
	bool exited, released, closed;
	int pid;
};

static void master_on_close(uv_handle_t *h)
{
	free(h->data);
}

static void master_close(hx_master *m)
{
	if (!m->closed) {
		m->closed = true;
		uv_close((uv_handle_t *)&m->sigchld, master_on_close);
	}
}

static void master_sigchld(uv_signal_t *h, int signum)
{
	(void)signum;
	hx_master *m = h->data;
	int status = -1, sig = 0;
	int r = m->h->process_reap(m->pid, false, &status, &sig);
	if (r == 0 || (r < 0 && r != -ECHILD))
		return; /* still running */
	uv_signal_stop(h);
	m->exited = true;
	if (!m->released && m->on_exit)
		m->on_exit(m->arg, status, sig);
	else
		master_close(m);
}

int hx_process_start(const regent_host *h, char *const *argv, char *const *envp, int out_fd,
                     int *pid)
{
	regent_spawn_opts o = {.size = sizeof(o), .argv = (const char *const *)argv,
	                       .env = (const char *const *)envp};
	return h->process_start(&o, out_fd, pid);
}

hx_master *hx_master_spawn(const regent_host *h, uv_loop_t *loop, char *const *argv, int out_fd, hx_exit_cb on_exit,
                           void *arg, int *err)
{
	hx_master *m = calloc(1, sizeof(*m));
	if (!m) {
		*err = -ENOMEM;
		return NULL;
	}
	m->h = h;
	m->on_exit = on_exit;
	m->arg = arg;
	uv_signal_init(loop, &m->sigchld);
	m->sigchld.data = m;
	/* Watching before the child exists: its SIGCHLD cannot be missed. */
	int rc = uv_signal_start(&m->sigchld, master_sigchld, SIGCHLD);
	int pid = 0;
	if (rc == 0) {
		char **env = hx_haproxy_env(h);
		rc = hx_process_start(h, argv, env, out_fd, &pid);
		hx_env_free(env);
	}
	if (rc < 0) {
		*err = rc;
		master_close(m);
		return NULL;
	}
	m->pid = pid;
	return m;
}

int hx_master_pid(const hx_master *m)
{
	return m ? m->pid : 0;
}

void hx_master_kill(hx_master *m, int sig)
{
	if (m && !m->exited && m->pid > 0)
		kill(m->pid, sig);
}

void hx_master_release(hx_master *m, bool killed)
{
	if (!m || m->released)
		return;
	m->released = true;
	/* A master just sent SIGKILL (a stop that outlived stop_timeout, say)
	 * has nobody else to reap it: its SIGCHLD is still awaited, here, and
	 * the handle closes once its exit is reaped (master_sigchld), rather
	 * than a zombie for the rest of regent's life.  SIGKILL ends even a
	 * stopped process: the wait is short, and at shutdown the loop waits
	 * for it. */
	if (killed && !m->exited)
		return;
	/* A running master is left running: the handle is closed at once so
	 * that nothing keeps the loop (and regent's exit) waiting; whoever
	 * adopts it reaps it through its pidfd (master.c). */
	master_close(m);
}

/* ---- the reap of an adopted master of ours after a SIGKILL ---- */

typedef struct pidfd_reap {
	uv_poll_t poll;
	int pidfd;
} pidfd_reap;

static void pidfd_reap_closed(uv_handle_t *h)
{
	pidfd_reap *r = h->data;
	close(r->pidfd);
	free(r);
}

bool hx_pidfd_reaped(int pidfd, int64_t *status, int *sig)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(HX_P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG) != 0 || !si.si_pid)
		return false;
	bool killed = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
	*status = killed ? 0 : si.si_status;
	*sig = killed ? si.si_status : 0;
	return true;
}

static void pidfd_reap_ready(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	pidfd_reap *r = p->data;
	int64_t st;
	int sig;
	(void)hx_pidfd_reaped(r->pidfd, &st, &sig);
	uv_poll_stop(p);
	uv_close((uv_handle_t *)p, pidfd_reap_closed);
}

void hx_pidfd_reap(uv_loop_t *loop, int pidfd)
{
	pidfd_reap *r = calloc(1, sizeof(*r));
	if (!r || uv_poll_init(loop, &r->poll, pidfd) < 0) {
		free(r);
		close(pidfd);
		return;
	}
	r->pidfd = pidfd;
	r->poll.data = r;
	if (uv_poll_start(&r->poll, UV_READABLE, pidfd_reap_ready) < 0)
		pidfd_reap_ready(&r->poll, 0, 0);
}

/* ------------------------------------------------------------------ */
/* The candidate renamed over the file                                 */
/* ------------------------------------------------------------------ */

/* The files themselves are written by host->file_write (pipeline.c); the
 * candidate, checked by haproxy -c where it lies, is swapped in here:
 * rename, then the directory's fsync (none for a managed haproxy's file:
 * see hx_write_file), on libuv's threadpool. */
typedef enum {
	W_RENAME,
	W_DIROPEN,
	W_DIRFSYNC,
	W_DIRCLOSE,
} w_step;

struct hx_write {
	uv_loop_t *loop;
	uv_fs_t req;
	w_step step;
	bool sync; /* the directory's fsync after the rename */
	char *path, *tmp, *dir;
	uv_file fd;
	int status;
	hx_write_cb cb;
	void *arg;
	uv_timer_t *delay; /* REGENT_HX_TEST_RENAME_DELAY_MS (hx_rename_test_delay) */
};

static void w_done(hx_write *w)
{
	if (w->cb)
		w->cb(w->arg, w->status);
	free(w->path);
	free(w->tmp);
	free(w->dir);
	free(w);
}

static void w_next(uv_fs_t *req)
{
	hx_write *w = req->data;
	ssize_t res = req->result;
	uv_fs_req_cleanup(req);
	int rc = 0;
	switch (w->step) {
	case W_RENAME:
		if (res < 0 || !w->sync) {
			w->status = res < 0 ? (int)res : 0;
			w_done(w);
			return;
		}
		w->step = W_DIROPEN;
		rc = uv_fs_open(w->loop, req, w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, w_next);
		break;
	case W_DIROPEN:
		if (res < 0) { /* renamed already: the directory fsync is a bonus */
			w_done(w);
			return;
		}
		w->fd = (uv_file)res;
		w->step = W_DIRFSYNC;
		rc = uv_fs_fsync(w->loop, req, w->fd, w_next);
		break;
	case W_DIRFSYNC:
		w->step = W_DIRCLOSE;
		rc = uv_fs_close(w->loop, req, w->fd, w_next);
		break;
	case W_DIRCLOSE:
		w_done(w);
		return;
	}
	if (rc < 0) { /* renamed already: the directory's fsync is a bonus */
		if (w->step != W_DIROPEN)
			close(w->fd);
		w_done(w);
	}
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *d = strdup(dirname(copy));
	free(copy);
	return d;
}

uint64_t hx_rename_test_delay(void)
{
	static long long ms = -1;
	if (ms < 0) {
		const char *e = getenv("REGENT_HX_TEST_RENAME_DELAY_MS");
		ms = e ? strtoll(e, NULL, 10) : 0;
		if (ms < 0 || ms > 60000)
			ms = 0;
	}
	return (uint64_t)ms;
}

static void on_delay_closed(uv_handle_t *h)
{
	free(h);
}

/* The test delay is over: the rename goes to the threadpool. */
static void on_delay(uv_timer_t *t)
{
	hx_write *w = t->data;
	w->delay = NULL;
	uv_close((uv_handle_t *)t, on_delay_closed);
	int rc = uv_fs_rename(w->loop, &w->req, w->tmp, w->path, w_next);
	if (rc < 0) {
		w->status = rc;
		w_done(w);
	}
}

hx_write *hx_rename(uv_loop_t *loop, const char *from, const char *to, bool sync, hx_write_cb cb,
                    void *arg, int *err)
{
	hx_write *w = calloc(1, sizeof(*w));
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->loop = loop;
	w->path = strdup(to);
	w->tmp = strdup(from);
	w->dir = dir_of(to);
	if (!w->path || !w->tmp || !w->dir) {
		w->cb = NULL;
		w_done(w);
		*err = -ENOMEM;
		return NULL;
	}
	w->cb = cb;
	w->arg = arg;
	w->req.data = w;
	w->step = W_RENAME;
	w->sync = sync;
	uint64_t delay = hx_rename_test_delay();
	if (delay) { /* a slow disk or a busy threadpool, for the tests */
		w->delay = malloc(sizeof(*w->delay));
		if (w->delay && uv_timer_init(loop, w->delay) == 0) {
			w->delay->data = w;
			uv_timer_start(w->delay, on_delay, delay, 0);
			*err = 0;
			return w;
		}
		free(w->delay);
		w->delay = NULL;
	}
	int rc = uv_fs_rename(loop, &w->req, w->tmp, w->path, w_next);
	if (rc < 0) {
		*err = rc;
		w->cb = NULL;
		w_done(w);
		return NULL;
	}
	return w;
}
