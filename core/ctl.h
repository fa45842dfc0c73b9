/* ctl.h - the control socket (server side, core/ctl.c) and the
 * `regent ctl` command (client side, core/ctl_client.c). */
#ifndef REGENT_CORE_CTL_H
#define REGENT_CORE_CTL_H

#include "host.h"

/* Default [agent] control_socket. */
#define REGENT_CTL_DEFAULT_SOCKET "/run/regent/regent.sock"
/* The name of the drain marker in [agent] state_dir. */
#define REGENT_CTL_DRAINED_FILE "drained"
/* Requests are one line of at most this many bytes... */
#define REGENT_CTL_MAX_REQUEST 4096
/* ...that must arrive within this time. */
#define REGENT_CTL_REQUEST_TIMEOUT_MS 5000
/* Connections served at once; more are answered with an error. */
#define REGENT_CTL_MAX_CLIENTS 16

typedef struct regent_ctl regent_ctl;

/* Reads the drain marker (sets a->drained) and listens on [agent]
 * control_socket.  Call before regent_agent_start(), before the loop
 * runs (it makes a few blocking calls).  Returns 0 and sets *out (NULL
 * when the socket is disabled or the default path is unusable, which is
 * logged), or a negative errno when the agent must not start (logged). */
int regent_ctl_start(regent_agent *a, regent_ctl **out);
/* Stops listening, closes every connection and removes the socket file.
 * The object is freed once the loop has run the close callbacks. */
void regent_ctl_close(regent_ctl *ctl);

/* Drain: deregisters every local instance from every started store and
 * persists the marker; undrain removes it and registers them again.
 * Return the number of local instances, or a negative errno. */
int regent_ctl_drain(regent_agent *a, char *warn, size_t warnlen);
int regent_ctl_undrain(regent_agent *a, char *warn, size_t warnlen);

/* `regent ctl ...`: argv[0] is "ctl".  Returns the exit code. */
int regent_ctl_main(int argc, char **argv);

#endif
