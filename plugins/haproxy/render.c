/* render.c - the haproxy sink's pure helpers: validation of every value
 * that reaches the generated file, rendering of that file, and parsing of
 * what haproxy answers (show proc, show stat, show info, show servers
 * state) and of a file written by an earlier run.  No I/O, no loop: its
 * text grows through the host's buffer (hx_buf carries the host); unit
 * tested with the core's host table (tests/haproxy/test_render.c) and
 * fuzzed (tests/fuzz/fuzz_haproxy.c). */
#include "hx.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer: the host's (hx.h) ---- */

const char *hx_buf_str(hx_buf *b)
{
	return b->data ? b->data : "";
}

char *hx_buf_take(hx_buf *b)
{
	char *p = b->data;
	if (!p) /* nothing was added */
		p = b->h->xstrdup("");
	else if (b->cap > b->len + 1 + b->len / 8) /* kept texts hold no doubling slack */
		p = b->h->xrealloc(p, b->len + 1);
	b->rb = (regent_buffer){0};
	return p;
}

void hx_buf_free(hx_buf *b)
{
	if (b->data)
		b->h->buf_free(&b->rb);
}

/* ---- validation ---- */

char *hx_ip4_str(const unsigned char b[4], char *out)
{
	char *p = out;
	for (int i = 0; i < 4; i++) {
		unsigned v = b[i];
		if (i)
			*p++ = '.';
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
	}
	*p = '\0';
	return out;
}

bool hx_valid_ip(const char *in, char *out, bool *v6)
{
	unsigned char bin[16];
	if (!in || strlen(in) >= HX_ADDR_MAX)
		return false;
	if (inet_pton(AF_INET, in, bin) == 1) {
		if (!memcmp(bin, "\0\0\0\0", 4))
			return false; /* 0.0.0.0 means "the client's destination" to haproxy */
		*v6 = false;
		if (out)
			hx_ip4_str(bin, out);
		return true;
	}
	if (inet_pton(AF_INET6, in, bin) == 1) {
		static const unsigned char any[16];
		if (!memcmp(bin, any, 16))
			return false;
		*v6 = true;
		return !out || inet_ntop(AF_INET6, bin, out, HX_ADDR_MAX) != NULL;
	}
	return false;
}

bool hx_valid_check_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) > 200)
		return false;
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || strchr("._~!&()*+,;=:@%/?-", c)))
			return false;
	}
	return true;
}

bool hx_valid_file_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) > 200)
		return false;
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(isalnum(c) || strchr("._/+@=,-", c)))
			return false;
	}
	return true;
}

bool hx_valid_comment_id(const char *id)
{
	if (!id || !id[0] || strlen(id) > 255)
		return false;
	for (; *id; id++) {
		unsigned char c = (unsigned char)*id;
		if (!(isalnum(c) || strchr("._:/@-", c)))
			return false;
	}
	return true;
}

bool hx_format_bind(const char *addr, unsigned port, char *out, size_t outlen)
{
	if (port < 1 || port > 65535 || !addr)
		return false;
	int n;
	if (strcmp(addr, "*") == 0) {
		n = snprintf(out, outlen, "*:%u", port);
	} else {
		unsigned char bin[16];
		char canon[HX_ADDR_MAX];
		if (inet_pton(AF_INET, addr, bin) == 1) {
			inet_ntop(AF_INET, bin, canon, sizeof(canon));
			n = snprintf(out, outlen, "%s:%u", canon, port);
		} else if (inet_pton(AF_INET6, addr, bin) == 1) {
			inet_ntop(AF_INET6, bin, canon, sizeof(canon));
			n = snprintf(out, outlen, "[%s]:%u", canon, port);
		} else {
			return false;
		}
	}
	return n > 0 && (size_t)n < outlen;
}

bool hx_valid_balance(const char *b)
{
	static const char *const ok[] = {"roundrobin", "static-rr", "leastconn", "first",
	                                 "source",     "random",    NULL};
	for (size_t i = 0; b && ok[i]; i++)
		if (strcmp(b, ok[i]) == 0)
			return true;
	return false;
}

/* ---- server options: a fixed allow-list ---- */

typedef enum { ARG_NONE, ARG_INT, ARG_TIME, ARG_ENUM } arg_kind;

typedef struct srv_opt {
	const char *name;
	arg_kind kind;
	long min, max;      /* ARG_INT */
	const char *values; /* ARG_ENUM: '|'-separated */
} srv_opt;

