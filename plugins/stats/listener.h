/* listener.h - the stats sink's listening socket (listener.c). */
#ifndef REGENT_STATS_LISTENER_H
#define REGENT_STATS_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

/* A non-blocking listening socket on addr in *out, or a negative errno:
 * -EADDRINUSE when another process listens there.  A listener that this
 * process already has on addr (the instance a reload replaces) is shared
 * (a dup of the same socket: one accept queue), so the new instance serves
 * before the old one stops and nothing waiting to be accepted is lost. */
int regent_stats_listen(const struct sockaddr_storage *addr, socklen_t len, int *out);

#endif
