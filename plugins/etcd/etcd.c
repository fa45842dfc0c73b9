/*
 * etcd.c - the etcd store plugin (etcd v3 JSON gateway, /v3/...): its
 * configuration keys, validation, and the lifecycle (create, start,
 * stop, destroy) that ties the parts together:
 *   registration (etcd_reg.c): one lease per agent, kept across restarts,
 *     each local instance a key <prefix>/<service>/<id> holding its JSON;
 *   discovery (etcd_disc.c, etcd_view.c, only when this host has a
 *     sink): a paged range read of the prefix, then one watch stream;
 *   calls, failover, auth and the recovery probe (etcd_call.c).
 * start() returns REGENT_PENDING and the instance calls host->started()
 * once it holds its lease with its keys written (and, when it watches,
 * once its first read is complete).
 *
 * Owns: the plugin state (struct etcd) and its timers' lifetimes.
 */
#include "etcd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const regent_config_key config_keys[] = {
	{"endpoints", REGENT_CFG_LIST, "http://127.0.0.1:2379", false, 0, 0,
	 "etcd client URLs (http:// or https://), tried in turn on failure"},
	{"prefix", REGENT_CFG_STRING, "/backends", false, 0, 0,
	 "key prefix: instances are <prefix>/<service>/<id>"},
	{"ttl", REGENT_CFG_DURATION, "15s", false, 2000, 3600000,
	 "lease TTL (whole seconds); kept alive every ttl/3"},
	{"timeout", REGENT_CFG_DURATION, "3s", false, 100, 600000,
	 "timeout of one request (the watch stream has none)"},
	{"backoff_initial", REGENT_CFG_DURATION, "200ms", false, 1, 600000,
	 "first retry delay after a failure"},
	{"backoff_max", REGENT_CFG_DURATION, "10s", false, 1, 3600000,
	 "cap of the exponential retry delay (jitter +-20%)"},
	{"revoke_timeout", REGENT_CFG_DURATION, "2s", false, 100, 60000,
	 "how long stopping may spend revoking the lease"},
	{"watch_idle_timeout", REGENT_CFG_DURATION, "11m", false, 0, 86400000,
	 "reconnect a watch silent this long (etcd sends progress every 10m); 0 = never"},
	{"deregister_on_stop", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "revoke the lease when the agent stops (hosts being decommissioned); by default "
	 "a stop keeps the keys and a restart re-attaches to the lease"},
	{"reconcile_grace", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "after re-attaching, keys of the lease no source reported within this are deleted"},
	{"max_value_size", REGENT_CFG_INT, "1572864", false, 64, 1073741824,
	 "bytes: a registry value larger than this is skipped with a warning"},
	{"max_response_size", REGENT_CFG_INT, "16777216", false, 65536, 1073741824,
	 "bytes: the largest answer (range page, watch line) read; pages shrink to fit"},
	{"check_interval", REGENT_CFG_DURATION, "1s", false, 0, 60000,
	 "while a watch or write is open, check its member this often (status, require-leader) "
	 "and leave one that does not answer within it; 0 = off"},
	{"username", REGENT_CFG_STRING, NULL, false, 0, 0, "etcd user (enables auth)"},
	{"password", REGENT_CFG_STRING, NULL, false, 0, 0, "the user's password (never logged)"},
	{"ca", REGENT_CFG_STRING, NULL, false, 0, 0, "CA bundle to verify https endpoints"},
	{"cert", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate (PEM) for https"},
	{"key", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate's private key (PEM)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

void kick(etcd *e)
{
	if (e->stopping || !e->started)
		return;
	reg_kick(e);
	disc_kick(e);
}

static bool file_readable(regent_ctx *ctx, const regent_host *h, const char *key)
{
	const char *p = h->cfg_string(ctx, key);
	if (p && access(p, R_OK) != 0) {
		h->cfg_error(ctx, key, "cannot read \"%s\": %s", p, strerror(errno));
		return false;
	}
	return true;
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	const char *const *eps;
	size_t n = h->cfg_list(ctx, "endpoints", &eps);
	if (n == 0) {
		h->cfg_error(ctx, "endpoints", "at least one endpoint is needed");
		rc = -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *u = eps[i];
		const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
		                   : strncmp(u, "https://", 8) == 0 ? u + 8
		                                                    : NULL;
		const char *at = strrchr(u, '@');
		if (at) {
			/* Never echo user info: it may hold a password. */
			h->cfg_error(ctx, "endpoints",
			             "\"...@%s\": user info in an endpoint URL is not supported; use "
			             "username and password",
			             at + 1);
			rc = -EINVAL;
		} else if (!rest || !rest[0] || strpbrk(rest, " \t?#")) {
			h->cfg_error(ctx, "endpoints",
			             "\"%s\" is not an http:// or https:// URL of the form "
			             "scheme://host:port (no query or spaces)",
			             u);
			rc = -EINVAL;
		}
	}
	char *p = etcd_normalize_prefix(h, h->cfg_string(ctx, "prefix"));
	if (!p) {
		h->cfg_error(ctx, "prefix", "must be empty or start with '/', printable, no spaces");
		rc = -EINVAL;
	}
	free(p);
	bool hu = h->cfg_is_set(ctx, "username"), hp = h->cfg_is_set(ctx, "password");
	if (hu != hp) {
		h->cfg_error(ctx, hu ? "password" : "username", "username and password go together");
		rc = -EINVAL;
	}
	if (hu && !(h->cfg_string(ctx, "username") && h->cfg_string(ctx, "username")[0])) {
		h->cfg_error(ctx, "username", "must not be empty");
		rc = -EINVAL;
	}
	if (h->cfg_is_set(ctx, "key") && !h->cfg_is_set(ctx, "cert")) {
		h->cfg_error(ctx, "key", "a client key needs cert too");
		rc = -EINVAL;
	}
	if (!file_readable(ctx, h, "ca") || !file_readable(ctx, h, "cert") ||
	    !file_readable(ctx, h, "key"))
		rc = -EINVAL;
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	etcd *e = h->xcalloc(1, sizeof(*e));
	e->ctx = ctx;
	e->h = h;
	const char *const *eps;
	e->neps = h->cfg_list(ctx, "endpoints", &eps);
	if (e->neps == 0) {
		free(e);
		return -EINVAL;
	}
	e->eps = e->h->xcalloc(e->neps, sizeof(*e->eps));
	for (size_t i = 0; i < e->neps; i++) {
		e->eps[i] = e->h->xstrdup(eps[i]);
		size_t l = strlen(e->eps[i]);
		while (l > 0 && e->eps[i][l - 1] == '/')
			e->eps[i][--l] = '\0';
	}
	e->prefix = etcd_normalize_prefix(h, h->cfg_string(ctx, "prefix"));
	if (!e->prefix) {
		for (size_t i = 0; i < e->neps; i++)
			free(e->eps[i]);
		free(e->eps);
		free(e);
		return -EINVAL;
	}
	e->kprefix = e->h->xasprintf("%s/", e->prefix);
	e->kend = etcd_prefix_end(h, e->kprefix, strlen(e->kprefix), &e->kend_len);
	e->ttl_s = (int64_t)((h->cfg_duration_ms(ctx, "ttl") + 999) / 1000);
	e->timeout_ms = h->cfg_duration_ms(ctx, "timeout");
	e->revoke_ms = h->cfg_duration_ms(ctx, "revoke_timeout");
	e->watch_idle_ms = h->cfg_duration_ms(ctx, "watch_idle_timeout");
	e->grace_ms = h->cfg_duration_ms(ctx, "reconcile_grace");
	e->check_ms = h->cfg_duration_ms(ctx, "check_interval");
	e->dereg_on_stop = h->cfg_bool(ctx, "deregister_on_stop");
	e->max_value = (size_t)h->cfg_int(ctx, "max_value_size");
	e->max_body = (size_t)h->cfg_int(ctx, "max_response_size");
	e->user = h->cfg_is_set(ctx, "username") ? h->cfg_string(ctx, "username") : NULL;
	e->password = h->cfg_is_set(ctx, "password") ? h->cfg_string(ctx, "password") : NULL;
	if (e->user && !e->password)
		e->user = NULL;
	e->ca = h->cfg_string(ctx, "ca");
	e->cert = h->cfg_string(ctx, "cert");
	e->key = h->cfg_string(ctx, "key");
	regent_backoff bo = {.initial_ms = h->cfg_duration_ms(ctx, "backoff_initial"),
	                     .max_ms = h->cfg_duration_ms(ctx, "backoff_max")};
	if (bo.max_ms < bo.initial_ms)
		bo.max_ms = bo.initial_ms;
	e->auth_bo = e->reg_bo = e->disc_bo = bo;
	e->regs = e->h->map_new();
	e->lease_ttl = e->ttl_s;
	e->fast_left = 2 * e->neps;
	e->suspect_until = e->h->xcalloc(e->neps, sizeof(*e->suspect_until));
	pager_reset(&e->range);
	pager_reset(&e->recon);

	for (int i = 0; i < OP_N; i++) {
		char *l = e->h->xasprintf("op=\"%s\"", etcd_op_names[i]);
		e->m_ops[i] = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
		                        "Requests a store made to its registry, by operation.", l);
		e->m_errs[i] = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
		                         "Requests of a store that failed, by operation.", l);
		e->m_lat[i] = h->metric(ctx, REGENT_METRIC_HISTOGRAM, "regent_store_request_seconds",
		                        "Duration of a store's requests, by operation.", l);
		free(l);
	}
	e->m_put = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
	                     "Requests a store made to its registry, by operation.", "op=\"put\"");
	e->m_del = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
	                     "Requests a store made to its registry, by operation.",
	                     "op=\"delete\"");
	/* The same ops in both: keys a failed txn did not write. */
	e->m_put_err = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
	                         "Requests of a store that failed, by operation.", "op=\"put\"");
	e->m_del_err = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
	                         "Requests of a store that failed, by operation.",
	                         "op=\"delete\"");
	e->m_reconnects = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_watch_reconnects_total",
	                            "Watch streams that ended and were started again.", NULL);
	e->m_events = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_watch_events_total",
	                        "Registry change events received by a store's watch.", NULL);
	e->m_resyncs = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_compactions_total",
	                         "Watches canceled by a compaction (followed by a full read).",
	                         NULL);
	e->m_keys = h->metric(ctx, REGENT_METRIC_GAUGE, "regent_store_registered_keys",
	                      "Keys this agent holds in its registry.", NULL);
	e->m_skipped = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_skipped_keys_total",
	                         "Registry keys skipped (bad or too large values).", NULL);
	e->m_leases = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_leases_granted_total",
	                        "Leases (or sessions) a store obtained.", NULL);
	*self = e;
	return 0;
}

