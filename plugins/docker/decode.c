/* decode.c - pure decoding for the docker plugin (see decode.h): Docker
 * Engine API JSON in, instances out.  Owns the mapping rules: service
 * naming order, tags, meta, ignore, ports (tcp/udp), the address rules
 * (published / host network / internal) and the stable instance ids.
 * Everything read from a container is untrusted and validated here. */
#include "decode.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WHY(...)                                          \
	do {                                              \
		if (why && whylen)                        \
			snprintf(why, whylen, __VA_ARGS__); \
	} while (0)

/* ------------------------------------------------------------------ */
/* small helpers                                                      */
/* ------------------------------------------------------------------ */

void dk_escape(const char *in, char *out, size_t outlen)
{
	if (!outlen)
		return;
	size_t o = 0;
	if (!in)
		in = "";
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		char tmp[5];
		size_t n;
		/* Quotes stay as they are (issue 17: JSON stays readable); a
		 * backslash is doubled so that "\\x41" cannot pass for an escape. */
		if (*p < 0x20 || *p >= 0x7f || *p == '\\') {
			if (*p == '\\')
				snprintf(tmp, sizeof tmp, "\\\\");
			else
				snprintf(tmp, sizeof tmp, "\\x%02x", *p);
		} else {
			tmp[0] = (char)*p;
			tmp[1] = '\0';
		}
		n = strlen(tmp);
		if (o + n + 4 > outlen) { /* room for "..." and the NUL */
			if (outlen >= 4) {
				while (o + 4 > outlen)
					o--;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
}

static bool is_hex_id(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[16];
	return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

bool dk_is_loopback(const char *addr)
{
	if (!addr)
		return false;
	unsigned char b[16];
	if (inet_pton(AF_INET, addr, b) == 1)
		return b[0] == 127;
	if (inet_pton(AF_INET6, addr, b) == 1) {
		static const unsigned char one[16] = {[15] = 1};
		static const unsigned char v4map[12] = {[10] = 0xff, [11] = 0xff};
		return memcmp(b, one, 16) == 0 || (memcmp(b, v4map, 12) == 0 && b[12] == 127);
	}
	size_t n = strlen(addr);
	if (n && addr[n - 1] == '.')
		n--;
	if (n == 9 && strncasecmp(addr, "localhost", 9) == 0)
		return true;
	return n > 10 && strncasecmp(addr + n - 10, ".localhost", 10) == 0;
}

int dk_signal_number(const char *s)
{
	static const struct {
		const char *name;
		int num;
	} sigs[] = {
		{"HUP", 1},   {"INT", 2},   {"QUIT", 3},  {"ILL", 4},   {"TRAP", 5},
		{"ABRT", 6},  {"BUS", 7},   {"FPE", 8},   {"KILL", 9},  {"USR1", 10},
		{"SEGV", 11}, {"USR2", 12}, {"PIPE", 13}, {"ALRM", 14}, {"TERM", 15},
		{"STKFLT", 16}, {"CHLD", 17}, {"CONT", 18}, {"STOP", 19}, {"TSTP", 20},
		{"TTIN", 21}, {"TTOU", 22}, {"URG", 23},  {"XCPU", 24}, {"XFSZ", 25},
		{"VTALRM", 26}, {"PROF", 27}, {"WINCH", 28}, {"IO", 29}, {"PWR", 30},
		{"SYS", 31},
	};
	if (!s || !*s)
		return -1;
	if (isdigit((unsigned char)s[0])) {
		char *end;
		long v = strtol(s, &end, 10);
		return (*end == '\0' && v > 0 && v < 65) ? (int)v : -1;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (strcasecmp(s, sigs[i].name) == 0)
			return sigs[i].num;
	return -1;
}

uint64_t dk_parse_time(const char *s)
{
	int y, mo, d, h, mi, sec, n = 0;
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 19 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return 0;
	const char *p = s + n;
	uint64_t frac = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 9)
				frac = frac * 10 + (uint64_t)(*p - '0');
		if (digits == 0)
			return 0;
		for (; digits < 9; digits++)
			frac *= 10;
	}
	long off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om, m = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5)
			return 0;
		off = (oh * 60L + om) * 60L * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return 0;
	}
	if (*p)
		return 0;
	/* days from civil (proleptic Gregorian), no timegm() needed */
	int yy = y - (mo <= 2);
	long era = (yy >= 0 ? yy : yy - 399) / 400;
	long yoe = yy - era * 400;
	long doy = (153L * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	long days = era * 146097 + doe - 719468;
	long long secs = (long long)days * 86400 + h * 3600 + mi * 60 + sec - off;
	if (secs <= 0)
		return 0;
	return (uint64_t)secs * 1000000000ull + frac;
}

const char *dk_jstr(json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *jobj(json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
	return json_is_object(v) ? v : NULL;
}

/* ------------------------------------------------------------------ */
/* container inspect                                                  */
/* ------------------------------------------------------------------ */

int dk_container_parse(const char *json, size_t len, dk_container *c, char *why, size_t whylen)
{
	memset(c, 0, sizeof *c);
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char etext[JSON_ERROR_TEXT_LENGTH * 4];
		dk_escape(jerr.text, etext, sizeof etext); /* quotes the bytes near the error */
		WHY("malformed JSON at line %d column %d: %s", jerr.line, jerr.column, etext);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		WHY("expected a JSON object");
		return -EINVAL;
	}
	const char *id = dk_jstr(root, "Id");
	if (!is_hex_id(id, DK_ID_LEN)) {
		json_decref(root);
		WHY("no valid \"Id\" (64 hex digits)");
		return -EINVAL;
	}
	c->root = root;
	memcpy(c->id, id, DK_ID_LEN + 1);
	memcpy(c->short_id, id, 12);
	c->short_id[12] = '\0';
	const char *name = dk_jstr(root, "Name");
	c->name = name ? (name[0] == '/' ? name + 1 : name) : "";

	json_t *state = jobj(root, "State");
	c->running = json_is_true(json_object_get(state, "Running"));
	c->paused = json_is_true(json_object_get(state, "Paused"));
	const char *sa = dk_jstr(state, "StartedAt");
	c->started_at = sa ? sa : "";
	json_t *pid = json_object_get(state, "Pid");
	c->pid = json_is_integer(pid) && json_integer_value(pid) > 0 &&
	                 json_integer_value(pid) <= 0x7fffffff
	             ? (long)json_integer_value(pid)
	             : 0;
	const char *hs = dk_jstr(jobj(state, "Health"), "Status");
	if (!hs)
		c->health = DK_HEALTH_NONE;
	else if (strcmp(hs, "healthy") == 0)
		c->health = DK_HEALTH_HEALTHY;
	else if (strcmp(hs, "unhealthy") == 0)
		c->health = DK_HEALTH_UNHEALTHY;
	else
		c->health = DK_HEALTH_STARTING; /* "starting", or anything unknown */

	json_t *config = jobj(root, "Config");
	const char *image = dk_jstr(config, "Image");
	c->image = image ? image : "";
	c->stop_signal = dk_jstr(config, "StopSignal");
	c->labels = jobj(config, "Labels");
	json_t *env = config ? json_object_get(config, "Env") : NULL;
	c->env = json_is_array(env) ? env : NULL;
	c->exposed = jobj(config, "ExposedPorts");

	const char *nm = dk_jstr(jobj(root, "HostConfig"), "NetworkMode");
	c->network_mode = nm ? nm : "";

	json_t *ns = jobj(root, "NetworkSettings");
	c->ports = jobj(ns, "Ports");
	c->networks = jobj(ns, "Networks");
	const char *ip = dk_jstr(ns, "IPAddress");
	c->ip = ip ? ip : "";
	return 0;
}

void dk_container_free(dk_container *c)
{
	if (c->root)
		json_decref(c->root);
	memset(c, 0, sizeof *c);
}

bool dk_container_ready(const dk_container *c, const char **why)
{
	const char *w = NULL;
	if (!c->running)
		w = "not running";
	else if (c->paused)
		w = "paused";
	else if (c->health == DK_HEALTH_STARTING)
		w = "health check starting";
	else if (c->health == DK_HEALTH_UNHEALTHY)
		w = "unhealthy";
	if (why)
		*why = w ? w : "ready";
	return w == NULL;
}

/* ------------------------------------------------------------------ */
/* result building                                                    */
/* ------------------------------------------------------------------ */

int dk_push_str(const regent_host *h, char ***arr, size_t *n, char *s)
{
	if (!s)
		return -ENOMEM;
	*arr = h->xrealloc(*arr, (*n + 1) * sizeof **arr);
	(*arr)[(*n)++] = s;
	return 0;
}

int dk_add_msg(const regent_host *h, char ***arr, size_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = h->xvasprintf(fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*arr)[i], s) == 0) {
			free(s);
			return 0;
		}
	return dk_push_str(h, arr, n, s);
}

