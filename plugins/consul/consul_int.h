/* consul_int.h - the Consul store plugin's state, shared by its files:
 *   consul.c       configuration, lifecycle (create, start, stop, destroy),
 *                  HTTP helpers, health
 *   consul_reg.c   registration: the table of services, register / pass /
 *                  deregister, the reconcile of a start, the stop-time
 *                  deregistrations
 *   consul_sched.c the registration side's queues: passes by deadline, work
 *   consul_state.c the state file that hands the registered services from
 *                  a reload's old instance to its replacement
 *   consul_disc.c  discovery: the blocking queries (the service list, the
 *                  checks) that mark services dirty
 *   consul_read.c  discovery per service: the reads, their queue, the
 *                  settle, discovery's failure accounting
 * Not installed; every name here is hidden in the plugin's .so. */
#ifndef REGENT_CONSUL_INT_H
#define REGENT_CONSUL_INT_H

#include "consul_util.h"

#include <regent/plugin.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct consul consul;

/* One blocking query (discovery): /v1/catalog/services or
 * /v1/health/state/any. */
typedef struct consul_watch {
	consul *c;
	const char *what;  /* "the service list", "the health of every check" */
	char *path;        /* path and the fixed query, ending in '?' or a param */
	uint64_t index;
	uint64_t last_start;
	unsigned churn;    /* answers in a row with a new index, each soon after its start */
	regent_backoff bo;
	regent_http_req *req;
	uv_timer_t *timer;
	bool failing;
	bool warned_index; /* answered without X-Consul-Index */
	bool done_once;    /* a first successful answer was handled */
	bool oneshot;      /* a plain read, not repeated (c->state_now) */
	/* handles a 200 answer; returns false when it called consul_watch_fail */
	bool (*on_answer)(struct consul_watch *w, regent_http_req *req,
	                  const regent_http_result *res, uint64_t got, bool filtered);
} consul_watch;

/* One service of the catalog: read with /v1/health/service/<name> when it
 * changed (at most CONSUL_READ_CAP reads at a time). */
typedef struct consul_svc {
	consul *c;
	char *name;
	char *path;
	uint64_t sig;      /* signature of its checks in /v1/health/state/any */
	uint64_t tags_sig; /* of its tags in /v1/catalog/services */
	bool first_done, dirty, queued, failing, seen;
	bool held;         /* a read that removed instances waits for the settle (consul_read.c) */
	size_t last_n;     /* instances its last applied read had */
	bool checkless;    /* its last read had an instance without a check of its own */
	regent_http_req *req;
	struct consul_svc *qprev, *qnext;
} consul_svc;

typedef enum reg_op { OP_NONE = 0, OP_REGISTER, OP_DEREGISTER, OP_PASS } reg_op;

/* One service this node's agent should (or should no longer) hold: a
 * local instance, or one adopted from the agent on start. */
typedef struct reg {
	consul *c;
	char *cid;         /* Consul service id (the map's key) */
	char *id;          /* regent instance id */
	char *service;
	char *body;        /* desired registration; NULL: deregister it */
	char *sent;        /* body of the register in flight */
	char *pass_path;   /* /v1/agent/check/pass/<escaped check id> */
	char *dereg_path;  /* /v1/agent/service/deregister/<escaped id> */
	char hash[CONSUL_HASH_LEN];       /* of body */
	char agent_hash[CONSUL_HASH_LEN]; /* what the agent held on start */
	bool synced;       /* the agent acknowledged body */
	bool known;        /* the agent may hold the service */
	bool adopted;      /* held by the agent on start, not claimed by a source yet */
	bool in_work;      /* on the work list (a register, deregister or free may be due) */
	bool start_wait;   /* its body was due when the start's listing was answered:
	                    * the start waits for it (c->start_todo) */
	bool waiting;      /* failed: waits for the retry timer */
	bool failed;       /* the last attempt failed */
	bool rejected;     /* 400: not retried until the instance changes */
	bool stop_todo;    /* stopping: a deregistration still to send */
	reg_op op;         /* in flight */
	bool op_was_known; /* a register that replaces a known service */
	uint64_t pass_at;  /* when its next TTL pass is due (loop ms), while hidx != 0 */
	uint64_t op_sent;  /* when the request in flight was sent (loop ms) */
	uint64_t synced_at;/* when the agent acknowledged body (loop ms) */
	uint64_t ok_sent;  /* when its last acknowledged register or pass was sent (0: unknown) */
	bool demoted;      /* its TTL ran out before its pass could go: on c->dhead, passed
	                    * only when no live check's pass is due */
	size_t hidx;       /* 1-based slot in c->pheap (passes by deadline); 0: none due */
	unsigned seen;     /* c->relist_gen when the last relist showed it */
	regent_http_req *req;
	struct reg *prev, *next;   /* every entry */
	struct reg *wprev, *wnext; /* the work list */
	struct reg *dprev, *dnext; /* the demoted list */
} reg;

