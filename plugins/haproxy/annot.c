/* annot.c - what the haproxy sink tells the rest of the agent about each
 * server it routes to (host->annotations_update, ABI 1.5; the whole list
 * with annotations_set on an older core): the server's state in haproxy
 * (up, down, drain, maint...) and its last check, keyed by service and
 * instance id, for the stats sink's page.  It asks haproxy's admin socket
 * `show stat -1 4 -1` (server rows only) every interval, or, past
 * CHUNK_SERVERS servers, from the first poll on, in chunks of services
 * spread over the interval (one answer of every server is O(fleet) in one
 * loop turn, and past ~16,000 servers over the answer's 8 MB limit); and
 * soon after the sink changed servers (hx_annot_touch, hx_annot_poke)
 * only those servers (`show stat PROXY 4 SID`), past MAX_TOUCHED of them
 * their services, keeping every server's last row in between: never per
 * page request.  Only what changed goes to the core: the rows whose state,
 * detail or time of the last change (since_wall_ns, ABI 1.5: the age is
 * worded by the reader, so the detail stays the same while the server
 * does) differ from what was published, and the keys of rows that went
 * or hold another instance now; a poll that finds every server as it was
 * costs its parse and publishes nothing.  A poke after a change waits at
 * least POLL_DUTY times what the last answer cost (CPU), so that a burst
 * of changes to thousands of servers does not have them all read again
 * every POKE_MS; the background polls (all, or a chunk) wait at least
 * BG_DUTY times what the last one cost, so that at most ~1/BG_DUTY of the
 * loop goes to them however big the fleet (the cycle then takes longer
 * than the interval).  Rows map to instances through
 * the model's slots (sN of service X is slot N-1); free slots are left
 * out, a slot still draining an instance that left the catalog is kept.
 * It owns one timer, at most one request, the rows and what it published;
 * annot_text.c words a row and writes a chunk's commands. */
#include "annot.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POKE_MS 300
#define POLL_DUTY 50
#define BG_DUTY 200
#define MIN_GAP_MS 2 /* between two chunks */
#define MAX_FIELDS 160

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
	int last_err; /* logged once per kind of failure */
	/* every server's last state (arow, below), and a table by slot */
	struct arow *rows;
	size_t nrows, rowcap;
	uint32_t *map; /* row index + 1, 0: empty (rows < HX_MAX_SLOTS x services) */
	size_t mapcap;
	uint64_t next_full; /* when the next full cycle (or its next chunk) is due */
	uint64_t answer_ns; /* the CPU time the last answer took to read */
	uint64_t ask_cpu;   /* the thread's CPU time when a whole poll or chunk was asked */
	/* A fleet of more than CHUNK_SERVERS servers is asked in chunks of
	 * services spread over the interval (a cycle), so that no single poll
	 * parses every server: the cycle's position (the last service asked;
	 * NULL: a cycle starts), and when it started. */
	char *cursor;
	bool in_cycle, chunk_last;
	uint64_t cycle_start;
	bool incremental; /* the core has annotations_update (ABI 1.5) */
	size_t *dirty;    /* rows to publish (arow.dirty), by index */
	size_t ndirty, dirtycap;
	struct hx_annot_del *dels; /* published keys to withdraw */
	regent_map *details;       /* text -> dword: the rows' details, held once */
	size_t ndels, delcap;
	/* servers the sink changed since the last answer: asked alone */
	struct touch {
		char *service;
		size_t slot;
	} *touched, *asked;
	size_t ntouched, touchcap, nasked;
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

/* A cycle's chunk: at most this many servers, and a command line haproxy
 * takes (its CLI reads a line into one buffer). */
#define CHUNK_SERVERS 500
#define CHUNK_BYTES 8000

/* More changed servers than this in one poll: their services are asked
 * whole; more than TOUCH_MAX (a burst, a reload): a new cycle, all of
 * them (in chunks past CHUNK_SERVERS). */
#define MAX_TOUCHED 64
#define TOUCH_MAX 4096

/* One cycle in this many reads `show stat` of every server (1 min at the
 * default 5 s interval): check texts that changed alone. */
#define STAT_EVERY 12

static bool host_has_annotations(const regent_host *h)
{
	return h->abi_minor >= 2 &&
	       h->size >= offsetof(regent_host, annotations_set) + sizeof(h->annotations_set);
}

/* ---- the rows: the last state of every server, kept between polls ---- */

/* One server row as last read: the service and slot, the instance in it
 * (from the model when read), its state and detail, and whether the core
 * has it as it is. */
/* 64 bytes: one per server slot haproxy reports (16,000 at 10,000
 * instances with `slots = 16`). */
typedef struct arow {
	char *service;     /* one allocation: "NAME\0NAME/sN\0" (the label) */
	char *id;          /* NULL: dropped (the slot is free now) */
	const char *detail; /* a dword's text (detail_get), NULL: none yet */
	uint64_t since_ns;  /* when the state last changed (wall ns), 0: unknown */
	uint64_t fp;        /* its last `show servers state` fingerprint, 0: none */
	uint32_t slot;     /* < HX_MAX_SLOTS */
	char state[17];    /* hx_annot_describe: a status word of at most 16 bytes */
	bool seen;  /* in the answer being read */
	bool dirty; /* changed since published: in hx_annot.dirty */
	bool pub;   /* the core holds (service, id) as this row published it */
} arow;
_Static_assert(sizeof(arow) <= 64, "a row is 64 bytes at most");

