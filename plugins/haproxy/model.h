/* model.h - the haproxy sink's model (model.c), private to plugins/haproxy:
 * the services, their server slots and proxy ids, and the step from a
 * catalog snapshot to what each service wants (its listen block and which
 * instance sits in which slot).  No I/O and no loop: the plugin (haproxy.c)
 * turns the model into a file, runtime commands and reloads, and the unit
 * test tests/haproxy/test_model.c drives it with a fake host. */
#ifndef REGENT_HX_MODEL_H
#define REGENT_HX_MODEL_H

#include "hx.h"

#include <string.h>

/* Hard limits, documented in docs/haproxy.md: instances routed per service
 * (the excess, by instance id order, is dropped with one warning naming
 * the service) and server slots per service (draining + joining). */
#define HX_MAX_INSTANCES 10000
#define HX_MAX_SLOTS (2 * HX_MAX_INSTANCES)
/* An excluded service (its port cannot be bound, or haproxy refused its
 * section) is tried again after this, doubling per consecutive failure up
 * to HX_EXCLUDE_RETRY_MAX. */
#define HX_EXCLUDE_RETRY_MS 3000
#define HX_EXCLUDE_RETRY_MAX_MS 300000
/* haproxy 2.6 counts one descriptor per listener and per checked server,
 * plus 10 reserved, its CLI's maxconn, 3 per thread and, with the default
 * maxconn of 100 when the limit leaves no room, 250 for connections and
 * pipes (src/haproxy.c, compute_ideal_maxconn/maxsock): over its hard
 * RLIMIT_NOFILE it refuses the configuration ("Cannot raise FD limit").
 * The wanted file keeps listeners + slots within the limit less this
 * reserve (+ 3 per CPU), HX_FD_MARGIN_PCT percent of the limit and 2 per
 * connection of a global maxconn.  With `no strict-limits` (strict_limits
 * = false) haproxy starts anyway and a slot holds a descriptor only while
 * its check runs: listeners alone are kept within that budget, the margin
 * is for the checks under way (docs/haproxy.md). */
#define HX_FD_RESERVE 512
#define HX_FD_MARGIN_PCT 5

typedef enum { ST_FREE = 0, ST_READY, ST_DRAIN } slot_state;
typedef enum { AP_UNKNOWN = 0, AP_MAINT, AP_READY, AP_DRAIN } ap_state;

/* An IP address: a handle into addr.c's table of the distinct addresses
 * (4 bytes where the bytes took 17 and the text 46); equal addresses have
 * equal handles.  0 (a zeroed struct) is 0.0.0.0.  A handle is valid while
 * a slot of a registered model holds it (hx_addr_gc frees the others). */
typedef struct hx_ip {
	uint32_t h;
} hx_ip;

/* A literal (any form inet_pton takes) into ip; false if it is not one. */
bool hx_ip_parse(const char *text, hx_ip *ip);
/* The canonical literal (inet_ntop) into buf (HX_ADDR_MAX); returns buf. */
const char *hx_ip_str(const hx_ip *ip, char *buf);
static inline bool hx_ip_eq(const hx_ip *a, const hx_ip *b)
{
	return a->h == b->h;
}
struct hx_model;
/* The table's owners (hx_model_init / hx_model_free); the last one out
 * frees it. */
void hx_addr_register(struct hx_model *m);
void hx_addr_unregister(struct hx_model *m);
/* Frees the addresses no slot holds, when the table has doubled since the
 * last time (or always: force).  Only where no handle lives outside a slot. */
void hx_addr_gc(bool force);
/* Addresses held in the table (tests). */
size_t hx_addr_count(void);

/* A server as one party knows it (haproxy, the file on disk...). */
typedef struct srv_view {
	hx_ip addr;
	uint16_t port;
	uint16_t st : 3;      /* ap_state */
	uint16_t weight : 13; /* weight + 1 set over the runtime API (1-257); 0: the file's */
} srv_view; /* 8 bytes: a slot holds three */

/* A server slot: 48 bytes (a service has at least `slots` of them;
 * slots.c asserts the size).  What its admin request in flight asked is
 * not here but in the model's table of the batch (hx_model.sent). */
