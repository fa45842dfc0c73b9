/* mirror.c - the haproxy sink's mirror: every runtime change (a server's
 * address, port or state set over the admin socket) written into the
 * installed config_file too, so that a reload or a restart of haproxy
 * starts from it.  Once per change of the model: the changed server lines
 * written over theirs in place (host->file_patch, ABI 1.6; the lines are
 * padded to a fixed width per slot by hx_render_line, here, which the
 * candidate's render in pipeline.c uses too), else the whole file
 * rendered from the model and replaced atomically (host->file_write).
 * After a reload the candidate's layout is taken over
 * (hx_mirror_from_cand): no whole render again.  The file's text is not
 * kept (megabytes at 10,000 servers): only where each service's part and
 * each server line lie, and the file's length.  Owns s->mirror and each
 * service's m* fields. */
#include "sink.h"

#include <errno.h>

/* ---- server lines (the candidate's render in pipeline.c uses them too) ---- */

/* How a slot is written now: ready with its address, or disabled. */
static srv_view slot_as_file(const slot *sl)
{
	srv_view f = {.st = AP_MAINT};
	if (sl->st == ST_READY) {
		f.st = AP_READY;
		f.addr = sl->addr;
		f.port = sl->port;
	}
	return f;
}

/* Every server line is padded with spaces to a width with room for an
 * address and an instance id (LINE_ROOM bytes more than the slot's
 * disabled line; a longer line keeps its length), before its "  # id"
 * comment, else at its end.  A slot that changes is then written over its
 * own line in place (host->file_patch, ABI 1.6), O(the line), the file
 * keeping its length; a line that no longer fits makes the mirror write
 * the whole file (see hx_maybe_mirror). */
#define LINE_ROOM 64

size_t hx_line_width(size_t i, const char *srvopts)
{
	size_t d = 1;
	for (size_t n = i + 1; n >= 10; n /= 10)
		d++;
	/* "    server sN 0.0.0.0:0 id N<srvopts> disabled" */
	return strlen("    server s") + d + strlen(" 0.0.0.0:0") + strlen(" id ") + d +
	       strlen(srvopts) + strlen(" disabled") + LINE_ROOM;
}