/* A detail held once for every row that says it (at 10,000 servers that
 * nothing answers, every one says "L4CON Connection refused": ~0.5 MB as
 * a copy per row), reference-counted, in a map by its text. */
typedef struct dword {
	size_t refs;
	char text[];
} dword;

static const char *detail_get(hx_annot *a, const char *text)
{
	if (!a->details)
		a->details = a->h->map_new();
	dword *w = a->h->map_get(a->details, text);
	if (!w) {
		size_t n = strlen(text) + 1;
		w = a->h->xmalloc(sizeof(*w) + n);
		w->refs = 0;
		memcpy(w->text, text, n);
		a->h->map_put(a->details, text, w);
	}
	w->refs++;
	return w->text;
}

static void detail_put(hx_annot *a, const char *text)
{
	if (!text)
		return;
	dword *w = (dword *)(void *)(text - offsetof(dword, text));
	if (--w->refs == 0)
		free(a->h->map_del(a->details, text));
}

size_t hx_annot_details(const hx_annot *a)
{
	return a->details ? a->h->map_size(a->details) : 0;
}

/* A published key to withdraw (both strings owned). */
struct hx_annot_del {
	char *service, *id;
};

/* FNV-1a of the name, the slot mixed in, then the high bits folded into
 * the low ones the table uses (else the slots of services whose hashes
 * share their low bits land on the same cells: long probes). */
static size_t key_hash(const char *sname, size_t sn)
{
	uint64_t x = 1469598103934665603ull;
	for (const char *c = sname; *c; c++)
		x = (x ^ (unsigned char)*c) * 1099511628211ull;
	x = (x ^ sn) * 0x9e3779b97f4a7c15ull;
	return (size_t)(x ^ (x >> 29) ^ (x >> 47));
}

static void dels_clear(hx_annot *a)
{
	for (size_t i = 0; i < a->ndels; i++) {
		free(a->dels[i].service);
		free(a->dels[i].id);
	}
	a->ndels = 0;
}

static void rows_clear(hx_annot *a)
{
	for (size_t i = 0; i < a->nrows; i++) {
		free(a->rows[i].service);
		free(a->rows[i].id);
		detail_put(a, a->rows[i].detail);
	}
	a->nrows = 0;
	a->ndirty = 0;
	free(a->map);
	a->map = NULL;
	a->mapcap = 0;
}

static void map_put(uint32_t *map, size_t cap, const arow *r, size_t idx)
{
	size_t h = key_hash(r->service, r->slot) & (cap - 1);
	while (map[h])
		h = (h + 1) & (cap - 1);
	map[h] = (uint32_t)(idx + 1);
}

static arow *row_find(hx_annot *a, const char *sname, size_t sn)
{
	if (!a->mapcap)
		return NULL;
	for (size_t h = key_hash(sname, sn) & (a->mapcap - 1); a->map[h];
	     h = (h + 1) & (a->mapcap - 1)) {
		arow *r = &a->rows[a->map[h] - 1];
		if (r->slot == sn && strcmp(r->service, sname) == 0)
			return r;
	}
	return NULL;
}

static arow *row_add(hx_annot *a, const char *sname, size_t sn)
{
	const regent_host *h = a->h;
	if (a->nrows == a->rowcap) { /* by half: less left unused than doubling */
		a->rowcap = a->rowcap ? a->rowcap + a->rowcap / 2 : 64;
		a->rows = h->xrealloc(a->rows, a->rowcap * sizeof(*a->rows));
	}
	if (2 * (a->nrows + 1) > a->mapcap) {
		size_t cap = a->mapcap ? 2 * a->mapcap : 128;
		uint32_t *m = h->xcalloc(cap, sizeof(*m));
		for (size_t i = 0; i < a->nrows; i++)
			map_put(m, cap, &a->rows[i], i);
		free(a->map);
		a->map = m;
		a->mapcap = cap;
	}
	arow *r = &a->rows[a->nrows];
	memset(r, 0, sizeof(*r));
	/* the label is made once per row, not per publish */
	size_t len = strlen(sname);
	char num[24];
	size_t nn = hx_num_str(num, sizeof(num), (long)sn + 1);
	r->service = h->xmalloc(2 * len + nn + 4);
	memcpy(r->service, sname, len + 1);
	char *label = r->service + len + 1;
	memcpy(label, sname, len);
	memcpy(label + len, "/s", 2);
	memcpy(label + len + 2, num, nn + 1);
	r->slot = (uint32_t)sn;
	map_put(a->map, a->mapcap, r, a->nrows);
	a->nrows++;
	return r;
}

/* The row has something the core does not: published with the next
 * answer.  O(1). */
static void row_dirty(hx_annot *a, arow *r)
{
	if (r->dirty)
		return;
	r->dirty = true;
	if (a->ndirty == a->dirtycap) {
		a->dirtycap = a->dirtycap ? 2 * a->dirtycap : 64;
		a->dirty = a->h->xrealloc(a->dirty, a->dirtycap * sizeof(*a->dirty));
	}
	a->dirty[a->ndirty++] = (size_t)(r - a->rows);
}

