/* runtime.c - the haproxy sink's fast path: what haproxy has for each
 * server slot, the `set server` batches over the admin socket that bring
 * it to what the model wants (no reload), each small batch reading its
 * servers back in the same exchange (for the status page, and a leaving
 * instance's drain check), and drain polling (a leaving
 * instance goes to maintenance once its sessions are done), and the
 * listeners of dropped sections closed before their reload (`disable
 * frontend`).  Per event it
 * reads the model's dirty lists (slots.c: the slots whose target or
 * haproxy's view changed, the slots draining), never every slot; only a
 * reload or an unknown haproxy queues every slot once. */
#include "sink.h"

#include <errno.h>


/* haproxy just loaded the installed file: that is its state now. */
void hx_ap_from_file(hx *s)
{
	s->epoch++;
	hx_conn_reset(s->rt, s->want_worker); /* a new worker (the master named it): its own connection */
	s->learn_pending = false;
	for (svc *v = s->m.svcs; v; v = v->next) {
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap = v->slots[i].file;
			v->slots[i].inflight = false;
		}
		if (v->run.listen)
			hx_svc_dirty_all(&s->m, v);
	}
}

void hx_on_worker(void *arg, long was, long pid)
{
	hx *s = arg;
	/* A reload or restart of regent's own under way: it resets the
	 * connection itself once it sees the new worker.  Yielding: the new
	 * instance of a reload drives haproxy now (handover.c); it is that
	 * one's worker, read again if this one drives again. */
	if (s->stopping || s->yielding || s->ps >= P_RENAME || (s->manage && !s->master_ready))
		return;
	s->h->log(s->ctx, REGENT_LOG_WARN,
	          "admin socket %s: another haproxy worker answers (pid %ld, was %ld) without a reload "
	          "by regent: its server states are read and the differences set",
	          s->admin_socket, pid, was);
	hx_ap_unknown(s);
	hx_kick(s);
}

void hx_ap_unknown(hx *s)
{
	s->epoch++;
	hx_conn_reset(s->rt, 0); /* adopted, restarted or reloaded: connect anew */
	for (svc *v = s->m.svcs; v; v = v->next) {
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap.st = AP_UNKNOWN;
			v->slots[i].ap.weight = 0;
			v->slots[i].inflight = false;
		}
		if (v->run.listen)
			hx_svc_dirty_all(&s->m, v);
	}
	/* Learnt from haproxy before anything is sent: an adopted or
	 * restarted haproxy then gets only the differences. */
	s->learn_pending = true;
}

/* ---- learning what haproxy has: `show servers state`, per chunk of services ---- */

/* One line of the dump (be_id be_name srv_id srv_name srv_addr
 * srv_op_state srv_admin_state srv_uweight ... srv_port (field 18)),
 * NUL-terminated, split in place: the server's view, for a live slot of
 * ours.  *v is the last line's service (lines come by service). */
static void learn_line(hx *s, char *line, svc **v)
{
	char *f[20] = {0};
	size_t nf = hx_state_fields(line, f, 20);
	if (nf < 19)
		return;
	if (!*v || strcmp((*v)->name, f[1]) != 0)
		*v = hx_svc_find(&s->m, f[1]);
	svc *sv = *v;
	if (!sv || f[3][0] != 's')
		return;
	char *end;
	unsigned long idx = strtoul(f[3] + 1, &end, 10);
	if (*end || idx < 1 || idx > sv->nslots || !hx_slot_live(sv, idx - 1))
		return;
	slot *sl = &sv->slots[idx - 1];
	unsigned admin = (unsigned)strtoul(f[6], NULL, 10);
	unsigned long uw = strtoul(f[7], NULL, 10), port = strtoul(f[18], NULL, 10);
	srv_view a = {.st = AP_READY};
	if (admin & 0x27) /* forced, inherited, configured or resolution maintenance */
		a.st = AP_MAINT;
	else if (admin & 0x18) /* forced or inherited drain */
		a.st = AP_DRAIN;
	if (a.st != AP_MAINT && (!hx_ip_parse(f[4], &a.addr) || !port || port > 65535))
		return; /* unknown: set from scratch */
	a.port = (uint16_t)port;
	a.weight = uw == hx_shape_weight(&sv->run) || uw > 256 ? 0 : (uint16_t)(uw + 1);
	sl->ap = a;
	hx_slot_dirty(&s->m, sv, idx - 1);
}