static size_t put_dec(char *d, size_t v) /* d: 24 bytes; the digits at its end */
{
	size_t n = 24;
	do {
		d[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return n;
}

/* hx_render_server's line with hx_render_line's padding, written at once
 * into out, without printf or a second pass (the render's main cost at
 * 10,000 servers): its length, or 0 when it does not fit out or srvopts
 * has a '#' (the general path below then, which pads before the first
 * "  # "). */
static size_t line_direct(char *out, size_t cap, size_t i, const hx_server_line *l,
                          const char *srvopts, size_t width)
{
	if (strchr(srvopts, '#'))
		return 0;
	size_t n = 0, ol = strlen(srvopts), k;
	char d[24];
#define PUT(src, len)                                                                          \
	do {                                                                                   \
		if (n + (len) >= cap)                                                          \
			return 0;                                                              \
		memcpy(out + n, (src), (len));                                                 \
		n += (len);                                                                    \
	} while (0)
	PUT("    server s", 12);
	size_t sk = put_dec(d, i + 1);
	char sd[24];
	memcpy(sd, d, sizeof(sd)); /* the slot's number: its name and its id */
	PUT(d + sk, 24 - sk);
	if (!l->enabled) {
		PUT(" 0.0.0.0:0 id ", 14);
		PUT(sd + sk, 24 - sk);
		PUT(srvopts, ol);
		PUT(" disabled", 9);
	} else {
		bool v6 = strchr(l->addr, ':') != NULL;
		PUT(" [", v6 ? 2 : 1);
		PUT(l->addr, strlen(l->addr));
		if (v6)
			PUT("]", 1);
		PUT(":", 1);
		k = put_dec(d, (unsigned)l->port);
		PUT(d + k, 24 - k);
		PUT(" id ", 4);
		PUT(sd + sk, 24 - sk);
		PUT(srvopts, ol);
	}
	const char *id = l->enabled && l->id && hx_valid_comment_id(l->id) ? l->id : NULL;
	size_t idl = id ? strlen(id) : 0, total = n + (id ? 4 + idl : 0);
	if (total < width) {
		if (n + (width - total) >= cap)
			return 0;
		memset(out + n, ' ', width - total);
		n += width - total;
	}
	if (id) {
		PUT("  # ", 4);
		PUT(id, idl);
	}
	PUT("\n", 1);
#undef PUT
	return n;
}

/* Slot i's line (what the file says of it: its pend view set), appended
 * to b with its newline, padded to at least width bytes before it. */
void hx_render_line(hx_buf *b, size_t i, slot *sl, const char *srvopts, size_t width)
{
	sl->pend = slot_as_file(sl);
	sl->pend_id = true;
	char ab[HX_ADDR_MAX];
	hx_server_line l = {.enabled = sl->pend.st == AP_READY,
	                    .addr = sl->pend.st == AP_READY ? hx_ip_str(&sl->addr, ab) : "",
	                    .port = sl->port, .id = sl->id};
	char direct[1024];
	size_t dn = line_direct(direct, sizeof(direct), i, &l, srvopts, width);
	if (dn) {
		hx_buf_add(b, direct, dn);
		return;
	}
	size_t start = b->len;
	hx_render_server(b, i, &l, srvopts);
	size_t len = b->len - start - 1; /* without its newline */
	if (len >= width)
		return;
	size_t pad = width - len;
	char spaces[LINE_ROOM];
	memset(spaces, ' ', sizeof(spaces));
	for (size_t left = pad; left;) {
		size_t k = left < sizeof(spaces) ? left : sizeof(spaces);
		hx_buf_add(b, spaces, k);
		left -= k;
	}
	char *line = b->data + start;
	const char *c = memmem(line, len, "  # ", 4);
	size_t at = c ? (size_t)(c - line) : len;
	memmove(line + at + pad, line + at, len + 1 - at);
	memset(line + at, ' ', pad);
}

void hx_file_header(hx *s, hx_buf *b, const char *g)
{
	hx_buf_printf(b,
	              "# Generated by regent (sink %s): do not edit, regent rewrites this file.\n"
	              "# Loaded by haproxy after the user's own files; one listen per service.\n\n",
	              s->h->instance_name(s->ctx));
	if (g)
		hx_buf_puts(b, g);
}

/* ---- the mirror ---- */

/* One service's part for the mirror, rendered whole into b (its listen
 * block and every server line), with where each server line starts
 * (v->mloff). */
static void mirror_service(hx *s, svc *v, hx_buf *b)
{
	const shape *p = &v->run;
	size_t nr = p->nslots < v->nslots ? p->nslots : v->nslots, start = b->len;
	free(v->mloff);
	uint32_t *off = v->mloff = s->h->xcalloc(nr + 1, sizeof(*v->mloff));
	hx_buf_puts(b, p->listen);
	for (size_t i = 0; i < nr; i++) {
		off[i] = (uint32_t)(b->len - start);
		v->slots[i].rdirty = false;
		hx_render_line(b, i, &v->slots[i], p->srvopts, hx_line_width(i, p->srvopts));
	}
	off[nr] = (uint32_t)(b->len - start);
	hx_buf_puts(b, "\n");
	v->moff = start;
	v->mlen = b->len - start;
	v->mnr = nr;
	v->mgen = v->sgen;
	v->mcached = true;
	v->mpend = true;
}

/* The installed file as it should read now, rendered whole from the
 * model, for when the in-place patch cannot do (a part not known, a line
 * that outgrew its width): O(file).  The text is not kept once it is
 * handed to the write (the core copies it); what stays is each part's
 * place in the file (v->moff, v->mloff) and the file's length. */
static char *render_mirror(hx *s, size_t *len)
{
	hx_buf b = {.h = s->h};
	if (s->file_len) {
		/* About the last text's size: no doubling and copying on the way
		 * (a few MB at 10,000 servers). */
		b.cap = s->file_len + 64 * 1024;
		b.data = s->h->xrealloc(NULL, b.cap);
		b.data[0] = '\0';
	}
	hx_file_header(s, &b, s->g_run);
	for (svc *v = s->m.svcs; v; v = v->next)
		if (v->run.listen)
			mirror_service(s, v, &b);
	/* Every part haproxy runs is rendered: none moved, and the write
	 * in flight is whole. */
	hx_mq_clear(&s->m, HX_MQ_MOVED);
	s->m.mq_all = false;
	s->m.mpend_all = true;
	*len = b.len;
	return hx_buf_take(&b);
}

/* Whether the candidate just rendered (cand: the shapes v->cand and
 * s->g_cand) is byte for byte the installed file, without keeping the
 * file's text: before the first install, compared with the text an
 * earlier run left (read at start); after it, the file is the mirror's,
 * so it is the candidate when no mirror write is in flight or owed, every
 * service's part is as the mirror last wrote it (no slot changed since),
 * and the global part and every service's listen block, server options,
 * line count and place in the order are the candidate's (the server
 * lines are then rendered from the same slots, by the same
 * hx_render_line).  False when unsure: at worst a reload that was not
 * needed, never one skipped.  O(services), no text compared. */
bool hx_mirror_same(hx *s, const char *cand)
{
	if (!s->installed_once)
		return s->recovered_text && strcmp(cand, s->recovered_text) == 0;
	if (s->mirror || s->mirror_force || !streq(s->g_cand, s->g_run))
		return false;
	size_t end = 0; /* the parts lie in the list's order (the candidate's) */
	for (svc *v = s->m.svcs; v; v = v->next) {
		const shape *r = &v->run, *c = &v->cand;
		if (!r->listen != !c->listen)
			return false;
		if (!r->listen)
			continue;
		size_t nr = c->nslots < v->nslots ? c->nslots : v->nslots;
		if (!v->mcached || v->mgen != v->sgen || v->mnr != nr || !streq(r->listen, c->listen) ||
		    !streq(r->srvopts, c->srvopts) || v->moff < end)
			return false;
		end = v->moff + v->mlen;
	}
	return true;
}

void hx_mirror_invalidate(hx *s)
{
	s->m.mq_all = true;
	for (svc *v = s->m.svcs; v; v = v->next) {
		free(v->mloff);
		v->mloff = NULL;
		v->moff = v->mlen = v->mnr = 0;
		v->mcached = false;
	}
}

/* The candidate is the installed file now: each service's part of it
 * where the candidate's render laid it out (pipeline.c render_service), so
 * the mirror after a reload renders only what changed since (sgen moved
 * past cmgen), not the whole file again. */
void hx_mirror_from_cand(hx *s)
{
	s->m.mq_all = true; /* parts uncached, and moved since the candidate's render */
	for (svc *v = s->m.svcs; v; v = v->next) {
		free(v->mloff);
		v->mloff = NULL;
		v->moff = v->mlen = v->mnr = 0;
		v->mcached = false;
		if (!v->cand.listen || !v->cmloff)
			continue;
		v->mloff = v->cmloff;
		v->cmloff = NULL;
		v->moff = v->cmoff;
		v->mlen = v->cmlen;
		v->mnr = v->cmnr;
		v->mgen = v->cmgen;
		v->mcached = true;
	}
}

/* The file on disk is not known any more: the next mirror renders and
 * writes it whole. */
void hx_mirror_unknown(hx *s)
{
	s->file_len = 0;
	hx_mirror_invalidate(s); /* where its parts lie is not known */
	s->mirror_force = true;
}

static void on_mirror_written(void *arg, int status, const char *why)
{
	hx *s = arg;
	s->mirror = NULL;
	if (status < 0) {
		hx_mirror_unknown(s); /* written again by the retry */
		hx_write_failed(s, s->config_file, status, why);
		return;
	}
	hx_write_ok(s);
	hx_pend_to_file(s, true);
	hx_kick(s);
}

static void on_mirror_patched(void *arg, int status, const char *why)
{
	hx *s = arg;
	if (status == -ESTALE) {
		/* Replaced or changed behind regent's back: written whole (and
		 * atomically) at once, with no error. */
		s->mirror = NULL;
		s->h->log(s->ctx, REGENT_LOG_WARN, "%s; writing it whole", why);
		hx_mirror_unknown(s);
		hx_kick(s);
		return;
	}
	on_mirror_written(arg, status, why);
}

/* A changed server line as the patch renders it: its slot, its offset in
 * the file, its bytes in the patch's buffer, and whether they differ
 * from the file's. */
typedef struct mline {
	slot *sl;
	size_t off, boff, len;
	bool write;
} mline;

static int mline_cmp(const void *a, const void *b)
{
	const mline *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Whether the line slot sl renders to now (its pend view just set) is the
 * one the installed file has: the same state, address and port, and for a
 * ready line the same instance id (file_id: no other id taken since the
 * file's line was rendered); the slot's number and the server options are
 * its part's, unchanged. */
static bool line_unchanged(const slot *sl)
{
	const srv_view *p = &sl->pend, *f = &sl->file;
	return p->st == f->st && hx_ip_eq(&p->addr, &f->addr) && p->port == f->port &&
	       (p->st != AP_READY || sl->file_id);
}

/* The mirror as a patch: when every service haproxy runs has its part in
 * the file as last written (mcached) with the same server lines, and every
 * changed line (rdirty) renders to the width its line has in the file
 * (what a whole render would write: see render_line), the changed lines
 * are handed to host->file_patch (ABI 1.6) as ranges at their offsets
 * (the file's text is not kept: v->moff and v->mloff say where each line
 * lies).  The services are those on HX_MQ_MOVED (mirrorq.c), all of them
 * only after the layout was reset (mq_all): O(changed services + changed
 * lines) per change, and the write is O(changed lines) too, where the
 * whole file is megabytes at 10,000 servers.  Returns 1 when a patch is under way, 0 when no line differs,
 * -1 when only the whole file will do (the slots' rdirty flags untouched
 * then). */
static int mirror_patch(hx *s)
{
	if (!s->file_len || !REGENT_HOST_HAS(s->h, file_patch) || !s->h->file_patch)
		return -1;
	hx_buf nb = {.h = s->h};
	mline *ml = NULL;
	size_t nml = 0, mlcap = 0;
	svc **moved = NULL; /* the services whose slots changed (sgen moved) */
	size_t nmoved = 0, movedcap = 0;
	int rc = 0;
	bool all = s->m.mq_all;
	for (svc *v = all ? s->m.svcs : s->m.mqhead[HX_MQ_MOVED]; v && rc == 0;
	     v = all ? v->next : v->mq[HX_MQ_MOVED].next) {
		if (!v->run.listen)
			continue;
		if (!v->mcached) {
			rc = -1;
			break;
		}
		if (v->mgen == v->sgen)
			continue;
		if (nmoved == movedcap) {
			movedcap = movedcap ? 2 * movedcap : 8;
			moved = s->h->xrealloc(moved, movedcap * sizeof(*moved));
		}
		moved[nmoved++] = v;
		const shape *p = &v->run;
		size_t nr = p->nslots < v->nslots ? p->nslots : v->nslots;
		if (v->mnr != nr || !v->mloff) {
			rc = -1;
			break;
		}
		for (size_t i = 0; i < nr; i++) {
			slot *sl = &v->slots[i];
			if (!sl->rdirty)
				continue;
			size_t o0 = v->mloff[i], o1 = v->mloff[i + 1], b0 = nb.len;
			hx_render_line(&nb, i, sl, p->srvopts, hx_line_width(i, p->srvopts));
			if (nb.len - b0 != o1 - o0) { /* the width changed */
				rc = -1;
				break;
			}
			bool write = !line_unchanged(sl);
			if (!write)
				nb.len = b0;
			if (nml == mlcap) {
				mlcap = mlcap ? 2 * mlcap : 16;
				ml = s->h->xrealloc(ml, mlcap * sizeof(*ml));
			}
			ml[nml++] = (mline){sl, v->moff + o0, b0, o1 - o0, write};
		}
	}
	if (rc < 0) {
		hx_buf_free(&nb);
		free(ml);
		free(moved);
		return -1;
	}
	for (size_t k = 0; k < nmoved; k++) {
		moved[k]->mgen = moved[k]->sgen;
		moved[k]->mpend = true;
		hx_mq_add(&s->m, HX_MQ_PEND, moved[k]);
	}
	free(moved);
	/* Each service moved is rendered now, or has no part (it gets one only
	 * with a new layout: mq_all). */
	hx_mq_clear(&s->m, HX_MQ_MOVED);
	s->m.mq_all = false;
	if (!all && nml > 1) /* the ranges in file order, as the walk of every part has them */
		qsort(ml, nml, sizeof(*ml), mline_cmp);
	regent_file_range *rg = s->h->xmalloc((nml ? nml : 1) * sizeof(*rg));
	size_t nrg = 0;
	for (size_t k = 0; k < nml; k++) { /* nb.data has stopped moving */
		ml[k].sl->rdirty = false;
		if (ml[k].write)
			rg[nrg++] = (regent_file_range){.off = ml[k].off, .data = nb.data + ml[k].boff,
			                                .len = ml[k].len};
	}
	free(ml);
	if (!nrg) {
		free(rg);
		hx_buf_free(&nb);
		return 0;
	}
	regent_file_patch_opts o = {
		.size = sizeof(o),
		.path = s->config_file,
		.expect_len = s->file_len,
		.ranges = rg,
		.nranges = nrg,
		.on_done = hx_job_file_done,
		.arg = hx_job_new(s, on_mirror_patched, NULL), /* its end seen after s stopped */
		/* a managed haproxy starts only from a file the sink's start
		 * compared or rewrote (core/filewrite.c, patch_work) */
		.flags = s->manage ? REGENT_FILE_PATCH_NO_SYNC : 0,
	};
	int err = 0;
	s->mirror = s->h->file_patch(s->ctx, &o, &err); /* the core copies the bytes */
	free(rg);
	hx_buf_free(&nb);
	if (!s->mirror) {
		hx_job_unstarted(o.arg);
		hx_mirror_unknown(s); /* the file may or may not have the change */
		hx_write_failed(s, s->config_file, err, NULL);
	}
	return 1;
}

void hx_maybe_mirror(hx *s)
{
	if (s->mirror || s->ps != P_IDLE || !s->installed_once)
		return;
	/* Rendered once per change of the model, never per kick. */
	if (s->m.gen == s->mirror_gen && !s->mirror_force)
		return;
	s->mirror_gen = s->m.gen;
	s->mirror_force = false;
	if (mirror_patch(s) >= 0)
		return;
	size_t len;
	char *text = render_mirror(s, &len);
	s->file_len = len;
	int err = 0;
	s->mirror = hx_write_file(s, s->config_file, s->tmp_path, text, false, on_mirror_written,
	                          &err); /* takes text */
	if (!s->mirror) {
		hx_mirror_unknown(s); /* not on disk: unknown */
		hx_write_failed(s, s->config_file, err, NULL);
	}
}