/* What the row published goes (its id changed, or the row did): the key
 * is withdrawn with the next publish.  Takes the strings. */
static void row_withdraw(hx_annot *a, char *service, char *id)
{
	if (a->ndels == a->delcap) {
		a->delcap = a->delcap ? 2 * a->delcap : 16;
		a->dels = a->h->xrealloc(a->dels, a->delcap * sizeof(*a->dels));
	}
	a->dels[a->ndels++] = (struct hx_annot_del){service, id};
}

/* The row now holds instance id (NULL: its slot is free). */
static void row_set_id(hx_annot *a, arow *r, const char *id)
{
	if (r->pub)
		row_withdraw(a, a->h->xstrdup(r->service), r->id);
	else
		free(r->id);
	r->pub = false;
	r->id = a->h->xstrdup(id);
	if (r->id)
		row_dirty(a, r);
}

/* When the state last changed, in wall ns, from haproxy's lastchg (whole
 * seconds ago; empty or absent: 0, unknown).  *wall is read once per
 * answer. */
static uint64_t since_secs(hx_annot *a, unsigned long long s, uint64_t *wall)
{
	if (!*wall)
		*wall = a->h->wall_ns();
	uint64_t ago = s > *wall / 1000000000ull ? *wall : (uint64_t)s * 1000000000ull;
	return *wall - ago;
}

static uint64_t row_since(hx_annot *a, const char *lastchg, uint64_t *wall)
{
	if (!lastchg || lastchg[0] < '0' || lastchg[0] > '9')
		return 0;
	return since_secs(a, strtoull(lastchg, NULL, 10), wall);
}

/* Whether the published time moves: lastchg is whole seconds read at a
 * poll's own moment, so wall - lastchg jitters by up to a second (and the
 * poll's delay) while nothing happens; it moves when the state or detail
 * changed, when it was unknown or becomes so, or when it is off by more
 * than SINCE_SLACK_NS (haproxy changed and came back between polls). */
#define SINCE_SLACK_NS 3000000000ull
static bool since_moved(uint64_t was, uint64_t now, bool changed)
{
	if (changed || !was || !now)
		return was != now;
	return (was > now ? was - now : now - was) > SINCE_SLACK_NS;
}

/* The rows of one "show stat" answer (one or several commands, each with
 * its header line), each mapped to the instance in its slot now (sN of
 * service X is slot N-1); free slots are left out.  A row whose state or
 * detail did not change costs its parse only. */
static int read_rows(hx_annot *a, char *out, size_t len)
{
	char *hdr[MAX_FIELDS], *f[MAX_FIELDS];
	size_t nh, need = 0;
	int c_px = -1, c_sv = -1, c_st = -1, c_cs = -1, c_cd = -1, c_lc = -1, c_ch = -1;
	bool any = false;
	svc *v = NULL; /* the last row's service: rows come by service */
	uint64_t wall = 0; /* read once per answer, when a row has lastchg */
	size_t hint = 0;
	char *stop = out + len, *next;
	for (char *line = out; line < stop; line = next) {
		char *nl = memchr(line, '\n', (size_t)(stop - line));
		next = nl ? nl + 1 : stop;
		if (nl)
			*nl = '\0';
		if (line[0] == '\0')
			continue;
		if (strncmp(line, "# ", 2) == 0) {
			/* One header per command (a chunk has one per service): the
			 * columns of the last one seen are kept, and a header that is
			 * the same text (always, but for another haproxy version) is
			 * not split and searched again (~10,000 instructions each) */
			size_t hl = (size_t)((nl ? nl : stop) - line);
			any = true;
			if (!a->hdr_text || hl != a->hdr_len || memcmp(line, a->hdr_text, hl) != 0) {
				free(a->hdr_text);
				a->hdr_text = a->h->xmalloc(hl + 1);
				memcpy(a->hdr_text, line, hl + 1);
				a->hdr_len = hl;
				nh = hx_csv_split(line + 2, hdr, MAX_FIELDS, NULL);
				static const char *const names[] = {"pxname",   "svname",     "status",  "check_status",
				                                    "check_desc", "last_chk", "lastchg"};
				for (size_t k = 0; k < 7; k++)
					a->hcol[k] = hx_csv_col(hdr, nh, names[k]);
			}
			c_px = a->hcol[0], c_sv = a->hcol[1], c_st = a->hcol[2], c_cs = a->hcol[3];
			c_cd = a->hcol[4], c_lc = a->hcol[5], c_ch = a->hcol[6];
			/* a row is split only as far as the last column read */
			int last = c_px;
			for (size_t k = 1; k < 7; k++)
				last = a->hcol[k] > last ? a->hcol[k] : last;
			need = (size_t)last + 1;
			continue;
		}
		if (c_px < 0 || c_sv < 0 || c_st < 0)
			continue;
		/* the proxy and server first: a free slot no row holds costs no
		 * more (of 16,000 slots, 6,000 may be free) */
		size_t first = (size_t)(c_px > c_sv ? c_px : c_sv) + 1;
		char *rest;
		size_t nf = hx_csv_split(line, f, first, &rest);
		if (nf < first || f[c_px][0] == '#')
			continue;
		if (!v || strcmp(v->name, f[c_px]) != 0)
			v = hx_svc_find(a->m, f[c_px]);
		const char *sv = f[c_sv];
		if (!v || sv[0] != 's')
			continue;
		char *end;
		long idx = strtol(sv + 1, &end, 10);
		if (*end || idx < 1)
			continue;
		size_t sn = (size_t)idx - 1;
		/* haproxy answers in the same order every time: the row after the
		 * last one is tried first (no hash, memory read in order) */
		arow *r = hint < a->nrows ? &a->rows[hint] : NULL;
		if (!r || r->slot != sn || strcmp(r->service, v->name) != 0)
			r = row_find(a, v->name, sn);
		if (!r && (sn >= v->nslots || !v->slots[sn].id))
			continue;
		if (rest && need > nf)
			nf += hx_csv_split(rest, f + nf, need - nf, NULL);
		if (nf < need)
			continue;
		if (!r)
			r = row_add(a, v->name, sn);
		r->seen = true;
		hint = (size_t)(r - a->rows) + 1;
		const char *id = sn < v->nslots ? v->slots[sn].id : NULL;
		if (!id != !r->id || (id && strcmp(id, r->id) != 0)) /* copied only when it changed */
			row_set_id(a, r, id);
		char detail[200], was[sizeof(r->state)];
		memcpy(was, r->state, sizeof(was));
		hx_annot_describe(f[c_st], c_cs >= 0 ? f[c_cs] : NULL, c_cd >= 0 ? f[c_cd] : NULL,
		                  c_lc >= 0 ? f[c_lc] : NULL, r->state, sizeof(r->state), detail,
		                  sizeof(detail));
		bool changed = strcmp(was, r->state) != 0;
		if (!r->detail || strcmp(detail, r->detail) != 0) {
			detail_put(a, r->detail);
			r->detail = detail_get(a, detail);
			changed = true;
		}
		uint64_t since = row_since(a, c_ch >= 0 ? f[c_ch] : NULL, &wall);
		if (since_moved(r->since_ns, since, changed)) {
			r->since_ns = since;
			changed = true;
		}
		if (changed && r->id)
			row_dirty(a, r);
	}
	return any ? 0 : -EPROTO;
}

