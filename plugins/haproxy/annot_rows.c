/* annot_rows.c - the haproxy sink's last state of every server it
 * routes to, as read from haproxy's answers (annot.c asks them): the
 * rows, one per server slot that holds an instance, keyed by service and
 * slot, each with its state word, detail (held once per text) and time of
 * the last change, read from `show stat` (read_rows) or, as far as whether
 * it moved, from `show servers state` (read_states: a row that moved is
 * touched, to be read with `show stat`); and what goes to the core: the
 * rows themselves, read by the core when asked (rows_source,
 * host->annotations_source, ABI 1.8: no copy held by the core), or, on an
 * older core, only the rows that changed and the keys withdrawn
 * (publish).  A slot that changed hands never shows its new instance with
 * the previous server's state or check (row_newcomer, slot_confirmed,
 * arow.held).  It owns the rows, their details and the keys to withdraw. */
#include "annot_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 160
/* rows_source's label on the stack: "NAME/sN" up to the core's 256 bytes
 * of a text (a longer one the core would refuse) */
#define LABEL_MAX 272

/* A text held once for every row that says it, reference-counted, in a
 * map by its text: a detail (at 10,000 servers that nothing answers, every
 * one says "L4CON Connection refused": ~0.5 MB as a copy per row) and a
 * service name (10 to 16 rows a service: ~0.3 MB at 10,000 rows as a
 * "NAME\0NAME/sN\0" copy per row). */
typedef struct dword {
	size_t refs;
	char text[];
} dword;

static const char *word_get(hx_annot *a, regent_map **map, const char *text)
{
	if (!*map)
		*map = a->h->map_new();
	dword *w = a->h->map_get(*map, text);
	if (!w) {
		size_t n = strlen(text) + 1;
		w = a->h->xmalloc(sizeof(*w) + n);
		w->refs = 0;
		memcpy(w->text, text, n);
		a->h->map_put(*map, text, w);
	}
	w->refs++;
	return w->text;
}

/* One more reference to a word word_get gave. */
static const char *word_ref(const char *text)
{
	((dword *)(void *)(text - offsetof(dword, text)))->refs++;
	return text;
}

static void word_put(hx_annot *a, regent_map *map, const char *text)
{
	if (!text)
		return;
	dword *w = (dword *)(void *)(text - offsetof(dword, text));
	if (--w->refs == 0)
		free(a->h->map_del(map, text));
}

static const char *detail_get(hx_annot *a, const char *text)
{
	return word_get(a, &a->details, text);
}

static void detail_put(hx_annot *a, const char *text)
{
	word_put(a, a->details, text);
}

size_t hx_annot_details(const hx_annot *a)
{
	return a->details ? a->h->map_size(a->details) : 0;
}

size_t hx_annot_names(const hx_annot *a)
{
	return a->names ? a->h->map_size(a->names) : 0;
}


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
		word_put(a, a->names, a->dels[i].service);
		hx_cstr_put(a->dels[i].id);
	}
	a->ndels = 0;
}

