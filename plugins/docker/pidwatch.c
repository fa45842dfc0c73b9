/* pidwatch.c - the docker plugin's watch of its containers' main processes
 * while the daemon is unreachable (docs/docker.md, "When the daemon stops").
 * Each inspect of a running container records State.Pid with the process's
 * start time (/proc/PID/stat), once the pid is checked to be in the
 * container's cgroup.  When the event stream is lost (fail() in docker.c)
 * and until the daemon answers a listing, each such process is watched: a
 * pidfd (pidfd_open(2), Linux >= 5.3) polled on the loop, else /proc read on
 * a short timer (O(containers) per tick).  A container whose process exited
 * is deregistered then, not left to the registry's TTL; containers whose
 * process still runs (dockerd crashed, or restarting with live-restore) are
 * kept.  When the daemon answers again, the full listing takes over.  When
 * the pids are not visible here (another pid namespace), this is said once
 * and containers are kept until the daemon answers, as before. */
#include "docker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define POLL_MS 250 /* the /proc fallback's period */

struct dk_pidwatch {
	uv_timer_t *timer; /* the /proc fallback (containers without a pidfd) */
	bool active;       /* between the stream's loss and the daemon's next answer */
	bool no_pidfd;     /* pidfd_open(2) is not available: /proc only */
	bool warned;       /* "not visible here" said */
};

/* One container's process, watched through its pidfd. */
struct dk_pw {
	uv_poll_t poll;
	int fd;
	ctr *c; /* NULL once forgotten (closing) */
};

static struct dk_pidwatch *pwstate(state *st)
{
	if (!st->pidwatch)
		st->pidwatch = calloc(1, sizeof *st->pidwatch);
	return st->pidwatch;
}

/* Field 3 (state) and 22 (starttime, clock ticks after boot) of
 * /proc/PID/stat: a pid reused by another process has another start time.
 * A small read of procfs (no disk I/O). */
static int proc_stat(long pid, char *pstate, unsigned long long *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	int err = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -err : -ESRCH;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* comm may hold blanks and parentheses */
	if (!p || p[1] != ' ')
		return -EINVAL;
	p += 2;
	*pstate = *p;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	char *end;
	errno = 0;
	*start = strtoull(p, &end, 10);
	return errno || end == p ? -EINVAL : 0;
}

/* Whether /proc/PID/cgroup names the container (cgroupfs ".../<id>",
 * systemd "docker-<id>.scope"): the pid is that container's process as
 * seen from here, not another one of the same number in another pid
 * namespace. */
static bool in_cgroup(long pid, const char *id)
{
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/%ld/cgroup", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strstr(buf, id) != NULL;
}

/* Still the process recorded for c, and not exited (a zombie has exited). */
static bool proc_alive(const ctr *c)
{
	char ps = 0;
	unsigned long long start = 0;
	return proc_stat(c->pid, &ps, &start) == 0 && start == c->pid_start && ps != 'Z' &&
	       ps != 'X' && ps != 'x';
}

static void on_tick(uv_timer_t *t);

static void on_pw_closed(uv_handle_t *h)
{
	struct dk_pw *w = h->data;
	close(w->fd);
	free(w);
}

static void unwatch(ctr *c)
{
	struct dk_pw *w = c->pw;
	if (!w)
		return;
	c->pw = NULL;
	w->c = NULL;
	uv_close((uv_handle_t *)&w->poll, on_pw_closed);
}

void dk_pid_forget(ctr *c)
{
	unwatch(c);
	c->pid = 0;
	c->pid_start = 0;
}

/* Its process ended while the daemon was unreachable: deregistered now
 * (frees c).  Only while the daemon has not answered: once it does, the
 * listing and the inspects tell. */
static void exited(state *st, ctr *c)
{
	if (st->ph != PH_WAIT && st->ph != PH_LIST) {
		unwatch(c);
		return;
	}
	char why[160];
	snprintf(why, sizeof why, "is gone: its process %ld exited while the docker daemon was "
	         "unreachable", c->pid);
	if (!c->nup)
		st->h->log(st->ctx, REGENT_LOG_INFO, "container %s (%s) %s", c->name, c->short_id, why);
	dk_ctr_remove(st, c, true, why, 0);
}

static void on_pidfd(uv_poll_t *p, int status, int events)
{
	(void)events;
	struct dk_pw *w = p->data;
	ctr *c = w->c;
	if (!c)
		return;
	state *st = c->st;
	if (status < 0) {
		/* cannot poll it: the /proc fallback takes it */
		unwatch(c);
		if (!uv_is_active((uv_handle_t *)st->pidwatch->timer))
			uv_timer_start(st->pidwatch->timer, on_tick, POLL_MS, POLL_MS);
		return;
	}
	exited(st, c); /* a pidfd is readable once its process has exited */
}

