/* ctrs.c - the docker plugin's table of running containers (docker.h):
 * for each, what it should have while ready (the instances built from its
 * inspect), the agent-run checks of those that have one, and what is
 * reported up: the wanted instances without a check or whose check passes.
 * Reports go to the core as local_up/local_down. */
#include "docker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void update_gauge(state *st)
{
	if (st->m_containers)
		st->h->metric_set(st->m_containers, (double)st->nctrs);
}

/* ------------------------------------------------------------------ */
/* the container table and what is reported                           */
/* ------------------------------------------------------------------ */

ctr *dk_ctr_find(state *st, const char *id)
{
	for (ctr *c = st->ctrs; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			return c;
	return NULL;
}

ctr *dk_ctr_new(state *st, const char *id, const char *name)
{
	ctr *c = calloc(1, sizeof *c);
	if (!c) {
		st->h->log(st->ctx, REGENT_LOG_ERROR, "container %.12s: out of memory", id);
		return NULL;
	}
	c->st = st;
	snprintf(c->id, sizeof c->id, "%s", id);
	memcpy(c->short_id, id, 12);
	snprintf(c->name, sizeof c->name, "%s", name ? name : "");
	c->stop_signal = 15;
	c->next = st->ctrs;
	if (st->ctrs)
		st->ctrs->prev = c;
	st->ctrs = c;
	st->nctrs++;
	update_gauge(st);
	return c;
}

static void free_insts(dk_inst **v, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		dk_inst_free(&(*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

static void free_checkers(ctr *c)
{
	for (size_t i = 0; i < c->nchk; i++)
		dk_checker_free(c->chk[i]);
	free(c->chk);
	c->chk = NULL;
	c->nchk = 0;
}

void dk_ctr_free_up(ctr *c)
{
	free_insts(&c->up, &c->nup);
	free_insts(&c->want, &c->nwant);
	free_checkers(c);
	dk_pid_forget(c);
}

/* Debug: the whole instance (every field is validated by then). */
static void log_inst(state *st, const ctr *c, const dk_inst *in)
{
	char tags[512] = "", meta[1024] = "";
	size_t o = 0;
	for (size_t i = 0; i < in->ntags && o < sizeof tags; i++)
		o += (size_t)snprintf(tags + o, sizeof tags - o, "%s%s", i ? "," : "", in->tags[i]);
	o = 0;
	for (size_t i = 0; i < in->nmeta && o < sizeof meta; i++)
		o += (size_t)snprintf(meta + o, sizeof meta - o, "%s%s=%s", i ? "," : "",
		                      in->meta[i].key, in->meta[i].value);
	st->h->log(st->ctx, REGENT_LOG_DEBUG,
	           "container %s (%s): instance %s service=%s address=%s:%u/%s private_port=%u "
	           "tags=[%s] meta={%s}",
	           c->name, c->short_id, in->id, in->service, in->address, in->port,
	           in->proto == REGENT_PROTO_UDP ? "udp" : "tcp", in->private_port, tags, meta);
}

/* Makes `want` what is reported for c: downs what left, ups the rest
 * (the core ignores an identical re-report). */
static void report_set(state *st, ctr *c, const dk_inst *want, size_t n, uint64_t origin_ns)
{
	const regent_host *h = st->h;
	bool changed = n != c->nup;
	for (size_t i = 0; i < n && !changed; i++)
		if (!dk_inst_equal(&want[i], &c->up[i]))
			changed = true;
	if (!changed)
		return;
	h->mark_change(st->ctx, origin_ns ? origin_ns : h->wall_ns());
	for (size_t i = 0; i < c->nup; i++) {
		bool keep = false;
		for (size_t j = 0; j < n && !keep; j++)
			keep = strcmp(c->up[i].id, want[j].id) == 0;
		if (!keep)
			h->local_down(st->ctx, c->up[i].id);
	}
	dk_inst *copy = n ? calloc(n, sizeof *copy) : NULL;
	size_t k = 0;
	bool debug = h->log_enabled(st->ctx, REGENT_LOG_DEBUG);
	for (size_t j = 0; j < n; j++) {
		regent_instance v;
		dk_inst_view(&want[j], &v);
		if (debug)
			log_inst(st, c, &want[j]);
		h->local_up(st->ctx, &v);
		if (copy && dk_inst_copy(&copy[k], &want[j]) == 0)
			k++;
	}
	if (n && k != n)
		h->log(st->ctx, REGENT_LOG_ERROR, "container %s: out of memory keeping its instances",
		       c->short_id);
	free_insts(&c->up, &c->nup);
	c->up = copy;
	c->nup = k;
}

void dk_ctr_down(state *st, ctr *c, const char *why, uint64_t origin_ns)
{
	if (c->nup)
		st->h->log(st->ctx, REGENT_LOG_INFO, "container %s (%s) %s: %zu instance%s down",
		           c->name, c->short_id, why, c->nup, c->nup == 1 ? "" : "s");
	report_set(st, c, NULL, 0, origin_ns);
	/* Not ready: its checks stop, and start over (failing) when it is. */
	free_insts(&c->want, &c->nwant);
	free_checkers(c);
}

/* Reports the wanted instances that have no check or whose check passes. */
static void report_checked(state *st, ctr *c, uint64_t origin_ns)
{
	dk_inst *pass = c->nwant ? calloc(c->nwant, sizeof *pass) : NULL;
	size_t n = 0;
	if (c->nwant && !pass) {
		st->h->log(st->ctx, REGENT_LOG_ERROR, "container %s: out of memory", c->short_id);
		return;
	}
	for (size_t i = 0; i < c->nwant; i++) {
		bool ok = c->want[i].check.type == DK_CHECK_NONE;
		for (size_t j = 0; j < c->nchk && !ok; j++)
			ok = strcmp(dk_checker_id(c->chk[j]), c->want[i].id) == 0 &&
			     dk_checker_passing(c->chk[j]);
		if (ok)
			pass[n++] = c->want[i]; /* borrowed: report_set copies */
	}
	report_set(st, c, pass, n, origin_ns);
	free(pass);
}

static void on_check_changed(ctr *c)
{
	report_checked(c->st, c, 0);
}

/* The service's agent_check* keys ([service NAME] in the INI file) for an
 * instance without a check label. */
static void service_check(state *st, ctr *c, dk_inst *in)
{
	static const char *const params[] = {"interval", "timeout", "rise", "fall", "method",
	                                     "status"};
	const regent_host *h = st->h;
	const char *spec = h->service_string(st->ctx, in->service, "agent_check");
	if (in->check.type != DK_CHECK_NONE || !spec || !spec[0])
		return;
	char why[200], key[40];
	int rc = dk_check_parse(spec, &in->check, why, sizeof why);
	for (size_t i = 0; rc == 0 && i < sizeof params / sizeof params[0]; i++) {
		snprintf(key, sizeof key, "agent_check_%s", params[i]);
		const char *v = h->service_string(st->ctx, in->service, key);
		if (v && v[0])
			rc = dk_check_param(&in->check, params[i], v, why, sizeof why);
	}
	if (rc == 0)
		rc = dk_check_validate(&in->check, why, sizeof why);
	if (rc < 0) {
		/* validate() refused it already; only an out-of-memory gets here */
		h->log(st->ctx, REGENT_LOG_ERROR, "container %s (%s): [service %s] agent_check: %s",
		       c->name, c->short_id, in->service, why);
		dk_check_free(&in->check);
	}
}

/* Makes insts (taken) what c wants while ready; keeps the checkers of
 * unchanged instances (and their verdicts), starts new ones failing. */
static void set_want(state *st, ctr *c, dk_inst *insts, size_t n)
{
	dk_checker **keep = calloc(n ? n : 1, sizeof *keep);
	size_t nkeep = 0;
	if (!keep) {
		st->h->log(st->ctx, REGENT_LOG_ERROR, "container %s: out of memory", c->short_id);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		service_check(st, c, &insts[i]);
		if (insts[i].check.type == DK_CHECK_NONE)
			continue;
		dk_checker *k = NULL;
		for (size_t j = 0; j < c->nchk && !k; j++)
			if (c->chk[j] && dk_checker_same(c->chk[j], &insts[i])) {
				k = c->chk[j];
				c->chk[j] = NULL;
			}
		if (!k)
			k = dk_checker_new(st, c, &insts[i], on_check_changed);
		if (k)
			keep[nkeep++] = k;
		else
			st->h->log(st->ctx, REGENT_LOG_ERROR,
			           "container %s: instance %s: cannot start its check (out of memory); "
			           "it stays down", c->short_id, insts[i].id);
	}
	for (size_t j = 0; j < c->nchk; j++)
		if (c->chk[j])
			dk_checker_free(c->chk[j]);
	free(c->chk);
	c->chk = keep;
	c->nchk = nkeep;
	free_insts(&c->want, &c->nwant);
	c->want = insts;
	c->nwant = n;
}

void dk_ctr_unqueue(state *st, ctr *c)
{
	if (c->req) {
		st->h->http_cancel(c->req);
		c->req = NULL;
		st->inflight--;
	}
	if (c->queued) {
		c->queued = false;
		st->nqueued--;
	}
}

/* Forgets c, taking its instances down first when report is set. */
void dk_ctr_remove(state *st, ctr *c, bool report, const char *why, uint64_t origin_ns)
{
	if (report)
		dk_ctr_down(st, c, why, origin_ns);
	dk_ctr_unqueue(st, c);
	if (c->in_sync) {
		c->in_sync = false;
		st->sync_pending--;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		st->ctrs = c->next;
	if (c->next)
		c->next->prev = c->prev;
	st->nctrs--;
	update_gauge(st);
	dk_ctr_free_up(c);
	free(c);
}

bool dk_stop_signal(const ctr *c, int sig)
{
	return sig == 15 || sig == 9 || sig == 2 || sig == 3 ||
	       (c->stop_signal > 0 && sig == c->stop_signal);
}

/* ------------------------------------------------------------------ */
/* inspect answers                                                    */
/* ------------------------------------------------------------------ */

void dk_ctr_apply(state *st, ctr *c, const dk_container *dc)
{
	const regent_host *h = st->h;
	if (!dc->running) {
		h->log(st->ctx, REGENT_LOG_DEBUG, "container %s (%s) is not running", c->name,
		       c->short_id);
		dk_ctr_remove(st, c, true, "is not running", c->origin_ns);
		return;
	}
	dk_escape(dc->name, c->name, sizeof c->name);
	snprintf(c->run, sizeof c->run, "%s", dc->started_at);
	c->run_ns = dk_parse_time(dc->started_at);
	dk_pid_record(st, c, dc->pid);
	if (c->stopping && strcmp(c->run, c->stop_run) != 0)
		c->stopping = false; /* restarted since (its start event was missed) */
	int sig = dk_signal_number(dc->stop_signal);
	c->stop_signal = sig > 0 ? sig : 15;

	dk_settings s = {
		.h = st->h, .node = st->node, .host_ip = st->host_ip, .internal = st->internal};
	dk_result r;
	if (dk_build(dc, &s, &r) < 0) {
		dk_result_free(&r);
		h->log(st->ctx, REGENT_LOG_ERROR, "container %s (%s): out of memory", c->name,
		       c->short_id);
		return;
	}
	if (!c->warned) {
		for (size_t i = 0; i < r.nwarnings; i++)
			h->log(st->ctx, REGENT_LOG_WARN, "%s", r.warnings[i]);
		for (size_t i = 0; i < r.nnotes; i++)
			h->log(st->ctx, REGENT_LOG_DEBUG, "%s", r.notes[i]);
		if (r.nwarnings && st->m_skipped)
			h->metric_add(st->m_skipped, (double)r.nwarnings);
		c->warned = true;
	}
	const char *why;
	bool ready = dk_container_ready(dc, &why);
	if (c->stopping) {
		ready = false;
		why = "stopping";
	}
	if (!ready) {
		dk_ctr_down(st, c, why, c->origin_ns);
	} else {
		set_want(st, c, r.insts, r.n); /* takes the instances */
		r.insts = NULL;
		r.n = 0;
		report_checked(st, c, c->origin_ns);
	}
	dk_result_free(&r);
}

