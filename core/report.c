/* report.c - what the agent reports about itself, rendered in one place:
 * the /metrics page (metrics.c's series and process_* metrics, the
 * catalog's gauges cached per snapshot, this host's instances, the start
 * time) and the /healthz document, built with jansson.  The host table
 * (host.c) only binds them. */
#include "report.h"
#include "catalog.h"
#include "config.h"
#include "localset.h"
#include "log.h"
#include "metrics.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void regent_report_metrics(regent_agent *a, regent_buf *out)
{
	regent_metrics_write(a->metrics, out);
	const regent_catalog *cat = regent_cat_current(a->cat);
	const regent_cfg_value *per = regent_cfg_find(a->cfg->agent, "metrics_per_service");
	bool per_service = per && per->i;
	/* Rendered once per catalog snapshot: by default from figures the flush
	 * keeps (O(1)); per service O(services + nodes), once per snapshot. */
	if (a->counts_of != cat || !a->counts_text || a->counts_per != per_service) {
		regent_buf c = {0};
		regent_cat_metrics_write(a->cat, per_service, &c);
		regent_buf_add(&c, "", 1);
		if (a->counts_of)
			regent_catalog_unref(a->counts_of);
		free(a->counts_text);
		a->counts_of = regent_catalog_ref(cat);
		a->counts_text = c.data;
		a->counts_per = per_service;
	}
	regent_buf_printf(out, "%s", a->counts_text);
	regent_buf_printf(out,
	                  "# HELP regent_local_instances Instances this host's sources report.\n"
	                  "# TYPE regent_local_instances gauge\nregent_local_instances %zu\n"
	                  "# HELP process_start_time_seconds Start time of the process since the "
	                  "Unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
	                  "process_start_time_seconds %.3f\n",
	                  regent_localset_size(a->local), (double)a->start_wall_ns / 1e9);
}

/* A JSON string of text from anywhere (a plugin's reason may quote what a
 * daemon answered): jansson refuses text that is not UTF-8, so such text
 * goes with its invalid bytes written \xNN, as in the log. */
static json_t *text_json(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s), cap = n * 4 + 4;
	char *esc = regent_xmalloc(cap);
	regent_log_escape(s, n, esc, cap);
	j = json_string(esc);
	free(esc);
	return j ? j : json_string("?");
}

/* One entry per section: an instance on trial is not listed (the running
 * one it is to replace speaks for the section, with a note). */
char *regent_report_health(const regent_agent *a)
{
	json_t *doc = json_object(), *plugins = json_object();
	bool ok = true;
	for (const regent_ctx *c = a ? a->ctxs : NULL; c; c = c->next) {
		if (c->replaces)
			continue;
		bool healthy = c->healthy && !c->start_error;
		const char *reason = c->start_error ? c->start_error : c->health_reason;
		const char *note = c->candidate ? "a new configuration is on trial"
		                   : c->note   ? c->note
		                   : c->health_note ? c->health_note
		                   : c->state == CTX_PENDING && !c->start_error
		                       ? "starting: not confirmed yet"
		                       : NULL;
		ok = ok && healthy;
		json_t *p = json_object();
		json_object_set_new(p, "healthy", json_boolean(healthy));
		if (reason)
			json_object_set_new(p, "reason", text_json(reason));
		if (note)
			json_object_set_new(p, "note", text_json(note));
		char *key = regent_xasprintf("%s %s", regent_kind_name(c->kind), c->sec->name);
		json_object_set_new(plugins, key, p);
		free(key);
	}
	json_object_set_new(doc, "plugins", plugins);
	json_object_set_new(doc, "ok", json_boolean(ok));
	/* The file of the last reload was refused: the sections above still run the
	 * previous configuration (a refusal does not make the agent unhealthy). */
	if (a && a->reload_note)
		json_object_set_new(doc, "note", text_json(a->reload_note));
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return text ? text : regent_xstrdup("{\"plugins\":{},\"ok\":false,\"note\":\"out of memory\"}");
}