/* The state file as read (consul_state.c). */
typedef struct consul_state_file {
	bool ours_pid;     /* written by this process */
	bool deregistering;/* its owner is stopping and deregistering */
	char *owner;       /* the writing instance's token */
	char *agent;       /* the agent its owner registers at */
	char *node;        /* the node its owner registers for */
	regent_map *ids;         /* Consul service ids its owner holds (values: (void *)1) */
} consul_state_file;

struct consul {
	regent_ctx *ctx;
	const regent_host *h;
	/* config */
	char *base;
	char *shown;       /* base without credentials, for logs */
	char *unix_path;
	char *token_hdr;
	const char *headers[2];
	size_t nheaders;
	const char *ca, *cert, *key, *dc;
	const char *const *tags;
	size_t ntags;
	const char *const *ignore;
	size_t nignore;
	uint64_t ttl_ms, dereg_ms, wait_ms, timeout_ms, reconcile_ms;
	size_t max_body; /* max_response_size */
	unsigned states;   /* CONSUL_STATE_* that count as serving */
	bool dereg_on_stop;
	/* registration (consul.c) */
	regent_map *regs;        /* Consul service id -> struct reg */
	struct reg *head, *tail;
	struct reg *whead, *wtail; /* entries that may need a register/deregister/free */
	struct reg **pheap;      /* entries that get TTL passes, a min-heap on pass_at */
	struct reg *dhead, *dtail; /* demoted: their TTL ran out, passed with spare capacity */
	size_t pheap_n, pheap_cap;
	size_t inflight, inflight_pass;
	size_t n_synced;         /* entries with synced set (the registered gauge) */
	bool pass_hold;          /* a pass failed: passes wait for the retry timer */
	bool write_ok;           /* the agent accepted a register or a pass */
	bool spread_first;       /* a reload's hand-over: first passes spread (consul_reg.c) */
	/* a pass answered "unknown check": which services did the agent lose? */
	regent_http_req *relist_req;
	uv_timer_t *relist_timer;  /* the next listing, ttl/3 after the previous one */
	uint64_t relist_sent;
	unsigned relist_gen;
	bool relist_again;
	size_t relist_n;         /* registered again since the last log line */
	char *relist_why;        /* the first lost check's instance id */
	size_t reg_failing;
	regent_failure reg_outage; /* since the side first failed (consul_outage_note) */
	regent_backoff reg_bo;
	uv_timer_t *pass_timer, *retry_timer, *list_timer, *adopt_timer;
	char reg_problem[320];
	/* the reconcile of a start (consul.c) */
	bool listing;      /* GET /v1/agent/services not answered yet */
	bool list_failing;
	regent_http_req *list_req;
	bool start_pending;/* host->started() not called yet */
	size_t start_todo; /* entries with start_wait set */
	size_t adopted_n, kept_n;
	/* discovery (consul_disc.c) */
	bool watching;
	consul_watch *catalog, *state;
	consul_watch *state_now; /* one plain read of the checks: explains a moved list */
	regent_map *svcs;        /* name -> consul_svc */
	regent_map *sigs;        /* the last /v1/health/state/any: name -> signature */
	uint64_t node_sig;
	consul_svc *qhead, *qtail;
	size_t reads;
	uv_timer_t *read_timer;
	uint64_t pending_move; /* service list index not (yet) explained by a check change */
	size_t checkless_n;    /* services with checkless set */
	uint64_t checkless_last; /* when they were last marked dirty for a list move (ms) */
	uv_timer_t *checkless_timer; /* the next such sweep, CHECKLESS_GAP_MS after that */
	/* no token configured: whether the agent enforces ACLs (GET
	 * /v1/agent/self answered 403), so that an answer holding nothing
	 * usable is a filtered one */
	bool acls_on;
	regent_http_req *probe_req;
	uv_timer_t *probe_timer;
	regent_backoff read_bo;
	regent_map *warned;      /* invalid service names already warned about */
	bool sync_open, synced_once;
	uint64_t first_wait_ms;  /* first_read_wait (0: no bound) */
	uv_timer_t *first_timer; /* started with the first full read: its bound */
	bool first_armed;        /* the bound started (the list and the checks were read) */
	bool first_expired;      /* the bound passed: services not read yet go as unknown */
	size_t disc_failing;
	regent_failure disc_outage;
	/* After the agent was away (the recovery check went unanswered) and
	 * answers again: until settle_until, a read that removes instances of
	 * a service is held and read again at its end (an agent that comes
	 * back after a ttl restores its checks critical until their owners
	 * pass them again, within about a second). */
	uint64_t settle_until; /* now_ms + CONSUL_SETTLE_MS at the outage's end */
	uv_timer_t *settle_timer;
	size_t settle_held; /* services held in this settle */
	/* the recovery check (consul_recover.c) */
	uv_timer_t *recover_timer;
	regent_http_req *recover_req;
	bool recover_away; /* it went unanswered since the sides began to wait */
	char disc_problem[320];
	/* the state file (consul_state.c) */
	char *state_path;  /* NULL: no usable state_dir */
	char *state_prev;  /* the file as this instance found it at start */
	char token[48];    /* this instance's owner token */
	char *agent_id;    /* "<address>[ via <socket>]" without credentials */
	bool owns;         /* this instance writes the file */
	bool state_dirty;
	bool state_removing; /* marked "deregistering" by this instance */
	uv_timer_t *state_timer, *gate_timer;
	uint64_t gate_since;
	struct consul_state_q *state_q; /* the path's queue of changes, shared with the
	                                  * other instances of this process */
	/* lifecycle */
	bool started, stopping;
	size_t stop_pending, stop_ok, stop_failed;
	/* metrics */
	regent_metric *m_req[6], *m_err[6], *m_rereg, *m_registered, *m_watched, *m_reads;
};

