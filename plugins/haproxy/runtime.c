/* runtime.c - the haproxy sink's fast path: what haproxy has for each
 * server slot, the `set server` batches over the admin socket that bring
 * it to what the model wants (no reload), and drain polling (a leaving
 * instance goes to maintenance once its sessions are done). */
#include "sink.h"

#include <errno.h>


/* haproxy just loaded the installed file: that is its state now. */
void hx_ap_from_file(hx *s)
{
	s->epoch++;
	s->learn_pending = false;
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap = v->slots[i].file;
			v->slots[i].inflight = false;
		}
}

void hx_ap_unknown(hx *s)
{
	s->epoch++;
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			v->slots[i].ap.st = AP_UNKNOWN;
			v->slots[i].ap.weight = 0;
			v->slots[i].inflight = false;
		}
	/* Learnt from haproxy before anything is sent: an adopted or
	 * restarted haproxy then gets only the differences. */
	s->learn_pending = true;
}

/* ---- learning what haproxy has: one `show servers state` ---- */

/* One line of the dump (be_id be_name srv_id srv_name srv_addr
 * srv_op_state srv_admin_state srv_uweight ... srv_port (field 18)): the
 * server's view, for a live slot of ours. */
static void learn_line(hx *s, char *line)
{
	char *f[20] = {0}, *save = NULL;
	size_t nf = 0;
	for (char *t = strtok_r(line, " ", &save); t && nf < 20; t = strtok_r(NULL, " ", &save))
		f[nf++] = t;
	if (nf < 19)
		return;
	svc *v = hx_svc_find(&s->m, f[1]);
	if (!v || f[3][0] != 's')
		return;
	char *end;
	unsigned long idx = strtoul(f[3] + 1, &end, 10);
	if (*end || idx < 1 || idx > v->nslots || !hx_slot_live(v, idx - 1))
		return;
	slot *sl = &v->slots[idx - 1];
	unsigned admin = (unsigned)strtoul(f[6], NULL, 10);
	unsigned long uw = strtoul(f[7], NULL, 10), port = strtoul(f[18], NULL, 10);
	srv_view a = {.st = AP_READY};
	if (admin & 0x27) /* forced, inherited, configured or resolution maintenance */
		a.st = AP_MAINT;
	else if (admin & 0x18) /* forced or inherited drain */
		a.st = AP_DRAIN;
	bool v6;
	if (a.st != AP_MAINT && (!hx_valid_ip(f[4], a.addr, &v6) || !port || port > 65535))
		return; /* unknown: set from scratch */
	a.port = (uint16_t)port;
	a.weight = uw == hx_shape_weight(&v->run) || uw > 256 ? 0 : (uint16_t)(uw + 1);
	sl->ap = a;
}

static void on_learn(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->admin_req = NULL;
	if (s->batch_epoch != s->epoch) { /* haproxy changed since: learnt again if unknown */
		hx_kick(s);
		return;
	}
	s->learn_pending = false;
	if (status < 0 || strncmp(out, "1\n", 2) != 0) {
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "cannot read the server states over %s (%s): every server is set", s->admin_socket,
		          status < 0 ? uv_strerror(status) : "unexpected answer");
		hx_kick(s);
		return;
	}
	size_t n = 0;
	for (const char *p = out; *p;) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		char line[2048];
		if (l && l < sizeof(line) && p[0] != '#') {
			memcpy(line, p, l);
			line[l] = '\0';
			learn_line(s, line);
			n++;
		}
		p = nl ? nl + 1 : p + l;
	}
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "read %zu server states from haproxy: only differences are set",
	          n);
	hx_kick(s);
}

/* Asks haproxy for every server's state once (the admin channel is
 * free); true if the request went out. */
bool hx_learn(hx *s)
{
	int err = 0;
	s->batch_epoch = s->epoch;
	s->admin_req = hx_cli_request(s->h, s->loop, s->admin_socket, "show servers state", s->cmd_timeout,
	                              on_learn, s, &err);
	if (!s->admin_req) {
		s->learn_pending = false;
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Fast path: the admin socket                                        */
/* ------------------------------------------------------------------ */

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
		snprintf(t.addr, sizeof(t.addr), "%s", sl->addr);
		t.port = sl->port;
		t.weight = sl->weight;
	}
	return t;
}

/* Appends the commands that bring one slot from ap to its target; returns
 * how many. */