/* A row of a chunk's answer, as it is read (statedump.c hx_state_next:
 * the answer is never held whole), in place; none once haproxy changed
 * since the learn began (it is learnt again). */
static void learn_row(hx *s, char *line, size_t len)
{
	if (s->batch_epoch != s->epoch || !len || len >= 2048 || line[0] == '#' ||
	    (len == 1 && line[0] == '1'))
		return;
	svc *v = NULL; /* (the model may change between two reads: looked up per row) */
	learn_line(s, line, &v);
	s->learn_rows++;
}

/* One chunk of services' states (statedump.c hx_state_step). */
static void on_learn(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)out; /* the rows were read as they came (learn_row) */
	(void)len;
	s->admin_req = NULL;
	if (s->batch_epoch != s->epoch) { /* haproxy changed since: learnt again if unknown */
		hx_kick(s);
		return;
	}
	bool ok;
	int err;
	if (hx_state_step(s, status, on_learn, NULL, &ok, &err))
		return;
	s->learn_pending = false;
	free(s->st_cursor);
	s->st_cursor = NULL;
	if (!ok || err < 0)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "cannot read the server states over %s (%s): every server not read (%zu were) "
		          "is set",
		          s->admin_socket,
		          !ok ? (status < 0 ? uv_strerror(status) : "unexpected answer") : strerror(-err),
		          s->learn_rows);
	else
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "read %zu server states from haproxy in %u request(s): only differences are set",
		          s->learn_rows, s->st_reqs);
	hx_kick(s);
}

/* Asks haproxy for every server's state (the admin channel is free), in
 * chunks of services; true if the first request went out. */