enum { M_REGISTER, M_DEREGISTER, M_PASS, M_CATALOG, M_HEALTH, M_LIST };

#define CONSUL_READ_CAP 16 /* /v1/health/service reads at once */

/* consul.c */
void consul_count(consul *c, regent_metric **m, int op);
void consul_update_health(consul *c);
/* A failure of one side (PART: registration or discovery), logged as
 * "PART: MSG; THEN" (its health reason reads the same) at the level
 * host->failure_note gives it: one line for an outage, repeats at debug, a
 * reminder a minute.  ongoing: the side had failed and not worked since.
 * consul_outage_end logs WHAT "again after 8.9 s and 17 failures" when the
 * side works again. */
/* How long after discovery works again a read that removes instances is
 * held (consul_disc.c settle_holds): the owners' recovery check (a
 * second) and their passes, with room for a loaded machine. */
#define CONSUL_SETTLE_MS 3000
#define CONSUL_REG_THEN "retrying"
#define CONSUL_DISC_THEN "keeping the last catalog, retrying"
void consul_outage_note(consul *c, regent_failure *f, bool ongoing, regent_log_level level,
                        const char *part, const char *msg, const char *then);
void consul_outage_end(consul *c, const regent_failure *f, const char *what);

/* consul_recover.c: a side began to wait out a retry's backoff: check the
 * agent once a second, and when it answers again after it did not, resume
 * what waits (consul_reg_resume, consul_disc_resume).  stop: at stop and
 * destroy. */
void consul_recover_want(consul *c);
void consul_recover_stop(consul *c);
/* consul_reg.c: sends what the work list and the pass heap hold, within
 * the in-flight limits; a pass every ttl/3; the registered gauge. */
void consul_pump(consul *c);
uint64_t consul_pass_every(const consul *c);
void consul_registered_gauge(consul *c);
/* consul_relist.c: a pass of r was answered "unknown check": register it
 * again, and find with one listing which others the agent lost. */