/* The rows of one `show servers state` answer (a cycle's chunk: one
 * command per service, each with its version line and header): ~150
 * bytes a server where `show stat` has ~330 and a header of 1.8 KB per
 * service, and a row read as far as its 15th field.  It tells whether a
 * server's state moved, not its words: a row whose fingerprint (status,
 * check status, health, weights; hx_state_line) differs from the one read
 * before, or whose time of the last change moved, or that has no detail
 * yet, or a slot that holds an instance and no row, is touched, to be
 * asked with `show stat` soon after (hx_annot_touch).  The rest costs
 * this read only.  A check's text that changes while its status code,
 * health and state stay (an HTTP check's 503, then 500) is read with the
 * next `show stat` cycle (every STAT_EVERY) or the next change. */
static int read_states(hx_annot *a, char *out, size_t len)
{
	bool any = false;
	svc *v = NULL;
	uint64_t wall = 0;
	size_t hint = 0;
	char *stop = out + len, *next;
	for (char *line = out; line < stop; line = next) {
		char *nl = memchr(line, '\n', (size_t)(stop - line));
		char *end = nl ? nl : stop;
		next = nl ? nl + 1 : stop;
		if (line[0] == '#') {
			any = true;
			continue;
		}
		hx_srv_state st;
		if (!hx_state_line(line, end, &st))
			continue;
		if (!v || strcmp(v->name, st.px) != 0)
			v = hx_svc_find(a->m, st.px);
		char *e;
		long idx = st.sv[0] == 's' ? strtol(st.sv + 1, &e, 10) : 0;
		if (!v || idx < 1 || *e)
			continue;
		size_t sn = (size_t)idx - 1;
		arow *r = hint < a->nrows ? &a->rows[hint] : NULL;
		if (!r || r->slot != sn || strcmp(r->service, v->name) != 0)
			r = row_find(a, v->name, sn);
		const char *id = sn < v->nslots ? v->slots[sn].id : NULL;
		if (!r) {
			if (id) /* joined between two reads, not by this sink's change */
				hx_annot_touch(a, v->name, sn);
			continue;
		}
		r->seen = true;
		hint = (size_t)(r - a->rows) + 1;
		if (!id != !r->id || (id && strcmp(id, r->id) != 0))
			row_set_id(a, r, id);
		bool moved = since_moved(r->since_ns, since_secs(a, st.since_s, &wall), false);
		if (id && (moved || !r->detail || (r->fp && r->fp != st.fp)))
			hx_annot_touch(a, v->name, sn);
		r->fp = st.fp;
	}
	if (a->ntouched)
		a->poked = true;
	return any ? 0 : -EPROTO;
}

/* Before a full answer is read: nothing seen yet. */
static void rows_unsee(hx_annot *a)
{
	for (size_t i = 0; i < a->nrows; i++)
		a->rows[i].seen = false;
}

/* After it: the rows it did not have go, what they published is withdrawn
 * (the table and the dirty list are rebuilt). */
