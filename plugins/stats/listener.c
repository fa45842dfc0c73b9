/* listener.c - the stats sink's listening sockets, shared so that a
 * reload's new instance can serve the address the running instance still
 * serves (make-before-break).  The plugin keeps one list of the sockets
 * its instances listen on (this .so is loaded once per process, and its
 * instances run on the agent's one loop): an instance that wants an
 * address already in the list gets a dup of that very socket, so one
 * accept queue serves both and nothing queued is lost when the old
 * instance lets go of its descriptor (two SO_REUSEPORT sockets would each
 * have their own queue, and closing the old one resets the connections
 * waiting in it).  An address not in the list is bound anew: anyone
 * else's listener there, in another process or in this one (the haproxy
 * sink's copies of haproxy's sockets), makes the bind fail with
 * EADDRINUSE.  The list holds a descriptor of its own per socket and
 * closes it when its last user lets go, so the port closes as soon as no
 * instance serves it.  O(listeners) per start, no file read (an earlier
 * version searched /proc/net/tcp and /proc/self/fd: O(every socket of
 * the host) on the loop, ~9 ms with 6,400 sockets). */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct regent_stats_listener {
	struct sockaddr_storage addr;
	int fd;         /* the list's own descriptor of the socket */
	unsigned users; /* instances holding a dup of it */
	struct regent_stats_listener *next;
};

static regent_stats_listener *listeners;

/* The same local address: family, port, address (and IPv6 scope).  Port
 * 0 (the kernel picks one) is never the same as another: each such
 * instance gets a socket of its own. */
static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port && x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port && x->sin6_port == y->sin6_port &&
		       x->sin6_scope_id == y->sin6_scope_id &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

static int bind_new(const struct sockaddr_storage *addr, socklen_t len)
{
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (addr->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, 128) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

int regent_stats_listen(const struct sockaddr_storage *addr, socklen_t len, int *out,
                        regent_stats_listener **held)
{
	regent_stats_listener *l = listeners;
	while (l && !same_addr(&l->addr, addr))
		l = l->next;
	bool fresh = !l;
	if (fresh) {
		int fd = bind_new(addr, len);
		if (fd < 0)
			return fd;
		l = calloc(1, sizeof(*l));
		if (!l) {
			close(fd);
			return -ENOMEM;
		}
		memcpy(&l->addr, addr, sizeof(*addr));
		l->fd = fd;
	}
	int fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		int e = -errno;
		if (fresh) {
			close(l->fd);
			free(l);
		}
		return e;
	}
	if (fresh) {
		l->next = listeners;
		listeners = l;
	}
	l->users++;
	*out = fd;
	*held = l;
	return 0;
}

void regent_stats_unlisten(regent_stats_listener *l)
{
	if (!l || --l->users > 0)
		return;
	for (regent_stats_listener **pp = &listeners; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	close(l->fd);
	free(l);
}

size_t regent_stats_listeners(void)
{
	size_t n = 0;
	for (const regent_stats_listener *l = listeners; l; l = l->next)
		n++;
	return n;
}
