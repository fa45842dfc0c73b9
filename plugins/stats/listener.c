/* listener.c - the stats sink's listening socket, made so that a reload's
 * new instance can serve the address the running instance still serves
 * (make-before-break): before it binds, the kernel's socket tables tell
 * whether someone already listens there; a listener of this very process
 * (the instance being replaced) is shared - the new instance gets a dup of
 * the same socket, so one accept queue serves both and nothing queued is
 * lost when the old instance closes its descriptor (two SO_REUSEPORT
 * sockets would each have their own queue, and closing the old one resets
 * the connections waiting in it).  Anyone else's listener makes a plain
 * bind fail with EADDRINUSE. */
#include "listener.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel's text for a local address in /proc/net/tcp{,6}: each 32-bit
 * word of the address as the host reads it, in hex, then the port. */
static void proc_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uint32_t w;
		memcpy(&w, &a->sin_addr, 4);
		snprintf(out, n, "%08X:%04X", w, ntohs(a->sin_port));
		return;
	}
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
	uint32_t w[4];
	memcpy(w, &a->sin6_addr, 16);
	snprintf(out, n, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3], ntohs(a->sin6_port));
}

/* The inodes of the sockets listening on want (0 when none): up to max. */
static size_t listening_inodes(const char *table, const char *want, unsigned long *ino,
                               size_t max)
{
	FILE *f = fopen(table, "re");
	if (!f)
		return 0;
	char line[512];
	size_t n = 0;
	if (!fgets(line, sizeof(line), f)) { /* the header */
		fclose(f);
		return 0;
	}
	while (n < max && fgets(line, sizeof(line), f)) {
		char local[64], st[8];
		unsigned long inode;
		if (sscanf(line, "%*s %63s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &inode) != 3)
			continue;
		if (strcmp(st, "0A") == 0 && strcmp(local, want) == 0) /* TCP_LISTEN */
			ino[n++] = inode;
	}
	fclose(f);
	return n;
}

/* The descriptor of this process that is the socket inode, or -1. */
static int ours(unsigned long inode)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	char want[48];
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	int found = -1;
	for (struct dirent *e; found < 0 && (e = readdir(d));) {
		char path[300], target[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(path, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (strcmp(target, want) == 0)
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

int regent_stats_listen(const struct sockaddr_storage *addr, socklen_t len, int *out)
{
	char want[64];
	proc_addr(addr, want, sizeof(want));
	unsigned long ino[16];
	size_t n = listening_inodes(addr->ss_family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6",
	                            want, ino, 16);
	for (size_t i = 0; i < n; i++) {
		int mine = ours(ino[i]);
		if (mine < 0)
			return -EADDRINUSE; /* another process listens there */
		int fd = fcntl(mine, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		*out = fd;
		return 0;
	}
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
	*out = fd;
	return 0;
}