static const srv_opt allowed[] = {
	{"weight", ARG_INT, 0, 256, NULL},
	{"maxconn", ARG_INT, 0, 1000000, NULL},
	{"maxqueue", ARG_INT, 0, 1000000, NULL},
	{"minconn", ARG_INT, 0, 1000000, NULL},
	{"fall", ARG_INT, 1, 1000, NULL},
	{"rise", ARG_INT, 1, 1000, NULL},
	{"error-limit", ARG_INT, 1, 1000, NULL},
	{"pool-max-conn", ARG_INT, -1, 1000000, NULL},
	{"pool-low-conn", ARG_INT, 0, 1000000, NULL},
	{"max-reuse", ARG_INT, -1, 1000000, NULL},
	{"fastinter", ARG_TIME, 0, 0, NULL},
	{"downinter", ARG_TIME, 0, 0, NULL},
	{"slowstart", ARG_TIME, 0, 0, NULL},
	{"pool-purge-delay", ARG_TIME, 0, 0, NULL},
	{"observe", ARG_ENUM, 0, 0, "layer4|layer7"},
	{"on-error", ARG_ENUM, 0, 0, "fastinter|fail-check|sudden-death|mark-down"},
	{"on-marked-down", ARG_ENUM, 0, 0, "shutdown-sessions"},
	{"on-marked-up", ARG_ENUM, 0, 0, "shutdown-backup-sessions"},
	{"verify", ARG_ENUM, 0, 0, "none|required"},
	{"proto", ARG_ENUM, 0, 0, "h2"},
	{"send-proxy", ARG_NONE, 0, 0, NULL},
	{"send-proxy-v2", ARG_NONE, 0, 0, NULL},
	{"check-send-proxy", ARG_NONE, 0, 0, NULL},
	{"ssl", ARG_NONE, 0, 0, NULL},
	{"check-ssl", ARG_NONE, 0, 0, NULL},
	{"tfo", ARG_NONE, 0, 0, NULL},
	{NULL, ARG_NONE, 0, 0, NULL},
};

static bool valid_time(const char *v)
{
	size_t d = 0;
	while (isdigit((unsigned char)v[d]))
		d++;
	if (d == 0 || d > 9)
		return false;
	const char *u = v + d;
	return !*u || !strcmp(u, "us") || !strcmp(u, "ms") || !strcmp(u, "s") || !strcmp(u, "m") ||
	       !strcmp(u, "h") || !strcmp(u, "d");
}

static bool in_enum(const char *v, const char *values)
{
	size_t n = strlen(v);
	for (const char *p = values; *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, v, n) == 0)
			return true;
		if (!bar)
			break;
		p = bar + 1;
	}
	return false;
}

int hx_server_options(const char *const *items, size_t n, hx_buf *out, char *why, size_t whylen)
{
	return hx_server_options_info(items, n, out, NULL, why, whylen);
}

