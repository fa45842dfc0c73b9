/*
 * etcd_int.h - what the files of the etcd store plugin share: the plugin
 * state (struct etcd), the registration table entry, the discovery view,
 * one HTTP call, and the functions each file offers the others.
 *
 *   etcd.c       configuration keys, create/start/stop/destroy, kick()
 *   etcd_call.c  HTTP calls, failure kinds, endpoint rotation, auth, the
 *                recovery probe, health
 *   etcd_reg.c   registration: the table, lease (grant, re-attach,
 *                keepalive), batched txns, stop (keep or revoke)
 *   etcd_lease.c the lease file: kept across restarts, handed from a reload's
 *                old instance to its replacement
 *   etcd_disc.c  discovery: the paged range read and the watch stream
 *   etcd_view.c  the discovery view and what is reported to the core
 */
#ifndef REGENT_ETCD_INT_H
#define REGENT_ETCD_INT_H

#include <regent/plugin.h>

#include "etcd_util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define TXN_MAX_OPS 128          /* etcd's --max-txn-ops default */
#define TXN_MAX_BYTES (1u << 20) /* body of one txn; etcd's --max-request-bytes is 1.5 MiB */
#define TXN_PIPE 16              /* txns in flight at once */
#define RANGE_PAGE 1000          /* keys per range page (halved on a too-large answer) */
#define META_LISTEN_PORT "port"  /* what the haproxy sink reads as the seed's listen port */
#define STABLE_WATCH_MS 10000u   /* a watch up this long resets the backoff */
#define PROBE_MS 500u            /* recovery probe interval while something waits */
#define NO_LEADER_RETRY_MS 100u  /* retry delay while the cluster elects a leader */
#define HEDGE_MS 200u            /* a check unanswered this long is also sent to the next member */
#define SUSPECT_MS 5000u         /* a member left for not answering is skipped this long */
#define ELECTION_PROBE_MS 25u    /* check interval while a write or read waits out an election */
#define ELECTION_WINDOW_MS 5000u /* how long a lost member or "no leader" counts as an election */

enum op {
	OP_AUTH,
	OP_GRANT,
	OP_KEEPALIVE,
	OP_TXN,
	OP_REVOKE,
	OP_RANGE,
	OP_WATCH,
	OP_TTL,   /* lease timetolive (re-attach) */
	OP_RECON, /* range of this agent's keys (re-attach) */
	OP_PROBE, /* maintenance status (recovery probe) */
	OP_N
};
extern const char *const etcd_op_names[OP_N];

/* Which part of the plugin a failure belongs to (health, log dedup). */
enum comp { COMP_AUTH, COMP_REG, COMP_DISC, COMP_N };

struct etcd;
struct reg;

typedef struct call {
	struct etcd *e;
	int op;
	regent_http_req *req;
	size_t ep;          /* endpoint index it went to */
	unsigned token_gen; /* which token it carried */
	uint64_t t0;
	/* txn calls: the batch */
	struct reg **batch;
	size_t nbatch;
	int64_t lease;
} call;

/* One registration: an etcd key this agent owns. */
typedef struct reg {
	char *key;
	char *want;    /* value wanted; NULL = the key should not exist */
	char *written; /* value written under the current lease (when have) */
	char *sending; /* value in the txn in flight (NULL there = delete) */
	int64_t rev;   /* revision of our last put */
	/* written and sending usually are want's own buffer (no copy per key):
	 * they own their buffer only when want changed meanwhile (etcd_reg.c) */
	bool written_own, sending_own;
	bool have;     /* the key exists under the current lease */
	bool in_txn;
	bool orphan;   /* found under a re-attached lease, not (yet) local */
	bool on_dirty;
	struct reg *dprev, *dnext; /* the dirty list */
} reg;

/* One key of the discovery view: one allocation with its key (printable
 * form) and, when the key ends with "/<id>" as written, its id (a pointer
 * into the key; else a copy of its own). */
