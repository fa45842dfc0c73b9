/* fdkeep.c - copies of the managed haproxy's listening sockets, so that a
 * master SIGKILL refuses no connection.  When its master dies, an haproxy
 * 2.6 worker exits at once (mworker_accept_wrapper: EOF on the master's
 * socketpair -> exit()), closing every listener before regent even notices.
 * regent therefore holds a copy of each listening socket, fetched from the
 * running worker with haproxy's own `_getsocks` protocol on the admin
 * socket (`expose-fd listeners`, rendered in the global section), and hands
 * them to the master it starts after the crash: that one runs with
 * `-x <serve_path>`, where this module answers `_getsocks` with the copies.
 * Meanwhile the kernel queues new connections on the still-open sockets
 * instead of refusing them.  haproxy binds its sockets itself (nothing in
 * the file names an fd); the copies are refreshed whenever a worker starts
 * (spawn, adoption, reload) and dropped when a restart waits a backoff or
 * haproxy is stopped, so a socket nobody serves does not hold connections
 * for long.
 *
 * Protocol (haproxy src/cli.c _getsocks, src/sock.c sock_get_old_sockets):
 * the client sends "_getsocks\n"; the server sends the fd count (an int),
 * then batches of at most 253 fds (SCM_RIGHTS) whose payload is per fd
 * <ns len:1><ns><if len:1><if><4 zero bytes>; the client acks each batch
 * with an int. */
#include "hx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define KEEP_BATCH 253 /* haproxy's MAX_SEND_FD */
/* What the copies must leave free of the agent's open-file soft limit
 * (regent raises it to the hard one at start): its own connections, the
 * stats page's, checks; at least this many, or a tenth of the limit. */
#define KEEP_SPARE 256

typedef struct keep_conn keep_conn;
struct keep_conn {
	uv_poll_t poll; /* first: uv_close frees the struct through it */
	hx_fdkeep *k;
	int fd;
	size_t sent; /* fds sent so far; SIZE_MAX: not asked yet */
	char req[16];
	size_t reqlen;
	keep_conn *next;
};

typedef struct keep_fetch {
	uv_work_t work;
	hx_fdkeep *k; /* NULL: the keeper was freed */
	const regent_host *h; /* the work thread allocates through it (k may go) */
	unsigned gen;
	char *path;
	int *fds;
	size_t nfds;
	char err[160];
} keep_fetch;

struct hx_fdkeep {
	regent_ctx *ctx;
	const regent_host *h;
	uv_loop_t *loop;
	char *admin_socket, *serve_path;
	int *fds;
	size_t nfds;
	unsigned gen;         /* bumped by drop: a fetch in flight is stale */
	keep_fetch *inflight; /* at most one */
	bool refetch;         /* asked again while one was in flight */
	int lfd;              /* serving: the listening unix socket */
	uv_poll_t *lpoll;
	keep_conn *conns;
};

hx_fdkeep *hx_fdkeep_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop,
                         const char *admin_socket, const char *serve_path)
{
	hx_fdkeep *k = h->xcalloc(1, sizeof(*k));
	k->ctx = ctx;
	k->h = h;
	k->loop = loop;
	k->admin_socket = h->xstrdup(admin_socket);
	k->serve_path = h->xstrdup(serve_path);
	k->lfd = -1;
	return k;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

size_t hx_fdkeep_count(const hx_fdkeep *k)
{
	return k ? k->nfds : 0;
}

const char *hx_fdkeep_path(const hx_fdkeep *k)
{
	return k->serve_path;
}

void hx_fdkeep_drop(hx_fdkeep *k)
{
	if (!k)
		return;
	k->gen++;
	k->refetch = false;
	close_fds(k->fds, k->nfds);
	k->fds = NULL;
	k->nfds = 0;
}

/* ---- fetching from the worker (threadpool: blocking, 1 s timeouts) ---- */

/* How many more descriptors the agent may hold (its soft RLIMIT_NOFILE
 * less those open now, the copies held included, and the spare); -1: no
 * limit.  Counting /proc/self/fd is O(open fds), on the work thread. */
static long fd_room(unsigned long long *limit)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return -1;
	*limit = (unsigned long long)rl.rlim_cur;
	long open = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		for (struct dirent *e; (e = readdir(d));)
			open += e->d_name[0] != '.';
		closedir(d);
	} else {
		open = (long)(rl.rlim_cur / 2); /* unknown: half of it in use */
	}
	long spare = rl.rlim_cur / 10 > KEEP_SPARE ? (long)(rl.rlim_cur / 10) : KEEP_SPARE;
	long room = (long)rl.rlim_cur - open - spare;
	return room > 0 ? room : 0;
}