static int start(void *self)
{
	etcd *e = self;
	e->auth_timer = e->h->timer_new(e->ctx, e);
	e->reg_timer = e->h->timer_new(e->ctx, e);
	e->ka_timer = e->h->timer_new(e->ctx, e);
	e->disc_timer = e->h->timer_new(e->ctx, e);
	e->stop_timer = e->h->timer_new(e->ctx, e);
	e->kick_timer = e->h->timer_new(e->ctx, e);
	e->grace_timer = e->h->timer_new(e->ctx, e);
	e->probe_timer = e->h->timer_new(e->ctx, e);
	e->hedge_timer = e->h->timer_new(e->ctx, e);
	e->want = e->h->want_catalog(e->ctx);
	lease_file_load(e);
	e->dstate = e->want ? D_IDLE : D_OFF;
	e->started = true;
	e->h->log(e->ctx, REGENT_LOG_INFO, "endpoints %s%s, prefix %s/, ttl %lld s%s%s",
	          e->eps[0], e->neps > 1 ? " (+ more)" : "", e->prefix, (long long)e->ttl_s,
	          e->user ? ", auth as " : "", e->user ? e->user : "");
	kick(e);
	/* Nothing to read or re-attach: a probe proves the registry answers
	 * (registrations reported right after start() come in via the kick
	 * timer first). */
	if (!e->want && !e->adopt && !busy(e, OP_AUTH) &&
	    call_start(e, OP_PROBE, "/v3/maintenance/status", json_object(), NULL) < 0)
		fail_start(e, -EIO, "cannot start a request to etcd");
	reg_kick_soon(e);
	probe_want(e);
	return REGENT_PENDING;
}