void dk_inst_free(dk_inst *i)
{
	if (!i)
		return;
	free(i->service);
	free(i->id);
	free(i->address);
	for (size_t t = 0; t < i->ntags; t++)
		free(i->tags[t]);
	free(i->tags);
	for (size_t m = 0; m < i->nmeta; m++) {
		free((char *)i->meta[m].key);
		free((char *)i->meta[m].value);
	}
	free(i->meta);
	dk_check_free(&i->check);
	memset(i, 0, sizeof *i);
}

bool dk_inst_equal(const dk_inst *a, const dk_inst *b)
{
	if (strcmp(a->id, b->id) || strcmp(a->service, b->service) || strcmp(a->address, b->address) ||
	    a->port != b->port || a->proto != b->proto || a->private_port != b->private_port ||
	    a->ntags != b->ntags || a->nmeta != b->nmeta || !dk_check_equal(&a->check, &b->check))
		return false;
	for (size_t i = 0; i < a->ntags; i++)
		if (strcmp(a->tags[i], b->tags[i]))
			return false;
	for (size_t i = 0; i < a->nmeta; i++)
		if (strcmp(a->meta[i].key, b->meta[i].key) || strcmp(a->meta[i].value, b->meta[i].value))
			return false;
	return true;
}

int dk_inst_copy(dk_inst *d, const dk_inst *s)
{
	memset(d, 0, sizeof *d);
	d->port = s->port;
	d->private_port = s->private_port;
	d->proto = s->proto;
	d->service = strdup(s->service);
	d->id = strdup(s->id);
	d->address = strdup(s->address);
	if (!d->service || !d->id || !d->address)
		goto oom;
	d->check = s->check;
	d->check.arg = NULL;
	if (s->check.arg && !(d->check.arg = strdup(s->check.arg)))
		goto oom;
	if (s->ntags) {
		d->tags = calloc(s->ntags, sizeof *d->tags);
		if (!d->tags)
			goto oom;
		for (; d->ntags < s->ntags; d->ntags++)
			if (!(d->tags[d->ntags] = strdup(s->tags[d->ntags])))
				goto oom;
	}
	if (s->nmeta) {
		d->meta = calloc(s->nmeta, sizeof *d->meta);
		if (!d->meta)
			goto oom;
		for (; d->nmeta < s->nmeta; d->nmeta++) {
			d->meta[d->nmeta].key = strdup(s->meta[d->nmeta].key);
			d->meta[d->nmeta].value = strdup(s->meta[d->nmeta].value);
			if (!d->meta[d->nmeta].key || !d->meta[d->nmeta].value) {
				d->nmeta++;
				goto oom;
			}
		}
	}
	return 0;
oom:
	dk_inst_free(d);
	return -ENOMEM;
}

