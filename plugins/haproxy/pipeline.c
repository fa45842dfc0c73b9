/* pipeline.c - the haproxy sink's file and slow path: rendering
 * config_file from the model (server lines by mirror.c's hx_render_line,
 * padded for its in-place writes), the file writes, and the
 * pipeline that writes a candidate, checks it with
 * `haproxy -c` (pinning refusals on services; skipped when every section
 * is one haproxy accepted before), renders it again with the latest
 * servers, dumps the server state (beside the candidate's write when the
 * check is skipped; statedump.c) and renames it into place before
 * reload.c reloads;
 * rate-limited, with the startup hold. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Shapes (the model is in model.c)                                   */
/* ------------------------------------------------------------------ */

static void shape_clear(shape *p)
{
	hx_cstr_put(p->listen);
	hx_cstr_put(p->srvopts);
	memset(p, 0, sizeof(*p));
}

/* The texts shared (counted), not copied. */
static void shape_copy(const regent_host *h, shape *dst, const shape *src)
{
	(void)h;
	char *listen = hx_cstr_ref(src->listen), *srvopts = hx_cstr_ref(src->srvopts);
	shape_clear(dst); /* after the references: src may be dst */
	dst->listen = listen;
	dst->srvopts = srvopts;
	dst->nslots = src->listen ? src->nslots : 0;
	dst->port = src->port;
	dst->checked = src->checked;
	dst->ssl = src->ssl;
	dst->weight = src->weight;
}

/* ------------------------------------------------------------------ */
/* Rendering the file                                                 */
/* ------------------------------------------------------------------ */

typedef enum { R_RUN, R_CAND } which;

static const shape *shape_of(svc *v, which w)
{
	return w == R_RUN ? &v->run : &v->cand;
}

/* One service's part of the file: its listen block and its server lines
 * (each slot's pend view set to what they say).  For the candidate, where
 * its part and each line lie (v->c*): once installed, the mirror's layout
 * (hx_mirror_from_cand), so no whole render follows each reload. */
static void render_service(hx_buf *b, svc *v, const shape *p, bool cand)
{
	size_t start = b->len, nr = p->nslots < v->nslots ? p->nslots : v->nslots;
	uint32_t *off = NULL; /* a part is far below 4 GB */
	if (cand) {
		free(v->cmloff);
		off = v->cmloff = v->h->xcalloc(nr + 1, sizeof(*off));
	}
	hx_buf_puts(b, p->listen);
	for (size_t i = 0; i < nr; i++) {
		if (off)
			off[i] = (uint32_t)(b->len - start);
		hx_render_line(b, i, &v->slots[i], p->srvopts, hx_line_width(i, p->srvopts));
	}
	if (off) {
		off[nr] = (uint32_t)(b->len - start);
		v->cmoff = start;
		v->cmnr = nr;
		v->cmgen = v->sgen;
	}
	hx_buf_puts(b, "\n");
	if (cand)
		v->cmlen = b->len - start;
}

static char *render_file(hx *s, which w)
{
	/* Room for about the whole text at once: the installed one's size,
	 * or the slots' padded widths (an estimate a quarter over) where that
	 * is less than half of them: a cold start, whose first file with
	 * services follows one without (at 10,000 instances its render went
	 * 64 KiB -> 2.1 MiB in five steps, copied where glibc had them on the
	 * heap, for a 1.9 MB text), or a reload that adds many services.  No
	 * doubling and copying on the way: a tenth of the agent's CPU for a
	 * reload at 10,000 instances.  Room not written to is never touched
	 * (no memory), and the text kept is trimmed (hx_text_new). */
	size_t est = 0;
	for (svc *v = s->m.svcs; v; v = v->next) { /* O(services): the render is O(slots) */
		const shape *p = shape_of(v, w); /* + 32: a line's "  # id" */
		if (p->listen)
			est += strlen(p->listen) + p->nslots * (hx_line_width(p->nslots, p->srvopts) + 32);
	}
	if (s->file_len >= est / 2)
		est = s->file_len;
	hx_buf b = {.h = s->h};
	b.cap = est + 64 * 1024;
	b.data = s->h->xrealloc(NULL, b.cap);
	b.data[0] = '\0';
	hx_file_header(s, &b, w == R_RUN ? s->g_run : s->g_cand);
	/* Lines of the candidate, so that an error haproxy -c reports at a
	 * line can be pinned on its service. */
	size_t line = 1;
	for (const char *c = hx_buf_str(&b); *c; c++)
		line += *c == '\n';
	for (svc *v = s->m.svcs; v; v = v->next) {
		const shape *p = shape_of(v, w);
		if (!p->listen)
			continue;
		if (w == R_CAND)
			v->line0 = line;
		render_service(&b, v, p, w == R_CAND);
		for (const char *c = p->listen; *c; c++)
			line += *c == '\n';
		line += p->nslots < v->nslots ? p->nslots : v->nslots;
		line++;
		if (w == R_CAND)
			v->line1 = line;
	}
	return hx_text_new(&b);
}

