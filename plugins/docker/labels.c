/* labels.c - what a container's labels and environment say about one of
 * its ports (see decode.h, dk_port_labels): the regent.* labels and
 * registrator's SERVICE_* conventions (read from labels and env, a label
 * winning over env, SERVICE_<port>_* over SERVICE_*), turned into the
 * port's service name (with registrator's <name>-<port> rule), instance
 * id, tags, meta (regent.meta.*, SERVICE_<attr>, regent.weight) and
 * ignore decision.  Pure: no I/O; everything read is untrusted and
 * validated here. */
#include "decode.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_MAX 128


/* ---- validation (the core's rules, model.c) ---- */

static bool valid_tag(const char *t)
{
	if (!t || !t[0] || strlen(t) > 128)
		return false;
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == ',')
			return false;
	return true;
}

static bool valid_meta_key(const char *k)
{
	if (!k || !k[0] || strlen(k) > KEY_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)k; *p; p++)
		if (!(isalnum(*p) || *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

static bool valid_meta_value(const char *v)
{
	if (!v || strlen(v) > 512)
		return false;
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static bool valid_id(const char *id)
{
	if (!id || !id[0] || strlen(id) > 255)
		return false;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		if (!(isalnum(*p) || strchr("._:/@-", *p)))
			return false;
	return true;
}

/* ---- label and env lookup ---- */

static const char *label(const dk_container *c, const char *key)
{
	const char *v = dk_jstr(c->labels, key);
	return v && v[0] ? v : NULL;
}

static bool truthy(const char *v)
{
	return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
	             strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0);
}

/* SERVICE_IGNORE: any value but false/0/no ignores (registrator: any) */
static bool ignore_value(const char *v)
{
	return v && strcasecmp(v, "false") != 0 && strcmp(v, "0") != 0 && strcasecmp(v, "no") != 0;
}

bool dk_container_ignored(const dk_container *c)
{
	return truthy(label(c, "regent.ignore"));
}

/* ---- registrator's SERVICE_* variables of one port ---- */

typedef struct var {
	char key[KEY_MAX + 1]; /* lowercase, without SERVICE_ and the port */
	const char *value;
	char what[KEY_MAX + 32]; /* "label SERVICE_8080_NAME", for messages */
	bool port;               /* from SERVICE_<port>_* */
	unsigned rank;           /* port 2, label 1: the highest wins */
	size_t seq;              /* then the later one (env is read like a shell) */
} var;

typedef struct vars {
	var *v; /* sorted by key, one per key */
	size_t n;
} vars;

static int cmp_var_key(const void *a, const void *b)
{
	return strcmp(((const var *)a)->key, ((const var *)b)->key);
}

/* by key, then the winner first */
static int cmp_var(const void *a, const void *b)
{
	const var *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	if (c)
		return c;
	if (x->rank != y->rank)
		return x->rank > y->rank ? -1 : 1;
	return x->seq > y->seq ? -1 : x->seq < y->seq;
}

static const var *vars_get(const vars *vs, const char *key)
{
	var probe;
	if (strlen(key) > KEY_MAX || !vs->n)
		return NULL;
	snprintf(probe.key, sizeof probe.key, "%s", key);
	return bsearch(&probe, vs->v, vs->n, sizeof *vs->v, cmp_var_key);
}

/* One "SERVICE_..." name and its value, from env or a label. */
static int vars_add(vars *vs, const char *name, const char *value, bool is_label, uint16_t port,
                    dk_result *r, const char *who)
{
	static const char pfx[] = "SERVICE_";
	if (strncmp(name, pfx, sizeof pfx - 1) != 0 || !value || !value[0])
		return 0;
	const char *k = name + sizeof pfx - 1;
	bool from_port = false;
	size_t digits = strspn(k, "0123456789");
	if (digits && k[digits] == '_' && k[digits + 1]) {
		if (digits > 5 || strtol(k, NULL, 10) != port)
			return 0; /* another port's */
		k += digits + 1;
		from_port = true;
	}
	if (!k[0])
		return 0;
	if (strlen(k) > KEY_MAX) {
		char esc[64];
		dk_escape(name, esc, sizeof esc);
		DK_WARN("container %s: %s %s: name longer than %d bytes; ignored", who,
		     is_label ? "label" : "env", esc, KEY_MAX);
		return 0;
	}
	var *nv = realloc(vs->v, (vs->n + 1) * sizeof *nv);
	if (!nv)
		return -ENOMEM;
	vs->v = nv;
	var *slot = &nv[vs->n];
	size_t i = 0;
	for (; k[i]; i++)
		slot->key[i] = (char)tolower((unsigned char)k[i]);
	slot->key[i] = '\0';
	slot->value = value;
	slot->port = from_port;
	slot->rank = (from_port ? 2u : 0u) + (is_label ? 1u : 0u);
	slot->seq = vs->n++;
	char esc[KEY_MAX + 8];
	dk_escape(name, esc, sizeof esc);
	snprintf(slot->what, sizeof slot->what, "%s %s", is_label ? "label" : "env", esc);
	return 0;
}

/* registrator's rules: a label beats env, SERVICE_<port>_X beats
 * SERVICE_X whatever the order; then one entry per key. */
static int vars_collect(const dk_container *c, uint16_t port, vars *vs, dk_result *r,
                        const char *who)
{
	size_t i;
	json_t *e;
	json_array_foreach(c->env, i, e) {
		const char *s = json_string_value(e);
		const char *eq = s ? strchr(s, '=') : NULL;
		if (!eq || (size_t)(eq - s) > KEY_MAX + 16)
			continue;
		char name[KEY_MAX + 17];
		memcpy(name, s, (size_t)(eq - s));
		name[eq - s] = '\0';
		if (vars_add(vs, name, eq + 1, false, port, r, who) < 0)
			return -ENOMEM;
	}
	const char *key;
	json_t *v;
	json_object_foreach(c->labels, key, v) {
		if (json_is_string(v) && vars_add(vs, key, json_string_value(v), true, port, r, who) < 0)
			return -ENOMEM;
	}
	if (vs->n > 1)
		qsort(vs->v, vs->n, sizeof *vs->v, cmp_var);
	size_t o = 0;
	for (i = 0; i < vs->n; i++)
		if (o == 0 || strcmp(vs->v[o - 1].key, vs->v[i].key) != 0)
			vs->v[o++] = vs->v[i];
	vs->n = o;
	return 0;
}

/* ---- naming ---- */

/* The service name of one port, or *ok false (a warning or note said why). */
static int port_service(const dk_container *c, uint16_t port, const vars *vs, size_t nports,
                        dk_result *r, const char *who, char *out, size_t outlen, bool *ok)
{
	char k[64];
	*ok = false;
	const char *value = NULL;
	char what[KEY_MAX + 32] = "";
	bool group_rule = false; /* registrator: <name>-<port> when several ports */
	snprintf(k, sizeof k, "regent.service.%u", port);
	const var *nv = vars_get(vs, "name");
	if ((value = label(c, k))) {
		snprintf(what, sizeof what, "label %s", k);
	} else if ((value = label(c, "regent.service"))) {
		snprintf(what, sizeof what, "label regent.service");
	} else if (nv) {
		value = nv->value;
		snprintf(what, sizeof what, "%s", nv->what);
		group_rule = !nv->port;
	}
	if (value) {
		if (!r->h->valid_service(value)) {
			char esc[96];
			dk_escape(value, esc, sizeof esc);
			DK_WARN("container %s: %s = \"%s\" is not a valid service name (allowed: "
			     "[A-Za-z0-9][A-Za-z0-9._-]{0,62}); not registered", who, what, esc);
			return 0;
		}
	} else {
		char img[128];
		if (!dk_image_service(c->image, img, sizeof img)) {
			char esc[96];
			dk_escape(c->image, esc, sizeof esc);
			DK_NOTE("container %s: no service name (no regent.service label, no SERVICE_NAME, "
			     "image \"%s\" has no repository name); skipped", who, esc);
			return 0;
		}
		if (!r->h->valid_service(img)) {
			char esc[96];
			dk_escape(img, esc, sizeof esc);
			DK_WARN("container %s: the image name \"%s\" is not a valid service name; set label "
			     "regent.service; skipped", who, esc);
			return 0;
		}
		snprintf(what, sizeof what, "the image name");
		snprintf(out, outlen, "%s", img);
		group_rule = true;
	}
	if (value)
		snprintf(out, outlen, "%s", value);
	if (group_rule && nports > 1) {
		size_t l = strlen(out);
		snprintf(out + l, outlen - l, "-%u", port);
		if (!r->h->valid_service(out)) {
			DK_WARN("container %s: %s with its port (several ports: <name>-<port>) gives \"%s\", "
			     "longer than 63 bytes; port %u not registered", who, what, out, port);
			return 0;
		}
	}
	*ok = true;
	return 0;
}

static int port_tags(const dk_container *c, uint16_t port, const vars *vs, dk_result *r,
                     const char *who, dk_inst *in)
{
	char k[64], what[KEY_MAX + 32];
	const char *value;
	const var *tv = vars_get(vs, "tags");
	snprintf(k, sizeof k, "regent.tags.%u", port);
	if ((value = label(c, k))) {
		snprintf(what, sizeof what, "label %s", k);
	} else if ((value = label(c, "regent.tags"))) {
		snprintf(what, sizeof what, "label regent.tags");
	} else if (tv) {
		value = tv->value;
		snprintf(what, sizeof what, "%s", tv->what);
	} else {
		return 0;
	}
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		size_t l = strlen(t);
		while (l && (t[l - 1] == ' ' || t[l - 1] == '\t'))
			t[--l] = '\0';
		if (!l)
			continue;
		if (!valid_tag(t)) {
			char esc[96];
			dk_escape(t, esc, sizeof esc);
			if (dk_add_msg(r->h, &r->warnings, &r->nwarnings,
			               "container %s: %s: tag \"%s\" is invalid (printable, no spaces, "
			               "quotes or backslashes, at most 128 bytes); tag skipped",
			               who, what, esc) < 0)
				goto oom;
			continue;
		}
		if (in->ntags >= DK_MAX_TAGS) {
			if (dk_add_msg(r->h, &r->warnings, &r->nwarnings,
			               "container %s: %s: more than %d tags; the rest skipped", who, what,
			               DK_MAX_TAGS) < 0)
				goto oom;
			break;
		}
		bool dup = false;
		for (size_t i = 0; i < in->ntags; i++)
			if (strcmp(in->tags[i], t) == 0)
				dup = true;
		if (dup)
			continue;
		if (dk_push_str(r->h, &in->tags, &in->ntags, r->h->xstrdup(t)) < 0)
			goto oom;
	}
	free(copy);
	return 0;
oom:
	free(copy);
	return -ENOMEM;
}

/* ---- meta ---- */

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const regent_kv *)a)->key, ((const regent_kv *)b)->key);
}