typedef struct slot {
	char *id; /* the instance in this slot (hx_cstr_new: shared, counted; the state
	           * page's row holds a reference too); NULL when free */
	srv_view ap;   /* what haproxy has, as last confirmed */
	srv_view file; /* what the installed file says */
	srv_view pend; /* what the file being written says */
	/* when it went draining: the low 32 bits of now_ms (hx_slot_draining_ms
	 * reads how long ago, exact up to 49 days; drain_timeout is at most 1 h) */
	uint32_t drain_since;
	hx_ip addr;
	uint16_t port;
	uint16_t weight; /* the instance's meta weight + 1 (0-256); 0: none */
	uint8_t st;      /* slot_state */
	bool inflight : 1, seen : 1;
	bool rq : 1;         /* in its service's runtime queue (v->rq) */
	bool dq : 1;         /* in its service's drain list (v->dq) */
	bool rdirty : 1;     /* how the file writes it changed since the mirror's render */
	/* the line last rendered (pend), resp. the installed file's line
	 * (file), shows the instance id the slot holds now (a ready line's
	 * "  # id"): how the mirror knows a line unchanged without its text */
	bool pend_id : 1, file_id : 1;
	bool state_kept : 1; /* the old worker's state line is in the state file */
	bool state_up : 1;   /* ... and says up */
} slot;

/* The part of a service that only a reload can change. */
typedef struct shape {
	/* counted copies (hx_cstr_new), shared by want, cand and run when equal
	 * (1,000 services: one listen block each instead of two or three) */
	char *listen;  /* the listen block without servers; NULL: absent */
	/* appended to every server line: "" (the options every server shares
	 * are the listen block's default-server line) */
	char *srvopts;
	size_t nslots;
	uint16_t port; /* its listener's port */
	/* from the parsed settings (not searched in the text): */
	bool checked;    /* an HTTP check (option httpchk) */
	bool ssl;        /* server_options has ssl */
	unsigned weight; /* server_options weight N, else haproxy's 1 */
} shape;

/* How long slot sl has been draining at now (now_ms), in ms. */
static inline uint32_t hx_slot_draining_ms(const slot *sl, uint64_t now)
{
	return (uint32_t)now - sl->drain_since; /* modulo 2^32 */
}

/* A port -> count table (the listen port is the most common one). */
typedef struct port_count {
	uint32_t *keys; /* port + 1; 0 empty */
	uint32_t *cnt;
	long best;      /* the most common (ties: the lowest); 0 none */
	uint32_t cap, used, distinct; /* (at most 65,536 ports) */
	uint32_t best_n; /* (at most HX_MAX_INSTANCES) */
} port_count;

/* What one snapshot changes in a service's routed instances (slots.c):
 * ROUTE ops (an instance takes or keeps a slot, at its address) and
 * UNROUTE ops (it leaves), valid during hx_model_update. */
typedef struct plan_op {
	bool route;
	const regent_instance *in; /* ROUTE: the instance */
	const char *id;
	char addr[HX_ADDR_MAX];    /* ROUTE: canonical */
} plan_op;

typedef struct hx_plan {
	const regent_host *h; /* the host's allocators (ABI 1.4) */
	plan_op *ops;
	size_t nops, cap;
	size_t *rix; /* ROUTE ops by instance pointer (op index + 1) */
	size_t rixcap, nrix;
	bool full;   /* the ops hold every routed instance */
	const regent_instance *const *insts; /* the new list */
	size_t n, P; /* its length, and the routed prefix's */
	size_t nwarned;
} hx_plan;

/* A service: 576 bytes (1,000 of them at 10,000 instances; model.c asserts
 * the size).  Its fields of 8 bytes first, those of 4, then the flags, so
 * that no padding sits between them; counts of slots, instances and ids
 * are 32 bits (at most HX_MAX_SLOTS, or a service's instances), where a
 * size_t each made it 680 bytes. */