/* The written file is on disk: it is what haproxy loads next.  After a
 * mirror patch, only the services it rendered again (HX_MQ_PEND). */
static void pend_to_file(hx *s, which w)
{
	bool all = w == R_CAND || s->m.mpend_all;
	for (svc *v = all ? s->m.svcs : s->m.mqhead[HX_MQ_PEND]; v;
	     v = all ? v->next : v->mq[HX_MQ_PEND].next) {
		const shape *p = shape_of(v, w);
		if (w == R_RUN && !v->mpend)
			continue;
		v->mpend = false;
		for (size_t i = 0; p->listen && i < p->nslots && i < v->nslots; i++) {
			v->slots[i].file = v->slots[i].pend;
			v->slots[i].file_id = v->slots[i].pend_id;
		}
	}
	hx_mq_clear(&s->m, HX_MQ_PEND);
	s->m.mpend_all = false;
}

void hx_pend_to_file(hx *s, bool run)
{
	pend_to_file(s, run ? R_RUN : R_CAND);
}

/* ------------------------------------------------------------------ */
/* Writing files (the mirror is in mirror.c)                          */
/* ------------------------------------------------------------------ */

static void on_wretry(uv_timer_t *t)
{
	hx_kick(t->data);
}

/* A write of config_file (or of its candidate) failed: unhealthy with the
 * cause, and tried again every second until it works, with no new change
 * needed.  The message always opens with "cannot write PATH" (the file
 * meant), whichever step failed: the core's why names the step and its
 * own file ("cannot create the temporary file PATH.N.tmp: ..."), which
 * alone would not say which file is not being written. */
void hx_write_failed(hx *s, const char *path, int err, const char *why)
{
	static const char lead[] = "cannot write ";
	const char *cause = why && *why ? why : uv_strerror(err);
	size_t ll = sizeof(lead) - 1, pl = strlen(path);
	/* (an in-place patch's own failure already reads "cannot write PATH: ...") */
	bool named = strncmp(cause, lead, ll) == 0 && strncmp(cause + ll, path, pl) == 0 &&
	             cause[ll + pl] == ':';
	char *msg = named ? s->h->xasprintf("%s; retrying every second", cause)
	                  : s->h->xasprintf("cannot write %s: %s; retrying every second", path, cause);
	if (!streq(msg, s->write_err)) {
		s->h->log(s->ctx, REGENT_LOG_ERROR, "%s", msg);
		hx_set_reason(s, &s->write_err, msg);
		hx_update_health(s);
	}
	free(msg);
	if (!s->stopping && s->t_wretry)
		uv_timer_start(s->t_wretry, on_wretry, 1000, 0);
}

void hx_write_ok(hx *s)
{
	if (!s->write_err)
		return;
	s->h->log(s->ctx, REGENT_LOG_INFO, "%s written again", s->config_file);
	hx_set_reason(s, &s->write_err, NULL);
	hx_update_health(s);
}

/* A counted text: the count before the bytes, in one allocation. */
typedef struct hx_text {
	size_t refs;
	char text[];
} hx_text;

static hx_text *text_of(char *t)
{
	return (hx_text *)(void *)(t - offsetof(hx_text, text));
}

char *hx_text_new(hx_buf *b)
{
	size_t len = b->len, need = sizeof(hx_text) + len + 1;
	char *p = b->data;
	if (!p || b->cap < need) /* the render's room is its estimate + 64 KiB: rarely */
		p = b->h->xrealloc(p, need);
	memmove(p + sizeof(hx_text), b->data ? p : "", b->data ? len + 1 : 1);
	if (b->cap > need + need / 8) /* kept: no slack */
		p = b->h->xrealloc(p, need);
	b->rb = (regent_buffer){0};
	hx_text *t = (hx_text *)(void *)p;
	t->refs = 1;
	return t->text;
}