static int slot_cmds(hx_buf *b, const svc *v, size_t i, slot *sl)
{
	const srv_view *a = &sl->ap;
	/* The common case, a slot haproxy already has right, costs no text. */
	if (sl->st == ST_FREE ? a->st == AP_MAINT
	    : sl->st == ST_DRAIN ? a->st == AP_DRAIN
	    : a->st == AP_READY && a->port == sl->port && strcmp(a->addr, sl->addr) == 0 &&
	          a->weight == sl->weight)
		return 0;
	srv_view t = slot_target(sl);
	char srv[160];
	snprintf(srv, sizeof(srv), "%s/s%zu", v->name, i + 1);
	int n = 0;
	if (t.st == AP_READY) {
		if (a->st == AP_UNKNOWN || strcmp(a->addr, t.addr) != 0 || a->port != t.port) {
			hx_buf_printf(b, "%sset server %s addr %s port %u", b->len ? ";" : "", srv, t.addr,
			              (unsigned)t.port);
			n++;
		}
		unsigned w = t.weight ? t.weight - 1u : hx_shape_weight(&v->run);
		if (a->st == AP_MAINT && hx_shape_checked(&v->run)) {
			/* A joining instance of a service with a check: its check is
			 * pending ("health down") and it takes requests only once it
			 * passed `rise` checks.  Leaving maintenance puts a server up
			 * for an instant before "health down" lands, so it leaves at
			 * weight 0 (never picked) and gets its weight back after. */
			hx_buf_printf(b,
			              "%sset server %s weight 0;set server %s state ready;set server %s "
			              "health down;set server %s weight %u",
			              b->len ? ";" : "", srv, srv, srv, srv, w);
			n += 4;
		} else {
			/* The weight before the state: a joining instance at weight 0
			 * (drained by its owner) never takes a request. */
			if (a->weight != t.weight) {
				hx_buf_printf(b, "%sset server %s weight %u", b->len ? ";" : "", srv, w);
				n++;
			}
			if (a->st != AP_READY) {
				hx_buf_printf(b, "%sset server %s state ready", b->len ? ";" : "", srv);
				n++;
				/* Without a check, a joining instance counts as up at once;
				 * haproxy's connect checks take it out if it fails them. */
				if (a->st == AP_MAINT) {
					hx_buf_printf(b, ";set server %s health up", srv);
					n++;
				}
			}
		}
	} else if (t.st == AP_DRAIN) {
		if (a->st != AP_DRAIN) {
			hx_buf_printf(b, "%sset server %s state drain", b->len ? ";" : "", srv);
			n++;
		}
	} else if (a->st != AP_MAINT) {
		hx_buf_printf(b, "%sset server %s state maint", b->len ? ";" : "", srv);
		n++;
	}
	if (n) {
		sl->sent = t;
		sl->inflight = true;
	}
	return n;
}

static void on_admin_cmds(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	unsigned epoch = s->batch_epoch;
	size_t nchanged = s->batch_slots;
	(void)len;
	s->admin_req = NULL;
	bool same = epoch == s->epoch;
	if (status < 0) {
		for (svc *v = s->m.svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].inflight = false;
		admin_failed(s, uv_strerror(status));
		return;
	}
	size_t elen = 0;
	const char *err = hx_cli_error(out, &elen);
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++) {
			slot *sl = &v->slots[i];
			if (!sl->inflight)
				continue;
			sl->inflight = false;
			if (same)
				sl->ap = err ? (srv_view){.st = AP_UNKNOWN} : sl->sent;
			if (!err)
				hx_annot_touch(s->annot, v->name, i);
		}
	if (err) {
		s->h->metric_add(s->m_runtime_err, 1);
		char what[300];
		snprintf(what, sizeof(what), "haproxy refused a runtime change: %.*s", (int)(elen > 200 ? 200 : elen),
		         err);
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s", what);
		if (strstr(out, "No such backend") || strstr(out, "No such server")) {
			/* haproxy does not run the file regent installed: reload it. */
			s->force_reload = true;
		}
		admin_failed(s, "a runtime change was refused");
		return;
	}
	admin_ok(s);
	hx_annot_poke(s->annot); /* the page shows the new states soon */
	s->h->metric_add(s->m_runtime, (double)nchanged);
	hx_kick(s);
}

/* Sends the next batch of runtime commands; true if one went out. */
bool hx_send_cmds(hx *s)
{
	hx_buf b = {.h = s->h};
	size_t nslots = 0;
	for (svc *v = s->m.svcs; v && b.len < 8000; v = v->next)
		for (size_t i = 0; i < v->nslots && b.len < 8000; i++) {
			if (!hx_slot_live(v, i))
				continue;
			slot *sl = &v->slots[i];
			/* A draining slot haproxy already has in maintenance
			 * (a reload, or it never got there) is simply free. */
			if (sl->st == ST_DRAIN && sl->ap.st == AP_MAINT)
				hx_slot_free_id(&s->m, v, i);
			if (slot_cmds(&b, v, i, sl))
				nslots++;
		}
	if (!b.len) {
		hx_buf_free(&b);
		return false;
	}
	s->batch_epoch = s->epoch;
	s->batch_slots = nslots;
	int err = 0;
	s->h->log(s->ctx, REGENT_LOG_DEBUG, "runtime: %s", hx_buf_str(&b));
	s->admin_req = hx_cli_request(s->h, s->loop, s->admin_socket, hx_buf_str(&b), s->cmd_timeout,
	                              on_admin_cmds, s, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		for (svc *v = s->m.svcs; v; v = v->next)
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].inflight = false;
		admin_failed(s, strerror(-err));
		return false;
	}
	return true;
}

/* Drain polling: a draining slot with no session left (or past the drain
 * timeout) goes to maintenance and is free again. */
bool hx_any_draining(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++)
			if (hx_slot_live(v, i) && v->slots[i].st == ST_DRAIN && v->slots[i].ap.st == AP_DRAIN)
				return true;
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
	bool timed_out = now - sl->drain_since >= s->drain_timeout;
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
	for (svc *v = s->m.svcs; v; v = v->next) {
		size_t nd = 0, mark = b.len;
		for (size_t i = 0; i < v->nslots; i++) {
			if (!hx_slot_live(v, i) || v->slots[i].st != ST_DRAIN)
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
	s->admin_polling = true;
	s->admin_req = hx_cli_request(s->h, s->loop, s->admin_socket, hx_buf_str(&b), s->cmd_timeout,
	                              on_admin_poll, s, &err);
	hx_buf_free(&b);
	if (!s->admin_req) {
		s->admin_polling = false;
		admin_failed(s, strerror(-err));
	}
}