static void fetch_work(uv_work_t *w)
{
	keep_fetch *f = w->data;
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		snprintf(f->err, sizeof(f->err), "socket: %s", strerror(errno));
		return;
	}
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", f->path);
	struct timeval tv = {.tv_sec = 1};
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int count = 0;
	if (connect(sock, (struct sockaddr *)&a, sizeof(a)) < 0) {
		snprintf(f->err, sizeof(f->err), "connect: %s", strerror(errno));
		goto out;
	}
	if (send(sock, "_getsocks\n", 10, MSG_NOSIGNAL) != 10 ||
	    recv(sock, &count, sizeof(count), MSG_WAITALL) != (ssize_t)sizeof(count)) {
		snprintf(f->err, sizeof(f->err),
		         "no fd count in the answer to _getsocks (is the socket `expose-fd listeners`?)");
		goto out;
	}
	if (count <= 0) {
		snprintf(f->err, sizeof(f->err), "_getsocks announced %d sockets", count);
		goto out;
	}
	unsigned long long limit = 0;
	long room = fd_room(&limit);
	if (room >= 0 && count > room) {
		snprintf(f->err, sizeof(f->err),
		         "%d sockets would leave too few of the agent's %llu open files (room for %ld; "
		         "raise the hard limit, LimitNOFILE=)",
		         count, limit, room);
		goto out;
	}
	f->fds = f->h->xmalloc((size_t)count * sizeof(int));
	char *cbuf = f->h->xmalloc(CMSG_SPACE(KEEP_BATCH * sizeof(int)));
	char *pbuf = f->h->xmalloc(KEEP_BATCH * (1 + 256 + 1 + 16 + 4));
	while (f->nfds < (size_t)count) {
		struct iovec iov = {.iov_base = pbuf, .iov_len = KEEP_BATCH * (1 + 256 + 1 + 16 + 4)};
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = cbuf,
		                    .msg_controllen = CMSG_SPACE(KEEP_BATCH * sizeof(int))};
		ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		int ack = (int)f->nfds;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int got[KEEP_BATCH];
			memcpy(got, CMSG_DATA(c), n * sizeof(int));
			for (size_t i = 0; i < n; i++) {
				if (f->nfds < (size_t)count)
					f->fds[f->nfds++] = got[i];
				else
					close(got[i]);
			}
		}
		if (send(sock, &ack, sizeof(ack), MSG_NOSIGNAL) < 0)
			break;
	}
	free(cbuf);
	free(pbuf);
	if (f->nfds != (size_t)count) {
		snprintf(f->err, sizeof(f->err), "got %zu of the %d sockets announced", f->nfds, count);
		close_fds(f->fds, f->nfds);
		f->fds = NULL;
		f->nfds = 0;
	}
out:
	close(sock);
}

static void start_fetch(hx_fdkeep *k);

static void fetch_done(uv_work_t *w, int status)
{
	keep_fetch *f = w->data;
	hx_fdkeep *k = f->k;
	if (k)
		k->inflight = NULL;
	if (!k || f->gen != k->gen || status < 0) {
		close_fds(f->fds, f->nfds);
	} else if (f->err[0]) {
		k->h->log(k->ctx, REGENT_LOG_WARN,
		          "cannot copy haproxy's listening sockets over %s (%s): a master crash will refuse "
		          "connections until its successor binds",
		          k->admin_socket, f->err);
		free(f->fds);
		/* Old copies may name listeners this worker no longer has: better
		 * refused than queued where nobody accepts. */
		close_fds(k->fds, k->nfds);
		k->fds = NULL;
		k->nfds = 0;
	} else {
		close_fds(k->fds, k->nfds);
		k->fds = f->fds;
		k->nfds = f->nfds;
		k->h->log(k->ctx, REGENT_LOG_DEBUG, "holding copies of haproxy's %zu listening sockets",
		          k->nfds);
	}
	free(f->path);
	free(f);
	if (k && k->refetch) {
		k->refetch = false;
		start_fetch(k);
	}
}

static void start_fetch(hx_fdkeep *k)
{
	keep_fetch *f = k->h->xcalloc(1, sizeof(*f));
	f->k = k;
	f->h = k->h;
	f->gen = k->gen;
	f->path = k->h->xstrdup(k->admin_socket);
	f->work.data = f;
	if (uv_queue_work(k->loop, &f->work, fetch_work, fetch_done) < 0) {
		free(f->path);
		free(f);
		return;
	}
	k->inflight = f;
}

void hx_fdkeep_fetch(hx_fdkeep *k)
{
	if (!k)
		return;
	if (k->inflight) {
		k->refetch = true;
		return;
	}
	start_fetch(k);
}