static void rows_sweep(hx_annot *a)
{
	size_t n = 0;
	for (size_t i = 0; i < a->nrows; i++) {
		arow *r = &a->rows[i];
		if (!r->seen || !r->id) {
			if (r->pub) {
				row_withdraw(a, r->service, r->id); /* "NAME\0...": the service */
			} else {
				free(r->service);
				free(r->id);
			}
			detail_put(a, r->detail);
			continue;
		}
		a->rows[n++] = *r;
	}
	if (n == a->nrows)
		return;
	a->nrows = n;
	a->ndirty = 0;
	memset(a->map, 0, a->mapcap * sizeof(*a->map));
	for (size_t i = 0; i < n; i++) {
		map_put(a->map, a->mapcap, &a->rows[i], i);
		if (a->rows[i].dirty) {
			a->rows[i].dirty = false;
			row_dirty(a, &a->rows[i]);
		}
	}
}

static regent_annotation row_annotation(const arow *r)
{
	return (regent_annotation){
		.size = sizeof(regent_annotation),
		.service = r->service,
		.id = r->id,
		.label = r->service + strlen(r->service) + 1,
		.state = r->state,
		.detail = r->detail,
		.since_wall_ns = r->since_ns,
	};
}

/* Whether another row holds this key now (the instance moved to another
 * slot of its service, and that row was read): then the key stays, and
 * that row publishes it again (it may have been overwritten meanwhile by
 * the row that withdraws it). */
static bool key_held(hx_annot *a, const char *service, const char *id)
{
	svc *v = hx_svc_find(a->m, service);
	slot *sl = v ? hx_slot_find(v, id) : NULL;
	arow *r = sl ? row_find(a, v->name, (size_t)(sl - v->slots)) : NULL;
	if (!r || !r->id || strcmp(r->id, id) != 0)
		return false;
	row_dirty(a, r);
	return true;
}

/* What changed since the last publish, to the core: the dirty rows and
 * the withdrawn keys (host->annotations_update, ABI 1.5: O(changed)). */
static int publish_changes(hx_annot *a)
{
	const regent_host *h = a->h;
	size_t nd = 0, np = 0;
	const regent_annotation **del = h->xmalloc((a->ndels + 1) * sizeof(*del));
	regent_annotation *dk = h->xmalloc((a->ndels + 1) * sizeof(*dk));
	for (size_t i = 0; i < a->ndels; i++) {
		if (key_held(a, a->dels[i].service, a->dels[i].id))
			continue;
		dk[nd] = (regent_annotation){.size = sizeof(regent_annotation),
		                             .service = a->dels[i].service, .id = a->dels[i].id};
		del[nd] = &dk[nd];
		nd++;
	}
	const regent_annotation **put = h->xmalloc((a->ndirty + 1) * sizeof(*put));
	regent_annotation *pk = h->xmalloc((a->ndirty + 1) * sizeof(*pk));
	for (size_t i = 0; i < a->ndirty; i++) {
		const arow *r = &a->rows[a->dirty[i]];
		if (!r->id)
			continue;
		pk[np] = row_annotation(r);
		put[np] = &pk[np];
		np++;
	}
	int rc = h->annotations_update(a->ctx, put, np, del, nd);
	free(del);
	free(dk);
	free(put);
	free(pk);
	return rc;
}

/* Everything known, to a core without annotations_update (ABI < 1.5). */
static int publish_all(hx_annot *a)
{
	const regent_host *h = a->h;
	const regent_annotation **list = h->xmalloc((a->nrows + 1) * sizeof(*list));
	regent_annotation *items = h->xmalloc((a->nrows + 1) * sizeof(*items));
	size_t n = 0;
	for (size_t i = 0; i < a->nrows; i++) {
		const arow *r = &a->rows[i];
		if (!r->id)
			continue;
		items[n] = row_annotation(r);
		list[n] = &items[n];
		n++;
	}
	int rc = h->annotations_set(a->ctx, list, n);
	free(list);
	free(items);
	return rc;
}

/* To the core, when anything changed since the last publish: a poll that
 * found every server as it was publishes nothing. */
static int publish(hx_annot *a)
{
	if (!a->ndirty && !a->ndels)
		return 0;
	int rc = a->incremental ? publish_changes(a) : publish_all(a);
	if (rc < 0)
		return rc; /* kept: tried again with the next answer */
	if (!a->incremental)
		for (size_t i = 0; i < a->nrows; i++)
			a->rows[i].pub = a->rows[i].id != NULL;
	for (size_t i = 0; i < a->ndirty; i++) {
		arow *r = &a->rows[a->dirty[i]];
		r->dirty = false;
		r->pub = r->id != NULL;
	}
	a->ndirty = 0;
	dels_clear(a);
	return 0;
}

/* The part of an answer's handling that needs no loop (hx_annot_feed). */
static int take_answer(hx_annot *a, char *out, size_t len, bool full, bool ends, bool states)
{
	if (full)
		rows_unsee(a);
	int rc = states ? read_states(a, out, len) : read_rows(a, out, len);
	if (ends && rc == 0)
		rows_sweep(a);
	return rc == 0 ? publish(a) : rc;
}

