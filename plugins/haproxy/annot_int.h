/* annot_int.h - what the two halves of the haproxy sink's server states
 * share (private to annot.c, the polling loop, and annot_rows.c, the rows
 * read and what was published): the state and one row. */
#ifndef REGENT_HX_ANNOT_INT_H
#define REGENT_HX_ANNOT_INT_H

#include "annot.h"

/* One server row as last read: the service and slot, the instance in it
 * (from the model when read), its state and detail, and whether the core
 * has it as it is. */
/* 56 bytes: one per server slot that holds an instance (10,000 at 10,000
 * instances). */
typedef struct arow {
	const char *service; /* a name word (annot_rows.c: one per service, counted);
	                      * the label "NAME/sN" is written when published */
	char *id;          /* the slot's id, shared (hx_cstr_ref); NULL: dropped (the slot is free now) */
	const char *detail; /* a dword's text (detail_get), NULL: none yet */
	uint64_t since_ns;  /* when the state last changed (wall ns), 0: unknown */
	uint64_t fp;        /* its last `show servers state` fingerprint, 0: none */
	const char *state; /* a word (annot_rows.c, held once per text):
	                    * hx_annot_describe's status word; NULL: none yet */
	uint32_t slot;     /* < HX_MAX_SLOTS */
	bool seen;  /* in the answer being read */
	bool dirty; /* changed since published: in hx_annot.dirty */
	bool pub;   /* the core holds (service, id) as this row published it */
	/* Its instance took the slot since haproxy last checked it: the check's
	 * words (detail) may be the previous server's (haproxy keeps them
	 * across `set server addr`), so they are not shown until they change
	 * or the server is up (annot_rows.c, row_newcomer). */
	bool held;
} arow;
_Static_assert(sizeof(arow) <= 56, "a row is 56 bytes at most");

/* A published key to withdraw (a reference to each: a name word, an id). */
struct hx_annot_del {
	const char *service;
	char *id;
};

struct hx_annot {
	regent_ctx *ctx;
	const regent_host *h;
	hx_model *m;
	char *socket;
	hx_conn *conn; /* the sink's persistent connection, for HX_ASK_TOUCHED */
	uint64_t interval, cmd_timeout;
	uv_timer_t *timer;
	hx_cli *req;
	bool poked;
	/* the model's gen (hx_model.gen) when the request in flight was asked:
	 * an answer read after the model moved may be older than a slot's
	 * new instance (annot_rows.c) */
	unsigned ask_gen;
	int last_err; /* logged once per kind of failure */
	/* every server's last state (arow, below), and a table by slot */
	struct arow *rows;
	size_t nrows, rowcap;
	uint32_t *map; /* row index + 1, 0: empty (rows < HX_MAX_SLOTS x services) */
	size_t mapcap;
	uint64_t next_full; /* when the next full cycle (or its next chunk) is due */
	uint64_t answer_ns; /* the CPU time the last answer took to read */
	uint64_t ask_cpu;   /* the thread's CPU time when a whole poll or chunk was asked */
	/* the request asked is a background poll (a chunk, or a whole poll not
	 * only for touched servers): its CPU so far, counted in m_poll_cpu
	 * once its answer is read (NULL: the host has no metrics) */
	bool asked_bg;
	uint64_t poll_cpu_ns;
	regent_metric *m_poll_cpu;
	/* A fleet of more than CHUNK_SERVERS servers is asked in chunks of
	 * services spread over the interval (a cycle), so that no single poll
	 * parses every server: the cycle's position (the last service asked;
	 * NULL: a cycle starts), and when it started. */
	char *cursor;
	bool in_cycle, chunk_last;
	uint64_t cycle_start;
	bool incremental; /* the core has annotations_update (ABI 1.5) */
	bool sourced;     /* the core reads the rows (annotations_source, ABI 1.8):
	                   * nothing is published, no dirty list, no keys withdrawn */
	size_t *dirty;    /* rows to publish (arow.dirty), by index */
	size_t ndirty, dirtycap;
	struct hx_annot_del *dels; /* published keys to withdraw */
	regent_map *details;       /* text -> dword: the rows' details, held once */
	regent_map *names;         /* text -> dword: the rows' service names, held once */
	regent_map *states;        /* text -> dword: the rows' state words, held once */
	size_t ndels, delcap;
	/* servers the sink changed since the last answer: asked alone */
	struct touch {
		char *service;
		size_t slot;
	} *touched, *asked;
	size_t ntouched, touchcap, nasked;
	/* servers a `show servers state` chunk found moved: their `show stat`
	 * rides on the next chunk (hx_rows_moved) */
	struct touch *moved;
	size_t nmoved, movedcap;
	bool chunk_mixed; /* the chunk asked has `show stat` commands too */
	int asked_kind; /* HX_ASK_* */
	char *hdr_text;  /* the last `show stat` header line read, and its columns */
	size_t hdr_len;
	int hcol[7];     /* pxname svname status check_status check_desc last_chk lastchg */
	bool overflow; /* more than TOUCH_MAX touched: a new cycle */
	bool cycle_partial; /* a chunk of this cycle was passed over */
	size_t cycle_servers; /* the slots haproxy runs, at the cycle's start */
	size_t chunk_servers; /* ... in the chunk asked */
	size_t cycle_done;    /* ... in the chunks asked so far */
	bool read_once;       /* a whole poll or cycle was read since the start */
	/* A cycle after the first reads `show servers state` (read_states),
	 * and `show stat` only for the servers whose state moved; every
	 * STAT_EVERY-th cycle, and the first after a failure or a burst
	 * (stat_next), reads `show stat` of every server. */
	bool states_cycle, stat_next;
	unsigned nstates; /* `show servers state` cycles since the last `show stat` one */
};

/* annot_rows.c: before a full answer or a cycle is read, no row seen;
 * one answer read (full: every server asked; ends: the last of a cycle,
 * the rows not seen go; states: `show servers state`, else `show stat`;
 * stale: asked before the model last moved, so a slot that has another
 * instance now may be answered as it was before) and what changed
 * published, 0 or an error; everything freed. */
void hx_rows_unsee(hx_annot *a);
int hx_rows_take(hx_annot *a, char *out, size_t len, bool full, bool ends, bool states,
                 bool stale);
void hx_rows_free(hx_annot *a);
/* annot_rows.c: the core reads the rows when asked (annotations_source,
 * ABI 1.8) instead of holding copies, when it can; else they are
 * published (annotations_update, _set). */
void hx_rows_source(hx_annot *a);
/* annot.c: a server whose state moved, to be read with `show stat`
 * along with the next chunk (past TOUCH_MAX of them: a `show stat` cycle
 * next). */
void hx_rows_moved(hx_annot *a, const char *service, size_t sn);

#endif