/* Appends key=value (the caller keeps keys unique). */
static int meta_add(dk_inst *in, const char *key, const char *value)
{
	char *ks = strdup(key), *vs = strdup(value);
	regent_kv *p = ks && vs ? realloc(in->meta, (in->nmeta + 1) * sizeof *p) : NULL;
	if (!p) {
		free(ks);
		free(vs);
		return -ENOMEM;
	}
	in->meta = p;
	p[in->nmeta].key = ks;
	p[in->nmeta].value = vs;
	in->nmeta++;
	return 0;
}

/* The entry of key among the first n (sorted) entries, or NULL. */
static regent_kv *meta_find(dk_inst *in, size_t n, const char *key)
{
	regent_kv probe = {key, NULL};
	return n ? bsearch(&probe, in->meta, n, sizeof *in->meta, cmp_kv) : NULL;
}

/* Keys of SERVICE_* that are settings, not attributes. */
static bool reserved_var(const char *key)
{
	return strcmp(key, "name") == 0 || strcmp(key, "tags") == 0 || strcmp(key, "id") == 0 ||
	       strcmp(key, "ignore") == 0;
}

static int port_meta(const dk_container *c, uint16_t port, const vars *vs, dk_result *r,
                     const char *who, dk_inst *in)
{
	const char *key;
	json_t *v;
	static const char prefix[] = "regent.meta.";
	json_object_foreach(c->labels, key, v) {
		if (strncmp(key, prefix, sizeof prefix - 1) != 0)
			continue;
		const char *mk = key + sizeof prefix - 1;
		const char *mv = json_string_value(v);
		char esc[96];
		if (!valid_meta_key(mk)) {
			dk_escape(key, esc, sizeof esc);
			DK_WARN("container %s: label \"%s\": invalid meta key (allowed: [A-Za-z0-9_.-], at "
			     "most 128 bytes); skipped", who, esc);
			continue;
		}
		if (!mv || !valid_meta_value(mv)) {
			DK_WARN("container %s: label %s: invalid meta value (control characters, or longer "
			     "than 512 bytes); skipped", who, key);
			continue;
		}
		if (meta_add(in, mk, mv) < 0) /* label names are unique */
			return -ENOMEM;
	}
	if (in->nmeta > 1)
		qsort(in->meta, in->nmeta, sizeof *in->meta, cmp_kv);
	size_t nlabels = in->nmeta;
	/* registrator's attributes: SERVICE_<attr>, SERVICE_<port>_<attr>; a
	 * regent.meta.<attr> label of the same key wins. */
	for (size_t i = 0; i < vs->n; i++) {
		const var *a = &vs->v[i];
		if (reserved_var(a->key))
			continue;
		if (!valid_meta_key(a->key)) {
			DK_WARN("container %s: %s: not usable as a meta key (allowed after SERVICE_: "
			     "[A-Za-z0-9_.-]); skipped", who, a->what);
			continue;
		}
		if (!valid_meta_value(a->value)) {
			DK_WARN("container %s: %s: invalid meta value (control characters, or longer than "
			     "512 bytes); skipped", who, a->what);
			continue;
		}
		if (!meta_find(in, nlabels, a->key) && meta_add(in, a->key, a->value) < 0)
			return -ENOMEM;
	}
	/* regent.weight.<port>, regent.weight: 0..256, replaces any other. */
	char k[64], what[80];
	snprintf(k, sizeof k, "regent.weight.%u", port);
	const char *w = label(c, k);
	snprintf(what, sizeof what, "label %s", k);
	if (!w) {
		w = label(c, "regent.weight");
		snprintf(what, sizeof what, "label regent.weight");
	}
	if (w) {
		char *end;
		long n = strtol(w, &end, 10);
		if (!isdigit((unsigned char)w[0]) || *end || n < 0 || n > 256) {
			char esc[64];
			dk_escape(w, esc, sizeof esc);
			DK_WARN("container %s: %s = \"%s\": a weight is an integer from 0 to 256; ignored",
			     who, what, esc);
		} else {
			char num[8];
			snprintf(num, sizeof num, "%ld", n);
			if (in->nmeta > 1) /* the attributes came in key order */
				qsort(in->meta, in->nmeta, sizeof *in->meta, cmp_kv);
			regent_kv *old = meta_find(in, in->nmeta, "weight");
			char *nw = old ? strdup(num) : NULL;
			if (old && !nw)
				return -ENOMEM;
			if (old) {
				free((char *)old->value);
				old->value = nw;
			} else if (meta_add(in, "weight", num) < 0) {
				return -ENOMEM;
			}
		}
	}
	if (in->nmeta > 1)
		qsort(in->meta, in->nmeta, sizeof *in->meta, cmp_kv);
	if (in->nmeta > DK_MAX_META) {
		DK_WARN("container %s: %zu meta entries (at most %d); meta %s and those after it (by "
		     "name) skipped",
		     who, in->nmeta, DK_MAX_META, in->meta[DK_MAX_META].key);
		for (size_t i = DK_MAX_META; i < in->nmeta; i++) {
			free((char *)in->meta[i].key);
			free((char *)in->meta[i].value);
		}
		in->nmeta = DK_MAX_META;
	}
	return 0;
}