void consul_lost_check(consul *c, reg *r);

/* consul_reg.c / consul_disc.c: whether a side failed and has not worked
 * since (a retry waits out its backoff, or is in flight), and sending the
 * retries that wait now. */
bool consul_reg_waiting(consul *c);
void consul_reg_resume(consul *c);
bool consul_disc_waiting(consul *c);
void consul_disc_resume(consul *c);
/* The agent was away and answers again: for CONSUL_SETTLE_MS a read that
 * removes instances is held (consul_read.c). */
void consul_disc_settle(consul *c);
regent_http_req *consul_send(consul *c, const char *method, const char *path, const char *body,
                             uint64_t timeout_ms, regent_http_done_cb cb, void *arg, int *err);
/* http_describe, or for an answer over max_response_size the setting to
 * raise. */
void consul_describe(consul *c, const regent_http_result *res, char *buf, size_t len);

/* consul_reg.c */
void consul_reg_start(consul *c);   /* timers, then the listing of the agent's services */
int consul_reg_stop(consul *c, regent_stop_reason why); /* 0 or REGENT_PENDING */
void consul_reg_destroy(consul *c);
void consul_register_instance(void *self, const regent_instance *inst);
void consul_deregister_instance(void *self, const regent_instance *inst);

/* consul_state.c */
void consul_state_open(consul *c);    /* at start: path, the file as found */
void consul_state_claim(consul *c);   /* ready: this instance owns the file now */
void consul_state_changed(consul *c); /* the set of held services changed */
/* A stopping instance of this section deregisters at the same agent: the
 * start waits (re-reads the file) so its requests cannot overtake those. */
bool consul_state_gate(consul *c);
/* Another instance of this process owned the file when this one started
 * (a reload): it keeps the services passing until this one is ready. */
bool consul_state_handover(consul *c);
/* At stop: marks r->stop_todo on the services to deregister and returns
 * why in *because; the file is handed over, restored or removed. */
size_t consul_state_on_stop(consul *c, regent_stop_reason why, const char **because);
void consul_state_stopped(consul *c); /* the stop's deregistrations are answered */
void consul_state_close(consul *c);
bool consul_state_read(consul *c, const char *text, consul_state_file *f);
void consul_state_file_free(consul *c, consul_state_file *f);

/* consul_sched.c: the passes by deadline and the work list */
void consul_pass_at(consul *c, reg *r, uint64_t at); /* next TTL pass of r due at `at` (loop ms) */
void consul_pass_cancel(consul *c, reg *r);          /* no pass of r due (nor demoted) */
void consul_pass_demote(consul *c, reg *r);          /* from the heap to the demoted list */
bool consul_pass_wanted(const reg *r);               /* the agent holds r for us: pass it */
void consul_set_synced(consul *c, reg *r, bool v);   /* r->synced, counted in c->n_synced */
void consul_work_add(consul *c, reg *r);
void consul_work_del(consul *c, reg *r);

/* consul_disc.c */
void consul_disc_start(consul *c);
void consul_disc_stop(consul *c); /* cancels everything; idempotent */
/* After a read: the catalog's readiness and health follow what has been
 * read (the first sync once every service was read). */
void consul_disc_sync(consul *c);

/* consul_read.c: discovery's side failing (*failing: this watch's or
 * read's flag; the side fails while any is set: the message fmt/ap noted
 * as the outage's, the error metric of op counted) and working again. */
void consul_disc_problem(consul *c, bool *failing, int op, regent_log_level level, const char *fmt,
                         va_list ap) REGENT_PRINTF(5, 0);
void consul_disc_ok(consul *c, bool *failing);
/* A service of the list: created when the list names it, freed when it
 * leaves (its read cancelled, its queue entry dropped). */
consul_svc *consul_svc_new(consul *c, const char *name);
void consul_svc_free(consul_svc *s);
void consul_svc_free_v(void *s); /* (as a map's free function) */
void consul_svc_dirty(consul_svc *s); /* read it again (queued) */
void consul_pump_reads(consul *c);    /* start queued reads, up to CONSUL_READ_CAP */
void consul_reads_resume(consul *c);  /* failed reads waiting out the backoff: now */

#endif