static void on_tick(uv_timer_t *t)
{
	state *st = t->data;
	struct dk_pidwatch *pw = st->pidwatch;
	bool any = false;
	for (ctr *c = st->ctrs, *next; c && pw->active; c = next) {
		next = c->next;
		if (!c->pid || c->pw)
			continue;
		if (!proc_alive(c))
			exited(st, c);
		else
			any = true;
	}
	if (!any || !pw->active)
		uv_timer_stop(t);
}

/* A pidfd for c's process, checked after it is opened to be the process
 * recorded (so a pid reused meanwhile is not mistaken for it). */
static void watch(state *st, ctr *c)
{
	struct dk_pidwatch *pw = st->pidwatch;
	if (pw->no_pidfd)
		return;
#ifdef SYS_pidfd_open
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)c->pid, 0);
	int err = fd < 0 ? errno : 0;
#else
	int fd = -1, err = ENOSYS;
#endif
	if (fd < 0) {
		if (err == ENOSYS) {
			pw->no_pidfd = true;
			st->h->log(st->ctx, REGENT_LOG_DEBUG, "pidfd_open(2) is not available (%s): "
			           "container processes are polled in /proc every %d ms while the "
			           "daemon is unreachable", strerror(err), POLL_MS);
		}
		return; /* ESRCH: gone already; anything else: /proc */
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (!proc_alive(c)) {
		close(fd);
		return; /* the /proc check says it is gone (or someone else) */
	}
	struct dk_pw *w = calloc(1, sizeof *w);
	if (!w || uv_poll_init(st->h->loop(st->ctx), &w->poll, fd) != 0) {
		free(w);
		close(fd);
		return;
	}
	w->fd = fd;
	w->c = c;
	w->poll.data = w;
	c->pw = w;
	if (uv_poll_start(&w->poll, UV_READABLE, on_pidfd) != 0)
		unwatch(c);
}

void dk_pid_record(state *st, ctr *c, long pid)
{
	struct dk_pidwatch *pw = pwstate(st);
	char ps = 0;
	unsigned long long start = 0;
	if (pid > 0 && pid == c->pid && proc_stat(pid, &ps, &start) == 0 && start == c->pid_start)
		return; /* the same process */
	dk_pid_forget(c);
	if (pid <= 0 || !pw)
		return;
	if (proc_stat(pid, &ps, &start) < 0 || !in_cgroup(pid, c->id)) {
		if (!pw->warned)
			st->h->log(st->ctx, REGENT_LOG_WARN,
			           "container %s (%s): its process %ld (State.Pid) is not visible here, or "
			           "not in the container's cgroup (regent in another pid namespace than the "
			           "containers? or it exited just now): a container that stops while the "
			           "docker daemon is unreachable stays registered until the daemon answers "
			           "again (said once)",
			           c->name, c->short_id, pid);
		pw->warned = true;
		return;
	}
	c->pid = pid;
	c->pid_start = start;
}

void dk_pid_watch_start(state *st)
{
	struct dk_pidwatch *pw = pwstate(st);
	if (!pw)
		return;
	if (!pw->timer) {
		pw->timer = calloc(1, sizeof *pw->timer);
		if (!pw->timer || uv_timer_init(st->h->loop(st->ctx), pw->timer) != 0) {
			free(pw->timer);
			pw->timer = NULL;
			st->h->log(st->ctx, REGENT_LOG_ERROR, "docker at %s: cannot watch container "
			           "processes (out of memory)", st->socket);
			return;
		}
		pw->timer->data = st;
	}
	bool was = pw->active;
	pw->active = true;
	size_t watched = 0, polled = 0;
	for (ctr *c = st->ctrs, *next; c; c = next) {
		next = c->next;
		if (!c->pid)
			continue;
		if (!c->pw)
			watch(st, c);
		if (c->pw) {
			watched++;
		} else if (!proc_alive(c)) {
			exited(st, c); /* exited already (before the stream told) */
		} else {
			polled++;
		}
	}
	if (polled)
		uv_timer_start(pw->timer, on_tick, POLL_MS, POLL_MS);
	if (watched + polled && !was)
		st->h->log(st->ctx, REGENT_LOG_DEBUG, "docker at %s unreachable: watching the "
		           "processes of %zu container%s (%zu by pidfd, %zu in /proc)", st->socket,
		           watched + polled, watched + polled == 1 ? "" : "s", watched, polled);
}

void dk_pid_watch_stop(state *st)
{
	struct dk_pidwatch *pw = st->pidwatch;
	if (!pw || !pw->active)
		return;
	pw->active = false;
	if (pw->timer)
		uv_timer_stop(pw->timer);
	for (ctr *c = st->ctrs; c; c = c->next)
		unwatch(c);
}

void dk_pid_free(state *st)
{
	struct dk_pidwatch *pw = st->pidwatch;
	if (!pw)
		return;
	for (ctr *c = st->ctrs; c; c = c->next)
		unwatch(c);
	if (pw->timer)
		uv_close((uv_handle_t *)pw->timer, (uv_close_cb)free);
	free(pw);
	st->pidwatch = NULL;
}
