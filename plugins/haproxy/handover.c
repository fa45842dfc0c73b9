/* handover.c - the haproxy sink's make-before-break hand-over: a SIGHUP
 * that changes [sink haproxy] starts a new instance beside the running
 * one (core/agent.c), and both would drive the same config_file and the
 * same haproxy.  The core gives the running instance no snapshot while the
 * new one is on trial, but what it had under way went on: a reload held
 * back by reload_interval fell due, an empty grace ended, a mirror patch
 * was in flight.  Its file then replaced the new instance's (whose next
 * patch found "another length" and wrote the whole file over it) and its
 * reload was taken by the new instance for someone else's ("another
 * haproxy worker answers"), or the reverse; haproxy could run the old
 * instance's file while the new one believed it ran its own.
 *
 * Here exactly one instance drives haproxy and the file at any time.  An
 * instance that starts finds the running one of the same config_file,
 * admin or master socket (the instances of this plugin in this process:
 * one [sink haproxy] section, so at most that one) and takes over from it:
 * the running one yields at once (hx_kick starts nothing any more: no
 * pipeline, mirror write, runtime change, restart; what it has in flight
 * ends), and the new one reads the file and adopts haproxy only once the
 * running one has nothing in flight (hx_ho_kick).  If the new one fails
 * its trial (or a newer reload abandons it), the running one drives again,
 * and when the new one had begun it treats the file and haproxy as unknown
 * (written whole, server states read back, one reload).  A change made by
 * anyone else is seen as before.
 *
 * Also here: the new instance carries the running one's listens over
 * (hx_ho_carry: a service in its empty grace keeps what is left of it),
 * and the writes of the file in flight are jobs whose end is seen even
 * after their instance stopped (hx_job_*: a stopped instance's write
 * lands before anyone writes or begins again).  Owns the list of live
 * instances, the jobs in flight and the hx ho_* fields. */
#include "sink.h"

static hx *live; /* started and not destroyed, newest first (the loop's thread only) */

/* The writes of config_file, the state file and the candidate in flight,
 * every instance's (hx_job_*): the core's file_write_cancel only
 * forgets the callback (hx_rename has no cancel), the write still lands.
 * So an instance that stops does not cancel them: its jobs lose it
 * (orphans) and their end is still seen here.  While an orphan is in
 * flight no instance begins or starts anything (a failed new instance's
 * rename would otherwise land over the file the running one wrote whole
 * when it resumed, and haproxy reload it). */
struct hx_job {
	struct hx_job *next;
	hx *s;                   /* NULL once its instance stopped (an orphan) */
	regent_file_write_cb cb; /* file_write, file_patch */
	hx_write_cb rcb;         /* hx_rename */
};
static hx_job *jobs;
static size_t norphans;

hx_job *hx_job_new(hx *s, regent_file_write_cb cb, hx_write_cb rcb)
{
	hx_job *j = s->h->xcalloc(1, sizeof(*j));
	j->s = s;
	j->cb = cb;
	j->rcb = rcb;
	j->next = jobs;
	jobs = j;
	return j;
}

static void orphans_gone(void);

/* Unlists and frees j; returns its instance (NULL: an orphan, whose end
 * may let the waiting instances go). */
static hx *job_end(hx_job *j)
{
	for (hx_job **pp = &jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	hx *s = j->s;
	free(j);
	if (!s && --norphans == 0)
		orphans_gone();
	return s;
}

void hx_job_file_done(void *arg, int status, const char *why)
{
	hx_job *j = arg;
	regent_file_write_cb cb = j->cb;
	hx *s = job_end(j);
	if (s)
		cb(s, status, why);
}

void hx_job_rename_done(void *arg, int status)
{
	hx_job *j = arg;
	hx_write_cb cb = j->rcb;
	hx *s = job_end(j);
	if (s)
		cb(s, status);
}

void hx_job_unstarted(hx_job *j)
{
	if (j)
		job_end(j);
}

void hx_jobs_orphan(hx *s)
{
	size_t n = 0;
	for (hx_job *j = jobs; j; j = j->next)
		if (j->s == s) {
			j->s = NULL;
			n++;
		}
	norphans += n;
	if (n)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "%zu write(s) of %s or its state file still in flight: the other instance "
		          "waits for them to land",
		          n, s->config_file);
}

bool hx_ho_held(const hx *s)
{
	(void)s;
	return norphans > 0;
}

/* Whether a and b drive the same haproxy or the same file. */
static bool same_target(const hx *a, const hx *b)
{
	return streq(a->config_file, b->config_file) || streq(a->admin_socket, b->admin_socket) ||
	       (a->master_socket && b->master_socket && streq(a->master_socket, b->master_socket));
}

/* Nothing of s touches the file or haproxy any more until it starts
 * something new: no pipeline step, write, admin or master request or
 * command under way. */
static bool quiet(const hx *s)
{
	return s->ps == P_IDLE && !s->mirror && !s->write && !s->state_write && !s->swap &&
	       !s->admin_req && !s->master_req && !s->run && !s->confirm;
}

/* The running one's last step in flight ends in its hx_kick, which
 * begins the new one (hx_ho_kick); the new one also looks every
 * WAIT_POLL_MS while it waits, in case that kick never comes (a step
 * that ends without one). */
#define WAIT_POLL_MS 20

static void on_wait_poll(uv_timer_t *t)
{
	hx *s = t->data;
	if (!s->ho_waiting || s->stopping) {
		uv_timer_stop(t);
		return;
	}
	if (s->ho_peer)
		hx_ho_kick(s->ho_peer);
	else if (!norphans) { /* the instance it took over from stopped first */
		uv_timer_stop(t);
		hx_own_begin(s);
	}
}