int hx_server_options_info(const char *const *items, size_t n, hx_buf *out, hx_srvopt_info *info,
                           char *why, size_t whylen)
{
	if (info)
		*info = (hx_srvopt_info){.weight = 1};
	for (size_t i = 0; i < n; i++) {
		char item[128];
		if (strlen(items[i]) >= sizeof(item)) {
			snprintf(why, whylen, "server option \"%.40s...\" is too long", items[i]);
			return -EINVAL;
		}
		for (const unsigned char *c = (const unsigned char *)items[i]; *c; c++)
			if ((*c < 0x20 && *c != '\t') || *c == 0x7f) { /* CR, LF, VT, FF...: never */
				snprintf(why, whylen, "server option item %zu holds a control byte (0x%02x)",
				         i + 1, *c);
				return -EINVAL;
			}
		snprintf(item, sizeof(item), "%s", items[i]);
		/* Split on every whitespace byte (isspace: space, \t\n\v\f\r). */
		char *tok[3] = {NULL, NULL, NULL};
		size_t ntok = 0;
		for (char *p = item; *p && ntok < 3;) {
			while (*p && isspace((unsigned char)*p))
				*p++ = '\0';
			if (!*p)
				break;
			tok[ntok++] = p;
			while (*p && !isspace((unsigned char)*p))
				p++;
		}
		char *name = tok[0], *arg = tok[1], *extra = tok[2];
		if (!name)
			continue;
		const srv_opt *o = allowed;
		while (o->name && strcmp(o->name, name) != 0)
			o++;
		if (!o->name) {
			snprintf(why, whylen, "server option \"%.60s\" is not in the allow-list", name);
			return -EINVAL;
		}
		if (extra || (o->kind == ARG_NONE && arg) || (o->kind != ARG_NONE && !arg)) {
			snprintf(why, whylen, "server option %s takes %s", o->name,
			         o->kind == ARG_NONE ? "no argument" : "exactly one argument");
			return -EINVAL;
		}
		bool ok = true;
		if (o->kind == ARG_INT) {
			char *end;
			errno = 0;
			long v = strtol(arg, &end, 10);
			ok = isdigit((unsigned char)arg[0]) && !errno && *end == '\0' && v >= o->min &&
			     v <= o->max; /* digits only: no sign */
		} else if (o->kind == ARG_TIME) {
			ok = valid_time(arg);
		} else if (o->kind == ARG_ENUM) {
			ok = in_enum(arg, o->values);
		}
		if (!ok) {
			if (o->kind == ARG_INT)
				snprintf(why, whylen, "server option %s: \"%.40s\" is not an integer in %ld..%ld",
				         o->name, arg, o->min, o->max);
			else if (o->kind == ARG_TIME)
				snprintf(why, whylen, "server option %s: \"%.40s\" is not a time (e.g. 500ms, 2s)",
				         o->name, arg);
			else
				snprintf(why, whylen, "server option %s: \"%.40s\" is not one of %s", o->name,
				         arg, o->values);
			return -EINVAL;
		}
		hx_buf_printf(out, " %s%s%s", o->name, arg ? " " : "", arg ? arg : "");
		if (info && strcmp(o->name, "weight") == 0)
			info->weight = (unsigned)strtoul(arg, NULL, 10); /* the last one, as haproxy */
		else if (info && strcmp(o->name, "ssl") == 0)
			info->ssl = true;
	}
	return 0;
}

