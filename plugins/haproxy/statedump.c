/* statedump.c - the haproxy sink's server-state file before a reload: the
 * old worker's `show servers state`, asked per chunk of services (each
 * answer well under cli.c's limit whatever the fleet's size; the learn
 * after an adoption, runtime.c, reads the same chunks), filtered to the
 * lines the new worker may load, with pending lines for the servers it did
 * not run, written as one file (version line, column header, rows).  The
 * answers (the dump's, the learn's) are read line by line as they come
 * (hx_cli_request_lines), the dump's filtered into the file's text: no
 * answer is held whole. */
#include "sink.h"

#include <errno.h>

/* A state line survives only where the candidate has the same server
 * ready at the same address: haproxy prefers the state file's address over
 * the configuration's, so anything else must come from the file.  Its
 * admin state may say "disabled by the configuration" (0x04: a slot the
 * runtime API filled), which the new file undoes; any other admin flag
 * (maintenance, drain) drops it. */
static bool keep_state_line(void *arg, const char *px, const char *sv, const char *addr,
                            unsigned port, unsigned op, unsigned admin)
{
	hx *s = arg;
	svc *v = hx_svc_find(&s->m, px);
	if (!v || !v->cand.listen || sv[0] != 's') /* only our proxies read this file */
		return false;
	char *end;
	long idx = strtol(sv + 1, &end, 10);
	if (*end || idx < 1 || (size_t)idx > v->cand.nslots || (size_t)idx > v->nslots)
		return false;
	slot *sl = &v->slots[idx - 1];
	const srv_view *f = &sl->pend;
	hx_ip ip;
	bool keep = f->st == AP_READY && hx_ip_parse(addr, &ip) && hx_ip_eq(&f->addr, &ip) &&
	            f->port == port &&
	            (admin & ~0x04u) == 0;
	sl->state_kept = keep;
	sl->state_up = keep && op == 2;
	return keep;
}

/* The state file the new worker loads carries each server's verdict: the
 * old worker's line where it has one (a server that passed its check comes
 * up, one that did not stays down), and for a service with a check that
 * keeps at least one server the old worker had up, a pending line (down
 * until `rise` passing checks) for every server the old worker did not run
 * (an instance that joined during the reload).  Without a check, or when
 * no server of the service is proven (a new service, every instance
 * replaced while the reload ran), such a server starts up, as haproxy
 * starts it: pending, the service would answer 503 until the checks pass.
 * The old worker's lines come in chunks of services (dump_line), the
 * pending ones once every chunk is in (add_pending). */
static void add_pending(hx *s, hx_buf *b)
{
	size_t npending = 0;
	for (svc *v = s->m.svcs; v; v = v->next) {
		if (!hx_shape_checked(&v->cand))
			continue;
		bool proven = false;
		for (size_t i = 0; i < v->cand.nslots && i < v->nslots && !proven; i++)
			proven = v->slots[i].pend.st == AP_READY && v->slots[i].state_up;
		if (!proven)
			continue;
		unsigned w = hx_shape_weight(&v->cand);
		bool ssl = v->cand.ssl;
		for (size_t i = 0; i < v->cand.nslots && i < v->nslots; i++) {
			const slot *sl = &v->slots[i];
			if (sl->pend.st != AP_READY || sl->state_kept)
				continue;
			char ab[HX_ADDR_MAX];
			hx_state_pending_line(b, v->pxid, v->name, i, hx_ip_str(&sl->pend.addr, ab),
			                      sl->pend.port, w, ssl);
			npending++;
		}
	}
	if (npending)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "server-state file: %zu server(s) of checked services start pending", npending);
}

/* A line of the dump's answer, as it is read (hx_state_next: the answer
 * is never held whole, 2.1 MB at 16,000 servers, nor its filtered copy): a
 * row kept goes to the file's text, the version and column header lines
 * only once, first, as load-server-state-from-file wants them. */
static void dump_line(hx *s, char *line, size_t len)
{
	bool version = len == 1 && line[0] == '1';
	if (!hx_filter_state_line(line, len, keep_state_line, s))
		return;
	if (!(version || line[0] == '#') || !s->st_hdr) {
		hx_buf_add(&s->st_text, line, len);
		hx_buf_add(&s->st_text, "\n", 1);
		s->st_hdr = s->st_hdr || line[0] == '#';
	}
}

/* The dump's text and the slots' marks from nothing (a new dump, or the
 * whole answer given up for chunks after some of its lines were read). */
static void dump_reset(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next)
		for (size_t i = 0; i < v->nslots; i++)
			v->slots[i].state_kept = v->slots[i].state_up = false;
	hx_buf_free(&s->st_text);
	s->st_text = (hx_buf){.h = s->h};
	s->st_hdr = false;
}

/* Every chunk is in (or the dump gave up): the file written. */
static void dump_done(hx *s)
{
	hx_tstep(s, T_DUMPED);
	free(s->st_cursor);
	s->st_cursor = NULL;
	char *text;
	if (s->st_hdr) {
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "server state dumped in %u request(s) of `show servers state` (%s)",
		          s->st_reqs, s->st_whole ? "every server" : "per chunk of services");
		add_pending(s, &s->st_text);
		text = hx_buf_take(&s->st_text);
	} else { /* nothing read: the new worker starts from the config */
		hx_buf_free(&s->st_text);
		text = s->h->xstrdup("1\n");
	}
	s->st_text = (hx_buf){.h = s->h};
	s->st_hdr = false;
	hx_write_state(s, text); /* takes it */
}

/* A service haproxy may have a section of: the running file's or the
 * candidate's (drive mode: an haproxy regent did not reload yet may run
 * the candidate's services from an earlier run); one haproxy lacks answers
 * "Can't find backend." for itself, and the rest of the chunk is read. */