/* The last write of a stopped instance landed: whoever waited for it
 * goes on. */
static void orphans_gone(void)
{
	for (hx *o = live; o; o = o->ho_next) {
		if (o->stopping || !o->started || o->failed)
			continue;
		if (o->ho_waiting) {
			if (o->ho_peer)
				hx_ho_kick(o->ho_peer);
			else {
				uv_timer_stop(o->t_poll);
				hx_own_begin(o);
			}
		} else {
			hx_kick(o);
		}
	}
}

bool hx_ho_start(hx *s)
{
	hx *old = NULL;
	for (hx *o = live; o && !old; o = o->ho_next)
		if (o->started && !o->stopping && !o->failed && !o->yielding && !o->ho_peer &&
		    same_target(o, s))
			old = o;
	s->ho_next = live;
	live = s;
	if (!old && !norphans)
		return false;
	if (!old) { /* a stopped instance's write still lands: begins after it */
		s->ho_waiting = true;
		uv_timer_start(s->t_poll, on_wait_poll, WAIT_POLL_MS, WAIT_POLL_MS);
		return true;
	}
	old->yielding = true;
	if (old->sup)
		hx_sup_yield(old->sup, true);
	old->ho_peer = s;
	s->ho_peer = old;
	s->h->log(old->ctx, REGENT_LOG_INFO,
	          "a new instance takes over %s and haproxy: this one starts nothing from now on",
	          s->config_file);
	if (quiet(old) && !norphans)
		return false;
	s->ho_waiting = true;
	uv_timer_start(s->t_poll, on_wait_poll, WAIT_POLL_MS, WAIT_POLL_MS);
	s->h->log(s->ctx, REGENT_LOG_INFO,
	          "waiting for the previous instance's work in flight (%s) to end before taking "
	          "over %s and haproxy",
	          old->ps != P_IDLE ? "a reload"
	          : old->mirror     ? "a write of the file"
	          : quiet(old)      ? "a write of an instance that stopped"
	                            : "a request to haproxy",
	          s->config_file);
	return true;
}

void hx_ho_kick(hx *s)
{
	/* A reload under way ends as it would have (hx_kick's part of it:
	 * listener closes before the state dump, the dump once the admin
	 * socket is free). */
	if (s->ps != P_IDLE) {
		hx_send_drops(s);
		if ((s->ps == P_DUMP || s->ps == P_FINAL) && s->dump_pending && !s->admin_req)
			hx_start_dump(s);
	}
	hx *n = s->ho_peer;
	if (n && n->ho_waiting && !n->stopping && quiet(s) && !norphans) {
		uv_timer_stop(n->t_poll);
		s->h->log(n->ctx, REGENT_LOG_DEBUG, "the previous instance is idle: taking over %s",
		          n->config_file);
		hx_own_begin(n);
	}
}

void hx_ho_carry(hx *s)
{
	const hx *old = s->ho_peer;
	if (!old || !old->m.svcs)
		return;
	uint64_t now = s->h->now_ms();
	size_t ngrace = 0;
	for (const svc *o = old->m.svcs; o; o = o->next) {
		if (!o->want.listen || o->port <= 0 || (o->in_grace && o->grace_until <= now))
			continue;
		svc *v = hx_svc_find(&s->m, o->name);
		if (!v)
			continue; /* not in the file: never installed */
		v->ho_listen = true;
		v->port = o->port;
		v->empty_since = o->empty_since; /* 0: if empty here, since now */
		ngrace += o->in_grace;
	}
	if (ngrace)
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "%zu services in their empty grace keep it (the previous instance's deadline)",
		          ngrace);
}

/* The running instance s drives again after its successor stopped
 * without taking over.  A successor that had begun may have written the
 * file, set servers or reloaded: what s knew of them is dropped. */
static void resume(hx *s, bool touched)
{
	s->yielding = false;
	if (s->sup)
		hx_sup_yield(s->sup, false);
	s->h->log(s->ctx, REGENT_LOG_INFO,
	          "the new instance did not take over: this one drives %s and haproxy again%s",
	          s->config_file, touched ? " (the file written whole, server states read back, "
	                                    "one reload)" : "");
	if (!touched || s->stopping)
		return;
	hx_mirror_unknown(s);
	hx_ap_unknown(s);
	s->force_reload = true;
	/* no kick here: the core hands s the whole catalog (agent.c
	 * trial_failed), or stops it next (shutdown) */
}

void hx_ho_leave(hx *s)
{
	if (s->ho_cat)
		s->h->catalog_unref(s->ho_cat);
	s->ho_cat = NULL;
	hx *p = s->ho_peer;
	s->ho_peer = NULL;
	if (p) {
		if (p->yielding) {
			p->ho_peer = NULL;
			resume(p, s->ho_began); /* s was the new one */
		} else if (p->ho_waiting && !p->stopping && !norphans) {
			uv_timer_stop(p->t_poll);
			hx_own_begin(p); /* s was the running one: nothing of it runs now (its
			                  * model is still there for hx_ho_carry) */
			p->ho_peer = NULL;
		} else { /* (waiting: begins once s's writes landed, on_wait_poll) */
			p->ho_peer = NULL;
		}
	}
}

void hx_ho_forget(hx *s)
{
	hx_ho_leave(s);
	for (hx **pp = &live; *pp; pp = &(*pp)->ho_next)
		if (*pp == s) {
			*pp = s->ho_next;
			break;
		}
	s->ho_next = NULL;
}