bool hx_parse_port(const char *s, uint16_t *port)
{
	if (!s || !s[0] || strlen(s) > 5)
		return false;
	unsigned v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* ---- rendering ---- */

void hx_fmt_ms(char *out, size_t n, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(out, n, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(out, n, "%llums", (unsigned long long)ms);
}

char *hx_render_listen(const regent_host *h, const hx_svc_cfg *c)
{
	hx_buf b = {.h = h};
	char t1[32], t2[32], t3[32];
	hx_buf_printf(&b, "listen %s\n", c->name);
	if (c->id)
		hx_buf_printf(&b, "    id %u\n", c->id);
	hx_buf_printf(&b, "    bind %s\n", c->bind);
	hx_buf_printf(&b, "    mode %s\n", c->http ? "http" : "tcp");
	hx_buf_printf(&b, "    balance %s\n", c->balance);
	if (c->maxconn > 0)
		hx_buf_printf(&b, "    maxconn %lld\n", (long long)c->maxconn);
	if (c->http) /* a reload closes a keep-alive connection after an answer, never while idle */
		hx_buf_puts(&b, "    option idle-close-on-response\n");
	hx_buf_printf(&b, "    retries %lld\n", (long long)c->retries);
	hx_buf_puts(&b, "    option redispatch 1\n");
	hx_fmt_ms(t1, sizeof(t1), c->t_connect);
	hx_fmt_ms(t2, sizeof(t2), c->t_client);
	hx_fmt_ms(t3, sizeof(t3), c->t_server);
	hx_buf_printf(&b, "    timeout connect %s\n    timeout client %s\n    timeout server %s\n", t1,
	              t2, t3);
	if (c->t_check) {
		hx_fmt_ms(t1, sizeof(t1), c->t_check);
		hx_buf_printf(&b, "    timeout check %s\n", t1);
	}
	if (c->check_path)
		hx_buf_printf(&b, "    option httpchk GET %s\n", c->check_path);
	if (c->http)
		/* A backend killed mid-request (docker kill) resets the
		 * connection after the request was sent: retry idempotent
		 * requests on another server instead of answering 502. */
		hx_buf_puts(&b, "    retry-on all-retryable-errors\n"
		                "    http-request disable-l7-retry unless METH_GET || METH_HEAD || "
		                "METH_OPTIONS\n");
	if (c->state_global) /* the file global's server-state-file names, parsed once */
		hx_buf_puts(&b, "    load-server-state-from-file global\n");
	else if (c->state_file) /* the user's global is theirs: one file per proxy */
		hx_buf_printf(&b,
		              "    load-server-state-from-file local\n"
		              "    server-state-file-name %s\n",
		              c->state_file);
	/* Last: it applies to the servers declared after it.  Once per
	 * section instead of on each server line: 16,000 server lines (10,000
	 * instances) repeating " check inter 24h" cost haproxy 119 M of the
	 * 513 M instructions of haproxy -c (callgrind; the server keyword
	 * lookups) and the file 266 KB of its 2.1 MB. */
	if (c->server_defaults && c->server_defaults[0])
		hx_buf_printf(&b, "    default-server%s\n", c->server_defaults);
	return hx_buf_take(&b);
}

/* Every server line names its id, the slot's number (what haproxy would
 * number it anyway: servers without an id get 1, 2, ... in file order).
 * haproxy 2.6's check_config_validity compares the name of every server
 * without an explicit id with every such server before it (a strcmp down
 * the proxy's server list, O(n^2)): 16,616 slots of one service cost
 * `haproxy -c` 8.3 s of CPU, and every reload as much before its new
 * worker forks; with the ids, 0.11 s. */
void hx_render_server(hx_buf *b, size_t slot, const hx_server_line *l, const char *srvopts)
{
	if (!l->enabled) {
		hx_buf_printf(b, "    server s%zu 0.0.0.0:0 id %zu%s disabled\n", slot + 1, slot + 1,
		              srvopts);
		return;
	}
	bool v6 = strchr(l->addr, ':') != NULL;
	hx_buf_printf(b, "    server s%zu %s%s%s:%u id %zu%s", slot + 1, v6 ? "[" : "", l->addr,
	              v6 ? "]" : "", (unsigned)l->port, slot + 1, srvopts);
	if (l->id && hx_valid_comment_id(l->id))
		hx_buf_printf(b, "  # %s", l->id);
	hx_buf_puts(b, "\n");
}

char *hx_render_global(const regent_host *h, const hx_global_opts *o)
{
	hx_buf b = {.h = h};
	if (o->admin_socket || o->state_file || !o->strict_limits || o->maxconn > 0 ||
	    o->spread_ms > 0 || o->threads > 0 || o->no_hc_ca) {
		hx_buf_puts(&b, "global\n");
		if (o->admin_socket)
			hx_buf_printf(&b, "    stats socket %s mode 600 level admin expose-fd listeners\n",
			              o->admin_socket);
		if (o->state_file)
			hx_buf_printf(&b, "    server-state-file %s\n", o->state_file);
		if (!o->strict_limits)
			hx_buf_puts(&b, "    no strict-limits\n");
		if (o->maxconn > 0)
			hx_buf_printf(&b, "    maxconn %lld\n", (long long)o->maxconn);
		if (o->spread_ms > 0) {
			char d[32];
			hx_fmt_ms(d, sizeof(d), (uint64_t)o->spread_ms);
			hx_buf_printf(&b, "    max-spread-checks %s\n", d);
		}
		if (o->threads > 0) /* haproxy 2.6 builds Lua's proxy lists once per thread, + 1 */
			hx_buf_printf(&b, "    nbthread %lld\n", (long long)o->threads);
		if (o->no_hc_ca) /* nothing in the file uses the httpclient: skip its CA store */
			hx_buf_puts(&b, "    httpclient.ssl.verify none\n");
		hx_buf_puts(&b, "\n");
	}
	const char *stats_bind = o->stats_bind;
	if (stats_bind)
		hx_buf_printf(&b,
		              "listen " HX_STATS_PROXY "\n"
		              "    id %u\n"
		              "    bind %s\n"
		              "    mode http\n"
		              "    timeout connect 5s\n"
		              "    timeout client 30s\n"
		              "    timeout server 30s\n"
		              "    stats enable\n"
		              "    stats uri /\n"
		              "    stats refresh 10s\n\n",
		              (unsigned)HX_STATS_ID, stats_bind);
	return hx_buf_take(&b);
}

/* ---- reading back a file written before ---- */

static bool parse_hostport(const char *tok, char *addr, unsigned *port)
{
	const char *colon;
	size_t alen;
	if (tok[0] == '[') {
		const char *close = strchr(tok, ']');
		if (!close || close[1] != ':')
			return false;
		alen = (size_t)(close - tok - 1);
		tok++;
		colon = close + 1;
	} else {
		colon = strrchr(tok, ':');
		if (!colon)
			return false;
		alen = (size_t)(colon - tok);
	}
	if (alen == 0 || alen >= HX_ADDR_MAX)
		return false;
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535)
		return false;
	memcpy(addr, tok, alen);
	addr[alen] = '\0';
	*port = (unsigned)p;
	return true;
}

void hx_parse_file(const char *text,
                   void (*fn)(void *arg, const char *proxy, size_t slot, const char *addr,
                              unsigned port, const char *id),
                   void (*idfn)(void *arg, const char *proxy, unsigned id), void *arg)
{
	char proxy[128] = "";
	const char *p = text;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[1024];
		if (len < sizeof(line)) {
			memcpy(line, p, len);
			line[len] = '\0';
			char *save = NULL, *comment = strchr(line, '#');
			if (comment)
				*comment++ = '\0';
			char *kw = strtok_r(line, " \t", &save);
			if (kw && strcmp(kw, "listen") == 0) {
				char *name = strtok_r(NULL, " \t", &save);
				snprintf(proxy, sizeof(proxy), "%s", name ? name : "");
			} else if (kw && (strcmp(kw, "global") == 0 || strcmp(kw, "defaults") == 0 ||
			                  strcmp(kw, "frontend") == 0 || strcmp(kw, "backend") == 0)) {
				proxy[0] = '\0';
			} else if (kw && strcmp(kw, "id") == 0 && proxy[0] && idfn) {
				char *v = strtok_r(NULL, " \t", &save), *end = NULL;
				unsigned long id = v ? strtoul(v, &end, 10) : 0;
				if (end && !*end && id > 0 && id < 1000000)
					idfn(arg, proxy, (unsigned)id);
			} else if (kw && strcmp(kw, "server") == 0 && proxy[0]) {
				char *name = strtok_r(NULL, " \t", &save);
				char *hp = name ? strtok_r(NULL, " \t", &save) : NULL;
				char *end = NULL;
				long slot = name && name[0] == 's' ? strtol(name + 1, &end, 10) : 0;
				char addr[HX_ADDR_MAX];
				unsigned port;
				bool disabled = false;
				for (char *t; (t = strtok_r(NULL, " \t", &save));)
					if (strcmp(t, "disabled") == 0)
						disabled = true;
				char *id = NULL;
				if (comment) {
					char *csave = NULL;
					id = strtok_r(comment, " \t", &csave);
					if (id && !hx_valid_comment_id(id))
						id = NULL;
				}
				if (end && !*end && slot >= 1 && slot <= 100000 && hp &&
				    parse_hostport(hp, addr, &port))
					fn(arg, proxy, (size_t)slot - 1, disabled ? NULL : addr, port,
					   disabled ? NULL : id);
			}
		}
		p = nl ? nl + 1 : NULL;
	}
}