typedef struct svc {
	const regent_host *h; /* the host's allocators (ABI 1.4): the model's */
	char *name;
	shape want; /* from the latest snapshot */
	shape cand; /* in the slow path's candidate file */
	shape run;  /* in the installed file (what haproxy runs) */
	slot *slots;
	uint32_t nslots; /* meaningful */
	uint32_t cap;    /* allocated */
	char *warned;     /* warnings of the previous snapshot ("\nmsg\nmsg\n") */
	hx_buf warn_now;  /* ... and of this one */
	/* port planning (valid once the service was computed) */
	long port;
	uint64_t empty_since; /* had a listen and no instance since then; 0: not empty */
	uint64_t grace_until; /* (in_grace) */
	/* excluded from the configuration: why (NULL: included) and when it is
	 * tried again */
	char *excluded;
	uint64_t retry_at;
	/* haproxy's descriptor budget (model.c): its part of fd_used
	 * (listener + slots of want; through the startup grace, of an earlier
	 * run's file until routed: hx_svc_shape_sync), the most slots it may
	 * hold now, and why
	 * it holds fewer than it wants (NULL: not capped) */
	uint32_t fdn;
	uint32_t slot_max;
	char *capped;
	uint32_t noslot; /* joining instances the last apply found no slot for */
	uint32_t capped_at; /* the slots it held when capped was written */
	/* its claim in the port table (model.c): port (0: none), explicit
	 * (pclaim_expl) */
	long pclaim;
	struct svc *pnext; /* the next claimant of that port (explicit first, then by name) */
	struct hx_plan *plan;
	struct svc *next; /* sorted by name */

	/* The routed instances (slots.c), kept up to date per change: the
	 * prefix of the catalog's list (sorted by id) up to and including
	 * `bound` holds `nin` valid instances, at most HX_MAX_INSTANCES; the
	 * whole list holds `nvalid`.  Their service_port and meta port counts
	 * give the listen port.  (synced: the above matches the last catalog
	 * the model saw; routing: the slots hold the routed instances, else
	 * none.) */
	char *bound;
	uint32_t nin, nvalid;
	port_count sport, mport;
	/* instance id -> slot index + 1 (linear probing, no tombstones, filled to
	 * 3/4 at most: 10 ids in 16 cells) */
	uint32_t *idt;
	uint32_t idtcap, nids;
	/* free slot indices, a min-heap (lazy: checked when taken) */
	uint32_t *fh; /* (slot indices: < HX_MAX_SLOTS, 4 bytes each) */
	uint32_t nfh, fhcap;

	/* Dirty lists (slots.c), so that the runtime path works in proportion
	 * to what changed: rq holds the slots whose target or haproxy view
	 * changed since the runtime path last found them in step (each once,
	 * slot.rq), dq the slots that went draining (lazily: checked when
	 * read, slot.dq).  A service with either non-empty is on the model's
	 * active list (qprev/qnext, qlinked). */
	uint32_t *rq;
	uint32_t nrq, rqcap;
	uint32_t *dq;
	uint32_t ndq, dqcap;
	struct svc *qprev, *qnext;

	/* Its part of the installed file as the mirror rendered it last
	 * (pipeline.c): rendered again only when sgen moved or the shape
	 * haproxy runs changed (mcached cleared).  The text is not kept: the
	 * part is bytes [moff, moff + mlen) of the file on disk. */
	size_t moff;
	size_t mlen;
	uint32_t *mloff; /* where each server line starts in its part (mnr + 1) */
	uint32_t mnr;
	uint32_t hi; /* 1 + the highest slot that held an instance (slots.c) */
	/* The same for the candidate last rendered (pipeline.c), taken over
	 * by the mirror when it is installed (hx_mirror_from_cand). */
	size_t cmoff, cmlen;
	uint32_t *cmloff;
	/* On the model's mirror lists (mirrorq.c): HX_MQ_MOVED, its sgen moved
	 * since the mirror last rendered it; HX_MQ_PEND, its part is in the
	 * mirror write in flight (mpend); mq_on[q]: it is on list q (below). */
	struct svc_link {
		struct svc *prev, *next;
	} mq[2];

	unsigned pxid;  /* forced proxy id, stable while the service lives */
	unsigned nexcl; /* consecutive exclusions (backoff) */
	unsigned sgen;  /* bumped by every change of how its slots render */
	unsigned mgen, cmgen; /* (the mirror's and the candidate's, above) */
	uint32_t cmnr;        /* (the candidate's mnr, above) */
	/* the file being checked: lines [line0, line1) of the candidate are its */
	uint32_t line0, line1;

	bool in_cat;
	bool recovered; /* read from an earlier run's file: kept through the startup grace */
	bool explicit_port, has_port, conflict;
	bool in_grace;  /* ... and keeps its listen for [service] empty_grace */
	bool todo;      /* during hx_model_update */
	bool pclaim_expl;
	bool synced : 1, routing : 1; /* (the routed instances, above) */
	bool qlinked;   /* on the model's active list */
	bool sdiff; /* want and run differ (counted in hx_model.nsdiff) */
	bool mq_on[2]; /* on the mirror's list HX_MQ_MOVED, HX_MQ_PEND (mq, above) */
	/* Its listener closed over the runtime API ahead of the reload that
	 * drops its section (`disable frontend`, runtime.c): shut, haproxy's
	 * running worker has it closed (a reload makes haproxy read the file
	 * again: cleared then); dropq, its name is in the model's drop queue. */
	bool shut : 1, dropq : 1;
	/* The instance this one took over from had its listen (routed, or in
	 * its empty grace since empty_since) on port (handover.c
	 * hx_ho_carry): an empty one keeps it for what is left of the grace,
	 * as it would have there, though this model never had it. */
	bool ho_listen : 1;
	bool mcached;
	bool mpend; /* its slots' pend views are in the mirror write in flight */
} svc;

