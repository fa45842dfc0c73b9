/* accepted.c - when a candidate goes without a separate `haproxy -c`: the
 * service sections haproxy accepted before (compared without their name,
 * id and bind lines), and the managed cold start - haproxy's first start
 * waiting, for at most start_wait, for the registry's first complete read
 * so that it starts once with every service (that file unchecked: the
 * start parses it), the first candidate with services reloaded unchecked
 * when haproxy had to start without it, and what follows when haproxy
 * refuses either.  pipeline.c asks before it checks a candidate; the
 * scheduler (haproxy.c) asks hx_first_start_waits before it starts
 * haproxy. */
#include "sink.h"

/* ------------------------------------------------------------------ */
/* Sections haproxy accepted                                          */
/* ------------------------------------------------------------------ */

/* A service section as haproxy judges it: its listen block after the bind
 * line, and its server options.  Name, id and bind address are the
 * model's (validated names, unique forced ids, validated addresses) and
 * server lines are validated addresses or `disabled`: two sections with
 * the same key are accepted or refused alike by haproxy's parser (a port
 * in use is the model's bind check, and haproxy -c binds nothing anyway). */
static const char *shape_tail(const shape *p)
{
	const char *b = strstr(p->listen, "\n    bind ");
	const char *nl = b ? strchr(b + 1, '\n') : NULL;
	return nl ? nl + 1 : p->listen;
}

static bool ok_shape_has(const hx *s, const shape *p)
{
	const char *tail = shape_tail(p), *opts = p->srvopts ? p->srvopts : "";
	size_t tl = strlen(tail);
	for (size_t i = 0; i < s->n_ok; i++) {
		const char *k = s->ok_shapes[i];
		if (strncmp(k, tail, tl) == 0 && k[tl] == '\x01' && strcmp(k + tl + 1, opts) == 0)
			return true;
	}
	return false;
}

#define HX_OK_SHAPES_MAX 64

static void ok_shapes_learn(hx *s, bool run)
{
	for (svc *v = s->m.svcs; v; v = v->next) {
		const shape *p = run ? &v->run : &v->cand;
		if (!p->listen || ok_shape_has(s, p))
			continue;
		if (s->n_ok == HX_OK_SHAPES_MAX) { /* distinct settings are few: the oldest goes */
			free(s->ok_shapes[0]);
			memmove(s->ok_shapes, s->ok_shapes + 1, (s->n_ok - 1) * sizeof(*s->ok_shapes));
			s->n_ok--;
		}
		if (!s->ok_shapes)
			s->ok_shapes = s->h->xcalloc(HX_OK_SHAPES_MAX, sizeof(*s->ok_shapes));
		s->ok_shapes[s->n_ok++] = s->h->xasprintf("%s\x01%s", shape_tail(p),
		                                           p->srvopts ? p->srvopts : "");
	}
}

/* haproxy -c accepted the candidate (or haproxy reloaded it, after the
 * cold start's unchecked one): every section of it is known good. */
void hx_ok_shapes_learn(hx *s)
{
	ok_shapes_learn(s, false);
}

/* haproxy's first start runs the cold start's unchecked file. */
void hx_ok_shapes_learn_run(hx *s)
{
	ok_shapes_learn(s, true);
}

void hx_ok_shapes_clear(hx *s)
{
	for (size_t i = 0; i < s->n_ok; i++)
		free(s->ok_shapes[i]);
	free(s->ok_shapes);
	s->ok_shapes = NULL;
	s->n_ok = 0;
	s->cold_skip_spent = true; /* after a failed reload, every candidate is checked */
}

/* ------------------------------------------------------------------ */
/* The managed cold start                                             */
/* ------------------------------------------------------------------ */

/* Nothing accepted yet and the cold start's one unchecked file not
 * spent (once per run). */
static bool cold_skip_left(const hx *s)
{
	return s->manage && !s->cold_skip_spent && !s->n_ok;
}

static bool has_services(const hx *s, bool want)
{
	for (const svc *v = s->m.svcs; v; v = v->next)
		if ((want ? v->want.listen : v->cand.listen) != NULL)
			return true;
	return false;
}

/* haproxy's first start is still to come: managed, none adopted, none
 * started by this instance, none starting. */
static bool first_start_ahead(const hx *s)
{
	return s->manage && !s->spawned_once && !s->master_ready && !s->adopting &&
	       !hx_sup_busy(s->sup);
}

/* The (wanted, else the candidate's) file with services is the one
 * haproxy's first start takes, unchecked: the binary and the includes
 * passed haproxy -c with the first file (which has no service), under
 * the same global part. */
static bool direct_ahead(const hx *s, bool want)
{
	return first_start_ahead(s) && cold_skip_left(s) && s->checked_once && s->installed_once &&
	       streq(want ? s->g_want : s->g_cand, s->g_run) && has_services(s, want);
}

bool hx_cold_direct_due(const hx *s)
{
	return direct_ahead(s, true);
}