void dk_inst_view(const dk_inst *i, regent_instance *out)
{
	memset(out, 0, sizeof *out);
	out->service = i->service;
	out->id = i->id;
	out->address = i->address;
	out->port = i->port;
	out->proto = i->proto;
	out->service_port = i->private_port;
	out->tags = (const char *const *)i->tags;
	out->ntags = i->ntags;
	out->meta = i->meta;
	out->nmeta = i->nmeta;
	out->node = NULL;
}

void dk_result_free(dk_result *r)
{
	for (size_t i = 0; i < r->n; i++)
		dk_inst_free(&r->insts[i]);
	free(r->insts);
	for (size_t i = 0; i < r->nwarnings; i++)
		free(r->warnings[i]);
	free(r->warnings);
	for (size_t i = 0; i < r->nnotes; i++)
		free(r->notes[i]);
	free(r->notes);
	memset(r, 0, sizeof *r);
}

bool dk_image_service(const char *image, char *out, size_t outlen)
{
	if (!image || !*image || outlen == 0)
		return false;
	if (strncmp(image, "sha256:", 7) == 0 || is_hex_id(image, DK_ID_LEN))
		return false;
	const char *end = strchr(image, '@'); /* digest */
	if (!end)
		end = image + strlen(image);
	const char *start = image;
	for (const char *p = image; p < end; p++)
		if (*p == '/')
			start = p + 1;
	const char *colon = memchr(start, ':', (size_t)(end - start)); /* tag */
	if (colon)
		end = colon;
	size_t n = (size_t)(end - start);
	if (n == 0 || n >= outlen)
		return false;
	memcpy(out, start, n);
	out[n] = '\0';
	return true;
}

