/* listener.h - the stats sink's listening sockets (listener.c). */
#ifndef REGENT_STATS_LISTENER_H
#define REGENT_STATS_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A listening socket of the plugin's list (opaque). */
typedef struct regent_stats_listener regent_stats_listener;

/* A non-blocking listening socket on addr: a descriptor of its own in
 * *out (the caller closes it, or hands it to libmicrohttpd) and *held,
 * the list's entry, let go with regent_stats_unlisten(); or a negative
 * errno (-EADDRINUSE: someone else listens there).  A socket an instance
 * of this plugin already listens on at addr (the instance a reload
 * replaces) is shared: *out is a dup of the same socket (one accept
 * queue), so the new instance serves before the old one stops and
 * nothing waiting to be accepted is lost.  Loop thread only. */
int regent_stats_listen(const struct sockaddr_storage *addr, socklen_t len, int *out,
                        regent_stats_listener **held);

/* An instance no longer listens (its own descriptor closed or about to
 * be): the socket closes once no instance holds it.  NULL: nothing. */
void regent_stats_unlisten(regent_stats_listener *l);

/* How many sockets the list holds (tests). */
size_t regent_stats_listeners(void);

#endif
