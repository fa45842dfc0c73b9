/* config_setup.c - binds a parsed configuration to its plugins: loads the
 * plugin each [source|store|sink NAME] section names (a typo gets a "did
 * you mean"), validates the section against the keys the plugin declares,
 * merges the plugins' [service] keys (one owner per key), validates the
 * [service NAME] sections against them, then lets each plugin check its
 * own section (its validate(), with a context that has no agent).  Errors
 * go into the config with the parser's, FILE:LINE, in the file's order. */
#include "config.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Edit distance (insertions, deletions, substitutions, transpositions of
 * neighbours) between two short names. */
static size_t name_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb];
}

/* The plugin in dir whose name is closest to name (at most 2 edits, and
 * fewer than its length), or "" when none is. */
static void suggest_plugin(const char *dir, const char *name, char *out, size_t len)
{
	out[0] = '\0';
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t best = 3;
	for (struct dirent *e; (e = readdir(d));) {
		size_t n = strlen(e->d_name);
		if (n <= 3 || n > 67 || strcmp(e->d_name + n - 3, ".so") != 0)
			continue;
		char cand[65];
		snprintf(cand, sizeof(cand), "%.*s", (int)(n - 3), e->d_name);
		if (!regent_plugin_name_valid(cand))
			continue;
		size_t dist = name_distance(name, cand);
		/* closest first; equal distances: the first name in order */
		if (dist == 0)
			continue; /* the plugin itself, refused for another reason */
		if (dist < best && dist < strlen(name) && dist < n - 3) {
			best = dist;
			snprintf(out, len, "%s", cand);
		} else if (dist == best && out[0] && strcmp(cand, out) < 0) {
			snprintf(out, len, "%s", cand);
		}
	}
	closedir(d);
}

/* Adds the service keys of owner (NULL: the core).  Service keys share
 * one namespace, [service NAME], so a key another plugin (or the core)
 * already declares is refused at this plugin's header line, naming both;
 * two instances of one plugin declare the same table and share it. */
static void merge_service_keys(regent_config *c, const regent_config_key *keys,
                               const char *plugin, const regent_cfg_section *owner)
{
	for (size_t i = 0; keys && keys[i].name; i++) {
		const regent_config_key *have =
		        regent_config_key_find(c->service_keys, c->nservice_keys, keys[i].name);
		if (have) {
			const regent_cfg_section *o = c->service_key_owners[have - c->service_keys];
			if (o && owner && strcmp(o->lp->desc->name, plugin) == 0)
				continue; /* another instance of the same plugin */
			if (!o)
				regent_config_add_error(c, owner ? owner->line : 0,
				                        "[%s]: plugin %s declares the service key \"%s\", "
				                        "which is the core's own: two owners cannot share "
				                        "a [service] key",
				                        owner ? owner->header : "?", plugin, keys[i].name);
			else
				regent_config_add_error(c, owner ? owner->line : 0,
				                        "[%s]: plugin %s declares the service key \"%s\", "
				                        "already declared by plugin %s ([%s] at line %d): "
				                        "two plugins cannot share a [service] key",
				                        owner ? owner->header : "?", plugin, keys[i].name,
				                        o->lp->desc->name, o->header, o->line);
			continue;
		}
		c->service_keys = regent_xrealloc(c->service_keys,
		                                  sizeof(*c->service_keys) * (c->nservice_keys + 2));
		c->service_key_owners = regent_xrealloc(
		        c->service_key_owners, sizeof(*c->service_key_owners) * (c->nservice_keys + 1));
		c->service_key_owners[c->nservice_keys] = owner;
		c->service_keys[c->nservice_keys++] = keys[i];
		memset(&c->service_keys[c->nservice_keys], 0, sizeof(*c->service_keys));
	}
}

/* A plugin's own check of its section: a context without an agent (no
 * loop, no HTTP, config only). */