typedef struct kent {
	int64_t mod_rev;
	struct ksvc *svc;       /* NULL for a bad key */
	regent_instance *inst;  /* decoded; NULL when bad or a port key.  An
	                         * instance key's id is inst->id (etcd_view.c
	                         * kent_id): not held here again */
	struct kent *prev, *next; /* within the service */
	uint32_t hash;          /* of key (etcd_view.c's key_hash), computed once */
	uint32_t dix;           /* touched, not reported yet: 1 + its index in its dsvc's list
	                         * (etcd_view.c), 0 when not */
	bool is_port, bad;
	bool tail;              /* the key is <prefix>/<service>/<inst->id>: key holds "" */
	char key[];             /* NUL-terminated (allocated from offsetof(kent, key)) */
} kent;

/* The view's keys: kent pointers by key (open addressing, linear probing,
 * no tombstones), so that each key is held once, in its kent.  Each cell's
 * hash sits beside it (hash[i] is cell[i]->hash): a probe reads the hash
 * array in order and follows a kent only when the hash matches, and the
 * table grows without hashing or reading a key again. */
typedef struct ktab {
	kent **cell;
	uint32_t *hash;
	size_t cap, n; /* cap 0 or a power of two, n <= 3/4 cap */
} ktab;

typedef struct ksvc {
	char *name;
	kent *head;
	size_t nkeys;
	int port; /* from <prefix>/<svc>/port, 0 when none */
	struct dsvc *dirty; /* its touched keys not reported yet (cur view), NULL when none */
} ksvc;

typedef struct view {
	ktab keys;        /* key -> kent */
	regent_map *svcs; /* name -> ksvc */
	/* watch events: services touched and not reported yet (name -> dsvc:
	 * the whole service, or its keys put and the ids of its keys dropped),
	 * reported together on pub_timer; pub_next_ns keeps the time spent
	 * reporting a bounded share of the loop */
	regent_map *dirty;
	uv_timer_t *pub_timer;
	uint64_t pub_next_ns;
	/* watch events received and not applied yet, oldest first: a large
	 * response is applied a slice a loop turn (etcd_disc.c) */
	struct evbatch *evq, *evq_tail;
	uv_timer_t *ev_timer;
} view;

/* A paged range read: count-limited pages, the limit halved when an
 * answer exceeds the body limit; at 1, the key is looked up (keys only)
 * and skipped. */
typedef struct pager {
	int64_t rev;   /* revision of the read (0 until the first page) */
	char *next;    /* next page's start key, raw bytes; NULL = the prefix */
	size_t next_len;
	int64_t limit;
	bool find_key; /* the next request asks for the too-large key's name */
} pager;

enum dstate { D_OFF, D_IDLE, D_RANGE, D_WATCH };
enum rstate { R_IDLE, R_ATTACH, R_RECON };

