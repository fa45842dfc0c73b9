/* docker.h - the docker plugin's shared state between docker.c (the
 * daemon conversation and the cycle), ctrs.c (the table of containers and
 * what is reported for each) and checks.c (agent-run checks).  Internal:
 * not part of any ABI. */
#ifndef REGENT_DOCKER_H
#define REGENT_DOCKER_H

#include "decode.h"

#include <regent/plugin.h>

#include <uv.h>

#define MAX_INFLIGHT 8              /* concurrent inspects */
#define EVENT_LINE_MAX (4u << 20)   /* one /events line (labels included) */
#define SEEN_MAX 64                 /* recent events remembered to drop replays */

typedef struct state state;

/* One running container we know of. */
typedef struct ctr {
	state *st;
	struct ctr *next, *prev;
	char id[DK_ID_LEN + 1];
	char short_id[13];
	char name[128];        /* sanitised, for logs */
	regent_http_req *req;  /* inspect in flight */
	uint64_t epoch;        /* bumped by every event about it */
	uint64_t req_epoch;    /* epoch when the inspect was sent */
	uint64_t origin_ns;    /* time of the event that triggered the inspect */
	bool need_inspect;     /* an up-ward event wants a fresh inspect */
	bool queued;           /* waiting for an inspect slot */
	bool in_sync;          /* counted in st->sync_pending */
	bool stopping;         /* kill/stop seen: stays down until it starts again */
	char run[40];          /* State.StartedAt of the last inspect */
	uint64_t run_ns;       /* ... in ns (0: unknown) */
	char stop_run[40];     /* ... when it was seen stopping */
	bool warned;           /* its bad labels were reported once */
	bool listed;
	int stop_signal;
	long pid;              /* its main process (State.Pid), 0: unknown or not visible (pidwatch.c) */
	unsigned long long pid_start; /* ... its start time, so a reused pid is not taken for it */
	struct dk_pw *pw;      /* ... watched while the daemon is unreachable */
	dk_inst *up;           /* what is reported up for it */
	size_t nup;
	dk_inst *want;         /* what it should have while ready (checks not applied) */
	size_t nwant;
	struct dk_checker **chk; /* the agent-run checks of its instances that have one */
	size_t nchk;
} ctr;

typedef enum phase {
	PH_IDLE = 0, /* created, not started */
	PH_WAIT,     /* backoff before the next attempt */
	PH_LIST,     /* GET /containers/json */
	PH_INSPECT,  /* inspecting every listed container */
	PH_STREAM,   /* following /events */
	PH_STOPPED,
} phase;

struct state {
	regent_ctx *ctx;
	const regent_host *h;
	char *socket;
	char *base;    /* http://localhost/v1.41 */
	char *node;
	char *host_ip; /* NULL when unset */
	bool internal;
	uint64_t ping_interval, ping_timeout, req_timeout;
	phase ph;
	regent_http_req *list_req, *ev_req, *ping_req;
	uv_timer_t *retry_timer, *ping_timer;
	regent_backoff bo;
	ctr *ctrs;
	size_t nctrs, inflight, nqueued, sync_pending;
	uint64_t list_start_ns;
	uint64_t last_ns; /* newest event time seen */
	struct seen {
		uint64_t time_ns;
		char key[DK_ID_LEN + 48];
	} seen[SEEN_MAX]; /* ring of recent events: since is inclusive */
	size_t seen_next;
	bool synced_once, failing;
	unsigned failures;
	regent_failure fail_log; /* how the current outage was logged (host->failure_note) */
	regent_metric *m_events, *m_resyncs, *m_errors, *m_containers, *m_skipped, *m_reconnects;
	regent_metric *m_checks, *m_check_fail;
	size_t nchecks; /* checkers alive */
	struct dk_pidwatch *pidwatch; /* pidwatch.c */
};


/* ctrs.c */
ctr *dk_ctr_find(state *st, const char *id);
ctr *dk_ctr_new(state *st, const char *id, const char *name);
/* Frees what is reported, the wanted set, the checkers and the process
 * watch (no report). */
void dk_ctr_free_up(ctr *c);
void dk_ctr_down(state *st, ctr *c, const char *why, uint64_t origin_ns);
/* Cancels c's inspect (in flight or queued).  A slot freed that way goes to
 * no queued inspect by itself: the caller pumps the queue (docker.c). */
void dk_ctr_unqueue(state *st, ctr *c);
/* Forgets c, taking its instances down first when report is set (its
 * inspect cancelled: see dk_ctr_unqueue). */
void dk_ctr_remove(state *st, ctr *c, bool report, const char *why, uint64_t origin_ns);
bool dk_stop_signal(const ctr *c, int sig);
/* An inspect answer: what c should have now (may free c). */
void dk_ctr_apply(state *st, ctr *c, const dk_container *dc);

/* pidwatch.c: containers' main processes, watched while the daemon is
 * unreachable (their exit deregisters them). */
/* An inspect of running c: its State.Pid (checked and recorded with its start time). */
void dk_pid_record(state *st, ctr *c, long pid);
/* The event stream is lost: watch every known container's process. */
void dk_pid_watch_start(state *st);
/* The daemon answered (or the source stops): the listing takes over. */
void dk_pid_watch_stop(state *st);
void dk_pid_forget(ctr *c);
void dk_pid_free(state *st);

/* checks.c: one agent-run check of one instance, on the loop. */
typedef struct dk_checker dk_checker;
/* Its verdict changed (passing <-> failing); arg is the container. */
typedef void (*dk_checker_cb)(ctr *c);
/* Starts checking in (copied); it is failing until `rise` successes. */
dk_checker *dk_checker_new(state *st, ctr *c, const dk_inst *in, dk_checker_cb cb);
bool dk_checker_passing(const dk_checker *k);
/* Whether it checks exactly this instance (id, address, port, check). */
bool dk_checker_same(const dk_checker *k, const dk_inst *in);
const char *dk_checker_id(const dk_checker *k);
/* Stops it (a probe in flight is cancelled); no callback afterwards. */
void dk_checker_free(dk_checker *k);

#endif