char *hx_text_ref(char *t)
{
	if (t)
		text_of(t)->refs++;
	return t;
}

void hx_text_put(char *t)
{
	if (t && --text_of(t)->refs == 0)
		free(text_of(t));
}

static void text_release(void *t)
{
	hx_text_put(t);
}

/* Writes text to path through tmp (host->file_write: O_EXCL|O_NOFOLLOW,
 * fsync, rename, directory fsync), mode 0640: haproxy's group may read,
 * nobody else.  The core writes the text where it lies
 * (host->file_write_take, ABI 1.8: the configuration of megabytes is not
 * held twice) and releases it; a core before 1.8 copies it, and it is
 * released here.  No fsync when regent starts haproxy itself (manage =
 * true: REGENT_FILE_WRITE_NO_SYNC; a core that does not know it syncs):
 * that haproxy reads config_file only after this run's start read it
 * back and compared it with its render (haproxy.c recover, mirror.c
 * hx_mirror_same) or wrote it, and the state file only after this run
 * wrote it (master.c hx_sup_spawn removes it before every start); no
 * haproxy outlives a power loss, so what one leaves on the disk (the old
 * file, the new one, an empty or zeroed one, none) is read back and
 * rewritten before any haproxy reads it.  A haproxy regent only drives
 * (manage = false) may be started by the system before regent: its files
 * keep the syncs. */
regent_file_write *hx_write_file(hx *s, const char *path, const char *tmp, char *text,
                                 bool counted, regent_file_write_cb cb, int *err)
{
	regent_file_write_opts o = {
		.size = sizeof(o),
		.path = path,
		.tmp_path = tmp,
		.data = text,
		.len = strlen(text),
		.mode = 0640,
		.on_done = hx_job_file_done,
		.arg = hx_job_new(s, cb, NULL), /* its end seen even after s stopped */
		.flags = s->manage ? REGENT_FILE_WRITE_NO_SYNC : 0,
	};
	regent_file_write *w;
	if (REGENT_HOST_HAS(s->h, file_write_take) && s->h->file_write_take) {
		w = s->h->file_write_take(s->ctx, &o, counted ? text_release : NULL,
		                          counted ? text : NULL, err);
	} else {
		w = s->h->file_write(s->ctx, &o, err);
		if (counted)
			hx_text_put(text);
		else
			free(text);
	}
	if (!w)
		hx_job_unstarted(o.arg);
	return w;
}

/* ------------------------------------------------------------------ */
/* Slow path: render, check, install, reload                          */
/* ------------------------------------------------------------------ */

bool hx_slow_needed(hx *s)
{
	/* m.nsdiff counts the services whose wanted shape is not installed
	 * (kept where either changes): O(1). */
	return s->force_reload || !streq(s->g_want, s->g_run) || !s->installed_once || s->m.nsdiff;
}

void hx_pipeline_done(hx *s)
{
	hx_timing_log(s, s->tm[T_WORKER] ? "reloaded" : "ended");
	s->ps = P_IDLE;
	s->join_left = 0;
	s->join_failed = false;
	hx_reload_prefetch_drop(s);
	s->cold_skip_now = s->cold_direct_now = false;
	hx_text_put(s->cand_text);
	s->cand_text = NULL;
	for (svc *v = s->m.svcs; v; v = v->next)
		shape_clear(&v->cand);
	free(s->g_cand);
	s->g_cand = NULL;
	hx_model_gc(&s->m);
	hx_kick(s);
}

void hx_drop_pending(hx *s)
{
	if (s->pending)
		s->h->catalog_unref(s->pending);
	s->pending = NULL;
}

