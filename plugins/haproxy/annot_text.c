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
 * is not in it.  Only the first 15 fields are read (a 16th must follow);
 * false for any other line (the version line, a header, an error). */
bool hx_state_line(char *line, const char *end, hx_srv_state *out)
{
	/* one pass, byte by byte (a call per field cost more than its few
	 * bytes): five words, then ten numbers each followed by a space */
	char *p = line, *name[2], *nend[2];
	for (int i = 0; i < 5; i++) {
		char *w = p;
		while (p < end && *p != ' ')
			p++;
		if (p == w || p >= end)
			return false;
		if (i == 1 || i == 3) {
			name[i / 2] = w;
			nend[i / 2] = p;
		}
		p++;
	}
	uint64_t v[10];
	for (int i = 0; i < 10; i++) {
		const char *d = p;
		uint64_t x = 0;
		while (p < end && (unsigned)(*p - '0') < 10)
			x = x * 10 + (uint64_t)(*p++ - '0');
		if (p == d || p - d > 19 || p >= end || *p != ' ')
			return false;
		v[i] = x;
		p++;
	}
	/* a row: the names end (nothing written into another line) */
	*nend[0] = '\0';
	*nend[1] = '\0';
	out->px = name[0];
	out->sv = name[1];
	out->since_s = v[4];
	/* op 5, admin 6, uweight 7, check status 10, health 12, check and
	 * agent state 13 and 14 (iweight 8 follows uweight) */
	out->fp = 1ull << 63 | (v[0] & 0x3) | (v[1] & 0xff) << 2 | (v[2] & 0x1ff) << 10 |
	          (v[5] & 0xff) << 19 | (v[7] & 0xffff) << 27 | (v[8] & 0xe) << 43 |
	          (v[9] & 0x1e) << 47;
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