/* ---- serving them to the new master (on the loop, non-blocking) ---- */

static void conn_close(keep_conn *c)
{
	hx_fdkeep *k = c->k;
	for (keep_conn **p = &k->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, (uv_close_cb)free);
	close(c->fd);
}

/* One batch; false: the connection is done for (closed by the caller). */
static bool send_batch(keep_conn *c)
{
	hx_fdkeep *k = c->k;
	size_t n = k->nfds - c->sent;
	if (n > KEEP_BATCH)
		n = KEEP_BATCH;
	char payload[KEEP_BATCH * 6];
	memset(payload, 0, n * 6); /* no namespace, no interface, 4 zero bytes */
	union {
		char buf[CMSG_SPACE(KEEP_BATCH * sizeof(int))];
		struct cmsghdr align;
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct iovec iov = {.iov_base = payload, .iov_len = n * 6};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = cm.buf,
	                    .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(h), k->fds + c->sent, n * sizeof(int));
	if (sendmsg(c->fd, &mh, MSG_NOSIGNAL) != (ssize_t)(n * 6))
		return false;
	c->sent += n;
	return true;
}

static void on_conn(uv_poll_t *p, int status, int events)
{
	(void)events;
	keep_conn *c = p->data;
	hx_fdkeep *k = c->k;
	char buf[64];
	ssize_t r = status < 0 ? -1 : recv(c->fd, buf, sizeof(buf), 0);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		conn_close(c); /* the client is done (or gone) */
		return;
	}
	if (c->sent == SIZE_MAX) {
		size_t room = sizeof(c->req) - 1 - c->reqlen;
		memcpy(c->req + c->reqlen, buf, (size_t)r < room ? (size_t)r : room);
		c->reqlen += (size_t)r < room ? (size_t)r : room;
		c->req[c->reqlen] = '\0';
		if (!strchr(c->req, '\n'))
			return;
		int count = (int)k->nfds;
		if (strcmp(c->req, "_getsocks\n") != 0 ||
		    send(c->fd, &count, sizeof(count), MSG_NOSIGNAL) != (ssize_t)sizeof(count)) {
			conn_close(c);
			return;
		}
		c->sent = 0;
		k->h->log(k->ctx, REGENT_LOG_INFO,
		          "handing copies of %zu listening sockets to the new haproxy master over %s",
		          k->nfds, k->serve_path);
	}
	/* Asked, or an ack of the previous batch: the next batch, if any. */
	if (c->sent < k->nfds && !send_batch(c))
		conn_close(c);
}

static void on_listen(uv_poll_t *p, int status, int events)
{
	(void)events;
	hx_fdkeep *k = p->data;
	if (status < 0)
		return;
	int fd = accept4(k->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	keep_conn *c = k->h->xcalloc(1, sizeof(*c));
	c->k = k;
	c->fd = fd;
	c->sent = SIZE_MAX;
	c->poll.data = c;
	if (uv_poll_init(k->loop, &c->poll, fd) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = k->conns;
	k->conns = c;
	uv_poll_start(&c->poll, UV_READABLE, on_conn);
}

int hx_fdkeep_serve(hx_fdkeep *k)
{
	if (k->lfd >= 0)
		return 0;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(k->serve_path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, k->serve_path, strlen(k->serve_path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(k->serve_path);
	/* In the state directory (regent's own); 0600 right after the bind. */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(k->serve_path, 0600) < 0 ||
	    listen(fd, 4) < 0) {
		int rc = -errno;
		close(fd);
		unlink(k->serve_path);
		return rc;
	}
	k->lfd = fd;
	k->lpoll = k->h->xcalloc(1, sizeof(*k->lpoll));
	uv_poll_init(k->loop, k->lpoll, fd);
	k->lpoll->data = k;
	uv_poll_start(k->lpoll, UV_READABLE, on_listen);
	return 0;
}

void hx_fdkeep_unserve(hx_fdkeep *k)
{
	if (!k)
		return;
	while (k->conns)
		conn_close(k->conns);
	if (k->lfd < 0)
		return;
	uv_poll_stop(k->lpoll);
	uv_close((uv_handle_t *)k->lpoll, (uv_close_cb)free);
	k->lpoll = NULL;
	close(k->lfd);
	k->lfd = -1;
	unlink(k->serve_path);
}

void hx_fdkeep_free(hx_fdkeep *k)
{
	if (!k)
		return;
	hx_fdkeep_unserve(k);
	hx_fdkeep_drop(k);
	if (k->inflight)
		k->inflight->k = NULL; /* fetch_done frees it and closes what it got */
	free(k->admin_socket);
	free(k->serve_path);
	free(k);
}