static void install_done(hx *s)
{
	/* The candidate is the installed file now. */
	s->file_len = s->cand_text ? strlen(s->cand_text) : s->cand_len;
	hx_text_put(s->cand_text); /* not kept: the mirror patches the file by offsets */
	s->cand_text = NULL;
	free(s->recovered_text);
	s->recovered_text = NULL;
	pend_to_file(s, R_CAND);
	for (svc *v = s->m.svcs; v; v = v->next) {
		bool moved = !hx_shape_eq(&v->run, &v->cand);
		shape_copy(s->h, &v->run, &v->cand);
		if (moved) /* slots haproxy can reach (or no longer) */
			hx_svc_dirty_all(&s->m, v);
		hx_svc_shape_sync(&s->m, v);
	}
	hx_mirror_from_cand(s); /* the shapes haproxy runs changed: its layout */
	free(s->g_run);
	s->g_run = s->h->xstrdup(s->g_cand);
	s->installed_once = true;
	s->cold_refused = false; /* haproxy may start with it (accepted.c) */
	s->cold_direct = s->cold_direct_now; /* ... the first start takes it unchecked */
	s->file_gen++;
	s->m.gen++; /* the installed shapes are rendered by the mirror now */
	hx_write_ok(s);
	if (s->reject_err) {
		hx_set_reason(s, &s->reject_err, NULL);
		hx_update_health(s);
	}
}

/* The reload of the cold start's unchecked candidate failed (haproxy
 * still runs the first file, which had no service section: nothing was
 * accepted before it), or haproxy's first start refused it (nothing
 * runs): no section is haproxy's, so the fast path sends nothing for them
 * and the checked candidate that follows leaves a refused service out
 * instead of keeping a section haproxy never ran. */
void hx_cold_skip_refused(hx *s)
{
	for (svc *v = s->m.svcs; v; v = v->next) {
		if (!v->run.listen)
			continue;
		shape_clear(&v->run);
		hx_svc_dirty_all(&s->m, v);
		hx_svc_shape_sync(&s->m, v);
	}
	hx_mirror_invalidate(s);
	s->m.gen++;
}

static void on_state_written(void *arg, int status, const char *why);

/* An old state file must not outlive a failed write: its addresses would
 * win over the new file's. */
static void unlink_state(hx *s)
{
	uv_fs_t req;
	uv_fs_unlink(NULL, &req, s->state_file, NULL);
	uv_fs_req_cleanup(&req);
}

static void on_rename(void *arg, int status)
{
	hx *s = arg;
	s->swap = NULL;
	hx_tstep(s, T_RENAMED);
	if (status < 0) {
		hx_write_failed(s, s->config_file, status, NULL);
		hx_pipeline_done(s);
		return;
	}
	install_done(s);
	hx_reload_start(s);
}

static void do_rename(hx *s)
{
	s->ps = P_RENAME;
	int err = 0;
	hx_job *j = hx_job_new(s, NULL, on_rename); /* its end seen even after s stopped */
	if (hx_rename_test_delay())
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "renaming the candidate over %s in %llu ms (REGENT_HX_TEST_RENAME_DELAY_MS)",
		          s->config_file, (unsigned long long)hx_rename_test_delay());
	s->swap = hx_rename(s->loop, s->cand_path, s->config_file, !s->manage, hx_job_rename_done, j,
	                    &err);
	if (!s->swap) {
		hx_job_unstarted(j);
		hx_write_failed(s, s->config_file, err, NULL);
		hx_pipeline_done(s);
	}
}

/* The skip path (start_pipeline) writes the candidate straight over
 * config_file (atomically: no rename after) while the old worker's state
 * is dumped and the state file written: each side ends here, and the last
 * one reloads (or, the candidate not written, ends the pipeline). */
static void join_step(hx *s)
{
	if (--s->join_left > 0)
		return;
	if (s->join_failed) {
		s->join_failed = false;
		unlink_state(s); /* its lines are the candidate's, not installed */
		hx_pipeline_done(s);
		return;
	}
	hx_reload_start(s);
}

/* The state file is written (or given up): the rename, once the
 * candidate is written too. */
void hx_state_side_done(hx *s)
{
	if (s->join_left)
		join_step(s);
	else
		do_rename(s);
}

static void on_state_written(void *arg, int status, const char *why)
{
	hx *s = arg;
	s->state_write = NULL;
	hx_tstep(s, T_STATE);
	if (status < 0) {
		s->h->log(s->ctx, REGENT_LOG_WARN,
		          "cannot write the server-state file %s: %s (servers start from the config)",
		          s->state_file, why);
		unlink_state(s);
	}
	hx_state_side_done(s);
}

void hx_write_state(hx *s, char *text)
{
	if (!s->join_left)
		s->ps = P_WRITE_STATE;
	int err = 0;
	s->state_write =
		hx_write_file(s, s->state_file, s->state_tmp, text, false, on_state_written, &err);
	if (!s->state_write) {
		s->h->log(s->ctx, REGENT_LOG_WARN, "cannot write %s: %s", s->state_file, strerror(-err));
		hx_state_side_done(s);
	}
}