typedef struct etcd {
	regent_ctx *ctx;
	const regent_host *h;

	/* config */
	char **eps; /* copies, trailing '/' dropped */
	size_t neps;
	char *prefix;  /* normalised, no trailing '/' */
	char *kprefix; /* prefix + "/": the range start */
	char *kend;    /* range end */
	size_t kend_len;
	int64_t ttl_s;
	uint64_t timeout_ms, revoke_ms, watch_idle_ms, grace_ms, check_ms;
	size_t max_value, max_body;
	bool dereg_on_stop;
	const char *user, *password, *ca, *cert, *key;

	size_t ep; /* current endpoint */
	uint64_t *suspect_until; /* per endpoint: skipped by rotate() until then */
	size_t fast_left; /* immediate retries left on other endpoints */
	call calls[OP_N];
	call txns[TXN_PIPE];
	bool started, stopping, stop_done, proven, start_told, answered, stop_keep;

	/* auth */
	char *token;
	unsigned token_gen;
	unsigned quiet_refusals; /* token refusals retried since the last success */
	regent_backoff auth_bo;
	uv_timer_t *auth_timer;

	/* registration */
	regent_map *regs;   /* key -> reg */
	reg *dirty_head, *dirty_tail;
	size_t ndirty; /* entries on the dirty list */
	size_t nwant, nhave, norphan;
	int64_t lease;
	int64_t lease_ttl;
	int64_t adopt;  /* lease id from the lease file, to re-attach */
	int64_t adopted; /* the lease this instance re-attached to (0: granted its own) */
	char *file_prev; /* the lease file as this instance found it (NULL: none) */
	enum rstate rstate;
	pager recon;
	char *lease_file;
	bool first_txn_done;
	size_t txn_limit;
	regent_backoff reg_bo;
	uv_timer_t *reg_timer, *ka_timer, *kick_timer, *grace_timer;

	/* discovery */
	bool want;
	enum dstate dstate;
	view cur;     /* what was last reported */
	view pending; /* a complete read in progress */
	bool have_view;
	pager range;
	int64_t wrev; /* last revision the view reflects */
	char *cluster_id;
	bool watch_created, watch_reread, watch_rotate, watch_noleader;
	uint64_t watch_t0;
	char *watch_err;
	etcd_wev *wev;   /* watch_line's event buffer, kept from line to line (small ones) */
	size_t wev_cap;
	regent_backoff disc_bo;
	uv_timer_t *disc_timer, *probe_timer, *hedge_timer;
	call hedge; /* the check sent to the next member while the current one is silent */
	uint64_t last_check;
	int64_t seen_term; /* highest raft term an answer carried */
	uint64_t electing_until; /* a member failed or had no leader: a new term is awaited */
	bool leader_back; /* a new term was just seen: what waits goes now, however soon due */
	uint64_t last_answer; /* when a member last answered anything (even an error) */
	bool in_no_leader; /* the answer being handled is "no leader" */
	bool no_leader_said; /* a switch for "no leader" was logged since the last new term */

	/* stop */
	uv_timer_t *stop_timer;
	uint64_t stop_deadline;

	/* health */
	char *err[COMP_N];
	regent_failure failure[COMP_N]; /* how each part's failure was logged (comp_fail, comp_ok) */
	char *note;             /* healthy, but worth saying (an empty prefix) */
	regent_http_req *v2req; /* the v2 look-up behind the empty-prefix note */

	/* metrics */
	regent_metric *m_ops[OP_N], *m_errs[OP_N], *m_lat[OP_N];
	regent_metric *m_put_err, *m_del_err; /* keys of a failed txn */
	regent_metric *m_put, *m_del, *m_reconnects, *m_events, *m_resyncs, *m_keys, *m_leases,
		*m_skipped;
} etcd;

/* etcd_disc.c: after a complete read, says when the prefix holds nothing
 * (a note, not unhealthy: an empty fleet is legal) and looks for keys the
 * seed wrote through the v2 API under it; clears the note once keys come. */
void disc_empty_check(etcd *e);
void disc_empty_cancel(etcd *e);
/* etcd_call.c: reports the discovery part again (its note changed). */
void health_refresh(etcd *e);
/* An answer, decoded. */
typedef struct resp {
	int err;         /* transport error (negative errno), 0 when answered */
	long status;
	int64_t code;    /* gRPC code from an error body, -1 when none */
	const char *msg; /* error text */
	json_t *json;    /* parsed body (buffered calls); NULL when hdr */
	const regent_http_result *res; /* the answer (NULL in a made-up resp) */
	bool hdr;        /* a txn's success: only its header read (rev, term) */
	int64_t rev, term;
	/* a range answer of the common shape, read without a JSON tree
	 * (etcd_scan_range; json NULL, rev and term its header's) */
	const etcd_range *range;
} resp;

enum fkind { F_NONE, F_ROTATE, F_AUTH, F_LEASE, F_COMPACTED, F_OTHER };

/* ---- etcd_call.c ---- */
/* A retry due within this is left alone when the registry answers again
 * (it goes soon anyway), unless the answer shows a new leader. */
static inline uint64_t recover_slack(const struct etcd *e)
{
	return e->leader_back ? 0 : NO_LEADER_RETRY_MS;
}
const char *cur_ep(const etcd *e);
bool busy(const etcd *e, int op);
json_t *b64(const etcd *e, const void *data, size_t len);
json_t *b64s(const etcd *e, const char *s);
json_t *jint64(int64_t v);
void comp_fail(etcd *e, int comp, regent_log_level level, const char *fmt, ...)
	REGENT_PRINTF(4, 5);