/* The managed cold start's first candidate proves the binary and the
 * includes only (haproxy -c of a file with no service, ~60 ms, against
 * 0.2-0.6 s for the whole file at 10,000 instances), whether or not the
 * catalog has come: the services go to haproxy's first start, which
 * parses them (or to the reload that follows when it had to start
 * without them), so the cold start's path is the same whichever comes
 * first. */
bool hx_cold_bare(const hx *s)
{
	return !s->checked_once && first_start_ahead(s) && cold_skip_left(s);
}

/* Whether the candidate may skip the separate haproxy -c:
 *  - the cold start's first file with services, for haproxy's first start
 *    (direct_ahead): the start parses it; a refusal is an exit before the
 *    worker answers (hx_cold_direct_refused);
 *  - haproxy runs and reloads through its master CLI (a configuration the
 *    new master refuses leaves the old worker serving, and `show proc`
 *    says it failed), this instance's binary and includes passed
 *    haproxy -c once, the global part is the running one, and either this
 *    is the cold start's first candidate with services (haproxy started
 *    without it: the reload's parse checks it, the master keeps the first
 *    worker if it refuses; never for a driven haproxy, whose failed first
 *    reload would fail the start) or every section is one haproxy
 *    accepted (a service added or removed with the same settings as
 *    others, the common case).
 * A new setting, server option or global part is checked first, so that
 * a refusal is pinned on its service as always; a failed reload or a
 * refused first start forgets the accepted sections (the next candidate
 * is checked), and a bad service costs the others one refused attempt. */
bool hx_can_skip_check(hx *s)
{
	if (direct_ahead(s, false)) {
		s->cold_skip_spent = s->cold_skip_now = s->cold_direct_now = true;
		return true;
	}
	if (!s->checked_once || !s->installed_once || !s->master_socket || !hx_running(s) ||
	    !streq(s->g_cand, s->g_run))
		return false;
	if (cold_skip_left(s) && has_services(s, false)) {
		s->cold_skip_spent = s->cold_skip_now = true;
		return true;
	}
	if (!s->n_ok)
		return false;
	for (svc *v = s->m.svcs; v; v = v->next)
		if (v->cand.listen && !ok_shape_has(s, &v->cand))
			return false;
	return true;
}

/* The cold start's first haproxy is being started with the first file
 * (the registry's read came after start_wait, or had no service): the
 * first candidate with services waits for it (its READY kicks) and then
 * goes without a separate haproxy -c, rather than being checked meanwhile
 * (0.3-0.6 s at 10,000 instances against ~0.1-0.2 s for haproxy to start
 * on the first file). */
bool hx_cold_start_waits(const hx *s)
{
	return s->manage && !s->proven && !s->master_ready && s->checked_once &&
	       s->installed_once && cold_skip_left(s) && hx_sup_busy(s->sup);
}

static void on_start_wait(uv_timer_t *t)
{
	hx_kick(t->data);
}

bool hx_first_start_waits(hx *s)
{
	if (s->cold_refused)
		return true; /* until a checked file is installed (install_done) */
	if (!first_start_ahead(s) || !s->start_wait)
		return false; /* 0: at once, with the file with no service */
	if (!has_services(s, true)) {
		/* The first snapshot is the registry's first complete read (the
		 * core holds it until every store has read once): no snapshot
		 * yet, or one with no service to route (a store that fills at
		 * start, say, or a registry that is empty). */
		uint64_t now = s->h->now_ms(), end = s->started_ms + s->start_wait;
		if (now < end) {
			if (!uv_is_active((uv_handle_t *)s->t_start)) {
				s->h->log(s->ctx, REGENT_LOG_DEBUG,
				          "haproxy's first start waits up to %llu ms for the registry's first "
				          "read (start_wait), to start once with every service",
				          (unsigned long long)(end - now));
				uv_timer_start(s->t_start, on_start_wait, end - now, 0);
			}
			return true;
		}
		/* (hx_kick starts haproxy when this returns false) */
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "no service to route within start_wait (%llu ms): haproxy starts without one, "
		          "and reloads once the registry has them",
		          (unsigned long long)s->start_wait);
		return false;
	}
	/* It came: the pipeline that writes it comes first (hx_schedule_slow
	 * runs it next, at once), and haproxy starts with its file. */
	return !s->rejected_wait && hx_slow_needed(s) && direct_ahead(s, true);
}

void hx_cold_direct_refused(hx *s)
{
	s->cold_direct = false;
	s->cold_refused = true;
	hx_sup_hold_restart(s->sup); /* not again with the refused file */
	char *why = s->h->xasprintf(
		"haproxy exited before its first worker answered, started with the first configuration "
		"with services (not checked separately; %s says why): the next one is checked with "
		"haproxy -c, and haproxy starts with it",
		s->log_file);
	s->h->log(s->ctx, REGENT_LOG_ERROR, "%s", why);
	hx_set_reason(s, &s->master_err, why);
	free(why);
	hx_update_health(s);
	hx_ok_shapes_clear(s);
	hx_cold_skip_refused(s);
	/* The text on disk is no proof: the next candidate is written and
	 * checked even when it is the same. */
	hx_mirror_invalidate(s);
	free(s->recovered_text);
	s->recovered_text = NULL;
	s->file_len = 0;
}