void hx_log_output(hx *s, regent_log_level lvl, const char *out)
{
	const char *p = out;
	int lines = 0;
	while (p && *p && lines < 30) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		const char *notice = strstr(p, "[NOTICE]");
		if (len && (!notice || notice > p + len)) { /* haproxy's version banner: noise */
			s->h->log(s->ctx, lvl, "haproxy: %.*s", len, p);
			lines++;
		}
		p = nl ? nl + 1 : NULL;
	}
}

/* The candidate's text is final (written, or being written by the core,
 * which holds its own reference): nothing compares it again, so only its
 * length is kept; the text goes as soon as the write is done, not at the
 * end of the state dump (2 MB less at a reload's peak at 10,000 servers). */
static void cand_final(hx *s)
{
	s->cand_len = strlen(s->cand_text);
	hx_text_put(s->cand_text);
	s->cand_text = NULL;
}

static void to_dump(hx *s)
{
	hx_tstep(s, T_FINAL);
	s->ps = P_DUMP;
	s->dump_pending = true;
	hx_kick(s);
}

static void on_final_written(void *arg, int status, const char *why)
{
	hx *s = arg;
	s->write = NULL;
	if (!s->checking)
		hx_tstep(s, T_WRITTEN);
	if (status < 0) {
		hx_write_failed(s, s->join_left ? s->config_file : s->cand_path, status, why);
		if (s->join_left) { /* the state side ends the pipeline */
			s->join_failed = true;
			join_step(s);
			return;
		}
		hx_pipeline_done(s);
		return;
	}
	if (s->join_left) { /* config_file itself: installed */
		hx_tstep(s, T_FINAL);
		hx_tstep(s, T_RENAMED);
		install_done(s);
		join_step(s);
		return;
	}
	to_dump(s);
}

/* The check passed.  Instances may have come and gone while it ran: render
 * the checked shapes again with the servers as they are now (addresses are
 * validated, the structure is the one haproxy accepted), so that the new
 * worker starts from the latest state.  The fast path waits from here to
 * the new worker. */
static void final_render(hx *s)
{
	s->ps = P_FINAL;
	char *text = render_file(s, R_CAND);
	if (strcmp(text, s->cand_text) == 0) {
		hx_text_put(text);
		cand_final(s);
		to_dump(s);
		return;
	}
	hx_text_put(s->cand_text);
	s->cand_text = text;
	int err = 0;
	s->write = hx_write_file(s, s->cand_path, s->tmp_path, hx_text_ref(text), true,
	                         on_final_written, &err);
	cand_final(s);
	if (!s->write) {
		hx_write_failed(s, s->cand_path, err, NULL);
		hx_pipeline_done(s);
	}
}

/* haproxy -c refused the candidate: the services whose lines (or proxy
 * names) its ALERTs name are left out of the next one.  Returns whether
 * any was. */
static bool exclude_rejected(hx *s, const char *out)
{
	size_t n = 0;
	size_t plen = strlen(s->cand_path);
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[400];
		snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) - 1 ? len : sizeof(line) - 1),
		         p);
		p = nl ? nl + 1 : NULL;
		if (!strstr(line, "[ALERT]"))
			continue;
		svc *v = NULL;
		const char *at = strstr(line, s->cand_path);
		if (at && at[plen] == ':') {
			char *end;
			unsigned long ln = strtoul(at + plen + 1, &end, 10);
			if (end != at + plen + 1)
				v = hx_model_svc_at_line(&s->m, (size_t)ln);
		}
		for (const char *q = line; !v && (q = strstr(q, "proxy '")) != NULL; q += 7) {
			const char *e = strchr(q + 7, '\'');
			if (e && e - (q + 7) < 200) {
				char name[201];
				snprintf(name, sizeof(name), "%.*s", (int)(e - (q + 7)), q + 7);
				svc *c = hx_svc_find(&s->m, name);
				if (c && c->cand.listen)
					v = c;
			}
		}
		if (!v || v->excluded)
			continue;
		const char *msg = strstr(line, "] : ");
		char why[300];
		snprintf(why, sizeof(why), "haproxy -c refused its section (%.200s)",
		         msg ? msg + 4 : line);
		hx_model_exclude(&s->m, v, why);
		n++;
	}
	if (!n)
		return false;
	hx_report_exclusions(s);
	hx_arm_model_timer(s, hx_model_tick(&s->m, s->cat));
	return true;
}
static void install_unchanged(hx *s);