/* ---- agent-run check: regent.<port>.check over regent.check, and each
 * parameter regent.<port>.check.<p> over regent.check.<p> ---- */

static int port_check(const dk_container *c, uint16_t port, dk_result *r, const char *who,
                      dk_inst *in, bool *ok)
{
	static const char *const params[] = {"interval", "timeout", "rise", "fall", "method",
	                                     "status"};
	char k[80], what[96], why[200], esc[96];
	*ok = true;
	snprintf(k, sizeof k, "regent.%u.check", port);
	const char *spec = label(c, k);
	if (!spec) {
		snprintf(k, sizeof k, "regent.check");
		spec = label(c, k);
	}
	if (!spec)
		return 0;
	snprintf(what, sizeof what, "label %s", k);
	int rc = dk_check_parse(spec, &in->check, why, sizeof why);
	if (rc == -ENOMEM)
		return rc;
	for (size_t i = 0; rc == 0 && i < sizeof params / sizeof params[0]; i++) {
		snprintf(k, sizeof k, "regent.%u.check.%s", port, params[i]);
		const char *v = label(c, k);
		if (!v) {
			snprintf(k, sizeof k, "regent.check.%s", params[i]);
			v = label(c, k);
		}
		if (v && (rc = dk_check_param(&in->check, params[i], v, why, sizeof why)) < 0)
			snprintf(what, sizeof what, "label %s", k);
	}
	if (rc == 0 && (rc = dk_check_validate(&in->check, why, sizeof why)) < 0)
		snprintf(what, sizeof what, "the check's labels");
	if (rc < 0) {
		dk_escape(why, esc, sizeof esc);
		dk_check_free(&in->check);
		*ok = false;
		DK_WARN("container %s: %s: %s; port %u not registered (its owner asked for a check)", who,
		     what, esc, port);
	}
	return 0;
}

