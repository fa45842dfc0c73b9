/* annot.c - what the haproxy sink tells the rest of the agent about each
 * server it routes to (host->annotations_update, ABI 1.5; the whole list
 * with annotations_set on an older core): the server's state in haproxy
 * (up, down, drain, maint...) and its last check, keyed by service and
 * instance id, for the stats sink's page.  It asks haproxy's admin socket
 * `show stat -1 4 -1` (server rows only) every interval, or, past
 * CHUNK_SERVERS servers, from the first poll on, in chunks of services
 * spread over the interval (one answer of every server is O(fleet) in one
 * loop turn, and past ~16,000 servers over the answer's 8 MB limit).
 * The cycles after the first ask `show servers state NAME` for the chunk
 * (a third of the bytes, 15 fields read): the servers whose state moved
 * there are asked with `show stat` along with the next chunk (ask_moved),
 * and every STAT_EVERY-th cycle asks `show stat` of all.  A small
 * runtime batch reads its servers back in its own exchange and hands the
 * rows here (hx_annot_rows, runtime.c).  Else
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
 * out, a slot still draining an instance that left the catalog is kept;
 * a slot's new instance is not shown with an answer asked before the
 * model moved (ask_gen), nor before haproxy has it (annot_rows.c).
 * The one-shot polls read their answer LATE_MS after asking (one read,
 * not a wakeup per command of the chunk).  The loop's CPU time of the
 * background polls (whole polls and chunks: the ask, the request's
 * callbacks, the answer's parse; not the read-back of the servers a
 * change touched, which is that change's cost) is counted in
 * regent_haproxy_state_poll_cpu_seconds_total (bench/lib/scale.sh takes
 * it out of a change's CPU).
 * It owns one timer, at most one request and what to ask next;
 * annot_rows.c holds the rows and what was published, annot_text.c words
 * a row, reads a `show servers state` row and writes a chunk's commands. */
#include "annot_int.h"

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
/* A one-shot poll's answer is read this long after it was asked (a
 * chunk's ~46 KB of `show servers state` in one read, not ~30) */
#define LATE_MS 20
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
/* ---- the loop ---- */

static void on_answer(void *arg, int status, const char *out, size_t len);


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

static void moved_clear(hx_annot *a)
{
	touch_free(a->moved, a->nmoved);
	a->moved = NULL;
	a->nmoved = a->movedcap = 0;
}

void hx_rows_moved(hx_annot *a, const char *service, size_t sn)
{
	if (a->stat_next)
		return; /* every server is read again */
	if (a->nmoved >= TOUCH_MAX) {
		moved_clear(a);
		a->stat_next = true;
		return;
	}
	if (a->nmoved == a->movedcap) {
		a->movedcap = a->movedcap ? 2 * a->movedcap : 16;
		a->moved = a->h->xrealloc(a->moved, a->movedcap * sizeof(*a->moved));
	}
	a->moved[a->nmoved++] = (struct touch){a->h->xstrdup(service), sn};
}

/* The `show stat` of the servers a `show servers state` chunk found
 * moved, ahead of the next chunk's commands in cmd (so that they cost the
 * background's share of the loop, BG_DUTY, not a poll of their own): at
 * most MAX_TOUCHED servers and half of CHUNK_BYTES of command, by
 * service, a service with MOVED_WHOLE or more of them whole (one header
 * for its rows); the rest go with the chunk after.  O(m log m). */
#define MOVED_WHOLE 4
static void ask_moved(hx_annot *a, hx_buf *cmd)
{
	qsort(a->moved, a->nmoved, sizeof(*a->moved), touch_cmp);
	size_t i = 0, nserv = 0;
	while (i < a->nmoved && nserv < MAX_TOUCHED && cmd->len < CHUNK_BYTES / 2) {
		size_t j = i + 1;
		while (j < a->nmoved && strcmp(a->moved[j].service, a->moved[i].service) == 0)
			j++;
		svc *v = hx_svc_find(a->m, a->moved[i].service);
		if (v && v->run.listen && j - i >= MOVED_WHOLE) {
			hx_buf_printf(cmd, "%sshow stat %s 4 -1", cmd->len ? ";" : "", v->name);
			nserv += v->run.nslots;
		} else if (v && v->run.listen) {
			for (size_t k = i; k < j; k++)
				hx_buf_printf(cmd, "%sshow stat %s 4 %zu", cmd->len ? ";" : "", v->name,
				              a->moved[k].slot + 1);
			nserv += j - i;
		}
		for (size_t k = i; k < j; k++)
			free(a->moved[k].service);
		i = j;
	}
	memmove(a->moved, a->moved + i, (a->nmoved - i) * sizeof(*a->moved));
	a->nmoved -= i;
	a->chunk_mixed = cmd->len > 0;
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
	a->ask_gen = a->m->gen; /* what the answer is as of (hx_annot_answer) */
	bool due = now >= a->next_full;
	bool small = fleet_small(a);
	bool bg_all = due || !a->nrows; /* a whole poll not only for touched servers */
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
	} else if (a->ntouched > MAX_TOUCHED && !due) {
		a->asked_kind = HX_ASK_SERVICES;
		ask_services(a, cmd);
		return a->asked_kind; /* the rest of touched stays */
	} else if (!due) {
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
			hx_rows_unsee(a);
		}
		a->chunk_mixed = false;
		if (!a->states_cycle)
			moved_clear(a); /* read with all of them */
		else if (a->nmoved)
			ask_moved(a, cmd);
		const char *last = hx_annot_chunk(a->m, a->cursor, CHUNK_SERVERS, CHUNK_BYTES,
		                                  a->states_cycle, cmd, &a->chunk_last, &a->chunk_servers);
		char *c = last ? strdup(last) : NULL;
		free(a->cursor);
		a->cursor = c;
		if (!last) { /* nothing left that haproxy runs: all of them (none), the cycle ends */
			hx_buf_puts(cmd, "show stat -1 4 -1");
			a->asked_kind = HX_ASK_ALL;
			cycle_reset(a);
		} else if (a->ntouched) {
			/* the changed servers wait for the chunk, then come as after
			 * a poke: a due chunk goes first (else, while changes keep
			 * coming, each read of them found the background due and
			 * asked again at once: a slide of 10,000 servers read its
			 * service of 20,000 ~25 times) */
			a->poked = true;
			a->ask_cpu = hx_thread_cpu_ns();
			a->asked_bg = true; /* a background chunk: its CPU is the poll's */
			return a->asked_kind;
		}
	}
	a->touched = NULL;
	a->ntouched = a->touchcap = 0;
	if (a->asked_kind == HX_ASK_ALL || a->asked_kind == HX_ASK_CHUNK)
		a->ask_cpu = hx_thread_cpu_ns();
	a->asked_bg = a->asked_kind == HX_ASK_CHUNK || (a->asked_kind == HX_ASK_ALL && bg_all);
	return a->asked_kind;
}