int hx_annot_feed(hx_annot *a, char *answer, bool full)
{
	return take_answer(a, answer, strlen(answer), full, full, false);
}

/* ---- the loop ---- */

static void on_answer(void *arg, int status, const char *out, size_t len);

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void touch_free(struct touch *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].service);
	free(t);
}

static void cycle_reset(hx_annot *a)
{
	free(a->cursor);
	a->cursor = NULL;
	a->in_cycle = false;
	a->cycle_partial = false;
}

/* Whether every server haproxy runs fits in one answer of CHUNK_SERVERS
 * rows (`show stat -1 4 -1`).  Not the rows held: before the first answer
 * there are none, and a whole poll of 80,000 servers (~40 MB) is over the
 * answer's limit (cli.c: 8 MB): it failed every time, so no row was ever
 * held and every change asked it again.  O(services up to the limit). */
static bool fleet_small(const hx_annot *a)
{
	size_t n = 0;
	for (const svc *v = a->m->svcs; v; v = v->next)
		if (v->run.listen && (n += v->run.nslots) > CHUNK_SERVERS)
			return false;
	return true;
}

static int touch_cmp(const void *x, const void *y)
{
	const struct touch *p = x, *q = y;
	return strcmp(p->service, q->service);
}

/* More changed servers than MAX_TOUCHED: their services, whole (`show
 * stat NAME 4 -1`), as many as keep within CHUNK_SERVERS slots and
 * CHUNK_BYTES of command (at least one); the servers of the services
 * left out stay touched, asked with the next poll.  O(t log t) for t
 * touched servers, never O(the fleet). */
static void ask_services(hx_annot *a, hx_buf *cmd)
{
	qsort(a->touched, a->ntouched, sizeof(*a->touched), touch_cmp);
	size_t nserv = 0, keep = 0;
	bool full = false;
	for (size_t i = 0; i < a->ntouched;) {
		size_t j = i + 1;
		while (j < a->ntouched && strcmp(a->touched[j].service, a->touched[i].service) == 0)
			j++;
		svc *v = hx_svc_find(a->m, a->touched[i].service);
		size_t add = strlen(a->touched[i].service) + 16;
		if (v && v->run.listen && !full && cmd->len &&
		    (nserv + v->run.nslots > CHUNK_SERVERS || cmd->len + add > CHUNK_BYTES))
			full = true;
		if (v && v->run.listen && !full) {
			hx_buf_printf(cmd, "%sshow stat %s 4 -1", cmd->len ? ";" : "", v->name);
			nserv += v->run.nslots;
		}
		for (size_t k = i; k < j; k++) {
			if (full && v && v->run.listen)
				a->touched[keep++] = a->touched[k]; /* the next poll's */
			else
				free(a->touched[k].service); /* asked, or haproxy does not run it */
		}
		i = j;
	}
	a->ntouched = keep;
	if (keep)
		a->poked = true; /* the rest soon, as a poke would */
}

/* What the next poll asks, in cmd (empty: nothing yet), and its kind:
 * every interval all servers, at once (`show stat -1 4 -1`) when the
 * fleet is CHUNK_SERVERS or fewer, else in chunks of services spread over
 * the interval, so that a poll parses at most ~CHUNK_SERVERS rows; soon
 * after the sink changed servers, only those (`show stat PROXY 4 SID`:
 * the server ids are the slots' order, s1 = 1), or past MAX_TOUCHED of
 * them their services (ask_services), so that a change costs O(changed
 * servers) here, not O(all servers); past TOUCH_MAX a new cycle. */
int hx_annot_plan(hx_annot *a, uint64_t now, hx_buf *cmd)
{
	a->poked = false;
	bool due = now >= a->next_full;
	bool small = fleet_small(a);
	if (a->overflow && !small) { /* so many changed: all of them, in chunks */
		touch_free(a->touched, a->ntouched);
		a->touched = NULL;
		a->ntouched = a->touchcap = 0;
		a->overflow = false;
		cycle_reset(a);
		a->stat_next = true; /* every server's words again */
		due = true;
	}
	if (small && (!a->nrows || a->ntouched > MAX_TOUCHED || a->overflow || due)) {
		a->asked_kind = HX_ASK_ALL;
		cycle_reset(a);
		hx_buf_puts(cmd, "show stat -1 4 -1");
		touch_free(a->touched, a->ntouched);
		a->overflow = false;
	} else if (a->ntouched > MAX_TOUCHED) {
		a->asked_kind = HX_ASK_SERVICES;
		ask_services(a, cmd);
		return a->asked_kind; /* the rest of touched stays */
	} else if (a->ntouched || !due) {
		a->asked_kind = HX_ASK_TOUCHED;
		for (size_t i = 0; i < a->ntouched; i++)
			hx_buf_printf(cmd, "%sshow stat %s 4 %zu", i ? ";" : "", a->touched[i].service,
			              a->touched[i].slot + 1);
		a->asked = a->touched;
		a->nasked = a->ntouched;
	} else {
		a->asked_kind = HX_ASK_CHUNK;
		if (!a->in_cycle) {
			a->in_cycle = true;
			/* `show stat` for the first cycle (every row's words), after a
			 * failure or a burst, and every STAT_EVERY cycles */
			a->states_cycle = a->read_once && !a->stat_next && a->nstates < STAT_EVERY - 1;
			a->nstates = a->states_cycle ? a->nstates + 1 : 0;
			a->stat_next = false;
			a->cycle_start = now;
			a->cycle_servers = a->cycle_done = 0;
			for (const svc *v = a->m->svcs; v; v = v->next)
				a->cycle_servers += v->run.listen ? v->run.nslots : 0;
			rows_unsee(a);
		}
		const char *last = hx_annot_chunk(a->m, a->cursor, CHUNK_SERVERS, CHUNK_BYTES,
		                                  a->states_cycle, cmd, &a->chunk_last, &a->chunk_servers);
		char *c = last ? strdup(last) : NULL;
		free(a->cursor);
		a->cursor = c;
		if (!last) { /* nothing left that haproxy runs: all of them (none), the cycle ends */
			hx_buf_puts(cmd, "show stat -1 4 -1");
			a->asked_kind = HX_ASK_ALL;
			cycle_reset(a);
		}
	}
	a->touched = NULL;
	a->ntouched = a->touchcap = 0;
	if (a->asked_kind == HX_ASK_ALL || a->asked_kind == HX_ASK_CHUNK)
		a->ask_cpu = thread_cpu_ns();
	return a->asked_kind;
}

