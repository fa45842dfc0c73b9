/* config.c - the INI configuration: parsing (inih), the core's key tables,
 * typed validation of a section against the keys its owner declares, and
 * errors reported all at once as FILE:LINE: section.key: reason.  Parsing
 * loads nothing: config_setup.c binds the plugin sections to their plugins
 * and validates them afterwards. */
#include "build_config.h"
#include "config.h"
#include "log.h"
#include "model.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const regent_config_key regent_agent_keys[] = {
	{"node", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "this agent's name in the registry (default: the host name)"},
	{"host_ip", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "the address other hosts reach this host's containers on"},
	{"plugin_dir", REGENT_CFG_STRING, NULL, false, 0, 0, "where plugins are loaded from"},
	{"log_level", REGENT_CFG_STRING, "info", false, 0, 0, "error, warn, info or debug"},
	{"debounce", REGENT_CFG_DURATION, "50ms", false, 0, 60000,
	 "after a quiet period the first catalog change reaches the sinks at once; "
	 "the changes that follow are batched until this long passes without one"},
	{"debounce_max", REGENT_CFG_DURATION, "500ms", false, 1, 600000,
	 "longest a change may wait while changes keep coming"},
	{"stop_timeout", REGENT_CFG_DURATION, "5s", false, 100, 600000,
	 "how long plugins get to stop (deregister) on shutdown"},
	{"start_timeout", REGENT_CFG_DURATION, "30s", false, 100, 3600000,
	 "how long a reload's new plugin instance may take to prove itself"},
	{"state_dir", REGENT_CFG_STRING, REGENT_STATE_DIR_DEFAULT, false, 0, 0,
	 "where plugins keep state across restarts (lease ids, ...)"},
	{"control_socket", REGENT_CFG_STRING, "/run/regent/regent.sock", false, 0, 0,
	 "the unix socket `regent ctl` talks to (mode 0660, group regent); empty: none"},
	{"metrics_per_service", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "/metrics also has regent_catalog_instances by service and by node: one series per "
	 "service and per host of the fleet, on every agent"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

const regent_config_key regent_core_service_keys[] = {
	{"port", REGENT_CFG_INT, NULL, false, 1, 65535, "the port clients use for this service"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

const char *regent_kind_name(int kind)
{
	switch (kind) {
	case REGENT_KIND_SOURCE: return "source";
	case REGENT_KIND_STORE: return "store";
	case REGENT_KIND_SINK: return "sink";
	case REGENT_SECTION_SERVICE: return "service";
	case REGENT_SECTION_AGENT: return "agent";
	default: return "unknown";
	}
}

void regent_config_add_error(regent_config *c, int line, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	/* Values quoted in messages come from the file: control bytes as \xNN. */
	size_t mlen = msg ? strlen(msg) : 0;
	char *esc = regent_xmalloc(mlen * 4 + 4);
	regent_log_escape(msg ? msg : "?", msg ? mlen : 1, esc, mlen * 4 + 4);
	free(msg);
	char *full = line > 0 ? regent_xasprintf("%s:%d: %s", c->path, line, esc)
	                      : regent_xasprintf("%s: %s", c->path, esc);
	free(esc);
	c->errors = regent_xrealloc(c->errors, sizeof(*c->errors) * (c->nerrors + 1));
	c->error_lines = regent_xrealloc(c->error_lines, sizeof(*c->error_lines) * (c->nerrors + 1));
	c->error_lines[c->nerrors] = line;
	c->errors[c->nerrors++] = full;
}

typedef struct numbered_error {
	int line;
	size_t seq;
	char *text;
} numbered_error;

static int cmp_error(const void *a, const void *b)
{
	const numbered_error *x = a, *y = b;
	/* errors without a line (the file as a whole) last */
	unsigned lx = x->line > 0 ? (unsigned)x->line : UINT_MAX;
	unsigned ly = y->line > 0 ? (unsigned)y->line : UINT_MAX;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The errors in the order of the file's lines (checks run section by
 * section and plugin by plugin, a person reads top to bottom). */
void regent_config_sort_errors(regent_config *c)
{
	if (c->nerrors < 2)
		return;
	numbered_error *e = regent_xmalloc(sizeof(*e) * c->nerrors);
	for (size_t i = 0; i < c->nerrors; i++)
		e[i] = (numbered_error){c->error_lines[i], i, c->errors[i]};
	qsort(e, c->nerrors, sizeof(*e), cmp_error);
	for (size_t i = 0; i < c->nerrors; i++) {
		c->errors[i] = e[i].text;
		c->error_lines[i] = e[i].line;
	}
	free(e);
}

/* ---------------------------------------------------------------- */
/* Parsing                                                           */
/* ---------------------------------------------------------------- */

typedef struct parse_state {
	regent_config *cfg;
	FILE *fp;
	int line;
	char *linebuf;
	size_t linecap;
	regent_cfg_section *cur;
} parse_state;

bool regent_plugin_name_valid(const char *s)
{
	if (!s[0] || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
			return false;
	return true;
}

static regent_cfg_section *find_section(const regent_config *c, const char *header)
{
	for (size_t i = 0; i < c->nsections; i++)
		if (strcmp(c->sections[i]->header, header) == 0)
			return c->sections[i];
	return NULL;
}

/* Called by the reader for every "[...]" line: the section starts here,
 * even when it has no keys (inih only reports sections with keys). */
static void open_section(parse_state *ps, char *text)
{
	regent_config *c = ps->cfg;
	/* Normalise runs of blanks to one space. */
	char norm[256];
	size_t n = 0;
	for (char *p = regent_trim(text); *p && n < sizeof(norm) - 1; p++) {
		if (isspace((unsigned char)*p)) {
			if (n && norm[n - 1] != ' ')
				norm[n++] = ' ';
		} else {
			norm[n++] = *p;
		}
	}
	norm[n] = '\0';
	ps->cur = NULL;
	regent_cfg_section *dup = find_section(c, norm);
	if (dup) {
		regent_config_add_error(c, ps->line, "[%s]: section appears twice (first at line %d)",
		                        norm, dup->line);
		return;
	}
	char *words[4] = {0};
	int nw = 0;
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s", norm);
	for (char *save = NULL, *w = strtok_r(tmp, " ", &save); w; w = strtok_r(NULL, " ", &save))
		if (nw < 4)
			words[nw++] = w;
		else
			nw++;
	regent_cfg_section *s = regent_xcalloc(1, sizeof(*s));
	s->header = regent_xstrdup(norm);
	s->line = ps->line;
	if (nw == 1 && strcmp(words[0], "agent") == 0) {
		s->kind = REGENT_SECTION_AGENT;
		s->name = regent_xstrdup("agent");
	} else if (nw == 2 && strcmp(words[0], "service") == 0) {
		s->kind = REGENT_SECTION_SERVICE;
		s->plugin = regent_xstrdup(words[1]);
		s->name = regent_xstrdup(norm);
		if (!regent_valid_service(words[1]))
			regent_config_add_error(c, ps->line,
			                        "[%s]: invalid service name \"%s\" (allowed: "
			                        "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
			                        norm, words[1]);
	} else if ((nw == 2 || nw == 3) && (strcmp(words[0], "source") == 0 ||
	                                    strcmp(words[0], "store") == 0 ||
	                                    strcmp(words[0], "sink") == 0)) {
		s->kind = words[0][1] == 'o' ? REGENT_SECTION_SOURCE
		          : words[0][1] == 't' ? REGENT_SECTION_STORE
		                               : REGENT_SECTION_SINK;
		s->plugin = regent_xstrdup(words[1]);
		s->name = nw == 3 ? regent_xasprintf("%s %s", words[1], words[2])
		                  : regent_xstrdup(words[1]);
		if (!regent_plugin_name_valid(words[1]))
			regent_config_add_error(c, ps->line,
			                        "[%s]: invalid plugin name \"%s\" (allowed: [a-z0-9_-])",
			                        norm, words[1]);
		if (nw == 3 && !regent_valid_service(words[2]))
			regent_config_add_error(c, ps->line,
			                        "[%s]: invalid instance label \"%s\" (allowed: "
			                        "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
			                        norm, words[2]);
		/* Two instances of one kind+plugin need distinct labels: the
		 * header check above covers it, since the header is the name. */
	} else {
		regent_config_add_error(c, ps->line,
		                        "[%s]: unknown section (expected [agent], [source NAME], "
		                        "[store NAME], [sink NAME] or [service NAME], with an "
		                        "optional label after a plugin name)",
		                        norm);
		free(s->header);
		free(s);
		return;
	}
	c->sections = regent_xrealloc(c->sections, sizeof(*c->sections) * (c->nsections + 1));
	c->sections[c->nsections++] = s;
	ps->cur = s;
}

/* inih reader: counts lines, sees section headers, refuses long lines. */
static char *reader(char *str, int num, void *stream)
{
	parse_state *ps = stream;
	ssize_t n = getline(&ps->linebuf, &ps->linecap, ps->fp);
	if (n < 0)
		return NULL;
	ps->line++;
	char *l = ps->linebuf;
	if (n >= num - 1) {
		regent_config_add_error(ps->cfg, ps->line, "line too long (at most %d characters)",
		                        num - 2);
		snprintf(str, (size_t)num, ";\n");
		return str;
	}
	memcpy(str, l, (size_t)n + 1);
	char *t = l;
	while (isspace((unsigned char)*t))
		t++;
	if (*t == '[') {
		char *end = strchr(t, ']');
		if (end) {
			*end = '\0';
			open_section(ps, t + 1);
		}
	}
	return str;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	parse_state *ps = user;
	(void)section;
	regent_cfg_section *s = ps->cur;
	if (!s) {
		if (ps->cfg->nsections == 0 && !find_section(ps->cfg, "agent"))
			regent_config_add_error(ps->cfg, ps->line,
			                        "%s: key outside of any section", key);
		return 1; /* the section itself was refused and reported */
	}
	for (size_t i = 0; i < s->nentries; i++) {
		if (strcmp(s->entries[i].key, key) == 0) {
			regent_config_add_error(ps->cfg, ps->line, "%s.%s: set twice (first at line %d)",
			                        s->header, key, s->entries[i].line);
			return 1;
		}
	}
	s->entries = regent_xrealloc(s->entries, sizeof(*s->entries) * (s->nentries + 1));
	s->entries[s->nentries].key = regent_xstrdup(key);
	s->entries[s->nentries].value = regent_xstrdup(value);
	s->entries[s->nentries].line = ps->line;
	s->nentries++;
	return 1;
}

/* ---------------------------------------------------------------- */
/* Typed values                                                      */
/* ---------------------------------------------------------------- */

/* Decimal digits only (a '-' first when the key allows negative values):
 * no '+', blank, "0x" or trailing byte. */
static int parse_int(const char *s, bool allow_negative, int64_t *out)
{
	bool neg = allow_negative && s[0] == '-';
	uint64_t v;
	if (regent_parse_uint(s + neg, strlen(s + neg), (uint64_t)INT64_MAX, &v) != 0)
		return -1;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* Digits and an optional unit (ms, s, m, h; bare = seconds): no fraction,
 * sign, blank, "0x10" or "1e3". */
static int parse_duration(const char *s, int64_t *ms)
{
	return regent_parse_duration(s, ms, NULL) == 0 ? 0 : -1;
}

int regent_config_parse_bool(const char *s, int64_t *out)
{
	static const char *const t[] = {"true", "yes", "on", "1"};
	static const char *const f[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, t[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, f[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int parse_address(const char *s, char *why, size_t whylen)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s) {
		snprintf(why, whylen, "expected HOST:PORT, got \"%s\"", s);
		return -1;
	}
	uint16_t port;
	if (regent_parse_port(colon + 1, strlen(colon + 1), &port) != 0) {
		snprintf(why, whylen, "invalid port in \"%s\" (digits only, 1-65535)", s);
		return -1;
	}
	char host[256];
	size_t hl = (size_t)(colon - s);
	if (hl >= sizeof(host)) {
		snprintf(why, whylen, "host too long in \"%s\"", s);
		return -1;
	}
	memcpy(host, s, hl);
	host[hl] = '\0';
	char *h = host;
	if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
		h[hl - 1] = '\0';
		h++;
	} else if (strchr(h, ':')) {
		snprintf(why, whylen, "IPv6 addresses need brackets: \"[%s]:%lld\"", h,
		         (long long)port);
		return -1;
	}
	if (!regent_valid_address(h)) {
		snprintf(why, whylen, "invalid host \"%s\"", h);
		return -1;
	}
	return 0;
}

/* The limits of k; a duration's in whole units ("between 2s and 1h"), a
 * limit of 0 in the unit raw was written in. */
static void format_range(const regent_config_key *k, const char *raw, char *buf, size_t len)
{
	if (k->type == REGENT_CFG_DURATION) {
		int64_t ms, unit = 1000;
		char lo[32], hi[32];
		if (regent_parse_duration(raw, &ms, &unit) != 0)
			unit = 1000;
		regent_format_duration(k->min, unit, lo, sizeof(lo));
		regent_format_duration(k->max, unit, hi, sizeof(hi));
		snprintf(buf, len, "between %s and %s", lo, hi);
	} else
		snprintf(buf, len, "between %lld and %lld", (long long)k->min, (long long)k->max);
}

/* Parses raw into v according to its key; returns 0 or writes why. */
static int parse_value(regent_cfg_value *v, const char *raw, char *why, size_t whylen)
{
	const regent_config_key *k = v->key;
	v->raw = regent_xstrdup(raw);
	switch (k->type) {
	case REGENT_CFG_STRING:
		return 0;
	case REGENT_CFG_INT:
		if (parse_int(raw, k->min < 0, &v->i) != 0) {
			snprintf(why, whylen, "expected an integer (digits only), got \"%s\"", raw);
			return -1;
		}
		break;
	case REGENT_CFG_BOOL:
		if (regent_config_parse_bool(raw, &v->i) != 0) {
			snprintf(why, whylen, "expected true or false, got \"%s\"", raw);
			return -1;
		}
		return 0;
	case REGENT_CFG_DURATION:
		if (parse_duration(raw, &v->i) != 0) {
			snprintf(why, whylen,
			         "expected a duration (digits and ms, s, m or h, such as 50ms, 15s, 1m "
			         "or 2h), got \"%s\"",
			         raw);
			return -1;
		}
		break;
	case REGENT_CFG_LIST: {
		char *copy = regent_xstrdup(raw), *save = NULL;
		int rc = 0;
		if (!*regent_trim(copy)) {
			free(copy);
			return 0;
		}
		for (char *it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
			char *t = regent_trim(it);
			v->list = regent_xrealloc(v->list, sizeof(*v->list) * (v->nlist + 1));
			v->list[v->nlist++] = regent_xstrdup(t);
			if (!*t)
				rc = -1;
		}
		size_t commas = 0;
		for (const char *p = raw; *p; p++)
			commas += *p == ',';
		if (rc || commas + 1 != v->nlist) {
			snprintf(why, whylen, "empty item in list \"%s\"", raw);
			rc = -1;
		}
		free(copy);
		return rc;
	}
	case REGENT_CFG_ADDRESS:
		return parse_address(raw, why, whylen);
	default:
		snprintf(why, whylen, "key declared with an unknown type %d", (int)k->type);
		return -1;
	}
	if ((k->min || k->max) && (v->i < k->min || v->i > k->max)) {
		char range[96];
		format_range(k, raw, range, sizeof(range));
		snprintf(why, whylen, "%s is out of range (must be %s)", raw, range);
		return -1;
	}
	return 0;
}

size_t regent_config_keys_count(const regent_config_key *keys)
{
	size_t n = 0;
	while (keys && keys[n].name)
		n++;
	return n;
}

const regent_config_key *regent_config_key_find(const regent_config_key *keys, size_t n,
                                                const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Validates a section's entries against its declared keys. */
void regent_config_validate_section(regent_config *c, regent_cfg_section *s,
                                    const regent_config_key *keys, size_t nkeys,
                                    const char *unloaded)
{
	s->values = regent_xcalloc(nkeys + 1, sizeof(*s->values));
	s->nvalues = nkeys;
	for (size_t i = 0; i < nkeys; i++)
		s->values[i].key = &keys[i];
	for (size_t e = 0; e < s->nentries; e++) {
		regent_cfg_entry *en = &s->entries[e];
		const regent_config_key *k = regent_config_key_find(keys, nkeys, en->key);
		if (!k) {
			/* unloaded: the plugin sections that could not be
			 * loaded (a [service] key may be theirs). */
			regent_buf known = {0};
			for (size_t i = 0; i < nkeys; i++)
				regent_buf_printf(&known, "%s%s", i ? ", " : "", keys[i].name);
			regent_config_add_error(c, en->line, "%s.%s: unknown key (known: %s%s%s%s)",
			                        s->header, en->key, known.data ? known.data : "none",
			                        unloaded ? "; unless " : "", unloaded ? unloaded : "",
			                        unloaded ? ", not loaded, declares it" : "");
			regent_buf_free(&known);
			continue;
		}
		regent_cfg_value *v = &s->values[k - keys];
		char why[512] = "";
		v->set = true;
		v->line = en->line;
		if (parse_value(v, en->value, why, sizeof(why)) != 0) {
			v->bad = true;
			s->blocked = true;
			regent_config_add_error(c, en->line, "%s.%s: %s", s->header, en->key, why);
		}
		else if (k->required && k->type == REGENT_CFG_STRING && !en->value[0])
			regent_config_add_error(c, en->line, "%s.%s: must not be empty", s->header,
			                        en->key);
	}
	for (size_t i = 0; i < nkeys; i++) {
		regent_cfg_value *v = &s->values[i];
		if (v->set)
			continue;
		if (keys[i].required) {
			s->blocked = true;
			regent_config_add_error(c, s->line, "%s.%s: required key is missing (%s)",
			                        s->header, keys[i].name, keys[i].description
			                                                     ? keys[i].description
			                                                     : "no description");
		} else if (keys[i].default_value) {
			char why[512] = "";
			if (parse_value(v, keys[i].default_value, why, sizeof(why)) != 0)
				regent_config_add_error(c, s->line, "%s.%s: bad built-in default: %s",
				                        s->header, keys[i].name, why);
		}
	}
}

const regent_cfg_value *regent_cfg_find(const regent_cfg_section *s, const char *key)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->nvalues; i++)
		if (strcmp(s->values[i].key->name, key) == 0)
			return &s->values[i];
	return NULL;
}

const regent_cfg_section *regent_config_service(const regent_config *c, const char *name)
{
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->kind == REGENT_SECTION_SERVICE &&
		    strcmp(c->sections[i]->plugin, name) == 0)
			return c->sections[i];
	return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const regent_cfg_entry *)a)->key, ((const regent_cfg_entry *)b)->key);
}

bool regent_section_equal(const regent_cfg_section *a, const regent_cfg_section *b)
{
	if (!a || !b)
		return a == b;
	if (strcmp(a->header, b->header) != 0 || a->nentries != b->nentries)
		return false;
	regent_cfg_entry *ea = regent_xmalloc(sizeof(*ea) * (a->nentries + 1));
	regent_cfg_entry *eb = regent_xmalloc(sizeof(*eb) * (b->nentries + 1));
	if (a->nentries) /* entries is NULL for a section without keys */
		memcpy(ea, a->entries, sizeof(*ea) * a->nentries);
	if (b->nentries)
		memcpy(eb, b->entries, sizeof(*eb) * b->nentries);
	qsort(ea, a->nentries, sizeof(*ea), cmp_entry);
	qsort(eb, b->nentries, sizeof(*eb), cmp_entry);
	bool eq = true;
	for (size_t i = 0; i < a->nentries && eq; i++)
		eq = strcmp(ea[i].key, eb[i].key) == 0 && strcmp(ea[i].value, eb[i].value) == 0;
	free(ea);
	free(eb);
	return eq;
}

bool regent_config_has_plugin_section(const regent_config *c)
{
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->kind == REGENT_SECTION_SOURCE ||
		    c->sections[i]->kind == REGENT_SECTION_STORE ||
		    c->sections[i]->kind == REGENT_SECTION_SINK)
			return true;
	return false;
}