enum { HX_MQ_MOVED, HX_MQ_PEND };

typedef struct hx_model {
	regent_ctx *ctx;
	const regent_host *h;
	struct hx_model *anext; /* addr.c's owners */
	/* settings the plugin reads once */
	char bind_addr[HX_ADDR_MAX + 2];
	bool stats_on;
	uint16_t stats_port;
	int64_t slots_default, retries_default;
	uint64_t t_connect, t_client, t_server, t_check, inter, empty_grace;
	bool state_global; /* listens load the global server-state file (manage) */
	const char *state_file; /* else each loads this one (drive mode) */
	bool bind_check;   /* test a new listener's port before including it */
	bool grace_over;   /* the startup grace (recovered services) is over */
	/* "" as a counted copy (hx_cstr_new), the srvopts of every shape the
	 * model builds: referenced, not one copy per shape */
	char *no_opts;

	/* services: a sorted list, and an open-addressing table by name */
	svc *svcs;
	svc **tab;
	size_t tabcap, count;
	bool unsorted;
	/* proxy ids: used bitmap from HX_FIRST_ID, free stack, next fresh */
	uint8_t *idused;
	size_t idcap;
	unsigned *idfree;
	size_t nidfree, idfreecap;
	unsigned next_id;

	unsigned gen;      /* bumped by every change of what the file says */
	/* The mirror's lists (mirrorq.c), so that a change's in-place patch
	 * and its completion walk the services it touched, not all: heads of
	 * HX_MQ_MOVED and HX_MQ_PEND; mq_all, a part may be uncached or moved
	 * off the list (the mirror's layout was reset): the next patch walks
	 * every service; mpend_all, the write in flight is whole. */
	svc *mqhead[2];
	bool mq_all, mpend_all;
	/* services with queued or draining slots (slots.c), counters */
	svc *qhead;
	size_t ndrain;     /* slots draining (st == ST_DRAIN), every service */
	size_t ngrace;     /* services in their empty grace (in_grace) */
	/* port -> its claimants (open addressing; a port keeps its cell) */
	struct port_cell {
		uint32_t port; /* 0: empty cell */
		svc *head;
	} *ports;
	size_t portcap, nports;
	/* the services computed by the update under way */
	svc **todo;
	size_t ntodo, todocap;
	size_t nsdiff;     /* services whose wanted shape is not the one installed */
	/* services whose section haproxy runs and the model drops: their
	 * listener may close at once (names, malloc'd; svc.dropq) */
	char **dropq;
	size_t ndropq, dropqcap;
	unsigned excl_gen; /* bumped when the set of excluded services changes */
	size_t nexcluded;
	/* haproxy's descriptors: the hard RLIMIT_NOFILE it inherits (0: no
	 * limit; read at init, set by tests), the listeners and slots of the
	 * wanted file, the services capped for it */
	uint64_t fd_limit;
	unsigned ncpu;
	/* [sink haproxy] maxconn (0: not set) and strict_limits = false
	 * (fd_loose): slots cost no descriptor, listeners + 2 x maxconn do */
	int64_t maxconn;
	bool fd_loose;
	size_t fd_used;
	size_t ncapped;
	/* The view each slot of the runtime batch in flight was sent (what
	 * its `set server` commands ask: haproxy's once they are answered;
	 * slot.inflight), by service and slot (open addressing, linear
	 * probing; runtime.c): a batch is at most a few hundred slots (8,000
	 * bytes of commands), so held here and not as a view in each of the
	 * 16,000 slots at 10,000 instances (128 KB).  Emptied when the batch
	 * is answered or fails; freed with the model. */
	struct hx_sent {
		const svc *v; /* NULL: an empty cell */
		uint32_t i;
		srv_view view;
	} *sent;
	size_t sentcap, nsent;
} hx_model;