bool hx_learn(hx *s)
{
	int err = 0;
	s->batch_epoch = s->epoch;
	s->learn_rows = 0;
	s->st_reqs = 0;
	free(s->st_cursor);
	s->st_cursor = NULL;
	if (!hx_state_next(s, on_learn, learn_row, &err)) {
		s->learn_pending = false;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Fast path: the admin socket                                        */
/* ------------------------------------------------------------------ */

/* A fast-path request: on the persistent connection (small answers,
 * pipelined), one-shot where there is none or while a reload is under way
 * (from the rename to the new worker confirmed): the persistent connection
 * still reaches the old worker then (it follows at the confirmation), and
 * a `disable frontend` of a section only the new file has must reach the
 * new one. */
static hx_cli *admin_request(hx *s, const char *cmd, hx_cli_cb cb, int *err)
{
	if (s->rt && s->ps < P_RENAME)
		return hx_conn_request(s->rt, cmd, s->cmd_timeout, cb, s, err);
	return hx_cli_request(s->h, s->loop, s->admin_socket, cmd, s->cmd_timeout, cb, s, err);
}

bool hx_admin_usable(hx *s)
{
	if (s->stopping || s->admin_blocked || s->admin_req)
		return false;
	/* From the final render to the new worker, haproxy's state is the
	 * file's: the fast path waits (a change made now would reach only the
	 * old worker). */
	if (s->ps >= P_FINAL)
		return false;
	if (s->manage && !s->master_ready)
		return false;
	if (s->stale_run)
		return false; /* an older file runs: the forced reload goes first */
	return true;
}

static void on_retry(uv_timer_t *t)
{
	hx *s = t->data;
	s->admin_blocked = false;
	hx_kick(s);
}

static void admin_failed(hx *s, const char *what)
{
	uint64_t d = s->h->backoff_next(&s->admin_backoff);
	char *msg = s->h->xasprintf("admin socket %s: %s; retrying in %llu ms", s->admin_socket, what,
	                      (unsigned long long)d);
	if (!streq(msg, s->admin_err))
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s", msg);
	hx_set_reason(s, &s->admin_err, msg);
	free(msg);
	hx_update_health(s);
	s->admin_blocked = true;
	uv_timer_start(s->t_retry, on_retry, d, 0);
}

static void admin_ok(hx *s)
{
	s->h->backoff_reset(&s->admin_backoff);
	if (s->admin_err) {
		hx_set_reason(s, &s->admin_err, NULL);
		hx_update_health(s);
	}
}

/* What haproxy should have for a slot. */
static srv_view slot_target(slot *sl)
{
	srv_view t = {.st = AP_MAINT};
	if (sl->st == ST_READY || sl->st == ST_DRAIN) {
		t.st = sl->st == ST_READY ? AP_READY : AP_DRAIN;
		t.addr = sl->addr;
		t.port = sl->port;
		t.weight = sl->weight;
	}
	return t;
}

/* The commands of one slot, composed without printf (a slide of the
 * routed window of a 10,000-instance service sends ~30,000 of them):
 * "set server NAME/sN " once, each command's words after it. */
typedef struct slot_text {
	hx_buf *b;
	char srv[96]; /* "set server NAME/sN " (a name is at most 63 bytes) */
	size_t srvlen;
} slot_text;

static void st_cmd(slot_text *t, const char *what, size_t len)
{
	if (t->b->len)
		hx_buf_add(t->b, ";", 1);
	hx_buf_add(t->b, t->srv, t->srvlen);
	hx_buf_add(t->b, what, len);
}

#define ST_CMD(t, lit) st_cmd((t), lit, sizeof(lit) - 1)

/* "WORD N" (a weight, a port) after the server's prefix. */
static void st_cmd_num(slot_text *t, const char *word, unsigned long n)
{
	char w[48];
	size_t l = strlen(word);
	memcpy(w, word, l);
	l += hx_num_str(w + l, sizeof(w) - l, (long)n);
	st_cmd(t, w, l);
}

/* ---- the views the batch in flight was sent (hx_model.sent) ---- */

static size_t sent_hash(const svc *v, size_t i)
{
	uint64_t x = ((uint64_t)(uintptr_t)v ^ ((uint64_t)i << 40)) * 0x9e3779b97f4a7c15ull;
	return (size_t)(x ^ (x >> 29) ^ (x >> 47));
}

/* The cell of slot i of v, or the empty one where it would go (sentcap > 0). */
static size_t sent_cell(const hx_model *m, const svc *v, size_t i)
{
	size_t mask = m->sentcap - 1;
	for (size_t k = sent_hash(v, i) & mask;; k = (k + 1) & mask)
		if (!m->sent[k].v || (m->sent[k].v == v && m->sent[k].i == i))
			return k;
}

/* Slot i of v goes in the batch, asking view t.  O(1) average. */
static void sent_put(hx_model *m, const svc *v, size_t i, srv_view t)
{
	if (4 * (m->nsent + 1) > 3 * m->sentcap) { /* filled to 3/4 at most */
		struct hx_sent *old = m->sent;
		size_t oldcap = m->sentcap;
		m->sentcap = oldcap ? 2 * oldcap : 64;
		m->sent = m->h->xcalloc(m->sentcap, sizeof(*m->sent));
		for (size_t k = 0; k < oldcap; k++)
			if (old[k].v)
				m->sent[sent_cell(m, old[k].v, old[k].i)] = old[k];
		free(old);
	}
	size_t k = sent_cell(m, v, i);
	if (!m->sent[k].v) {
		m->sent[k].v = v;
		m->sent[k].i = (uint32_t)i;
		m->nsent++;
	}
	m->sent[k].view = t;
}

/* What slot i of v was sent; unknown if it is not in the batch. */
static srv_view sent_get(const hx_model *m, const svc *v, size_t i)
{
	if (m->nsent) {
		size_t k = sent_cell(m, v, i);
		if (m->sent[k].v)
			return m->sent[k].view;
	}
	return (srv_view){.st = AP_UNKNOWN};
}

/* The batch was answered or failed: O(its table, sized by the largest
 * batch). */
static void sent_clear(hx_model *m)
{
	if (m->nsent)
		memset(m->sent, 0, m->sentcap * sizeof(*m->sent));
	m->nsent = 0;
}

/* Appends the commands that bring one slot from ap to its target; returns
 * how many, the target in *sent. */
static int slot_cmds(hx_buf *b, const svc *v, size_t i, slot *sl, srv_view *sent)
{
	const srv_view *a = &sl->ap;
	/* The common case, a slot haproxy already has right, costs no text. */
	if (sl->st == ST_FREE ? a->st == AP_MAINT
	    : sl->st == ST_DRAIN ? a->st == AP_DRAIN
	    : a->st == AP_READY && a->port == sl->port && hx_ip_eq(&a->addr, &sl->addr) &&
	          a->weight == sl->weight)
		return 0;
	srv_view t = slot_target(sl);
	slot_text x = {.b = b};
	size_t nl = strlen(v->name);
	if (nl > 63)
		nl = 63;
	memcpy(x.srv, "set server ", 11);
	memcpy(x.srv + 11, v->name, nl);
	memcpy(x.srv + 11 + nl, "/s", 2);
	x.srvlen = 13 + nl;
	x.srvlen += hx_num_str(x.srv + x.srvlen, sizeof(x.srv) - x.srvlen - 1, (long)(i + 1));
	x.srv[x.srvlen++] = ' ';
	int n = 0;
	if (t.st == AP_READY) {
		if (a->st == AP_UNKNOWN || !hx_ip_eq(&a->addr, &t.addr) || a->port != t.port) {
			char ab[HX_ADDR_MAX], w[HX_ADDR_MAX + 24];
			size_t l = strlen(hx_ip_str(&t.addr, ab));
			memcpy(w, "addr ", 5);
			memcpy(w + 5, ab, l);
			memcpy(w + 5 + l, " port ", 6);
			l += 11;
			l += hx_num_str(w + l, sizeof(w) - l, (long)t.port);
			st_cmd(&x, w, l);
			n++;
		}
		unsigned w = t.weight ? t.weight - 1u : hx_shape_weight(&v->run);
		if (a->st == AP_MAINT && hx_shape_checked(&v->run)) {
			/* A joining instance of a service with a check: its check is
			 * pending ("health down") and it takes requests only once it
			 * passed `rise` checks.  Leaving maintenance puts a server up
			 * for an instant before "health down" lands, so it leaves at
			 * weight 0 (never picked) and gets its weight back after. */
			ST_CMD(&x, "weight 0");
			ST_CMD(&x, "state ready");
			ST_CMD(&x, "health down");
			st_cmd_num(&x, "weight ", w);
			n += 4;
		} else {
			/* The weight before the state: a joining instance at weight 0
			 * (drained by its owner) never takes a request. */
			if (a->weight != t.weight) {
				st_cmd_num(&x, "weight ", w);
				n++;
			}
			if (a->st != AP_READY) {
				ST_CMD(&x, "state ready");
				n++;
				/* Without a check, a joining instance counts as up at once;
				 * haproxy's connect checks take it out if it fails them. */
				if (a->st == AP_MAINT) {
					ST_CMD(&x, "health up");
					n++;
				}
			}
		}
	} else if (t.st == AP_DRAIN) {
		if (a->st != AP_DRAIN) {
			ST_CMD(&x, "state drain");
			n++;
		}
	} else if (a->st != AP_MAINT) {
		ST_CMD(&x, "state maint");
		n++;
	}
	if (n) {
		*sent = t;
		sl->inflight = true;
	}
	return n;
}

/* Every queued slot: the batch's answer (err: refused, all unknown) for
 * those in flight.  They stay queued: the next batch drops those in step. */
typedef struct batch_done {
	hx *s;
	bool same, err, failed;
	bool fed; /* the batch's own read-back went to the page: nothing to touch */
	size_t left; /* slots of the batch not met yet: the walk ends at the last */
	bool done;
} batch_done;

static bool on_batch_slot(void *arg, svc *v, size_t i)
{
	batch_done *d = arg;
	slot *sl = &v->slots[i];
	if (!sl->inflight)
		return true;
	sl->inflight = false;
	if (d->left && --d->left == 0)
		d->done = true;
	if (d->failed)
		return true;
	if (d->same)
		sl->ap = d->err ? (srv_view){.st = AP_UNKNOWN} : sent_get(&d->s->m, v, i);
	if (!d->err && !d->fed)
		hx_annot_touch(d->s->annot, v->name, i);
	return true;
}

/* O(the queue up to the batch's last slot), not O(the queue) per batch:
 * 10,000 queued slots sent 60 a batch are not walked 170 times. */
static void batch_finish(hx *s, batch_done *d)
{
	d->left = s->batch_slots;
	for (svc *v = s->m.qhead, *next; v && !d->done; v = next) {
		next = v->qnext;
		hx_rq_filter_until(&s->m, v, on_batch_slot, d, &d->done);
	}
	sent_clear(&s->m);
}

static void on_stat_row(void *arg, const char *px, const char *sv, long scur);

/* Where the answer of a batch's drain checks (hx_send_cmds: `show stat`
 * after the `set server` commands) begins: its first "# pxname" header
 * line, else NULL (no check in the batch). */
static const char *stat_part(const char *out)
{
	for (const char *p = out; p && *p;) {
		if (strncmp(p, "# pxname,", 9) == 0)
			return p;
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	return NULL;
}

static void on_admin_cmds(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	unsigned epoch = s->batch_epoch;
	size_t nchanged = s->batch_slots;
	bool readback = s->batch_readback;
	s->batch_readback = false;
	s->admin_req = NULL;
	batch_done d = {.s = s, .same = epoch == s->epoch};
	if (status < 0) {
		d.failed = true;
		batch_finish(s, &d);
		admin_failed(s, uv_strerror(status));
		return;
	}
	/* The `set server` commands' answers are searched for an error, not
	 * the drain checks' rows after them (a check's text may say "error") */
	const char *stat = stat_part(out);
	char *cmds = stat ? s->h->xasprintf("%.*s", (int)(stat - out), out) : NULL;
	const char *ans = cmds ? cmds : out;
	size_t elen = 0;
	const char *err = hx_cli_error(ans, &elen);
	d.err = err != NULL;
	/* The batch's read-back (hx_send_cmds) is the page's look at these
	 * servers, as a poll after the change would be, unless a poll asked
	 * before may answer after it (then they are touched as before) */
	d.fed = readback && d.same && stat && !err && hx_annot_can_take(s->annot);
	batch_finish(s, &d);
	/* A slot the batch put in drain with no session left is free at once
	 * (its maintenance goes with the next batch): no drain poll for it */
	if (stat && !err)
		hx_parse_show_stat(stat, on_stat_row, s);
	/* then the rows to the page (read in place: after the parse above,
	 * which copies each line), a freed slot's row left out */
	if (d.fed)
		hx_annot_rows(s->annot, (char *)(uintptr_t)stat, len - (size_t)(stat - out));
	if (err) {
		s->h->metric_add(s->m_runtime_err, 1);
		char what[300];
		snprintf(what, sizeof(what), "haproxy refused a runtime change: %.*s", (int)(elen > 200 ? 200 : elen),
		         err);
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s", what);
		if (strstr(ans, "No such backend") || strstr(ans, "No such server")) {
			/* haproxy does not run the file regent installed: reload it. */
			s->force_reload = true;
		}
		free(cmds);
		admin_failed(s, "a runtime change was refused");
		return;
	}
	free(cmds);
	admin_ok(s);
	if (!d.fed)
		s->annot_poke = true; /* the page shows the new states soon (hx_send_cmds) */
	s->h->metric_add(s->m_runtime, (double)nchanged);
	hx_kick(s);
}

/* One queued slot: dropped when haproxy cannot reach it or has it right,
 * else its commands go into the batch (kept queued until the answer; a
 * full batch leaves the rest for the next one). */
typedef struct batch {
	hx *s;
	hx_buf b;
	hx_buf chk; /* the drain checks: `show stat NAME 4 SID` of the slots put in drain */
	hx_buf rb;  /* the read-back: `show stat NAME 4 SID` of every slot, while BATCH_READBACK */
	size_t nslots, nchk;
	bool full; /* the walk ends: the rest waits for the next batch */
} batch;

/* At most this many drain checks ride on a batch (the rest are polled:
 * hx_on_drain_poll); the line stays well within haproxy's 16 KB. */
#define BATCH_DRAIN_CHECKS 16
/* A batch of at most this many servers reads them back in the same
 * exchange for the page (annot.c hx_annot_rows), the drain checks among
 * them; a bigger one is read back by the page's own poll (touched). */
#define BATCH_READBACK 16

static bool batch_slot(void *arg, svc *v, size_t i)
{
	batch *c = arg;
	if (!hx_slot_live(v, i))
		return false; /* queued again when a reload makes it live */
	slot *sl = &v->slots[i];
	if (sl->inflight || c->b.len >= 8000)
		return true;
	/* A draining slot haproxy already has in maintenance (a reload, or
	 * it never got there) is simply free. */
	if (sl->st == ST_DRAIN && sl->ap.st == AP_MAINT)
		hx_slot_free_id(&c->s->m, v, i);
	srv_view t;
	if (slot_cmds(&c->b, v, i, sl, &t)) {
		sent_put(&c->s->m, v, i, t);
		c->nslots++;
		if (c->s->annot && c->nslots <= BATCH_READBACK)
			hx_buf_printf(&c->rb, "%sshow stat %s 4 %zu", c->rb.len ? ";" : "", v->name, i + 1);
		if (t.st == AP_DRAIN && c->nchk < BATCH_DRAIN_CHECKS) {
			hx_buf_printf(&c->chk, "%sshow stat %s 4 %zu", c->nchk ? ";" : "", v->name, i + 1);
			c->nchk++;
		}
		c->full = c->b.len >= 8000;
		return true;
	}
	return false; /* in step */
}

/* Sends the next batch of runtime commands; true if one went out.
 * O(the queue up to the batch's last slot), not O(the whole queue). */
bool hx_send_cmds(hx *s)
{
	batch c = {.s = s, .b = {.h = s->h}, .chk = {.h = s->h}, .rb = {.h = s->h}};
	for (svc *v = s->m.qhead, *next; v && !c.full; v = next) {
		next = v->qnext;
		if (v->nrq)
			hx_rq_filter_until(&s->m, v, batch_slot, &c, &c.full);
	}
	/* The servers read back in the same exchange (on_admin_cmds): for the
	 * page, instead of its own ask POKE_MS later (a change was two
	 * exchanges with haproxy and a leave four: now one and two), and a
	 * leaving instance's drain check among them: none left, it goes to
	 * maintenance with the next batch, not after a drain poll of its own.
	 * A bigger batch carries its drain checks only. */
	s->batch_readback = c.rb.len && c.nslots <= BATCH_READBACK;
	hx_buf *tail = s->batch_readback ? &c.rb : c.nchk ? &c.chk : NULL;
	if (c.b.len && tail) {
		hx_buf_add(&c.b, ";", 1);
		hx_buf_add(&c.b, tail->data, tail->len);
	}
	hx_buf_free(&c.chk);
	hx_buf_free(&c.rb);
	if (!c.b.len) {
		hx_buf_free(&c.b);
		/* The burst is sent: the state poll reads the servers it changed
		 * now (hx_annot_poke), once, not after every batch of it (a
		 * slide of 10,000 servers is ~100 batches; a read of a service
		 * of 20,000 servers after every few of them was read ~25 times) */
		if (s->annot_poke) {
			s->annot_poke = false;
			hx_annot_poke(s->annot);
		}
		return false;
	}
	s->batch_epoch = s->epoch;
	s->batch_slots = c.nslots;
	int err = 0;
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "runtime: %s", hx_buf_str(&c.b));
	s->admin_req = admin_request(s, hx_buf_str(&c.b), on_admin_cmds, &err);
	hx_buf_free(&c.b);
	if (!s->admin_req) {
		batch_done d = {.s = s, .failed = true};
		batch_finish(s, &d);
		admin_failed(s, strerror(-err));
		return false;
	}
	return true;
}

/* ---- listeners closed ahead of the reload ---- */

/* The batch of `disable frontend` answered.  haproxy 2.6 pauses a TCP
 * listener by disconnecting it (connect AF_UNSPEC): the port refuses new
 * connections at once, the sessions in flight go on, and the socket stays
 * bound (with SO_REUSEADDR, as haproxy and the bind check use, the port
 * can be bound again) until the reload drops the section.  The answer is
 * empty when it worked; a frontend the running worker does not have (it
 * runs an older file) has no listener to close either. */
static void on_drops(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->admin_req = NULL;
	char **names = s->drop_sent;
	size_t n = s->ndrop_sent;
	s->drop_sent = NULL;
	s->ndrop_sent = 0;
	size_t elen = 0;
	const char *err = status < 0 ? NULL : hx_cli_error(out, &elen);
	for (size_t i = 0; i < n; i++) {
		svc *v = hx_svc_find(&s->m, names[i]);
		/* (the skip path's install of the file without it may have come
		 * first: the reload waits for this answer, closed all the same) */
		if (v && !v->want.listen && (v->run.listen || status >= 0)) {
			if (status < 0) {
				hx_model_drop_queue(&s->m, v); /* tried again */
			} else {
				v->shut = v->run.listen != NULL;
				s->h->log(s->ctx, REGENT_LOG_INFO,
				          "service %s: listener closed over the runtime API (disable frontend); "
				          "its section goes with the next reload",
				          v->name);
			}
		}
		free(names[i]);
	}
	free(names);
	if (status < 0) {
		admin_failed(s, uv_strerror(status));
		return;
	}
	if (err)
		s->h->log(s->ctx, REGENT_LOG_DEBUG, "disable frontend: %.*s",
		          (int)(elen > 200 ? 200 : elen), err);
	admin_ok(s);
	hx_kick(s);
}

bool hx_send_drops(hx *s)
{
	if (!s->m.ndropq || s->stopping || s->admin_blocked || s->admin_req || !s->admin_socket ||
	    (s->manage && !s->master_ready))
		return false;
	size_t n;
	char **q = hx_model_drops_take(&s->m, &n);
	hx_buf b = {.h = s->h};
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		svc *v = hx_svc_find(&s->m, q[i]);
		if (!v || v->want.listen || !v->run.listen || v->shut || b.len >= 8000) {
			if (v && b.len >= 8000) /* a line haproxy takes: the rest goes next */
				hx_model_drop_queue(&s->m, v);
			free(q[i]);
			continue;
		}
		hx_buf_printf(&b, "%sdisable frontend %s", k ? ";" : "", v->name);
		q[k++] = q[i];
	}
	if (!k) {
		free(q);
		hx_buf_free(&b);
		return false;
	}
	s->drop_sent = q;
	s->ndrop_sent = k;
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "runtime: %s", hx_buf_str(&b));
	int err = 0;
	s->admin_req = admin_request(s, hx_buf_str(&b), on_drops, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		on_drops(s, err ? err : -EIO, "", 0);
		return false;
	}
	return true;
}