static void plugin_validate(regent_config *c, regent_cfg_section *s)
{
	const regent_plugin_ops *ops = s->lp->desc->ops;
	if (!ops->validate)
		return;
	regent_ctx ctx = {
		.cfg = c,
		.sec = s,
		.desc = s->lp->desc,
		.kind = s->lp->desc->kind,
		.healthy = true,
		.validate_purpose = c->validate_purpose ? c->validate_purpose : REGENT_VALIDATE_CHECK,
	};
	ctx.who = regent_xasprintf("%s %s", regent_kind_name(ctx.kind), s->name);
	size_t before = c->nerrors;
	int rc = ops->validate(&ctx, &regent_host_table);
	if (rc < 0 && c->nerrors == before)
		regent_config_add_error(c, s->line, "[%s]: rejected by the plugin (%s)", s->header,
		                        strerror(-rc));
	free(ctx.who);
	free(ctx.last_warning); /* a warning logged from validate() */
}

/* Drops the plugin references binding took (regent_config_unref). */
static void unbind(regent_config *c)
{
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->lp) {
			regent_plugin_unref(c->sections[i]->lp);
			c->sections[i]->lp = NULL;
		}
}

void regent_config_bind(regent_config *c, const char *plugin_dir_override)
{
	if (!c->agent || c->unbind)
		return; /* the file could not be read, or bound already */
	c->unbind = unbind;
	const char *dir = plugin_dir_override;
	const regent_cfg_value *v = regent_cfg_find(c->agent, "plugin_dir");
	if (!dir && v && v->set)
		dir = v->raw;
	if (!dir)
		dir = regent_default_plugin_dir();
	regent_buf unloaded = {0}; /* "[sink stat]", ... */
	c->service_keys = regent_xcalloc(1, sizeof(*c->service_keys));
	merge_service_keys(c, regent_core_service_keys, "core", NULL);
	for (size_t i = 0; i < c->nsections; i++) {
		regent_cfg_section *s = c->sections[i];
		if (s->kind != REGENT_SECTION_SOURCE && s->kind != REGENT_SECTION_STORE &&
		    s->kind != REGENT_SECTION_SINK)
			continue;
		if (!regent_plugin_name_valid(s->plugin)) {
			/* reported at the header; never a path */
			regent_buf_printf(&unloaded, "%s[%s]", unloaded.len ? " or " : "", s->header);
			continue;
		}
		char err[1024];
		s->lp = regent_plugin_load(dir, s->plugin, (int)s->kind, err, sizeof(err));
		if (!s->lp) {
			char near[65] = "", *so = regent_xasprintf("%s/%s.so", dir, s->plugin);
			if (access(so, F_OK) != 0) /* a name that is not there: a typo? */
				suggest_plugin(dir, s->plugin, near, sizeof(near));
			free(so);
			if (near[0])
				regent_config_add_error(c, s->line, "[%s]: %s (did you mean [%s %s]?)",
				                        s->header, err, regent_kind_name((int)s->kind),
				                        near);
			else
				regent_config_add_error(c, s->line, "[%s]: %s", s->header, err);
			regent_buf_printf(&unloaded, "%s[%s]", unloaded.len ? " or " : "", s->header);
			continue;
		}
		regent_config_validate_section(c, s, s->lp->config_keys,
		                               regent_config_keys_count(s->lp->config_keys), NULL);
		merge_service_keys(c, s->lp->service_keys, s->lp->desc->name, s);
	}
	for (size_t i = 0; i < c->nsections; i++) {
		regent_cfg_section *s = c->sections[i];
		if (s->kind != REGENT_SECTION_SERVICE)
			continue;
		regent_config_validate_section(c, s, c->service_keys, c->nservice_keys, unloaded.data);
	}
	regent_buf_free(&unloaded);
	/* Let each plugin check its own section's meaning, whatever went
	 * wrong elsewhere (every error of the file in one run), unless one of
	 * the section's own values could not be read: its checks would run
	 * on a value that is not there. */
	for (size_t i = 0; i < c->nsections; i++)
		if (c->sections[i]->lp && !c->sections[i]->blocked)
			plugin_validate(c, c->sections[i]);
	regent_config_sort_errors(c);
}

regent_config *regent_config_load(const char *path, const char *plugin_dir_override)
{
	return regent_config_load_for(path, plugin_dir_override, REGENT_VALIDATE_CHECK);
}

regent_config *regent_config_load_for(const char *path, const char *plugin_dir_override,
                                      int purpose)
{
	regent_config *c = regent_config_parse(path);
	c->validate_purpose = purpose;
	regent_config_bind(c, plugin_dir_override);
	return c;
}