/* ---- one port ---- */

static int port_id(const dk_container *c, const dk_settings *s, uint16_t port,
                   regent_proto proto, const vars *vs, dk_result *r, const char *who,
                   dk_inst *in)
{
	const var *iv = vars_get(vs, "id");
	if (iv) {
		char esc[96];
		dk_escape(iv->value, esc, sizeof esc);
		bool used = false;
		for (size_t i = 0; i < r->n && !used; i++)
			used = strcmp(r->insts[i].id, iv->value) == 0;
		if (!valid_id(iv->value))
			DK_WARN("container %s: %s = \"%s\" is not a valid instance id (allowed: "
			     "[A-Za-z0-9._:/@-], at most 255 bytes); port %u keeps its default id", who,
			     iv->what, esc, port);
		else if (used)
			DK_WARN("container %s: %s = \"%s\" is already the id of another port of the "
			     "container; port %u keeps its default id (use SERVICE_<port>_ID)", who,
			     iv->what, esc, port);
		else
			return (in->id = strdup(iv->value)) ? 0 : -ENOMEM;
	}
	in->id = proto == REGENT_PROTO_UDP
	                 ? s->h->xasprintf("%s/%s/%u/udp", s->node, c->short_id, port)
	                 : s->h->xasprintf("%s/%s/%u", s->node, c->short_id, port);
	return 0;
}