/* Once per hx_model_free (the model is one of addr.c's owners meanwhile,
 * at the same address). */
void hx_model_init(hx_model *m, regent_ctx *ctx, const regent_host *h);
void hx_model_free(hx_model *m);

svc *hx_svc_find(hx_model *m, const char *name);
/* Finds or creates (with a fresh proxy id). */
svc *hx_svc_get(hx_model *m, const char *name);
/* Gives the service this proxy id (one read back from an earlier file),
 * unless another service has it.  Returns whether it took it. */
bool hx_svc_set_id(hx_model *m, svc *v, unsigned id);
/* ---- slots.c: which instance sits in which slot ---- */

/* At least n slots (new ones free). */
void hx_svc_grow(hx_model *m, svc *v, size_t n);
/* Slot i takes instance id (recovered from a file; the slot is free). */
void hx_slot_take(hx_model *m, svc *v, size_t i, const char *id);
/* Slot i is free again (its instance left or drained). */
void hx_slot_free_id(hx_model *m, svc *v, size_t i);
/* The slot holding instance id, or NULL.  O(1). */
slot *hx_slot_find(svc *v, const char *id);
void hx_svc_slots_free(svc *v);
/* A counted copy of a string (NULL stays NULL; the first reference is
 * the caller's): a slot's instance id, which the state page's row
 * (annot_rows.c) shares instead of holding its own (10,000 ids of 24
 * bytes: 0.3 MB), and a shape's texts, which the installed shape shares
 * with the wanted one.  hx_cstr_ref takes one more reference (NULL stays
 * NULL), hx_cstr_put drops one and frees the copy with the last (NULL:
 * nothing).  Never written through once made. */
char *hx_cstr_new(const regent_host *h, const char *s);
char *hx_cstr_ref(char *s);
void hx_cstr_put(char *s);
/* The plan of a service (v->plan, allocated) from its previous list (old)
 * and the new one (l): only the changed instances, unless `full` or the
 * service's routed set was never computed (then every instance). */
void hx_plan_compute(hx_model *m, svc *v, const regent_instance *const *old, size_t nold,
                     const regent_instance *const *l, size_t n, bool full);
/* The plan into the slots (the service is routed). */
void hx_plan_apply(hx_model *m, svc *v);
/* The service is not routed: every instance leaves its slot. */
void hx_plan_unroute_all(hx_model *m, svc *v);
void hx_plan_free(svc *v);
/* Drops services nobody wants, nobody installs and haproxy does not run. */
void hx_model_gc(hx_model *m);
/* Keeps the list sorted by name after services were added. */
void hx_model_sort(hx_model *m);
/* Marks every service as read from an earlier run's file (svc.recovered:
 * kept through the startup grace) and counts the slots the file gave each
 * against haproxy's descriptor budget until the catalog routes it; returns
 * how many services there are. */
size_t hx_model_recovered(hx_model *m);

/* ---- ports.c: port claims ---- */
/* Port's cell in the model's table (added, with no claimant, when `add`),
 * or NULL (not there and !add). */
struct port_cell *hx_port_cell(hx_model *m, long port, bool add);
/* v claims port (expl: its [service] port): placed among the port's
 * claimants, explicit ones first, then by name. */
void hx_port_claim(hx_model *m, svc *v, long port, bool expl);
/* v's claim (if any) withdrawn. */
void hx_port_unclaim(hx_model *m, svc *v);

/* ---- slots.c: dirty lists ---- */

/* Slot i of v may no longer be what haproxy has (its target, haproxy's
 * view or its liveness changed): queued for the runtime path.  O(1). */
void hx_slot_dirty(hx_model *m, svc *v, size_t i);
/* Every slot of v (a reload, an unknown haproxy).  O(its slots). */
void hx_svc_dirty_all(hx_model *m, svc *v);
/* Moves a slot to a state (keeps the draining count and list). */
void hx_slot_set_st(hx_model *m, svc *v, size_t i, slot_state st);
/* The mirror's service lists (mirrorq.c). */
void hx_mq_add(hx_model *m, int q, svc *v);
void hx_mq_del(hx_model *m, int q, svc *v);
void hx_mq_clear(hx_model *m, int q);
/* How the service's slots render changed (v->sgen moved): on HX_MQ_MOVED. */
void hx_svc_moved(hx_model *m, svc *v);

