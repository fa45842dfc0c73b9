/* decode.h - the docker plugin's internal interface to decode.c: pure
 * functions that turn Docker Engine API JSON (container list, container
 * inspect, one /events line) into the instances a container should have.
 * No I/O, no loop: the messages and ids it builds are allocated through
 * the host table it is given (dk_settings.h: the core's own in the unit
 * tests and the fuzzer).  Unit-tested on recorded JSON. */
#ifndef REGENT_DOCKER_DECODE_H
#define REGENT_DOCKER_DECODE_H

#include <regent/plugin.h>

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DK_ID_LEN 64 /* a full container id: 64 lowercase hex digits */
/* The core's limits on one instance (core.h): more tags or regent.meta.*
 * labels are skipped with one warning, so the core never refuses the
 * instance as a whole. */
#define DK_MAX_TAGS 64
#define DK_MAX_META 64

typedef enum dk_health {
	DK_HEALTH_NONE = 0, /* no HEALTHCHECK */
	DK_HEALTH_STARTING,
	DK_HEALTH_HEALTHY,
	DK_HEALTH_UNHEALTHY,
} dk_health;

/* A decoded GET /containers/{id}/json.  Strings point into root. */
typedef struct dk_container {
	json_t *root;
	char id[DK_ID_LEN + 1];
	char short_id[13];
	const char *name;         /* without the leading '/', "" when absent */
	const char *image;        /* Config.Image, "" when absent */
	const char *network_mode; /* HostConfig.NetworkMode, "" when absent */
	const char *stop_signal;  /* Config.StopSignal or NULL */
	const char *started_at;   /* State.StartedAt (tells runs apart), "" when absent */
	long pid;                 /* State.Pid: its main process (daemon's view), 0 when absent */
	bool running, paused;
	dk_health health;
	json_t *labels;    /* Config.Labels (object) or NULL */
	json_t *env;       /* Config.Env (array of "K=V") or NULL */
	json_t *exposed;   /* Config.ExposedPorts (object) or NULL */
	json_t *ports;     /* NetworkSettings.Ports (object) or NULL */
	json_t *networks;  /* NetworkSettings.Networks (object) or NULL */
	const char *ip;    /* NetworkSettings.IPAddress or "" */
} dk_container;

/* Decodes an inspect body.  Returns 0, or -EINVAL with why filled. */
int dk_container_parse(const char *json, size_t len, dk_container *c, char *why, size_t whylen);
void dk_container_free(dk_container *c);

/* Whether a running container may have instances up right now: running,
 * not paused, and healthy when it has a HEALTHCHECK.  *why (static text)
 * says why not. */
bool dk_container_ready(const dk_container *c, const char **why);

/* How instances are made (from the plugin's and the agent's config). */
typedef struct dk_settings {
	const regent_host *h; /* xasprintf, xrealloc, valid_service (ABI 1.4) */
	const char *node;    /* instance id prefix */
	const char *host_ip; /* may be NULL when internal */
	bool internal;       /* container IP + private port */
} dk_settings;

/* An agent-run check of one instance (labels regent.check*, or the
 * service's agent_check* keys): DK_CHECK_NONE when it has none. */
typedef enum dk_check_type {
	DK_CHECK_NONE = 0,
	DK_CHECK_HTTP, /* GET (or method) http://address:port<path>, status expected */
	DK_CHECK_TCP,  /* a TCP connect to address:port */
	DK_CHECK_EXEC, /* sh -c <command> inside the container (Docker exec), exit 0 */
} dk_check_type;

typedef struct dk_check {
	dk_check_type type;
	char *arg;       /* http: the path; exec: the command; NULL for tcp (owned) */
	char method[16]; /* http */
	int status;      /* http: the status expected, 0 = any 2xx or 3xx */
	uint32_t interval_ms, timeout_ms;
	uint16_t rise, fall;
	bool timeout_set; /* given, not the default (which follows a short interval) */
} dk_check;

#define DK_CHECK_INTERVAL_MS 2000
#define DK_CHECK_TIMEOUT_MS 1000
#define DK_CHECK_RISE 2
#define DK_CHECK_FALL 3

/* "http:/path", "tcp" or "exec:command" into c (defaults for the rest).
 * 0, or -EINVAL with why filled, or -ENOMEM. */
int dk_check_parse(const char *spec, dk_check *c, char *why, size_t whylen);
/* One parameter: interval, timeout (durations: "500ms", "2s", "1m", a bare
 * number is seconds), rise, fall (1-100), method (http), status (100-599). */
int dk_check_param(dk_check *c, const char *name, const char *value, char *why, size_t whylen);
/* timeout below interval etc.: 0 or -EINVAL with why. */
int dk_check_validate(const dk_check *c, char *why, size_t whylen);
void dk_check_free(dk_check *c);
bool dk_check_equal(const dk_check *a, const dk_check *b);
/* "http GET /health" etc., for logs. */
void dk_check_describe(const dk_check *c, char *out, size_t outlen);

/* One instance, owning its strings. */
typedef struct dk_inst {
	char *service;
	char *id;
	char *address;
	uint16_t port;
	uint16_t private_port;
	regent_proto proto;
	char **tags;
	size_t ntags;
	regent_kv *meta; /* key and value owned (malloc'd) */
	size_t nmeta;
	dk_check check;  /* agent-run check, type NONE when none */
} dk_inst;