int dk_port_labels(const dk_container *c, const dk_settings *s, uint16_t port,
                   regent_proto proto, size_t nports, dk_result *r, const char *who,
                   dk_inst *in, bool *skip)
{
	const char *pname = proto == REGENT_PROTO_UDP ? "udp" : "tcp";
	vars vs = {NULL, 0};
	int rc = -ENOMEM;
	*skip = true;
	char k[64];
	snprintf(k, sizeof k, "regent.ignore.%u", port);
	if (truthy(label(c, k))) {
		if (dk_add_msg(r->h, &r->notes, &r->nnotes,
		               "container %s: label %s=true; port %u/%s skipped",
		               who, k, port, pname) < 0)
			return -ENOMEM;
		return 0;
	}
	if (vars_collect(c, port, &vs, r, who) < 0)
		goto out;
	const var *ig = vars_get(&vs, "ignore");
	if (ig && ignore_value(ig->value)) {
		if (dk_add_msg(r->h, &r->notes, &r->nnotes,
		               "container %s: %s is set; port %u/%s skipped",
		               who, ig->what, port, pname) < 0)
			goto out;
		rc = 0;
		goto out;
	}
	char svc[128];
	bool ok;
	if (port_service(c, port, &vs, nports, r, who, svc, sizeof svc, &ok) < 0)
		goto out;
	if (!ok) {
		rc = 0;
		goto out;
	}
	if (port_check(c, port, r, who, in, &ok) < 0)
		goto out;
	if (!ok) {
		rc = 0;
		goto out;
	}
	if (!(in->service = strdup(svc)) || port_id(c, s, port, proto, &vs, r, who, in) < 0 ||
	    port_tags(c, port, &vs, r, who, in) < 0 || port_meta(c, port, &vs, r, who, in) < 0)
		goto out;
	*skip = false;
	rc = 0;
out:
	free(vs.v);
	return rc;
}