static void ask(uv_timer_t *t)
{
	hx_annot *a = t->data;
	if (a->req)
		return;
	uint64_t now = a->h->now_ms();
	hx_buf cmd = {.h = a->h};
	hx_annot_plan(a, now, &cmd);
	if (!cmd.len) { /* nothing to ask yet */
		hx_buf_free(&cmd);
		touch_free(a->asked, a->nasked);
		a->asked = NULL;
		a->nasked = 0;
		uv_timer_start(a->timer, ask, a->next_full > now ? a->next_full - now : 0, 0);
		return;
	}
	int err = 0;
	if (a->conn && a->asked_kind == HX_ASK_TOUCHED) /* small: behind the fast path's own */
		a->req = hx_conn_request(a->conn, hx_buf_str(&cmd), a->cmd_timeout, on_answer, a, &err);
	else
		a->req = hx_cli_request(a->h, uv_handle_get_loop((uv_handle_t *)t), a->socket,
		                        hx_buf_str(&cmd), a->cmd_timeout, on_answer, a, &err);
	hx_buf_free(&cmd);
	if (!a->req) {
		if (err != a->last_err)
			a->h->log(a->ctx, REGENT_LOG_WARN, "server states: cannot ask %s: %s", a->socket,
			          strerror(-err));
		a->last_err = err;
		touch_free(a->asked, a->nasked);
		a->asked = NULL;
		a->nasked = 0;
		a->next_full = 0; /* all of them, next time */
		cycle_reset(a);
		uv_timer_start(a->timer, ask, a->interval, 0);
	}
}

/* How soon a poke asks: POKE_MS, or POLL_DUTY times the last answer's
 * cost (at most the interval). */
static uint64_t poke_ms(const hx_annot *a)
{
	uint64_t d = POLL_DUTY * a->answer_ns / 1000000u;
	if (d > a->interval)
		d = a->interval;
	return d > POKE_MS ? d : POKE_MS;
}

static void on_answer(void *arg, int status, const char *out, size_t len)
{
	hx_annot *a = arg;
	a->req = NULL;
	hx_annot_answer(a, status, out, len);
}