static bool state_asked(const svc *v)
{
	return v->run.listen || v->cand.listen;
}

/* Every line of a state answer: the version line ("1") or haproxy's
 * "Can't find backend." for a section it lacks says the answer is one to
 * `show servers state` (st_ok); then the reader's (st_line). */
static void state_line(void *arg, char *line, size_t len)
{
	hx *s = arg;
	if ((len == 1 && line[0] == '1') || strncmp(line, "Can't find backend", 18) == 0)
		s->st_ok = true;
	s->st_line(s, line, len);
}

/* The admin socket's answers are read in chunks of services (each well
 * under cli.c's answer limit whatever the fleet's size; one `show servers
 * state` of 80,000 servers is 6 MB, past 8 MiB with long names): at most
 * STATE_CHUNK_BYTES of commands (haproxy reads a command line into one
 * buffer) and one server per KB of the limit. */
#define STATE_CHUNK_BYTES 8000

static hx_cli *state_request(hx *s, const char *cmd, hx_cli_cb cb, int *err)
{
	s->st_ok = false;
	s->st_reqs++;
	return hx_cli_request_lines(s->h, s->loop, s->admin_socket, cmd, s->cmd_timeout, state_line,
	                            cb, s, err);
}

bool hx_state_next(hx *s, hx_cli_cb cb, void (*line)(hx *s, char *text, size_t len), int *err)
{
	hx_buf cmd = {.h = s->h};
	s->st_line = line;
	size_t max = hx_cli_answer_max() >> 10, nserv = 0;
	svc *v = s->m.svcs;
	/* A fleet whose answer is estimated under half the limit (~200 bytes
	 * a server and twice its service's name, 16,000 servers: ~3.5 MB) is
	 * asked in one request, as fast as before (per service, each command's
	 * header adds ~300 bytes and haproxy answers ~35% slower); past the
	 * limit anyway (the user's own proxies in drive mode), it is asked
	 * again per chunk (hx_state_step). */
	s->st_whole = false;
	if (!s->st_reqs) {
		size_t est = 0;
		for (svc *w = v; w; w = w->next)
			if (state_asked(w))
				est += 300 + (w->nslots > w->run.nslots ? w->nslots : w->run.nslots) *
				                 (200 + 2 * strlen(w->name));
		if (est && est < hx_cli_answer_max() / 2) {
			s->st_whole = s->st_last = true;
			s->admin_req = state_request(s, "show servers state", cb, err);
			return s->admin_req != NULL;
		}
	}
	if (s->st_cursor) { /* the services after the last one asked (it may have gone) */
		svc *at = hx_svc_find(&s->m, s->st_cursor);
		if (at)
			v = at->next;
		else
			while (v && strcmp(v->name, s->st_cursor) <= 0)
				v = v->next;
	}
	const char *name = NULL;
	for (; v; v = v->next) {
		if (!state_asked(v))
			continue;
		size_t n = v->nslots > v->run.nslots ? v->nslots : v->run.nslots;
		if (name && (nserv + n > max || cmd.len + strlen(v->name) + 20 > STATE_CHUNK_BYTES))
			break;
		hx_buf_printf(&cmd, "%sshow servers state %s", cmd.len ? ";" : "", v->name);
		nserv += n;
		name = v->name;
	}
	while (v && !state_asked(v))
		v = v->next;
	s->st_last = v == NULL;
	if (name) {
		char *c = s->h->xstrdup(name);
		free(s->st_cursor);
		s->st_cursor = c;
		s->admin_req = state_request(s, hx_buf_str(&cmd), cb, err);
	}
	hx_buf_free(&cmd);
	return name && s->admin_req;
}

bool hx_state_step(hx *s, int status, hx_cli_cb cb, void (*restart)(hx *s), bool *ok, int *err)
{
	*err = 0;
	if (status == -E2BIG && s->st_whole) { /* asked again per chunk */
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "the server states over %s pass the answer limit: asked per chunk of services",
		          s->admin_socket);
		if (restart)
			restart(s);
		if (hx_state_next(s, cb, s->st_line, err))
			return true;
	}
	*ok = status >= 0 && s->st_ok;
	return *ok && !s->st_last && hx_state_next(s, cb, s->st_line, err);
}

static void on_dump(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)out; /* the lines were read as they came (dump_line) */
	(void)len;
	s->admin_req = NULL;
	bool ok;
	int err;
	if (hx_state_step(s, status, on_dump, dump_reset, &ok, &err))
		return;
	if (!ok || err < 0)
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "cannot dump the server state over %s (%s); the servers of the services not "
		          "dumped start from the config",
		          s->admin_socket,
		          !ok ? (status < 0 ? uv_strerror(status) : "unexpected answer") : strerror(-err));
	dump_done(s);
}

/* Runs once the admin channel is free (hx_kick() calls it). */
void hx_start_dump(hx *s)
{
	s->dump_pending = false;
	if (!hx_running(s)) {
		/* Managed and not running: the (re)start removes the state file
		 * before it spawns haproxy, nothing to write. */
		hx_state_side_done(s);
		return;
	}
	dump_reset(s);
	free(s->st_cursor);
	s->st_cursor = NULL;
	s->st_reqs = 0;
	int err = 0;
	if (!hx_state_next(s, on_dump, dump_line, &err)) {
		if (err < 0)
			s->h->log(s->ctx, REGENT_LOG_WARN,
			          "cannot dump the server state over %s (%s); the new worker starts from "
			          "the config",
			          s->admin_socket, strerror(-err));
		dump_done(s);
	}
}