static void rows_clear(hx_annot *a)
{
	for (size_t i = 0; i < a->nrows; i++) {
		word_put(a, a->names, a->rows[i].service);
		hx_cstr_put(a->rows[i].id);
		detail_put(a, a->rows[i].detail);
		word_put(a, a->states, a->rows[i].state);
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
	if (4 * (a->nrows + 1) > 3 * a->mapcap) { /* load at most 3/4: 64 KB at 10,000 */
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
	/* rows come by service: the last row's name word is the likely one */
	if (a->nrows && strcmp(a->rows[a->nrows - 1].service, sname) == 0)
		r->service = word_ref(a->rows[a->nrows - 1].service);
	else
		r->service = word_get(a, &a->names, sname);
	r->slot = (uint32_t)sn;
	map_put(a->map, a->mapcap, r, a->nrows);
	a->nrows++;
	return r;
}

/* The row has something the core does not: published with the next
 * answer.  O(1). */
static void row_dirty(hx_annot *a, arow *r)
{
	if (r->dirty || a->sourced) /* a source has nothing to publish */
		return;
	r->dirty = true;
	if (a->ndirty == a->dirtycap) {
		a->dirtycap = a->dirtycap ? 2 * a->dirtycap : 64;
		a->dirty = a->h->xrealloc(a->dirty, a->dirtycap * sizeof(*a->dirty));
	}
	a->dirty[a->ndirty++] = (size_t)(r - a->rows);
}

/* What the row published goes (its id changed, or the row did): the key
 * is withdrawn with the next publish.  Takes the references. */
static void row_withdraw(hx_annot *a, const char *service, char *id)
{
	if (a->ndels == a->delcap) {
		a->delcap = a->delcap ? 2 * a->delcap : 16;
		a->dels = a->h->xrealloc(a->dels, a->delcap * sizeof(*a->dels));
	}
	a->dels[a->ndels++] = (struct hx_annot_del){service, id};
}

/* The row now holds instance id (NULL: its slot is free). */
static void row_set_id(hx_annot *a, arow *r, char *id)
{
	if (r->pub)
		row_withdraw(a, word_ref(r->service), r->id);
	else
		hx_cstr_put(r->id);
	r->pub = false;
	r->held = false;
	r->id = hx_cstr_ref(id);
	if (r->id)
		row_dirty(a, r);
}

/* The instance in the row's slot now, if another one than the row had
 * (the slot changed hands since it was read, or the row is new): the row
 * takes it and returns true. */
static bool row_newcomer(hx_annot *a, arow *r, char *id)
{
	if (id == r->id || (id && r->id && strcmp(id, r->id) == 0))
		return false;
	row_set_id(a, r, id);
	return id != NULL;
}

/* Whether haproxy runs the slot's instance in its server, as far as the
 * sink knows (its last confirmed view, slot.ap: set when a runtime
 * batch is answered, a file loaded or haproxy's states learnt): until
 * then, what haproxy says of the server is the previous instance's. */
static bool slot_confirmed(const slot *sl)
{
	return (sl->ap.st == AP_READY || sl->ap.st == AP_DRAIN) && sl->ap.port == sl->port &&
	       hx_ip_eq(&sl->ap.addr, &sl->addr);
}

/* How long after a server's last change of state haproxy has surely
 * checked it (ms): its interval, the check's timeout, another interval
 * and a second of slack (a reused slot's new instance joins `health
 * down`: a change of state). */
static uint64_t checked_within_ms(const hx_annot *a)
{
	const hx_model *m = a->m;
	uint64_t inter = m->inter ? m->inter : 2000;
	return 2 * inter + (m->t_check ? m->t_check : inter) + 1000;
}

/* A slot's new instance whose state the answer cannot tell (asked before
 * the slot changed hands, or `show servers state`, which has no words):
 * not shown (no state) until `show stat` reads it again; the words it has
 * (the slot's previous server's) held for that read (arow.held). */
static void row_unknown(hx_annot *a, arow *r)
{
	word_put(a, a->states, r->state);
	r->state = NULL;
	r->held = true;
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
static int read_rows(hx_annot *a, char *out, size_t len, bool stale)
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
		if (strncmp(line, "# be_id ", 8) == 0) {
			c_px = -1; /* `show servers state`'s, in a chunk with both */
			continue;
		}
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
		/* a slot that took an instance since every server was read has
		 * no row yet: a newcomer as one in a row of another instance (but
		 * not at the start: those held their slot before) */
		bool added = !r;
		if (!r)
			r = row_add(a, v->name, sn);
		r->seen = true;
		hint = (size_t)(r - a->rows) + 1;
		bool fresh = row_newcomer(a, r, sn < v->nslots ? v->slots[sn].id : NULL) &&
		             (!added || a->read_once);
		char detail[200], state[17]; /* a status word of at most 16 bytes */
		hx_annot_describe(f[c_st], c_cs >= 0 ? f[c_cs] : NULL, c_cd >= 0 ? f[c_cd] : NULL,
		                  c_lc >= 0 ? f[c_lc] : NULL, state, sizeof(state), detail,
		                  sizeof(detail));
		bool words = !r->detail || strcmp(detail, r->detail) != 0;
		if (words) {
			detail_put(a, r->detail);
			r->detail = detail_get(a, detail);
		}
		/* A slot's new instance (or one not shown yet for that reason)
		 * whose server this answer may not be: asked before the model
		 * moved (perhaps before the slot changed hands: asked again, on
		 * the sink's connection, without a poll's late read), or haproxy
		 * not yet told (the runtime batch that tells it reads it back or
		 * asks it).  Not shown with that state; the words are held for
		 * the next read. */
		bool pending = fresh || (r->held && !r->state);
		if (pending && (stale || !slot_confirmed(&v->slots[sn]))) {
			row_unknown(a, r);
			if (stale) {
				hx_annot_touch(a, v->name, sn);
				a->poked = true;
			}
			continue;
		}
		bool changed = words || !r->state || strcmp(state, r->state) != 0;
		if (!r->state || strcmp(state, r->state) != 0) {
			word_put(a, a->states, r->state);
			r->state = word_get(a, &a->states, state);
		}
		uint64_t since = row_since(a, c_ch >= 0 ? f[c_ch] : NULL, &wall);
		/* A new instance's check words are the slot's previous server's
		 * until haproxy checks the new address (it keeps them across `set
		 * server addr`; a checked instance joins `health down`, a change
		 * of state): held, not shown, until they change, it is up (checks
		 * passed since) or its state is older than a check surely is
		 * (checked_within_ms: the same words again, its own now). */
		bool hold = (fresh || r->held) && !(r->held && words) && strcmp(state, "up") != 0 &&
		            c_cs >= 0 && f[c_cs][0] && since &&
		            wall - since < checked_within_ms(a) * 1000000ull;
		if (hold != r->held) {
			r->held = hold;
			changed = true;
		}
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
		char *id = sn < v->nslots ? v->slots[sn].id : NULL;
		if (!r) {
			if (id) /* joined between two reads, not by this sink's change */
				hx_rows_moved(a, v->name, sn);
			continue;
		}
		r->seen = true;
		hint = (size_t)(r - a->rows) + 1;
		bool fresh = row_newcomer(a, r, id);
		if (fresh) /* its state is the previous instance's: not shown until read */
			row_unknown(a, r);
		bool moved = since_moved(r->since_ns, since_secs(a, st.since_s, &wall), false);
		if (id && (fresh || moved || !r->detail || (r->fp && r->fp != st.fp)))
			hx_rows_moved(a, v->name, sn);
		r->fp = st.fp;
	}
	return any ? 0 : -EPROTO;
}

/* Before a full answer is read: nothing seen yet. */
void hx_rows_unsee(hx_annot *a)
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
				row_withdraw(a, r->service, r->id); /* the row's references */
			} else {
				word_put(a, a->names, r->service);
				hx_cstr_put(r->id);
			}
			detail_put(a, r->detail);
			word_put(a, a->states, r->state);
			continue;
		}
		a->rows[n++] = *r;
	}
	/* Once all are read, the room follows the servers (1/16 spare): growth
	 * by half leaves up to a third unused (0.15 MB at 10,000). */
	if (a->rowcap > n + n / 8 + 64) {
		a->rowcap = n + n / 16 + 64;
		a->rows = a->h->xrealloc(a->rows, a->rowcap * sizeof(*a->rows));
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

/* The room a row's label takes ("NAME/sN": the slot's number is at most
 * 10 digits), and the label written at *p (moved past it). */
static size_t label_room(const arow *r)
{
	return strlen(r->service) + 13;
}

static const char *label_write(char **p, const arow *r)
{
	char *l = *p;
	size_t len = strlen(r->service);
	memcpy(l, r->service, len);
	memcpy(l + len, "/s", 2);
	size_t nn = hx_num_str(l + len + 2, 11, (long)r->slot + 1);
	*p = l + len + 2 + nn + 1;
	return l;
}

static regent_annotation row_annotation(const arow *r, char **labels)
{
	return (regent_annotation){
		.size = sizeof(regent_annotation),
		.service = r->service,
		.id = r->id,
		.label = label_write(labels, r),
		.state = r->state,
		.detail = r->held ? NULL : r->detail,
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
	if (!r || !r->id || !r->state || strcmp(r->id, id) != 0)
		return false; /* (a row with no state yet publishes nothing) */
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
	size_t room = 1;
	for (size_t i = 0; i < a->ndirty; i++)
		room += label_room(&a->rows[a->dirty[i]]);
	char *labels = h->xmalloc(room), *lp = labels;
	for (size_t i = 0; i < a->ndirty; i++) {
		const arow *r = &a->rows[a->dirty[i]];
		if (!r->id || !r->state)
			continue;
		pk[np] = row_annotation(r, &lp);
		put[np] = &pk[np];
		np++;
	}
	int rc = h->annotations_update(a->ctx, put, np, del, nd);
	free(del);
	free(dk);
	free(put);
	free(pk);
	free(labels);
	return rc;
}

/* The rows that hold an instance, to the core's annotations_foreach
 * (annotations_source, ABI 1.8): each read where it lies, its label
 * written on the stack. */
static void rows_source(void *self, void (*emit)(void *arg, const regent_annotation *an),
                        void *arg)
{
	hx_annot *a = self;
	for (size_t i = 0; i < a->nrows; i++) {
		const arow *r = &a->rows[i];
		if (!r->id || !r->state || !r->state[0])
			continue;
		char label[LABEL_MAX], *lp = label;
		if (label_room(r) > sizeof(label))
			continue; /* a service name is far shorter */
		regent_annotation an = row_annotation(r, &lp);
		emit(arg, &an);
	}
}

void hx_rows_source(hx_annot *a)
{
	const regent_host *h = a->h;
	a->sourced = REGENT_HOST_HAS(h, annotations_source) && h->annotations_source &&
	             h->annotations_source(a->ctx, rows_source, a) == 0;
}

/* Everything known, to a core without annotations_update (ABI < 1.5). */
static int publish_all(hx_annot *a)
{
	const regent_host *h = a->h;
	const regent_annotation **list = h->xmalloc((a->nrows + 1) * sizeof(*list));
	regent_annotation *items = h->xmalloc((a->nrows + 1) * sizeof(*items));
	size_t n = 0, room = 1;
	for (size_t i = 0; i < a->nrows; i++)
		room += label_room(&a->rows[i]);
	char *labels = h->xmalloc(room), *lp = labels;
	for (size_t i = 0; i < a->nrows; i++) {
		const arow *r = &a->rows[i];
		if (!r->id || !r->state)
			continue;
		items[n] = row_annotation(r, &lp);
		list[n] = &items[n];
		n++;
	}
	int rc = h->annotations_set(a->ctx, list, n);
	free(list);
	free(items);
	free(labels);
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
			a->rows[i].pub = a->rows[i].id && a->rows[i].state;
	for (size_t i = 0; i < a->ndirty; i++) {
		arow *r = &a->rows[a->dirty[i]];
		r->dirty = false;
		r->pub = r->id && r->state;
	}
	a->ndirty = 0;
	dels_clear(a);
	return 0;
}

int hx_rows_take(hx_annot *a, char *out, size_t len, bool full, bool ends, bool states,
                 bool stale)
{
	if (full)
		hx_rows_unsee(a);
	/* a chunk of `show servers state` may carry `show stat` rows too:
	 * read_states first (it writes into its own rows only), then those */
	int rc = states ? read_states(a, out, len) : read_rows(a, out, len, stale);
	if (states && rc == 0 && a->chunk_mixed)
		rc = read_rows(a, out, len, stale);
	if (ends && rc == 0)
		rows_sweep(a);
	return rc == 0 ? publish(a) : rc;
}

int hx_annot_feed(hx_annot *a, char *answer, bool full)
{
	return hx_rows_take(a, answer, strlen(answer), full, full, false, false);
}

void hx_rows_free(hx_annot *a)
{
	rows_clear(a);
	if (a->details)
		a->h->map_free(a->details, NULL); /* empty: every row let go */
	if (a->names)
		a->h->map_free(a->names, NULL);
	if (a->states)
		a->h->map_free(a->states, NULL);
	free(a->rows);
	free(a->dirty);
	dels_clear(a);
	free(a->dels);
}