/* A background poll's CPU time on the loop (a->poll_cpu_ns: its ask and
 * its request's callbacks, hx_cli_meter; plus from t0 on: its answer's
 * callback) to regent_haproxy_state_poll_cpu_seconds_total. */
static void poll_cpu_count(hx_annot *a, uint64_t t0)
{
	if (!a->asked_bg || !a->m_poll_cpu)
		return;
	uint64_t ns = a->poll_cpu_ns;
	if (t0) {
		uint64_t t1 = hx_thread_cpu_ns();
		ns += t1 > t0 ? t1 - t0 : 0;
	}
	a->h->metric_add(a->m_poll_cpu, (double)ns / 1e9);
	a->poll_cpu_ns = 0;
	a->asked_bg = false;
}

static void ask(uv_timer_t *t)
{
	hx_annot *a = t->data;
	if (a->req)
		return;
	/* A background poll's start (no clock read for the read-back a
	 * change asks: one system call per change; a whole poll for touched
	 * servers that comes due meanwhile counts from its plan's end) */
	uint64_t t0 = a->m_poll_cpu && !a->ntouched && !a->overflow ? hx_thread_cpu_ns() : 0;
	uint64_t now = a->h->now_ms();
	hx_buf cmd = {.h = a->h};
	hx_annot_plan(a, now, &cmd);
	if (!t0)
		t0 = a->ask_cpu;
	if (!cmd.len) { /* nothing to ask yet */
		a->asked_bg = false;
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
		a->req = hx_cli_request_late(a->h, uv_handle_get_loop((uv_handle_t *)t), a->socket,
		                             hx_buf_str(&cmd), a->cmd_timeout, LATE_MS, on_answer, a,
		                             &err);
	hx_buf_free(&cmd);
	if (a->asked_bg && a->m_poll_cpu) { /* the poll's CPU: this, its request's, its answer's */
		uint64_t t1 = hx_thread_cpu_ns();
		a->poll_cpu_ns = t0 && t1 > t0 ? t1 - t0 : 0;
		hx_cli_meter(a->req, &a->poll_cpu_ns);
	}
	if (!a->req) {
		poll_cpu_count(a, 0);
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
	uint64_t t0 = a->asked_bg && a->m_poll_cpu ? hx_thread_cpu_ns() : 0;
	a->req = NULL;
	hx_annot_answer(a, status, out, len);
	poll_cpu_count(a, t0);
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
		uint64_t t0 = hx_thread_cpu_ns();
		rc = hx_rows_take(a, (char *)out, len, kind == HX_ASK_ALL, ends && !a->cycle_partial,
		                  kind == HX_ASK_CHUNK && a->states_cycle, a->m->gen != a->ask_gen);
		uint64_t t1 = hx_thread_cpu_ns();
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
		uint64_t c = hx_thread_cpu_ns();
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
	if (REGENT_HOST_HAS(h, metric) && h->metric)
		a->m_poll_cpu = h->metric(
		    ctx, REGENT_METRIC_COUNTER, "regent_haproxy_state_poll_cpu_seconds_total",
		    "Loop thread CPU time of the background server-state poll (whole polls and chunks: "
		    "ask, answer read and parse), not the read-back after a change.",
		    NULL);
	uv_timer_init(loop, t);
	t->data = a;
	uv_timer_start(t, ask, POKE_MS, 0);
	hx_rows_source(a);
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
	/* the same server again (a leave's drain, then its maint, within one
	 * poke): asked once, not once per command */
	if (a->ntouched && a->touched[a->ntouched - 1].slot == sn &&
	    strcmp(a->touched[a->ntouched - 1].service, service) == 0)
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

bool hx_annot_can_take(const hx_annot *a)
{
	return a && !a->req && !a->overflow;
}

void hx_annot_rows(hx_annot *a, char *answer, size_t len)
{
	if (!a)
		return;
	int rc = hx_rows_take(a, answer, len, false, false, false, false);
	if (rc < 0)
		a->h->log(a->ctx, REGENT_LOG_DEBUG, "server states: the read-back of a change: %s",
		          rc == -EPROTO ? "not a show stat answer" : strerror(-rc));
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
	hx_rows_free(a);
	touch_free(a->touched, a->ntouched);
	touch_free(a->asked, a->nasked);
	moved_clear(a);
	free(a->cursor);
	free(a->hdr_text);
	free(a->socket);
	free(a);
}