/* Drops a service from the active list (it is freed). */
void hx_svc_unqueue(hx_model *m, svc *v);
/* Removes the entries of v's runtime queue for which keep() returns false
 * (their flag cleared); unlinks v once both lists are empty. */
void hx_rq_filter(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg);
/* The same, ending the walk once *stop is set (by keep): the entries not
 * walked stay as they are, so a walk that needs a few costs a few. */
void hx_rq_filter_until(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg,
                        const bool *stop);
/* The same for the drain list (entries no longer draining are dropped
 * first). */
void hx_dq_filter(hx_model *m, svc *v, bool (*keep)(void *arg, svc *v, size_t i), void *arg);
/* Recounts whether v's wanted shape differs from the installed one
 * (hx_model.nsdiff); call after either changed. */
void hx_svc_shape_sync(hx_model *m, svc *v);
bool hx_shape_eq(const shape *a, const shape *b);

/* Whether the runtime API can reach this slot now. */
static inline bool hx_slot_live(const svc *v, size_t i)
{
	return v->run.listen && i < v->run.nslots;
}

/* The catalog changed from prev (the catalog of the previous update,
 * still referenced: its instances are read) to cat: recomputes the
 * services named (all of them, and every service of the model, when
 * `all`; prev is then ignored), then the port assignment of every
 * service, and every service whose outcome that changed.  A named service
 * costs O(k log n) for k changed instances of n (plus one pass over the
 * two lists' pointers, instances unchanged between snapshots being the
 * same pointers), not O(n). */
void hx_model_update(hx_model *m, const regent_catalog *prev, const regent_catalog *cat,
                     const char *const *names, size_t n, bool all);
/* A reload or a restart made haproxy read the installed file: the
 * services whose listener was closed over the runtime API are open again
 * where the file has them; those the model still drops are queued again.
 * O(services). */
void hx_model_drops_reset(hx_model *m);
/* Queues v if haproxy runs its section and the model drops it. */
void hx_model_drop_queue(hx_model *m, svc *v);
/* Takes the drop queue (the caller frees each name and the array). */
char **hx_model_drops_take(hx_model *m, size_t *n);

/* Services whose empty grace ended or whose exclusion is due for a retry
 * are recomputed from cat.  Returns the next such deadline (0: none). */
uint64_t hx_model_tick(hx_model *m, const regent_catalog *cat);
/* Leaves a service out of the configuration (haproxy refused its part). */
void hx_model_exclude(hx_model *m, svc *v, const char *why);
/* The service whose section holds line `line` of the candidate, or NULL. */
svc *hx_model_svc_at_line(hx_model *m, size_t line);
/* One line naming the excluded and capped services and why (malloc'd), or
 * NULL. */
char *hx_model_excluded_note(hx_model *m);
/* Listeners + slots the wanted file may hold (SIZE_MAX: no limit). */
size_t hx_model_fd_budget(const hx_model *m);
/* The same for a hard limit (0: none), haproxy's threads and a global
 * maxconn (0: none): limit - 512 - 3 x ncpu - 5 % - 2 x maxconn, or 0. */
size_t hx_fd_budget(uint64_t limit, unsigned ncpu, int64_t maxconn);

/* Logs a per-service warning once: not again while every snapshot since
 * has raised it too. */
void hx_svc_warn(hx_model *m, svc *v, const char *fmt, ...) REGENT_PRINTF(3, 4);

/* svcconf.c: a [service] section's settings (or the defaults), for
 * validate() and the model. */
typedef struct svc_settings {
	hx_svc_cfg c;
	char bind[80];
	hx_buf srvopts;
	hx_srvopt_info opts; /* weight and ssl, from server_options */
	int64_t slots;
	const char *bad_key; /* on failure: the [service] key at fault ("mode"...) */
} svc_settings;
int hx_read_settings(regent_ctx *ctx, const regent_host *h, const char *name, svc_settings *st,
                     char *why, size_t whylen);

/* svcconf.c: can a listener bind ADDR:PORT as haproxy does (SO_REUSEADDR and
 * SO_REUSEPORT)?  The socket is closed at once.  0 or a negative errno. */
int hx_bind_test(const char *bind_addr, unsigned port);

#endif