void comp_ok(etcd *e, int comp);
int failure_kind(const resp *r);
bool no_leader(const resp *r);
bool rotate(etcd *e, const call *c, const char *why);
uint64_t retry_delay(etcd *e, regent_backoff *bo, const resp *r, bool moved);
bool token_refused(etcd *e, const call *c);
void describe(const etcd *e, const resp *r, char *buf, size_t n);
typedef void (*call_handler)(etcd *e, call *c, resp *r);
int call_start(etcd *e, int op, const char *path, json_t *body, regent_http_data_cb on_data);
int call_start_on(etcd *e, call *c, int op, const char *path, json_t *body,
                  regent_http_data_cb on_data);
int call_start_text(etcd *e, call *c, int op, const char *path, char *text,
                    regent_http_data_cb on_data);
void call_cancel(etcd *e, call *c);
void auth_start(etcd *e);
bool have_token(etcd *e);
void auth_done(etcd *e, call *c, resp *r);
void probe_want(etcd *e);
void probe_done(etcd *e, call *c, resp *r);
void probe_cancel(etcd *e);
void check_started(etcd *e);
void fail_start(etcd *e, int err, const char *reason);

/* ---- etcd_reg.c ---- */
void reg_free(reg *g);
void reg_kick(etcd *e);
void reg_kick_soon(etcd *e);
void reg_recovered(etcd *e);
bool reg_settled(const etcd *e);
void lease_file_load(etcd *e);
void register_instance(void *self, const regent_instance *inst);
void deregister_instance(void *self, const regent_instance *inst);
void own_key_deleted(etcd *e, const char *key, size_t klen, int64_t mod_rev);
void txns_abandon(etcd *e);
int reg_stop(etcd *e);
void stop_continue(etcd *e);
void grant_done(etcd *e, call *c, resp *r);
void keepalive_done(etcd *e, call *c, resp *r);
void txn_done(etcd *e, call *c, resp *r);
void revoke_done(etcd *e, call *c, resp *r);
void ttl_done(etcd *e, call *c, resp *r);
void recon_done(etcd *e, call *c, resp *r);
size_t txns_busy(const etcd *e);
bool txns_move(etcd *e, size_t bad_ep, uint64_t before);
void keepalive_moved(etcd *e);

/* ---- etcd_lease.c ---- */
void lease_file_write(etcd *e, int64_t id);
int64_t lease_file_read(etcd *e, const char *path, bool quiet);
/* At stop: true when the lease this instance holds must be kept (a
 * reload's new instance re-attached to it, or a failed trial shares it
 * with the instance it was to replace); fixes the file up as needed. */
bool lease_file_on_stop(etcd *e, regent_stop_reason why, bool revoke);

/* ---- etcd_disc.c ---- */
json_t *pager_body(etcd *e, const pager *p);
void pager_reset(pager *p);
/* Handles a failed page; returns true when the pager adapted and the
 * page should simply be requested again. */
bool pager_too_large(etcd *e, pager *p, const resp *r, const char *what);
/* After a page: returns true when more pages follow (p->next set). */
bool pager_after(etcd *e, pager *p, json_t *json, int *skipped);
bool decode_kv(etcd *e, json_t *kv, char **key, size_t *klen, char **val, size_t *vlen,
               int64_t *mod_rev);
void disc_kick(etcd *e);
void disc_recovered(etcd *e);
bool disc_waiting(const etcd *e);
void range_done(etcd *e, call *c, resp *r);
void watch_done(etcd *e, call *c, resp *r);
void watch_start(etcd *e);
void watch_moved(etcd *e, const char *why);
void evq_clear(etcd *e, view *v);

/* ---- etcd_view.c ---- */
void view_init(etcd *e, view *v);
void view_clear(etcd *e, view *v);
bool view_put(etcd *e, view *v, const view *old, const char *key, size_t klen, const char *val,
              size_t vlen, int64_t mod_rev);
/* key: klen bytes, then a NUL (as etcd_b64_decode leaves it) */
bool view_del(etcd *e, view *v, const char *key, size_t klen);
/* How many keys the view holds. */
static inline size_t view_nkeys(const view *v)
{
	return v->keys.n;
}
void publish_service(etcd *e, const char *name);
void publish_all(etcd *e);


/* ---- etcd.c ---- */
void kick(etcd *e);

#endif