const char *hx_spawn_cause(const regent_spawn_result *r, char *out, size_t n)
{
	if (r->error == -ETIMEDOUT)
		snprintf(out, n, "timed out after %llu ms (killed)", (unsigned long long)r->elapsed_ms);
	else if (r->error)
		snprintf(out, n, "%s", uv_strerror(r->error));
	else if (r->term_signal)
		snprintf(out, n, "killed by signal %d (%s)", r->term_signal, strsignal(r->term_signal));
	else
		snprintf(out, n, "exit %d", r->exit_status);
	return out;
}

void hx_spawn(hx *s, const char *const *argv, const char *const *env, regent_spawn_cb cb)
{
	regent_spawn_opts o = {
		.size = sizeof(o),
		.argv = argv,
		.env = env,
		.timeout_ms = s->check_timeout ? s->check_timeout : 30000,
		.max_output = 256u << 10,
		.on_done = cb,
		.arg = s,
	};
	int err = 0;
	s->run = s->h->spawn(s->ctx, &o, &err);
	if (!s->run) {
		/* Not started: the callback says so, with the cause. */
		regent_spawn_result res = {.size = sizeof(res), .error = err, .exit_status = -1,
		                           .output = ""};
		cb(s, &res);
	}
}

static void on_check(void *arg, const regent_spawn_result *res)
{
	hx *s = arg;
	s->run = NULL;
	hx_tstep(s, T_CHECKED);
	/* The exit code when haproxy -c ran and exited, else -1 (not run,
	 * timed out, killed by a signal: res->error, res->term_signal). */
	int status = res->error || res->term_signal ? -1 : res->exit_status;
	const char *out = res->output;
	char cause[160];
	hx_spawn_cause(res, cause, sizeof(cause));
	bool ran = !res->error;
	bool verify = s->verify_only;
	s->verify_only = false;
	if (status == 0 || status == 2) {
		s->checked_once = true;
		hx_ok_shapes_learn(s);
		if (verify)
			install_unchanged(s);
		else
			final_render(s);
		return;
	}
	s->h->metric_add(s->m_rejected, 1);
	if (!ran)
		s->h->log(s->ctx, REGENT_LOG_ERROR, "cannot run %s -c: %s", s->haproxy_bin, cause);
	else {
		s->h->log(s->ctx, REGENT_LOG_ERROR,
		          "haproxy rejected the new configuration (%s); it is not installed and the "
		          "running one stays; retried on the next change. haproxy said:",
		          cause);
		hx_log_output(s, REGENT_LOG_ERROR, out);
	}
	if (status > 0 && exclude_rejected(s, out)) {
		/* Pinned on services: those are left out (or keep the section
		 * haproxy runs), every other change goes on at once. */
		uv_fs_t req;
		uv_fs_unlink(NULL, &req, s->cand_path, NULL);
		uv_fs_req_cleanup(&req);
		hx_text_put(s->cand_text);
		s->cand_text = NULL;
		hx_pipeline_done(s);
		return;
	}
	hx_set_reason(s, &s->reject_err,
	              !ran ? "cannot run haproxy -c (see the log); the new configuration waits"
	                   : "haproxy rejected the latest configuration (see the log); the "
	                     "previous one runs");
	hx_update_health(s);
	hx_text_put(s->last_rejected);
	s->last_rejected = s->cand_text;
	s->cand_text = NULL;
	s->rejected_wait = true;
	uv_fs_t req;
	uv_fs_unlink(NULL, &req, s->cand_path, NULL);
	uv_fs_req_cleanup(&req);
	hx_drop_pending(s);
	hx_pipeline_done(s);
	if (!s->proven) {
		char *why = !ran ? s->h->xasprintf("cannot run %s -c: %s", s->haproxy_bin, cause)
		                 : s->h->xasprintf("haproxy -c rejected the configuration (%s, see "
		                                   "the log)",
		                                   cause);
		hx_trial_fail(s, !ran ? res->error : -EINVAL, why);
		free(why);
	}
}