void hx_drops_reread(hx *s)
{
	hx_model_drops_reset(&s->m);
}

/* Whether every slot haproxy can reach has its state and address (the
 * weight aside): only queued slots can differ.  O(queued slots). */
bool hx_runtime_settled(hx *s)
{
	for (svc *v = s->m.qhead; v; v = v->qnext)
		for (size_t k = 0; k < v->nrq; k++) {
			size_t i = v->rq[k];
			if (!hx_slot_live(v, i))
				continue;
			const slot *sl = &v->slots[i];
			const srv_view *a = &sl->ap;
			bool eq = sl->st == ST_FREE ? a->st == AP_MAINT
			          : a->st == (sl->st == ST_READY ? AP_READY : AP_DRAIN) &&
			                    a->port == sl->port && hx_ip_eq(&a->addr, &sl->addr);
			if (!eq)
				return false;
		}
	return true;
}

/* Drain polling: a draining slot with no session left (or past the drain
 * timeout) goes to maintenance and is free again.  O(draining slots). */
bool hx_any_draining(hx *s)
{
	if (!s->m.ndrain)
		return false;
	for (svc *v = s->m.qhead; v; v = v->qnext)
		for (size_t k = 0; k < v->ndq; k++) {
			const slot *sl = &v->slots[v->dq[k]];
			if (hx_slot_live(v, v->dq[k]) && sl->st == ST_DRAIN && sl->ap.st == AP_DRAIN)
				return true;
		}
	return false;
}