typedef struct dk_result {
	const regent_host *h; /* the settings' host (dk_build sets it) */
	dk_inst *insts;
	size_t n;
	char **warnings; /* bad labels/env: log once at warn level */
	size_t nwarnings;
	char **notes;    /* ports without an address etc.: debug level */
	size_t nnotes;
} dk_result;

/* The instances of a container (regardless of its health: the caller
 * gates with dk_container_ready).  Always fills r (maybe empty); returns
 * 0 or -ENOMEM. */
int dk_build(const dk_container *c, const dk_settings *s, dk_result *r);
void dk_result_free(dk_result *r);
/* Deep copy of one instance (for keeping what was reported). */
int dk_inst_copy(dk_inst *dst, const dk_inst *src);
/* Same id, service, address, ports, tags, meta and check. */
bool dk_inst_equal(const dk_inst *a, const dk_inst *b);
void dk_inst_free(dk_inst *i);
/* The borrowed view the host table takes. */
void dk_inst_view(const dk_inst *i, regent_instance *out);

/* GET /containers/json: the ids of the listed containers (malloc'd array
 * of DK_ID_LEN+1 strings).  Entries with a malformed id are skipped and
 * counted in *bad. */
int dk_list_parse(const char *json, size_t len, char (**ids)[DK_ID_LEN + 1], size_t *n,
                  size_t *bad, char *why, size_t whylen);

typedef enum dk_action {
	DK_EV_OTHER = 0,
	DK_EV_START,
	DK_EV_DIE,
	DK_EV_STOP,
	DK_EV_KILL,
	DK_EV_DESTROY,
	DK_EV_PAUSE,
	DK_EV_UNPAUSE,
	DK_EV_HEALTHY,
	DK_EV_UNHEALTHY,
} dk_action;

typedef struct dk_event {
	bool container;  /* Type == "container" */
	dk_action action;
	char action_text[48]; /* the raw Action, truncated */
	char id[DK_ID_LEN + 1];
	char name[128];  /* Actor.Attributes.name, sanitised, may be "" */
	uint64_t time_ns;
	int signal;      /* kill: the signal number, else -1 */
} dk_event;

/* Decodes one /events line.  Returns 0, or -EINVAL with why filled. */
int dk_event_parse(const char *line, size_t len, dk_event *ev, char *why, size_t whylen);

/* The seed's rule: the image's repository name without registry,
 * namespace, tag or digest ("jwilder/whoami:latest" -> "whoami").  False
 * when there is none (an image id). */
bool dk_image_service(const char *image, char *out, size_t outlen);

/* An RFC 3339 time as Docker writes it ("2026-11-24T22:28:22.751809633Z",
 * or with a +hh:mm offset) in ns since the epoch; 0 when unset ("0001-...")
 * or malformed. */
uint64_t dk_parse_time(const char *s);

/* A signal given as "15", "SIGTERM" or "TERM": its number, or -1. */
int dk_signal_number(const char *s);

/* Copies untrusted text for a log line: control and non-ASCII bytes as
 * \xNN, a backslash as two, quotes kept; at most outlen-1 bytes (cut with
 * "..."). */
void dk_escape(const char *in, char *out, size_t outlen);

/* "a:b" -> whether the address is a loopback one (127/8, ::1, localhost). */
bool dk_is_loopback(const char *addr);

/* ---- between decode.c and labels.c only ---- */

/* Object member as a string, or NULL. */
const char *dk_jstr(json_t *obj, const char *key);
/* Appends s (malloc'd, taken even on failure) to an array (grown with
 * h->xrealloc): 0, or -ENOMEM when s is NULL (a failed strdup). */
int dk_push_str(const regent_host *h, char ***arr, size_t *n, char *s);
/* Adds a formatted message (h->xvasprintf) once (identical text is not
 * repeated).  0. */
int dk_add_msg(const regent_host *h, char ***arr, size_t *n, const char *fmt, ...)
	REGENT_PRINTF(4, 5);
/* In a function with a result `r` (notes/warnings arrays) returning an int:
 * add a note or a warning, or return -ENOMEM. */
#define DK_NOTE(...)                                                    \
	do {                                                            \
		if (dk_add_msg(r->h, &r->notes, &r->nnotes, __VA_ARGS__) < 0) \
			return -ENOMEM;                                 \
	} while (0)
#define DK_WARN(...)                                                          \
	do {                                                                  \
		if (dk_add_msg(r->h, &r->warnings, &r->nwarnings, __VA_ARGS__) < 0) \
			return -ENOMEM;                                       \
	} while (0)

/* labels.c: whether label regent.ignore skips the whole container. */
bool dk_container_ignored(const dk_container *c);
/* labels.c: everything the labels and env say about one port -- whether
 * it is skipped (*skip), its service name, instance id, tags and meta --
 * filled into in (service, id, tags, meta; the caller sets the rest).
 * nports is the number of usable ports of the container (registrator's
 * <name>-<port> rule); r collects warnings and notes and holds the
 * instances built so far (an id is never used twice).  0 or -ENOMEM. */
int dk_port_labels(const dk_container *c, const dk_settings *s, uint16_t port,
                   regent_proto proto, size_t nports, dk_result *r, const char *who,
                   dk_inst *in, bool *skip);

#endif