/* haproxy -c on path with the user's includes before it. */
static void run_check(hx *s, const char *path)
{
	s->ps = P_CHECK;
	s->checking = true;
	size_t n = 0;
	const char **argv = s->h->xcalloc(6 + 2 * s->ninclude, sizeof(*argv));
	argv[n++] = s->haproxy_bin;
	argv[n++] = "-c";
	for (size_t i = 0; i < s->ninclude; i++) {
		argv[n++] = "-f";
		argv[n++] = s->include[i];
	}
	argv[n++] = "-f";
	argv[n++] = path;
	argv[n] = NULL;
	char **env = hx_haproxy_env(s->h); /* copied by the spawn */
	hx_spawn(s, argv, (const char *const *)env, on_check);
	hx_env_free(env);
	free(argv);
}

static void on_cand_written(void *arg, int status, const char *why)
{
	hx *s = arg;
	s->write = NULL;
	hx_tstep(s, T_WRITTEN);
	if (status < 0) {
		hx_write_failed(s, s->cand_path, status, why);
		hx_pipeline_done(s);
		return;
	}
	run_check(s, s->cand_path);
}

/* The file on disk is the candidate already (written by the previous run,
 * or the change was undone): nothing to reload. */
static void install_unchanged(hx *s)
{
	bool first = !s->installed_once;
	if (first)
		s->h->log(s->ctx, REGENT_LOG_INFO, "%s is up to date: no reload", s->config_file);
	install_done(s);
	if (first) {
		hx_ap_unknown(s); /* an existing haproxy: assume nothing, set everything */
		s->spawn_gen = s->file_gen; /* an adopted master runs this text already */
	}
	hx_pipeline_done(s);
}

static void start_pipeline(hx *s)
{
	hx_tstep(s, T_START);
	/* A cold start checks the binary and the includes first, with a file
	 * with no service (accepted.c hx_cold_bare): haproxy's first start
	 * takes the services. */
	bool bare = hx_cold_bare(s);
	for (svc *v = s->m.svcs; v; v = v->next) {
		if (bare)
			shape_clear(&v->cand);
		else
			shape_copy(s->h, &v->cand, &v->want);
	}
	free(s->g_cand);
	s->g_cand = s->h->xstrdup(s->g_want);
	char *text = render_file(s, R_CAND);
	hx_tstep(s, T_RENDERED);
	if (s->last_rejected && strcmp(text, s->last_rejected) == 0 && !s->force_reload) {
		hx_text_put(text); /* haproxy said no to exactly this: wait for a change */
		memset(s->tm, 0, sizeof(s->tm));
		for (svc *v = s->m.svcs; v; v = v->next)
			shape_clear(&v->cand);
		free(s->g_cand);
		s->g_cand = NULL;
		hx_drop_pending(s);
		return;
	}
	s->last_pipeline_ms = s->h->now_ms();
	s->cand_text = text;
	bool same = hx_mirror_same(s, text);
	if (same && !s->force_reload) {
		if (!s->checked_once) {
			/* This instance has not proven this binary and these
			 * includes yet: haproxy -c on the file as it is. */
			s->verify_only = true;
			run_check(s, s->config_file);
			return;
		}
		install_unchanged(s);
		return;
	}
	/* Sections haproxy accepted before: written as the final candidate
	 * at once (the text is the latest: no render again after a check), the
	 * fast path waiting from here, and reloaded; the new master checks it. */
	bool skip = hx_can_skip_check(s);
	s->checking = false;
	if (skip && s->cold_direct_now)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "cold start: haproxy starts once with the first configuration with services, "
		          "written without a separate haproxy -c (its start parses it; a refusal makes "
		          "the next one checked)");
	else if (skip && s->cold_skip_now)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "cold start: the first configuration with services goes without a "
		          "separate haproxy -c (the reload's own parse checks it; a refusal makes "
		          "the next one checked)");
	else if (skip)
		s->h->log(s->ctx, REGENT_LOG_DEBUG,
		          "every service section is one haproxy accepted: no separate haproxy -c "
		          "(the reload's own parse checks it)");
	s->ps = skip ? P_FINAL : P_WRITE_CAND;
	int err = 0;
	const char *path = skip ? s->config_file : s->cand_path;
	s->write = hx_write_file(s, path, s->tmp_path, hx_text_ref(text), true,
	                         skip ? on_final_written : on_cand_written, &err);
	if (!s->write) {
		s->h->log(s->ctx, REGENT_LOG_ERROR, "cannot write %s: %s", path, strerror(-err));
		hx_pipeline_done(s);
		return;
	}
	if (skip) {
		cand_final(s);
		/* The text is final (every slot's pend view set by the render):
		 * it goes straight over config_file, and the old worker's state is
		 * dumped and written meanwhile, not after the candidate's write,
		 * fsync and rename (hx_kick starts the dump once the admin socket
		 * is free, after any listener close). */
		s->join_left = 2;
		s->join_failed = false;
		s->dump_pending = true;
		if (!s->admin_req)
			hx_start_dump(s);
		hx_reload_prefetch(s); /* and the master's counters */
	}
}