static int stop(void *self)
{
	etcd *e = self;
	e->stopping = true;
	for (int i = 0; i < OP_N; i++)
		if (i != OP_AUTH)
			call_cancel(e, &e->calls[i]);
	uv_timer_stop(e->disc_timer);
	uv_timer_stop(e->probe_timer);
	probe_cancel(e);
	disc_empty_cancel(e);
	return reg_stop(e);
}

static void destroy(void *self)
{
	etcd *e = self;
	for (int i = 0; i < OP_N; i++)
		call_cancel(e, &e->calls[i]);
	txns_abandon(e);
	disc_empty_cancel(e);
	free(e->note);
	e->h->timer_close(&e->auth_timer);
	e->h->timer_close(&e->reg_timer);
	e->h->timer_close(&e->ka_timer);
	e->h->timer_close(&e->disc_timer);
	e->h->timer_close(&e->stop_timer);
	e->h->timer_close(&e->kick_timer);
	e->h->timer_close(&e->grace_timer);
	e->h->timer_close(&e->probe_timer);
	probe_cancel(e);
	e->h->timer_close(&e->hedge_timer);
	free(e->suspect_until);
	regent_map_iter it = {0};
	void *v;
	while (e->h->map_next(e->regs, &it, NULL, &v))
		reg_free(v);
	e->h->map_free(e->regs, NULL);
	view_clear(e, &e->cur);
	view_clear(e, &e->pending);
	for (int i = 0; i < COMP_N; i++)
		free(e->err[i]);
	pager_reset(&e->range);
	pager_reset(&e->recon);
	free(e->lease_file);
	free(e->file_prev);
	free(e->cluster_id);
	free(e->watch_err);
	free(e->wev);
	free(e->token);
	free(e->prefix);
	free(e->kprefix);
	free(e->kend);
	for (size_t i = 0; i < e->neps; i++)
		free(e->eps[i]);
	free(e->eps);
	free(e);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), register_instance,
                                           deregister_instance};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("etcd"),
	.kind = REGENT_KIND_STORE,
	.version = REGENT_PLUGIN_VERSION, /* regent's own (CMakeLists.txt) */
	.description = "etcd v3 store: one lease per agent, range read + watch",
	.config_keys = config_keys,
	.ops = &ops,
	.store_ops = &store_ops,
};