regent_config *regent_config_parse(const char *path)
{
	regent_config *c = regent_xcalloc(1, sizeof(*c));
	c->path = regent_xstrdup(path);
	c->refs = 1;

	parse_state ps = {.cfg = c};
	ps.fp = fopen(path, "r");
	if (!ps.fp) {
		regent_config_add_error(c, 0, "cannot open: %s", strerror(errno));
		return c;
	}
	int rc = ini_parse_stream(reader, &ps, handler, &ps);
	fclose(ps.fp);
	free(ps.linebuf);
	if (rc > 0)
		regent_config_add_error(c, rc, "syntax error (expected [section], key = value, or a "
		                               "; comment)");
	else if (rc < 0)
		regent_config_add_error(c, 0, "cannot read the file");

	/* [agent]: present with defaults even when absent from the file. */
	regent_cfg_section *agent = NULL;
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->kind == REGENT_SECTION_AGENT)
			agent = c->sections[i];
	if (!agent) {
		agent = regent_xcalloc(1, sizeof(*agent));
		agent->header = regent_xstrdup("agent");
		agent->name = regent_xstrdup("agent");
		agent->kind = REGENT_SECTION_AGENT;
		c->sections = regent_xrealloc(c->sections, sizeof(*c->sections) * (c->nsections + 1));
		c->sections[c->nsections++] = agent;
	}
	c->agent = agent;
	regent_config_validate_section(c, agent, regent_agent_keys,
	                               regent_config_keys_count(regent_agent_keys), NULL);
	const regent_cfg_value *v = regent_cfg_find(agent, "log_level");
	regent_log_level lvl;
	if (v && v->raw && regent_log_level_parse(v->raw, &lvl) != 0)
		regent_config_add_error(c, v->line, "agent.log_level: expected error, warn, info or "
		                                    "debug, got \"%s\"",
		                        v->raw);
	v = regent_cfg_find(agent, "host_ip");
	if (v && v->set && !regent_valid_address(v->raw))
		regent_config_add_error(c, v->line, "agent.host_ip: invalid address \"%s\"", v->raw);
	v = regent_cfg_find(agent, "node");
	if (v && v->set && (!v->raw[0] || !regent_valid_service(v->raw)))
		regent_config_add_error(c, v->line,
		                        "agent.node: invalid node name \"%s\" (allowed: "
		                        "[A-Za-z0-9][A-Za-z0-9._-]{0,62})",
		                        v->raw);
	if (!v || !v->set) {
		/* Default node name: the host name. */
		regent_cfg_value *nv = (regent_cfg_value *)v;
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		char *dot = strchr(host, '.');
		if (dot)
			*dot = '\0';
		if (nv) {
			free(nv->raw);
			nv->raw = regent_xstrdup(host);
		}
	}
	const regent_cfg_value *dmin = regent_cfg_find(agent, "debounce");
	const regent_cfg_value *dmax = regent_cfg_find(agent, "debounce_max");
	if (dmin && dmax && dmin->raw && dmax->raw && !dmin->bad && !dmax->bad && dmax->i < dmin->i)
		regent_config_add_error(c, dmax->set ? dmax->line : dmin->line,
		                        "agent.debounce_max: %s is shorter than agent.debounce (%s)",
		                        dmax->raw, dmin->raw);

	c->service_names = regent_xcalloc(c->nsections + 1, sizeof(*c->service_names));
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->kind == REGENT_SECTION_SERVICE)
			c->service_names[c->nservice_names++] = c->sections[i]->plugin;
	if (!regent_config_has_plugin_section(c))
		regent_config_add_error(c, 0, "no [source NAME], [store NAME] or [sink NAME] section: "
		                              "nothing to run");
	regent_config_sort_errors(c);
	return c;
}

regent_config *regent_config_ref(regent_config *c)
{
	c->refs++;
	return c;
}

static void free_section(regent_cfg_section *s)
{
	for (size_t i = 0; i < s->nentries; i++) {
		free(s->entries[i].key);
		free(s->entries[i].value);
	}
	free(s->entries);
	for (size_t i = 0; i < s->nvalues; i++) {
		free(s->values[i].raw);
		for (size_t j = 0; j < s->values[i].nlist; j++)
			free(s->values[i].list[j]);
		free(s->values[i].list);
	}
	free(s->values);
	free(s->header);
	free(s->plugin);
	free(s->name);
	free(s);
}

void regent_config_unref(regent_config *c)
{
	if (!c || --c->refs > 0)
		return;
	if (c->unbind)
		c->unbind(c); /* what binding took: the plugins' references */
	for (size_t i = 0; i < c->nsections; i++)
		free_section(c->sections[i]);
	free(c->sections);
	for (size_t i = 0; i < c->nerrors; i++)
		free(c->errors[i]);
	free(c->errors);
	free(c->error_lines);
	free(c->service_keys);
	free(c->service_key_owners);
	free(c->service_names);
	free(c->path);
	free(c);
}