/* ---- ports ---- */

typedef struct port_ent {
	uint16_t port;   /* private */
	regent_proto proto;
	uint16_t public_port;
	char address[64];
} port_ent;

typedef struct port_list {
	port_ent *v;
	size_t n;
} port_list;

/* "8080/tcp" -> port, proto.  1 ok, 0 not tcp/udp (sctp...), -1 bad */
static int parse_port_key(const char *key, uint16_t *port, regent_proto *proto)
{
	char *end;
	if (!isdigit((unsigned char)key[0]))
		return -1;
	long p = strtol(key, &end, 10);
	if (p < 1 || p > 65535)
		return -1;
	const char *pr = "tcp";
	if (*end == '/')
		pr = end + 1;
	else if (*end != '\0')
		return -1;
	*port = (uint16_t)p;
	if (strcmp(pr, "tcp") == 0)
		*proto = REGENT_PROTO_TCP;
	else if (strcmp(pr, "udp") == 0)
		*proto = REGENT_PROTO_UDP;
	else
		return 0;
	return 1;
}

static port_ent *find_port(port_list *pl, uint16_t port, regent_proto proto)
{
	for (size_t i = 0; i < pl->n; i++)
		if (pl->v[i].port == port && pl->v[i].proto == proto)
			return &pl->v[i];
	return NULL;
}

static int add_port(port_list *pl, uint16_t port, regent_proto proto, uint16_t public_port,
                    const char *address)
{
	if (find_port(pl, port, proto))
		return 0;
	port_ent *p = realloc(pl->v, (pl->n + 1) * sizeof *p);
	if (!p)
		return -ENOMEM;
	pl->v = p;
	port_ent *e = &p[pl->n++];
	memset(e, 0, sizeof *e);
	e->port = port;
	e->proto = proto;
	e->public_port = public_port;
	snprintf(e->address, sizeof e->address, "%s", address);
	return 0;
}

static int cmp_port(const void *a, const void *b)
{
	const port_ent *x = a, *y = b;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return (int)x->proto - (int)y->proto;
}