/* ---- haproxy's answers ---- */

int hx_parse_show_proc(const char *out, hx_proc_info *pi)
{
	memset(pi, 0, sizeof(*pi));
	enum { NONE, WORKERS, OTHER } section = NONE;
	bool master = false;
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[512];
		if (len < sizeof(line)) {
			memcpy(line, p, len);
			line[len] = '\0';
			if (strncmp(line, "# workers", 9) == 0)
				section = WORKERS;
			else if (line[0] == '#')
				section = line[1] == '<' ? NONE : OTHER;
			else {
				long pid, reloads;
				char type[32];
				if (sscanf(line, "%ld %31s %ld", &pid, type, &reloads) == 3) {
					if (strcmp(type, "master") == 0) {
						master = true;
						pi->master_pid = pid;
						pi->reloads = reloads;
						const char *f = strstr(line, "[failed:");
						if (f)
							pi->failed = strtol(f + 8, NULL, 10);
					} else if (strcmp(type, "worker") == 0 && section == WORKERS) {
						if (!pi->worker_pid)
							pi->worker_pid = pid;
						pi->nworkers++;
					}
				}
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	return master ? 0 : -EINVAL;
}

long hx_parse_info_pid(const char *out)
{
	const char *p = strstr(out, "\nPid: ");
	if (!p && strncmp(out, "Pid: ", 5) == 0)
		p = out - 1;
	return p ? strtol(p + 6, NULL, 10) : 0;
}

void hx_parse_show_stat(const char *out,
                        void (*fn)(void *arg, const char *px, const char *sv, long scur), void *arg)
{
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[4096];
		if (len < sizeof(line) && p[0] != '#') {
			memcpy(line, p, len);
			line[len] = '\0';
			char *f[6] = {0};
			size_t nf = 0;
			char *q = line;
			while (nf < 6) {
				f[nf++] = q;
				char *c = strchr(q, ',');
				if (!c)
					break;
				*c = '\0';
				q = c + 1;
			}
			if (nf >= 5 && strcmp(f[1], "FRONTEND") != 0 && strcmp(f[1], "BACKEND") != 0 &&
			    f[0][0])
				fn(arg, f[0], f[1], strtol(f[4], NULL, 10));
		}
		p = nl ? nl + 1 : NULL;
	}
}

size_t hx_state_fields(char *line, char **f, size_t max)
{
	/* split on spaces as strtok_r(" ") would, without its per-token
	 * strspn/strcspn (most of a 10,000-line dump's cost) */
	size_t nf = 0;
	for (char *c = line; nf < max;) {
		while (*c == ' ')
			c++;
		if (!*c)
			break;
		f[nf++] = c;
		while (*c && *c != ' ')
			c++;
		if (*c)
			*c++ = '\0';
	}
	return nf;
}

bool hx_filter_state_line(const char *p, size_t len,
                          bool (*keep)(void *arg, const char *px, const char *sv, const char *addr,
                                       unsigned port, unsigned op, unsigned admin),
                          void *arg)
{
	char line[2048];
	if (len == 0 || len >= sizeof(line))
		return false;
	memcpy(line, p, len);
	line[len] = '\0';
	if (line[0] == '#' || strcmp(line, "1") == 0)
		return true;
	/* be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
	 * ... srv_port (field 18) */
	char *f[20] = {0};
	size_t nf = hx_state_fields(line, f, 20);
	return nf >= 19 && keep(arg, f[1], f[3], f[4], (unsigned)strtoul(f[18], NULL, 10),
	                        (unsigned)strtoul(f[5], NULL, 10), (unsigned)strtoul(f[6], NULL, 10));
}

char *hx_filter_state(const regent_host *h, const char *dump,
                      bool (*keep)(void *arg, const char *px, const char *sv, const char *addr,
                                   unsigned port, unsigned op, unsigned admin),
                      void *arg)
{
	hx_buf b = {.h = h};
	b.cap = strlen(dump) + 1; /* at most the dump: no doubling on the way */
	b.data = h->xrealloc(NULL, b.cap);
	b.data[0] = '\0';
	for (const char *p = dump; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (hx_filter_state_line(p, len, keep, arg)) {
			hx_buf_add(&b, p, len);
			hx_buf_puts(&b, "\n");
		}
		p = nl ? nl + 1 : NULL;
	}
	return hx_buf_take(&b);
}

void hx_state_pending_line(hx_buf *b, unsigned pxid, const char *px, size_t slot,
                           const char *addr, unsigned port, unsigned weight, bool ssl)
{
	/* be_id be_name srv_id srv_name srv_addr srv_op_state(0: stopped)
	 * srv_admin_state srv_uweight srv_iweight srv_time_since_last_change
	 * srv_check_status(1: init) srv_check_result srv_check_health(0)
	 * srv_check_state(6: configured, enabled) srv_agent_state
	 * bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord
	 * srv_use_ssl srv_check_port srv_check_addr srv_agent_addr
	 * srv_agent_port */
	hx_buf_printf(b, "%u %s %zu s%zu %s 0 0 %u %u 0 1 0 0 6 0 %d 0 - %u - %d 0 - - 0\n", pxid, px,
	              slot + 1, slot + 1, addr, weight, weight, pxid ? 1 : 0, port, ssl ? 1 : 0);
}

const char *hx_cli_error(const char *out, size_t *len)
{
	static const char *const bad[] = {"No such",  "Unknown",  "unknown", "Require", "Invalid",
	                                 "invalid",  "denied",   "Missing", "missing", "can't",
	                                 "Can't",    "cannot",   "Cannot",  "error",   "Error",
	                                 "not allowed", "failed", NULL};
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		/* (an empty line, most commands' answer, holds none: not searched
		 * 17 times) */
		for (size_t i = 0; n && bad[i]; i++) {
			/* within the line: a search to the answer's end made a long
			 * answer (a batch of 100 commands) quadratic */
			if (memmem(p, n, bad[i], strlen(bad[i]))) {
				*len = n;
				return p;
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}
