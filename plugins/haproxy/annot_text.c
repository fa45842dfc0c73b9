/* annot_text.c - the pure helpers of the haproxy sink's server states
 * (annot.c): one `show stat` row's status and check as the state word and
 * detail the status page shows (hx_annot_describe), haproxy's CSV split
 * in place, and the text of a polling cycle's chunk (hx_annot_chunk, the
 * model read only).  No state of their own. */
#include "annot.h"

#include <stdio.h>
#include <string.h>

/* ---- pure: a row as a state and a detail ---- */

/* Text appended within a fixed buffer (cut at its size, always
 * terminated): what snprintf did, without its format parsing per row. */
typedef struct sbuf {
	char *p;
	size_t n, cap; /* n: bytes written (< cap) */
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t len)
{
	if (b->n + 1 >= b->cap)
		return;
	if (len > b->cap - 1 - b->n)
		len = b->cap - 1 - b->n;
	memcpy(b->p + b->n, s, len);
	b->n += len;
	b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_num(sbuf *b, long v)
{
	char d[24];
	size_t i = sizeof(d);
	unsigned long u = v < 0 ? 0 - (unsigned long)v : (unsigned long)v;
	do {
		d[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		d[--i] = '-';
	sb_add(b, d + i, sizeof(d) - i);
}

size_t hx_num_str(char *out, size_t cap, long v)
{
	sbuf b = {out, 0, cap};
	out[0] = '\0';
	sb_num(&b, v);
	return b.n;
}

void hx_annot_describe(const char *status, const char *check_status, const char *check_desc,
                       const char *last_chk, char *state, size_t statelen, char *detail,
                       size_t detaillen)
{
	/* status: "UP", "DOWN", "DRAIN", "MAINT", "MAINT (via px/sv)",
	 * "MAINT (resolution)", "NOLB", "no check", "UP 1/3" (going down),
	 * "DOWN 1/2" (going up). */
	size_t w = strcspn(status, " ");
	char trans[32] = "";
	sbuf st = {state, 0, statelen};
	state[0] = '\0';
	if (!strncmp(status, "no check", 8)) {
		sb_str(&st, "up");
		sb_str(&(sbuf){trans, 0, sizeof(trans)}, "not checked");
	} else {
		sb_add(&st, status, w < 16 ? w : 16);
		for (char *p = state; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		if (!state[0])
			sb_str(&st, "unknown");
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
	sbuf d = {detail, 0, detaillen};
	detail[0] = '\0';
	if (trans[0])
		sb_str(&d, trans);
	if (chk[0]) {
		if (d.n)
			sb_str(&d, "; ");
		sb_str(&d, chk);
	}
	if (why[0]) {
		if (d.n)
			sb_str(&d, " ");
		sb_add(&d, why, strnlen(why, 120));
	}
	/* Control bytes from haproxy's text never reach the page. */
	for (char *p = detail; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* ---- CSV ---- */

/* Splits one CSV line in place into at most max fields (haproxy quotes a
 * field holding a comma or a quote, doubling the quotes).  Returns the
 * number of fields.  A byte loop: most of haproxy's fields are empty or a
 * few digits, where a library call per field costs more than the bytes. */
size_t hx_csv_split(char *line, char **f, size_t max, char **rest)
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
			while (*p && *p != ',')
				p++;
			if (*p)
				*p++ = '\0';
			else
				p = NULL;
		}
	}
	if (rest)
		*rest = p; /* where the next field starts; NULL: the line ended */
	return n;
}

int hx_csv_col(char **hdr, size_t nh, const char *name)
{
	for (size_t i = 0; i < nh; i++)
		if (!strcmp(hdr[i], name))
			return (int)i;
	return -1;
}

/* ---- `show servers state` ---- */

/* An unsigned decimal field of at most 19 digits; false if it is not one
 * ("-", empty, a sign). */
static bool state_num(const char *f, const char *e, uint64_t *v)
{
	if (f == e || e - f > 19)
		return false;
	uint64_t x = 0;
	for (; f < e; f++) {
		if (*f < '0' || *f > '9')
			return false;
		x = x * 10 + (uint64_t)(*f - '0');
	}
	*v = x;
	return true;
}

/* One row of `show servers state` (format version 1, haproxy 2.0 and
 * later: be_id be_name srv_id srv_name srv_addr srv_op_state
 * srv_admin_state srv_uweight srv_iweight srv_time_since_last_change
 * srv_check_status srv_check_result srv_check_health srv_check_state
 * srv_agent_state ..., one space between fields), [line, end): the proxy
 * and server names NUL-terminated in place, the seconds since the state
 * last changed, and a fingerprint of everything that makes the server's
 * `show stat` status and check_status: op and admin state, user weight,
 * the check's status code, health and state, the agent's state, the
 * "check in progress" bit left out of both (it comes and goes with every
 * check; the check's result too, which a check in progress resets and
 * which follows from its status).  Never 0.  The check's text (last_chk)
 * is not in it.  Only the first 15 fields are read; false for any other
 * line (the version line, a header, an error). */
bool hx_state_line(char *line, const char *end, hx_srv_state *out)
{
	char *f[16];
	size_t n = 0;
	char *p = line;
	while (n < 15) {
		f[n++] = p;
		char *sp = memchr(p, ' ', (size_t)(end - p));
		if (!sp) {
			p = line + (end - line);
			break;
		}
		p = sp + 1;
	}
	if (n < 15 || p >= end) /* more fields follow the agent's state */
		return false;
	f[15] = p;
	uint64_t v[15];
	for (size_t i = 5; i < 15; i++)
		if (!state_num(f[i], f[i + 1] - 1, &v[i]))
			return false;
	f[2][-1] = '\0';
	f[4][-1] = '\0';
	out->px = f[1];
	out->sv = f[3];
	out->since_s = v[9];
	out->fp = 1ull << 63 | (v[5] & 0x3) | (v[6] & 0xff) << 2 | (v[7] & 0x1ff) << 10 |
	          (v[10] & 0xff) << 19 | (v[12] & 0xffff) << 27 | (v[13] & 0xe) << 43 |
	          (v[14] & 0x1e) << 47;
	return true;
}

/* The model's services after `after` (NULL: from the first) that haproxy
 * runs, as `show stat NAME 4 -1` commands (states: `show servers state
 * NAME`) appended to cmd: at least one,
 * then as many as keep within max_servers slots and max_bytes of
 * command.  Returns the last one's name (the model's string), or NULL
 * when none is left; *last tells whether none follows it, *nservers (if
 * not NULL) the slots of the services asked. */
const char *hx_annot_chunk(hx_model *m, const char *after, size_t max_servers, size_t max_bytes,
                           bool states, hx_buf *cmd, bool *last, size_t *nservers)
{
	svc *v = m->svcs;
	if (after) {
		svc *at = hx_svc_find(m, after);
		if (at)
			v = at->next;
		else /* it went: the first one after its name */
			while (v && strcmp(v->name, after) <= 0)
				v = v->next;
	}
	const char *name = NULL;
	size_t nserv = 0;
	for (; v; v = v->next) {
		if (!v->run.listen)
			continue;
		size_t add = strlen(v->name) + 20;
		if (name && (nserv + v->run.nslots > max_servers || cmd->len + add > max_bytes))
			break;
		hx_buf_printf(cmd, states ? "%sshow servers state %s" : "%sshow stat %s 4 -1",
		              cmd->len ? ";" : "", v->name);
		nserv += v->run.nslots;
		name = v->name;
	}
	while (v && !v->run.listen)
		v = v->next;
	*last = v == NULL;
	if (nservers)
		*nservers = nserv;
	return name;
}