/* Every key of an object of "port/proto" keys, at one address. */
static int ports_from_keys(const dk_container *c, json_t *obj, const char *address,
                           port_list *pl, dk_result *r, const char *who)
{
	const char *key;
	json_t *v;
	(void)c;
	json_object_foreach(obj, key, v) {
		uint16_t port;
		regent_proto proto;
		int k = parse_port_key(key, &port, &proto);
		char esc[64];
		if (k <= 0) {
			dk_escape(key, esc, sizeof esc);
			DK_NOTE("container %s: port \"%s\" %s; skipped", who, esc,
			     k == 0 ? "is neither tcp nor udp" : "is malformed");
			continue;
		}
		if (add_port(pl, port, proto, port, address) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* The container's own IP (internal mode). */
static const char *container_ip(const dk_container *c)
{
	if (c->ip[0])
		return c->ip;
	const char *ip = dk_jstr(jobj(c->networks, c->network_mode), "IPAddress");
	if (ip && ip[0])
		return ip;
	const char *key;
	json_t *v;
	json_object_foreach(c->networks, key, v) {
		ip = dk_jstr(v, "IPAddress");
		if (ip && ip[0])
			return ip;
	}
	return NULL;
}

static int collect_ports(const dk_container *c, const dk_settings *s, port_list *pl, dk_result *r,
                         const char *who)
{
	bool host_net = strcmp(c->network_mode, "host") == 0;
	if (s->internal) {
		const char *addr = host_net ? s->host_ip : container_ip(c);
		if (!addr || !addr[0]) {
			char esc[64];
			dk_escape(c->network_mode, esc, sizeof esc);
			DK_NOTE("container %s: no container IP address (network mode \"%s\"); skipped", who,
			     esc);
			return 0;
		}
		if (!is_ip_literal(addr) && !(host_net && s->host_ip)) {
			char esc[64];
			dk_escape(addr, esc, sizeof esc);
			DK_WARN("container %s: container IP address \"%s\" is not an IP address; skipped", who,
			     esc);
			return 0;
		}
		if (ports_from_keys(c, c->exposed, addr, pl, r, who) < 0 ||
		    ports_from_keys(c, c->ports, addr, pl, r, who) < 0)
			return -ENOMEM;
		return 0;
	}
	if (!s->host_ip || !s->host_ip[0]) {
		DK_NOTE("container %s: no host_ip for its ports; skipped", who);
		return 0;
	}
	if (host_net) {
		if (ports_from_keys(c, c->exposed, s->host_ip, pl, r, who) < 0 ||
		    ports_from_keys(c, c->ports, s->host_ip, pl, r, who) < 0)
			return -ENOMEM;
		return 0;
	}
	/* Published ports only: an unpublished port is not reachable from
	 * other hosts. */
	const char *key;
	json_t *v;
	json_object_foreach(c->ports, key, v) {
		uint16_t port;
		regent_proto proto;
		char esc[64];
		int k = parse_port_key(key, &port, &proto);
		if (k <= 0) {
			dk_escape(key, esc, sizeof esc);
			DK_NOTE("container %s: port \"%s\" %s; skipped", who, esc,
			     k == 0 ? "is neither tcp nor udp" : "is malformed");
			continue;
		}
		if (!json_is_array(v) || json_array_size(v) == 0) {
			DK_NOTE("container %s: port %s is not published; skipped", who, key);
			continue;
		}
		size_t i;
		json_t *b;
		bool done = false;
		json_array_foreach(v, i, b) {
			const char *hip = dk_jstr(b, "HostIp");
			const char *hport = dk_jstr(b, "HostPort");
			char *end;
			long hp = hport ? strtol(hport, &end, 10) : 0;
			if (!hport || !isdigit((unsigned char)hport[0]) || *end || hp < 1 || hp > 65535) {
				dk_escape(hport ? hport : "", esc, sizeof esc);
				DK_NOTE("container %s: port %s has a binding with a bad HostPort \"%s\"", who,
				     key, esc);
				continue;
			}
			const char *addr;
			if (!hip || !hip[0] || strcmp(hip, "0.0.0.0") == 0 || strcmp(hip, "::") == 0)
				addr = s->host_ip;
			else if (is_ip_literal(hip))
				addr = hip;
			else {
				dk_escape(hip, esc, sizeof esc);
				DK_NOTE("container %s: port %s has a binding with a bad HostIp \"%s\"", who, key,
				     esc);
				continue;
			}
			if (add_port(pl, port, proto, (uint16_t)hp, addr) < 0)
				return -ENOMEM;
			done = true;
			break; /* one instance per private port: the first binding */
		}
		if (!done)
			DK_NOTE("container %s: port %s has no usable binding; skipped", who, key);
	}
	/* Exposed but not in NetworkSettings.Ports at all. */
	json_object_foreach(c->exposed, key, v) {
		uint16_t port;
		regent_proto proto;
		if (parse_port_key(key, &port, &proto) == 1 && !json_object_get(c->ports, key))
			DK_NOTE("container %s: port %s is not published; skipped", who, key);
	}
	return 0;
}

static int build(const dk_container *c, const dk_settings *s, dk_result *r, port_list *pl)
{
	char who[200];
	char ename[140];
	dk_escape(c->name, ename, sizeof ename);
	snprintf(who, sizeof who, "%s (%s)", ename[0] ? ename : "?", c->short_id);

	if (dk_container_ignored(c)) {
		DK_NOTE("container %s: label regent.ignore=true; skipped", who);
		return 0;
	}
	int rc = collect_ports(c, s, pl, r, who);
	if (rc < 0)
		return rc;
	if (pl->n == 0) {
		DK_NOTE("container %s: no usable port; skipped", who);
		return 0;
	}
	qsort(pl->v, pl->n, sizeof *pl->v, cmp_port);
	for (size_t i = 0; i < pl->n; i++) {
		const port_ent *p = &pl->v[i];
		dk_inst in;
		bool skip;
		memset(&in, 0, sizeof in);
		if (dk_port_labels(c, s, p->port, p->proto, pl->n, r, who, &in, &skip) < 0 ||
		    (!skip && !(in.address = strdup(p->address)))) {
			dk_inst_free(&in);
			return -ENOMEM;
		}
		if (skip) {
			dk_inst_free(&in);
			continue;
		}
		in.port = p->public_port;
		in.private_port = p->port;
		in.proto = p->proto;
		dk_inst *arr = realloc(r->insts, (r->n + 1) * sizeof *arr);
		if (!arr) {
			dk_inst_free(&in);
			return -ENOMEM;
		}
		r->insts = arr;
		arr[r->n++] = in;
	}
	return 0;
}

int dk_build(const dk_container *c, const dk_settings *s, dk_result *r)
{
	memset(r, 0, sizeof *r);
	r->h = s->h;
	port_list pl = {NULL, 0};
	int rc = build(c, s, r, &pl);
	free(pl.v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* container list and events                                          */
/* ------------------------------------------------------------------ */

int dk_list_parse(const char *json, size_t len, char (**ids)[DK_ID_LEN + 1], size_t *n,
                  size_t *bad, char *why, size_t whylen)
{
	*ids = NULL;
	*n = 0;
	*bad = 0;
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr);
	if (!root) {
		char etext[JSON_ERROR_TEXT_LENGTH * 4];
		dk_escape(jerr.text, etext, sizeof etext); /* quotes the bytes near the error */
		WHY("malformed JSON at line %d column %d: %s", jerr.line, jerr.column, etext);
		return -EINVAL;
	}
	if (!json_is_array(root)) {
		json_decref(root);
		WHY("expected a JSON array");
		return -EINVAL;
	}
	size_t cnt = json_array_size(root);
	char(*out)[DK_ID_LEN + 1] = calloc(cnt ? cnt : 1, sizeof *out);
	if (!out) {
		json_decref(root);
		return -ENOMEM;
	}
	size_t i;
	json_t *e;
	json_array_foreach(root, i, e) {
		const char *id = dk_jstr(e, "Id");
		if (!is_hex_id(id, DK_ID_LEN)) {
			(*bad)++;
			continue;
		}
		memcpy(out[*n], id, DK_ID_LEN + 1);
		(*n)++;
	}
	json_decref(root);
	*ids = out;
	return 0;
}

static dk_action classify(const char *a)
{
	static const struct {
		const char *name;
		dk_action act;
	} map[] = {
		{"start", DK_EV_START},     {"die", DK_EV_DIE},         {"stop", DK_EV_STOP},
		{"kill", DK_EV_KILL},       {"destroy", DK_EV_DESTROY}, {"pause", DK_EV_PAUSE},
		{"unpause", DK_EV_UNPAUSE},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(a, map[i].name) == 0)
			return map[i].act;
	static const char hs[] = "health_status";
	if (strncmp(a, hs, sizeof hs - 1) == 0) {
		const char *v = a + sizeof hs - 1;
		while (*v == ':' || *v == ' ')
			v++;
		if (strcmp(v, "healthy") == 0)
			return DK_EV_HEALTHY;
		if (strcmp(v, "unhealthy") == 0)
			return DK_EV_UNHEALTHY;
	}
	return DK_EV_OTHER;
}

int dk_event_parse(const char *line, size_t len, dk_event *ev, char *why, size_t whylen)
{
	memset(ev, 0, sizeof *ev);
	ev->signal = -1;
	json_error_t jerr;
	json_t *root = json_loadb(line, len, 0, &jerr);
	if (!root) {
		char etext[JSON_ERROR_TEXT_LENGTH * 4];
		dk_escape(jerr.text, etext, sizeof etext); /* quotes the bytes near the error */
		WHY("malformed JSON at column %d: %s", jerr.column, etext);
		return -EINVAL;
	}
	int rc = -EINVAL;
	if (!json_is_object(root)) {
		WHY("expected a JSON object");
		goto out;
	}
	const char *type = dk_jstr(root, "Type");
	const char *action = dk_jstr(root, "Action");
	if (!type || !action) {
		const char *msg = dk_jstr(root, "message");
		char esc[200];
		dk_escape(msg ? msg : "", esc, sizeof esc);
		if (msg)
			WHY("error from the daemon: %s", esc);
		else
			WHY("no \"Type\" or \"Action\"");
		goto out;
	}
	/* Logged at debug level: escaped like every untrusted string. */
	dk_escape(action, ev->action_text, sizeof ev->action_text);
	json_t *tn = json_object_get(root, "timeNano");
	json_t *ts = json_object_get(root, "time");
	if (json_is_integer(tn) && json_integer_value(tn) > 0)
		ev->time_ns = (uint64_t)json_integer_value(tn);
	else if (json_is_integer(ts) && json_integer_value(ts) > 0)
		ev->time_ns = (uint64_t)json_integer_value(ts) * 1000000000ull;
	ev->container = strcmp(type, "container") == 0;
	if (!ev->container) {
		rc = 0;
		goto out;
	}
	json_t *actor = jobj(root, "Actor");
	const char *id = dk_jstr(actor, "ID");
	if (!id)
		id = dk_jstr(root, "id");
	if (!is_hex_id(id, DK_ID_LEN)) {
		WHY("container event without a valid id");
		goto out;
	}
	memcpy(ev->id, id, DK_ID_LEN + 1);
	ev->action = classify(action);
	json_t *attrs = jobj(actor, "Attributes");
	const char *name = dk_jstr(attrs, "name");
	dk_escape(name ? name : "", ev->name, sizeof ev->name);
	if (ev->action == DK_EV_KILL)
		ev->signal = dk_signal_number(dk_jstr(attrs, "signal"));
	rc = 0;
out:
	json_decref(root);
	return rc;
}