static void on_stat_row(void *arg, const char *px, const char *sv, long scur)
{
	hx *s = arg;
	svc *v = hx_svc_find(&s->m, px);
	if (!v || sv[0] != 's')
		return;
	char *end;
	long idx = strtol(sv + 1, &end, 10);
	if (*end || idx < 1 || (size_t)idx > v->nslots || !hx_slot_live(v, (size_t)idx - 1))
		return;
	slot *sl = &v->slots[idx - 1];
	if (sl->st != ST_DRAIN || sl->ap.st != AP_DRAIN)
		return;
	uint64_t now = s->h->now_ms();
	bool timed_out = hx_slot_draining_ms(sl, now) >= s->drain_timeout;
	if (scur == 0 || timed_out) {
		s->h->log(s->ctx, timed_out && scur ? REGENT_LOG_WARN : REGENT_LOG_DEBUG,
		          "%s/s%ld: instance %s drained%s (%ld sessions left)", v->name, idx, sl->id,
		          timed_out && scur ? " by timeout" : "", scur);
		hx_slot_free_id(&s->m, v, (size_t)(idx - 1));
	}
}

static void on_admin_poll(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->admin_req = NULL;
	s->admin_polling = false;
	if (status < 0) {
		admin_failed(s, uv_strerror(status));
		return;
	}
	hx_parse_show_stat(out, on_stat_row, s);
	hx_kick(s);
}