static void on_slow_timer(uv_timer_t *t)
{
	hx_kick(t->data);
}

/* A service of the earlier run's file that the catalog lists as unknown
 * (the registry has it, the store could not read it yet), or NULL. */
static const char *recovered_unknown(hx *s, size_t *n)
{
	const char *const *names;
	size_t nu = s->cat ? s->h->catalog_unknown(s->cat, &names) : 0;
	const char *first = NULL;
	*n = 0;
	for (size_t i = 0; i < nu; i++) {
		svc *v = hx_svc_find(&s->m, names[i]);
		if (v && v->recovered) {
			first = first ? first : v->name;
			(*n)++;
		}
	}
	return first;
}

/* At start, a catalog with no routable service (a store still reading,
 * say) does not empty the routes an earlier run left, for a while; and
 * while a service that the earlier run's file routes is unknown to the
 * catalog, the file stays as it is (haproxy keeps routing it as it did),
 * however long: its servers are not known to be gone. */
static bool startup_hold(hx *s, uint64_t now)
{
	if (s->m.grace_over || !s->recovered)
		return false;
	size_t nheld;
	const char *held = recovered_unknown(s, &nheld);
	if (held) {
		if (!s->unknown_hold_logged)
			s->h->log(s->ctx, REGENT_LOG_WARN,
			          "keeping %s as it is: it routes service %s%s, which the registry lists "
			          "but the store could not read yet; the file changes once %s read",
			          s->config_file, held, nheld > 1 ? " (and others)" : "",
			          nheld > 1 ? "they are" : "it is");
		s->unknown_hold_logged = true;
		uv_timer_stop(s->t_slow);
		return true;
	}
	if (s->unknown_hold_logged)
		s->h->log(s->ctx, REGENT_LOG_INFO, "every service %s routes is read: applying the catalog",
		          s->config_file);
	s->unknown_hold_logged = false;
	bool any = false;
	for (svc *v = s->m.svcs; v && !any; v = v->next)
		any = v->want.listen != NULL;
	if (any || now >= s->started_ms + s->startup_grace) {
		s->m.grace_over = true;
		/* The earlier run's services the catalog does not list go now. */
		hx_model_update(&s->m, s->cat, s->cat, NULL, 0, true);
		hx_report_exclusions(s);
		return false;
	}
	if (!uv_is_active((uv_handle_t *)s->t_slow)) {
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "the catalog has no service yet; keeping %s as it is for up to %llu ms",
		          s->config_file, (unsigned long long)(s->started_ms + s->startup_grace - now));
		uv_timer_start(s->t_slow, on_slow_timer, s->started_ms + s->startup_grace - now, 0);
	}
	return true;
}

void hx_schedule_slow(hx *s)
{
	if (s->ps != P_IDLE || s->mirror || s->stopping || (s->rejected_wait && !s->force_reload))
		return;
	/* The first candidate waits for the look for an haproxy to adopt (a
	 * connect to the master socket, milliseconds; on_adopted kicks): a
	 * cold start's first one is a file with no service (hx_cold_bare). */
	if (s->adopting)
		return;
	uint64_t now = s->h->now_ms();
	if (startup_hold(s, now) || hx_cold_start_waits(s))
		return;
	/* No reload to rate-limit before haproxy's first start. */
	uint64_t due = s->last_pipeline_ms && !hx_cold_direct_due(s)
	                   ? s->last_pipeline_ms + s->reload_interval
	                   : 0;
	if (s->retry_at > due)
		due = s->retry_at;
	if (due > now) {
		if (!uv_is_active((uv_handle_t *)s->t_slow))
			uv_timer_start(s->t_slow, on_slow_timer, due - now, 0);
		return;
	}
	start_pipeline(s);
}