void hx_annot_answer(hx_annot *a, int status, const char *out, size_t len)
{
	int rc = status;
	int kind = a->asked_kind;
	touch_free(a->asked, a->nasked);
	a->asked = NULL;
	a->nasked = 0;
	bool ends = kind == HX_ASK_ALL || (kind == HX_ASK_CHUNK && a->chunk_last);
	if (rc == 0 && !len)
		rc = -EPROTO;
	else if (rc == 0) {
		/* Read in place: the answer is the request's own buffer, freed
		 * once this returns (several MB at 10,000 servers: no copy).  A
		 * cycle a chunk of which failed withdraws nothing at its end (the
		 * rows of that chunk were not read, not gone). */
		uint64_t t0 = thread_cpu_ns();
		rc = take_answer(a, (char *)out, len, kind == HX_ASK_ALL, ends && !a->cycle_partial,
		                 kind == HX_ASK_CHUNK && a->states_cycle);
		uint64_t t1 = thread_cpu_ns();
		a->answer_ns = t1 > t0 ? t1 - t0 : 0;
	}
	if (rc < 0 && rc != a->last_err)
		/* haproxy not up yet, restarting, or reloading: the page keeps
		 * the last states until it answers again. */
		a->h->log(a->ctx, REGENT_LOG_DEBUG, "server states: %s: %s", a->socket,
		          rc == -EPROTO ? "not a show stat answer" : uv_strerror(rc));
	a->last_err = rc < 0 ? rc : 0;
	uint64_t now = a->h->now_ms();
	/* A chunk too big for an answer (one service of ~16,000 servers and
	 * more) is passed over: the cycle goes on, without that chunk. */
	bool skip = rc == -E2BIG && kind == HX_ASK_CHUNK;
	if (skip)
		a->cycle_partial = true;
	/* The background polls (all, or a cycle's chunks) take at most
	 * 1/BG_DUTY of the loop: the next one waits at least BG_DUTY times
	 * what this one cost, from its ask to its answer read (the reads and
	 * the parse, and what else the loop did meanwhile: an overestimate);
	 * not before every server was read once (the page complete within
	 * the interval after a start) */
	uint64_t duty = 0;
	if ((kind == HX_ASK_ALL || kind == HX_ASK_CHUNK) && a->ask_cpu) {
		uint64_t c = thread_cpu_ns();
		if (a->read_once)
			duty = c > a->ask_cpu ? BG_DUTY * (c - a->ask_cpu) / 1000000u : 0;
		a->ask_cpu = 0;
	}
	if (rc < 0 && !skip) {
		a->next_full = 0;
		a->stat_next = true; /* haproxy may have restarted: every row's words */
		cycle_reset(a);
	} else if (kind == HX_ASK_ALL) {
		a->next_full = now + (duty > a->interval ? duty : a->interval);
		a->read_once = true;
	} else if (kind == HX_ASK_CHUNK && ends) {
		a->next_full = a->cycle_start + a->interval > now + duty ? a->cycle_start + a->interval
		                                                         : now + duty;
		a->read_once = true;
		cycle_reset(a);
	} else if (kind == HX_ASK_CHUNK) {
		/* the cycle's chunks spread over the interval by their slots, on
		 * a schedule from the cycle's start (the answers' own time taken
		 * in: at 50,000 instances in 80,000 slots, a gap after each answer
		 * made the cycle 8 s, not 5) */
		a->cycle_done += a->chunk_servers;
		size_t all = a->cycle_servers > a->cycle_done ? a->cycle_servers : a->cycle_done;
		uint64_t due = a->cycle_start + a->interval * a->cycle_done / (all ? all : 1);
		if (due < now + MIN_GAP_MS)
			due = now + MIN_GAP_MS;
		a->next_full = due > now + duty ? due : now + duty;
	}
	uint64_t next = a->next_full > now ? a->next_full - now : 0;
	/* After a failure, not before the interval: a poke does not make it
	 * sooner (a whole poll that fails would be asked again after every
	 * change), unless only the few changed servers were asked. */
	bool retry_soon = kind == HX_ASK_TOUCHED;
	if (rc < 0 && !skip)
		next = a->interval;
	uint64_t poke = poke_ms(a);
	if (a->poked && next > poke && (rc == 0 || retry_soon))
		next = poke;
	uv_timer_start(a->timer, ask, next, 0);
}

hx_annot *hx_annot_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop, hx_model *m,
                       const char *admin_socket, uint64_t interval_ms, uint64_t cmd_timeout_ms)
{
	if (!interval_ms || !admin_socket || !host_has_annotations(h))
		return NULL;
	hx_annot *a = h->xcalloc(1, sizeof(*a));
	uv_timer_t *t = h->xcalloc(1, sizeof(*t));
	*a = (hx_annot){.ctx = ctx, .h = h, .m = m, .socket = h->xstrdup(admin_socket),
	                .interval = interval_ms, .cmd_timeout = cmd_timeout_ms, .timer = t,
	                .incremental = REGENT_HOST_HAS(h, annotations_update) &&
	                               h->annotations_update != NULL};
	uv_timer_init(loop, t);
	t->data = a;
	uv_timer_start(t, ask, POKE_MS, 0);
	return a;
}

void hx_annot_set_conn(hx_annot *a, hx_conn *conn)
{
	if (a)
		a->conn = conn;
}

void hx_annot_touch(hx_annot *a, const char *service, size_t sn)
{
	if (!a || a->overflow) /* all of them will be asked */
		return;
	if (a->ntouched >= TOUCH_MAX) {
		a->overflow = true;
		return;
	}
	if (a->ntouched == a->touchcap) {
		size_t cap = a->touchcap ? 2 * a->touchcap : 8;
		struct touch *t = realloc(a->touched, cap * sizeof(*t));
		if (!t)
			return;
		a->touched = t;
		a->touchcap = cap;
	}
	struct touch *t = a->touched;
	t[a->ntouched].service = strdup(service);
	t[a->ntouched].slot = sn;
	if (t[a->ntouched].service)
		a->ntouched++;
}

void hx_annot_poke(hx_annot *a)
{
	if (!a)
		return;
	if (a->req) {
		a->poked = true; /* ask again once this answer is in */
		return;
	}
	uint64_t poke = poke_ms(a);
	if (uv_timer_get_due_in(a->timer) > poke)
		uv_timer_start(a->timer, ask, poke, 0);
}

void hx_annot_free(hx_annot *a)
{
	if (!a)
		return;
	hx_cli_cancel(a->req);
	uv_close((uv_handle_t *)a->timer, (uv_close_cb)free);
	a->h->annotations_set(a->ctx, NULL, 0);
	rows_clear(a);
	if (a->details)
		a->h->map_free(a->details, NULL); /* empty: every row let go */
	free(a->rows);
	free(a->dirty);
	dels_clear(a);
	free(a->dels);
	touch_free(a->touched, a->ntouched);
	touch_free(a->asked, a->nasked);
	free(a->cursor);
	free(a->hdr_text);
	free(a->socket);
	free(a);
}
