/* annot.c - what the haproxy sink tells the rest of the agent about each
 * server it routes to (host->annotations_set, ABI 1.2): the server's state
 * in haproxy (up, down, drain, maint...) and its last check, keyed by
 * service and instance id, for the stats sink's page.  It asks haproxy's
 * admin socket `show stat -1 4 -1` (server rows only) every interval, and
 * soon after the sink changed servers (hx_annot_poke): never per page
 * request.  Rows map to instances through the model's slots (sN of
 * service X is slot N-1); free slots are left out, a slot still draining
 * an instance that left the catalog is kept.  It owns one timer, at most
 * one request, and what it published. */
#include "annot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POKE_MS 300
#define MAX_FIELDS 160

struct hx_annot {
	regent_ctx *ctx;
	const regent_host *h;
	hx_model *m;
	char *socket;
	uint64_t interval, cmd_timeout;
	uv_timer_t *timer;
	hx_cli *req;
	bool poked;
	int last_err; /* logged once per kind of failure */
};

static bool host_has_annotations(const regent_host *h)
{
	return h->abi_minor >= 2 &&
	       h->size >= offsetof(regent_host, annotations_set) + sizeof(h->annotations_set);
}

/* ---- pure: a row as a state and a detail ---- */

void hx_annot_describe(const char *status, const char *check_status, const char *check_desc,
                       const char *last_chk, const char *lastchg, char *state, size_t statelen,
                       char *detail, size_t detaillen)
{
	/* status: "UP", "DOWN", "DRAIN", "MAINT", "MAINT (via px/sv)",
	 * "MAINT (resolution)", "NOLB", "no check", "UP 1/3" (going down),
	 * "DOWN 1/2" (going up). */
	size_t w = strcspn(status, " ");
	char trans[32] = "";
	if (!strncmp(status, "no check", 8)) {
		snprintf(state, statelen, "up");
		snprintf(trans, sizeof(trans), "not checked");
	} else {
		snprintf(state, statelen, "%.*s", (int)(w < 16 ? w : 16), status);
		for (char *p = state; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		if (!state[0])
			snprintf(state, statelen, "unknown");
		const char *rest = status + w + (status[w] == ' ');
		if (rest[0] >= '0' && rest[0] <= '9')
			snprintf(trans, sizeof(trans), "going %s %s", !strcmp(state, "up") ? "down" : "up",
			         rest);
		else if (rest[0])
			snprintf(trans, sizeof(trans), "%.30s", rest);
	}
	const char *chk = check_status ? check_status : "";
	while (*chk == '*' || *chk == ' ') /* "* L4OK": a check in progress */
		chk++;
	const char *why = last_chk && last_chk[0] ? last_chk : check_desc ? check_desc : "";
	long since = lastchg && lastchg[0] ? strtol(lastchg, NULL, 10) : -1;
	size_t n = 0;
	detail[0] = '\0';
#define ADD(...)                                                                            \
	do {                                                                                \
		if (n < detaillen) {                                                        \
			int k = snprintf(detail + n, detaillen - n, __VA_ARGS__);           \
			n = k < 0 ? detaillen : n + (size_t)k;                              \
		}                                                                           \
	} while (0)
	if (trans[0])
		ADD("%s", trans);
	if (chk[0])
		ADD("%s%s", n ? "; " : "", chk);
	if (why[0])
		ADD("%s%.120s", n ? " " : "", why);
	if (since >= 0) {
		if (since < 120)
			ADD("%schanged %ld s ago", n ? ", " : "", since);
		else if (since < 7200)
			ADD("%schanged %ld min ago", n ? ", " : "", since / 60);
		else
			ADD("%schanged %ld h ago", n ? ", " : "", since / 3600);
	}
#undef ADD
	/* Control bytes from haproxy's text never reach the page. */
	for (char *p = detail; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* ---- CSV ---- */

/* Splits one CSV line in place (haproxy quotes a field holding a comma or
 * a quote, doubling the quotes).  Returns the number of fields. */
static size_t csv_split(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *p = line;
	while (p && n < max) {
		if (*p == '"') {
			char *w = ++p;
			f[n++] = w;
			while (*p) {
				if (*p == '"') {
					if (p[1] == '"') {
						*w++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*w++ = *p++;
			}
			char *next = strchr(p, ',');
			*w = '\0'; /* w < p: the closing quote was read */
			p = next ? next + 1 : NULL;
		} else {
			f[n++] = p;
			p = strchr(p, ',');
			if (p)
				*p++ = '\0';
		}
	}
	return n;
}

static int col(char **hdr, size_t nh, const char *name)
{
	for (size_t i = 0; i < nh; i++)
		if (!strcmp(hdr[i], name))
			return (int)i;
	return -1;
}

typedef struct row {
	regent_annotation a;
	char label[160];
	char state[24];
	char detail[200];
} row;

static int publish(hx_annot *a, char *out)
{
	char *save = NULL;
	char *line = strtok_r(out, "\n", &save);
	if (!line || strncmp(line, "# ", 2) != 0)
		return -EPROTO;
	char *hdr[MAX_FIELDS];
	size_t nh = csv_split(line + 2, hdr, MAX_FIELDS);
	int c_px = col(hdr, nh, "pxname"), c_sv = col(hdr, nh, "svname");
	int c_st = col(hdr, nh, "status"), c_cs = col(hdr, nh, "check_status");
	int c_cd = col(hdr, nh, "check_desc"), c_lc = col(hdr, nh, "last_chk");
	int c_ch = col(hdr, nh, "lastchg");
	if (c_px < 0 || c_sv < 0 || c_st < 0)
		return -EPROTO;
	row *rows = NULL;
	size_t nrows = 0, cap = 0;
	char *f[MAX_FIELDS];
	while ((line = strtok_r(NULL, "\n", &save))) {
		size_t nf = csv_split(line, f, MAX_FIELDS);
		if (nf < nh || f[c_px][0] == '#')
			continue;
		svc *v = hx_svc_find(a->m, f[c_px]);
		const char *sv = f[c_sv];
		if (!v || sv[0] != 's')
			continue;
		char *end;
		long idx = strtol(sv + 1, &end, 10);
		if (*end || idx < 1 || (size_t)idx > v->nslots || !v->slots[idx - 1].id)
			continue;
		if (nrows == cap) {
			size_t nc = cap ? cap * 2 : 64;
			row *r = realloc(rows, nc * sizeof(*r));
			if (!r) {
				free(rows);
				return -ENOMEM;
			}
			rows = r;
			cap = nc;
		}
		row *r = &rows[nrows++];
		memset(r, 0, sizeof(*r));
		snprintf(r->label, sizeof(r->label), "%s/%s", v->name, sv);
		hx_annot_describe(f[c_st], c_cs >= 0 ? f[c_cs] : NULL, c_cd >= 0 ? f[c_cd] : NULL,
		                  c_lc >= 0 ? f[c_lc] : NULL, c_ch >= 0 ? f[c_ch] : NULL, r->state,
		                  sizeof(r->state), r->detail, sizeof(r->detail));
		r->a = (regent_annotation){
			.size = sizeof(r->a),
			.service = v->name,
			.id = v->slots[idx - 1].id,
			.label = NULL, /* set below: rows may still move */
			.state = NULL,
			.detail = NULL,
		};
	}
	const regent_annotation **list = calloc(nrows + 1, sizeof(*list));
	if (!list) {
		free(rows);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nrows; i++) {
		rows[i].a.label = rows[i].label;
		rows[i].a.state = rows[i].state;
		rows[i].a.detail = rows[i].detail;
		list[i] = &rows[i].a;
	}
	int rc = a->h->annotations_set(a->ctx, list, nrows);
	free(list);
	free(rows);
	return rc;
}

/* ---- the loop ---- */

static void on_answer(void *arg, int status, const char *out, size_t len);

static void ask(uv_timer_t *t)
{
	hx_annot *a = t->data;
	if (a->req)
		return;
	a->poked = false;
	int err = 0;
	a->req = hx_cli_request(uv_handle_get_loop((uv_handle_t *)t), a->socket, "show stat -1 4 -1",
	                        a->cmd_timeout, on_answer, a, &err);
	if (!a->req) {
		if (err != a->last_err)
			a->h->log(a->ctx, REGENT_LOG_WARN, "server states: cannot ask %s: %s", a->socket,
			          strerror(-err));
		a->last_err = err;
		uv_timer_start(a->timer, ask, a->interval, 0);
	}
}

static void on_answer(void *arg, int status, const char *out, size_t len)
{
	hx_annot *a = arg;
	a->req = NULL;
	int rc = status;
	if (rc == 0) {
		char *copy = malloc(len + 1);
		if (!copy) {
			rc = -ENOMEM;
		} else {
			memcpy(copy, out, len);
			copy[len] = '\0';
			rc = publish(a, copy);
			free(copy);
		}
	}
	if (rc < 0 && rc != a->last_err)
		/* haproxy not up yet, restarting, or reloading: the page keeps
		 * the last states until it answers again. */
		a->h->log(a->ctx, REGENT_LOG_DEBUG, "server states: %s: %s", a->socket,
		          rc == -EPROTO ? "not a show stat answer" : uv_strerror(rc));
	a->last_err = rc < 0 ? rc : 0;
	uv_timer_start(a->timer, ask, a->poked ? POKE_MS : a->interval, 0);
}

hx_annot *hx_annot_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop, hx_model *m,
                       const char *admin_socket, uint64_t interval_ms, uint64_t cmd_timeout_ms)
{
	if (!interval_ms || !admin_socket || !host_has_annotations(h))
		return NULL;
	hx_annot *a = calloc(1, sizeof(*a));
	uv_timer_t *t = calloc(1, sizeof(*t));
	char *sock = strdup(admin_socket);
	if (!a || !t || !sock) {
		free(a);
		free(t);
		free(sock);
		return NULL;
	}
	*a = (hx_annot){.ctx = ctx, .h = h, .m = m, .socket = sock, .interval = interval_ms,
	                .cmd_timeout = cmd_timeout_ms, .timer = t};
	uv_timer_init(loop, t);
	t->data = a;
	uv_timer_start(t, ask, POKE_MS, 0);
	return a;
}

void hx_annot_poke(hx_annot *a)
{
	if (!a)
		return;
	if (a->req) {
		a->poked = true; /* ask again once this answer is in */
		return;
	}
	if (uv_timer_get_due_in(a->timer) > POKE_MS)
		uv_timer_start(a->timer, ask, POKE_MS, 0);
}

void hx_annot_free(hx_annot *a)
{
	if (!a)
		return;
	hx_cli_cancel(a->req);
	uv_close((uv_handle_t *)a->timer, (uv_close_cb)free);
	a->h->annotations_set(a->ctx, NULL, 0);
	free(a->socket);
	free(a);
}