void hx_on_drain_poll(uv_timer_t *t)
{
	hx *s = t->data;
	if (!hx_admin_usable(s) || !hx_any_draining(s))
		return;
	/* Only the draining servers (`show stat PROXY 4 SID`, the server ids
	 * being the slots' order), so that a poll costs O(draining) in
	 * haproxy's answer, not O(servers of the service); a service with
	 * many draining at once is asked whole. */
	hx_buf b = {.h = s->h};
	for (svc *v = s->m.qhead, *next; v; v = next) {
		next = v->qnext;
		if (!v->ndq)
			continue;
		hx_dq_filter(&s->m, v, NULL, NULL); /* those no longer draining go */
		size_t nd = 0, mark = b.len;
		for (size_t k = 0; k < v->ndq; k++) {
			size_t i = v->dq[k];
			if (!hx_slot_live(v, i))
				continue;
			if (++nd > 64)
				break;
			hx_buf_printf(&b, "%sshow stat %s 4 %zu", b.len ? ";" : "", v->name, i + 1);
		}
		if (nd > 64) {
			b.len = mark;
			b.data[mark] = '\0';
			hx_buf_printf(&b, "%sshow stat %s 4 -1", b.len ? ";" : "", v->name);
		}
	}
	int err = 0;
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "drain poll: %s", hx_buf_str(&b));
	s->admin_polling = true;
	s->admin_req = admin_request(s, hx_buf_str(&b), on_admin_poll, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		s->admin_polling = false;
		admin_failed(s, strerror(-err));
	}
}
