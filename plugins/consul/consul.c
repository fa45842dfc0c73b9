/* consul.c - the Consul store plugin: its configuration keys and their
 * validation, the instance's lifecycle (create, start, stop, destroy:
 * stop hands registration to consul_reg.c, the state file to
 * consul_state.c, discovery to consul_disc.c and consul_read.c), the HTTP helpers every
 * part sends its requests with (host->http_request on the core's loop)
 * and the plugin's health.
 *
 * Registration, the reconcile of a start and the stop-time
 * deregistrations: consul_reg.c; the reload handoff: consul_state.c;
 * discovery: consul_disc.c, consul_read.c.  The ACL token goes out only as the
 * X-Consul-Token header and is never logged.
 *
 * Owns: the instance (struct consul), its configuration, its metrics. */
#include "consul_int.h"

#include <regent/plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *const m_names[] = {"register", "deregister", "pass", "catalog", "health", "list"};

static const regent_config_key keys[] = {
	{"address", REGENT_CFG_STRING, "http://127.0.0.1:8500", false, 0, 0,
	 "the local Consul agent: http://host:port, https://host:port or unix:///path"},
	{"token", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "ACL token, sent as X-Consul-Token (never logged)"},
	{"datacenter", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "datacenter to read the catalog from (default: the agent's)"},
	{"ca", REGENT_CFG_STRING, NULL, false, 0, 0, "CA bundle to verify an https agent"},
	{"cert", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate (https)"},
	{"key", REGENT_CFG_STRING, NULL, false, 0, 0, "client certificate's key (https)"},
	{"tag", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "discover only instances carrying all these tags"},
	{"ignore_services", REGENT_CFG_LIST, "consul", false, 0, 0,
	 "service names never read into the catalog"},
	{"ttl", REGENT_CFG_DURATION, "15s", false, 1000, 3600000,
	 "TTL of each instance's check (passed every ttl/3)"},
	{"deregister_after", REGENT_CFG_DURATION, "1m", false, 1000, 86400000,
	 "DeregisterCriticalServiceAfter (Consul floors it at 1m and reaps every 30 s)"},
	{"health_states", REGENT_CFG_LIST, "passing", false, 0, 0,
	 "check states that count as serving: passing, or passing, warning"},
	{"deregister_on_stop", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "deregister every service when the agent exits (a host being decommissioned); "
	 "default: keep them, a restarted regent takes them over"},
	{"reconcile_wait", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "on start, how long services this node registered earlier wait for a source to "
	 "report them again before they are deregistered"},
	{"wait", REGENT_CFG_DURATION, "5m", false, 1000, 600000,
	 "how long a blocking query waits for a change"},
	{"timeout", REGENT_CFG_DURATION, "10s", false, 100, 300000,
	 "timeout of a single non-blocking request"},
	{"first_read_wait", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "how long the first read of the catalog waits for every service; then the services "
	 "not read yet are unknown to the sinks until read (0: wait for all)"},
	{"max_response_size", REGENT_CFG_INT, "67108864", false, 65536, 1073741824,
	 "bytes: the largest answer read (a service's health answer is ~3 KB an instance, "
	 "the datacenter's checks ~0.5 KB each)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

void consul_count(consul *c, regent_metric **m, int op)
{
	if (m[op])
		c->h->metric_add(m[op], 1);
}

/* Two parts: registration (with the listing of what the agent holds) and
 * discovery; the host joins them. */
void consul_update_health(consul *c)
{
	/* The reasons read as the sides' warnings (consul_outage_note), so the
	 * core says "unhealthy (the warning above)" instead of a second one;
	 * a side that works again has no note (its last problem is past). */
	char regr[400], discr[400];
	bool reg_ok = !(c->reg_failing || c->list_failing), disc_ok = !c->disc_failing;
	snprintf(regr, sizeof regr, "%s; %s", c->reg_problem, CONSUL_REG_THEN);
	snprintf(discr, sizeof discr, "%s; %s", c->disc_problem, CONSUL_DISC_THEN);
	c->h->health_part(c->ctx, "registration", reg_ok, reg_ok ? NULL : regr);
	c->h->health_part(c->ctx, "discovery", disc_ok, disc_ok ? NULL : discr);
}

void consul_outage_note(consul *c, regent_failure *f, bool ongoing, regent_log_level level,
                        const char *part, const char *msg, const char *then)
{
	uint64_t now = c->h->now_ms();
	bool remind;
	/* Any failure at the level the outage was told at repeats it (the
	 * texts name each registration or service): only a new level is news. */
	regent_log_level at =
	        c->h->failure_note(f, ongoing, level, ongoing && f->level == level, now, &remind);
	char took[48];
	if (remind)
		c->h->log(c->ctx, at, "%s: %s; %s (still failing after %s)", part, msg, then,
		          c->h->failure_text(f, now, took, sizeof took));
	else
		c->h->log(c->ctx, at, "%s: %s; %s", part, msg, then);
}

void consul_outage_end(consul *c, const regent_failure *f, const char *what)
{
	char took[48];
	c->h->log(c->ctx, REGENT_LOG_INFO, "%s again after %s", what,
	          c->h->failure_text(f, c->h->now_ms(), took, sizeof took));
}

regent_http_req *consul_send(consul *c, const char *method, const char *path,
                                 const char *body, uint64_t timeout_ms,
                                 regent_http_done_cb cb, void *arg, int *err)
{
	char *url = c->h->xasprintf("%s%s", c->base, path);
	const char *hdrs[3];
	size_t nh = 0;
	for (size_t i = 0; i < c->nheaders; i++)
		hdrs[nh++] = c->headers[i];
	if (body)
		hdrs[nh++] = "Content-Type: application/json";
	regent_http_opts o = {
		.size = sizeof(o),
		.method = method,
		.url = url,
		.unix_socket = c->unix_path,
		.headers = hdrs,
		.nheaders = nh,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.timeout_ms = timeout_ms,
		.connect_timeout_ms = timeout_ms < 5000 ? timeout_ms : 5000,
		.max_body = c->max_body,
		.ca_file = c->ca,
		.cert_file = c->cert,
		.key_file = c->key,
		.on_done = cb,
		.arg = arg,
	};
	regent_http_req *r = c->h->http_request(c->ctx, &o, err);
	free(url);
	return r;
}

void consul_describe(consul *c, const regent_http_result *res, char *buf, size_t len)
{
	if (res->error == -EFBIG)
		snprintf(buf, len,
		         "the answer is larger than max_response_size (%zu bytes): raise [store "
		         "consul] max_response_size",
		         c->max_body);
	else
		c->h->http_describe(res, buf, len);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                          */
/* ------------------------------------------------------------------ */

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	char why[256];
	char *base = NULL, *up = NULL;
	const char *addr = h->cfg_string(ctx, "address");
	if (consul_parse_address(h, addr, &base, &up, why, sizeof(why)) < 0) {
		h->cfg_error(ctx, "address", "%s", why);
		rc = -EINVAL;
	}
	const char *tok = h->cfg_string(ctx, "token");
	if (tok) {
		bool bad = !tok[0];
		for (const char *p = tok; *p; p++)
			bad |= (unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f;
		if (bad) {
			/* Never echo the token itself. */
			h->cfg_error(ctx, "token", "must be printable ASCII without blanks");
			rc = -EINVAL;
		}
	}
	const char *dc = h->cfg_string(ctx, "datacenter");
	if (dc) {
		bool bad = !dc[0];
		for (const char *p = dc; *p; p++)
			bad |= !(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') ||
			         *p == '-' || *p == '_' || *p == '.');
		if (bad) {
			h->cfg_error(ctx, "datacenter", "\"%s\" is not a datacenter name", dc);
			rc = -EINVAL;
		}
	}
	bool tls = base && strncmp(base, "https://", 8) == 0;
	static const char *const files[] = {"ca", "cert", "key"};
	for (size_t i = 0; i < 3; i++) {
		const char *f = h->cfg_string(ctx, files[i]);
		if (!f)
			continue;
		if (f[0] != '/') {
			h->cfg_error(ctx, files[i], "must be an absolute path, got \"%s\"", f);
			rc = -EINVAL;
		} else if (base && !tls) {
			h->cfg_error(ctx, files[i], "is only used with an https:// address");
			rc = -EINVAL;
		}
	}
	if (!h->cfg_string(ctx, "cert") != !h->cfg_string(ctx, "key")) {
		h->cfg_error(ctx, h->cfg_string(ctx, "cert") ? "key" : "cert",
		             "cert and key go together");
		rc = -EINVAL;
	}
	const char *const *tags;
	size_t nt = h->cfg_list(ctx, "tag", &tags);
	for (size_t i = 0; i < nt; i++)
		for (const char *p = tags[i]; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				h->cfg_error(ctx, "tag", "control character in a tag");
				rc = -EINVAL;
				break;
			}
	const char *const *st;
	size_t ns = h->cfg_list(ctx, "health_states", &st);
	bool has_passing = false;
	for (size_t i = 0; i < ns; i++) {
		if (strcmp(st[i], "passing") == 0)
			has_passing = true;
		else if (strcmp(st[i], "warning") != 0) {
			h->cfg_error(ctx, "health_states", "\"%s\" is not passing or warning", st[i]);
			rc = -EINVAL;
		}
	}
	if (!has_passing) {
		h->cfg_error(ctx, "health_states", "must include passing");
		rc = -EINVAL;
	}
	uint64_t dereg = h->cfg_duration_ms(ctx, "deregister_after");
	if (dereg < 60000) {
		char d[32], t[32], lo[32], hi[32];
		uint64_t ttl = h->cfg_duration_ms(ctx, "ttl");
		consul_duration(dereg, d, sizeof(d));
		consul_duration(ttl, t, sizeof(t));
		consul_duration(ttl + 60000, lo, sizeof(lo));
		consul_duration(ttl + 90000, hi, sizeof(hi));
		h->log(ctx, REGENT_LOG_WARN,
		       "deregister_after = %s: Consul raises DeregisterCriticalServiceAfter below 1m "
		       "to 1m and reaps every 30 s, so the services of a regent that died leave "
		       "the agent %s to %s after its last pass (they leave ?passing reads after "
		       "ttl = %s)",
		       d, lo, hi, t);
	}
	free(base);
	free(up);
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	consul *c = h->xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	c->h = h;
	char why[256];
	if (consul_parse_address(h, h->cfg_string(ctx, "address"), &c->base, &c->unix_path, why,
	                         sizeof(why)) < 0) {
		h->log(ctx, REGENT_LOG_ERROR, "address: %s", why);
		free(c);
		return -EINVAL;
	}
	c->shown = consul_redact_url(h, c->base);
	const char *tok = h->cfg_string(ctx, "token");
	if (tok && tok[0]) {
		c->token_hdr = c->h->xasprintf("X-Consul-Token: %s", tok);
		c->headers[c->nheaders++] = c->token_hdr;
	}
	c->ca = h->cfg_string(ctx, "ca");
	c->cert = h->cfg_string(ctx, "cert");
	c->key = h->cfg_string(ctx, "key");
	c->dc = h->cfg_string(ctx, "datacenter");
	c->ntags = h->cfg_list(ctx, "tag", &c->tags);
	c->nignore = h->cfg_list(ctx, "ignore_services", &c->ignore);
	c->ttl_ms = h->cfg_duration_ms(ctx, "ttl");
	c->dereg_ms = h->cfg_duration_ms(ctx, "deregister_after");
	c->wait_ms = h->cfg_duration_ms(ctx, "wait");
	c->timeout_ms = h->cfg_duration_ms(ctx, "timeout");
	c->max_body = (size_t)h->cfg_int(ctx, "max_response_size");
	c->first_wait_ms = h->cfg_duration_ms(ctx, "first_read_wait");
	c->reconcile_ms = h->cfg_duration_ms(ctx, "reconcile_wait");
	c->dereg_on_stop = h->cfg_bool(ctx, "deregister_on_stop");
	const char *const *st;
	size_t ns = h->cfg_list(ctx, "health_states", &st);
	for (size_t i = 0; i < ns; i++)
		c->states |= strcmp(st[i], "warning") == 0 ? CONSUL_STATE_WARNING : CONSUL_STATE_PASSING;
	if (!c->states)
		c->states = CONSUL_STATE_PASSING;
	c->regs = c->h->map_new();
	c->reg_bo.initial_ms = 200;
	c->reg_bo.max_ms = c->ttl_ms / 3 < 10000 ? (c->ttl_ms / 3 ? c->ttl_ms / 3 : 1) : 10000;
	*self = c;
	return 0;
}

static int start(void *self)
{
	consul *c = self;
	const regent_host *h = c->h;
	for (int i = 0; i < 6; i++) {
		char *l = c->h->xasprintf("op=\"%s\"", m_names[i]);
		c->m_req[i] = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
		                        "Requests a store made to its registry, by operation.",
		                        l);
		c->m_err[i] = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total",
		                        "Requests of a store that failed, by operation.", l);
		free(l);
	}
	c->m_rereg = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_consul_reregistrations_total",
	                       "Times instances the agent forgot were registered again.",
	                       NULL);
	c->m_registered = h->metric(c->ctx, REGENT_METRIC_GAUGE, "regent_consul_registered",
	                            "Instances the Consul agent acknowledged.", NULL);
	c->m_watched = h->metric(c->ctx, REGENT_METRIC_GAUGE, "regent_consul_watched_services",
	                         "Services in the catalog read from Consul.", NULL);
	c->m_reads = h->metric(c->ctx, REGENT_METRIC_COUNTER, "regent_consul_service_reads_total",
	                       "Reads of one service's health (it changed).", NULL);
	c->started = true;
	consul_state_open(c);
	char ttl[32], dereg[32];
	consul_duration(c->ttl_ms, ttl, sizeof(ttl));
	consul_duration(c->dereg_ms, dereg, sizeof(dereg));
	c->watching = h->want_catalog(c->ctx);
	h->log(c->ctx, REGENT_LOG_INFO, "agent %s%s%s, ttl %s, deregister after %s%s%s%s",
	       c->shown, c->unix_path ? " via " : "", c->unix_path ? c->unix_path : "", ttl, dereg,
	       c->token_hdr ? ", with an ACL token" : "",
	       c->watching ? ", watching the catalog" : ", registering only",
	       c->states & CONSUL_STATE_WARNING ? " (passing and warning count)" : "");
	c->recover_timer = h->timer_new(c->ctx, c);
	if (c->watching)
		consul_disc_start(c);
	consul_reg_start(c);
	return REGENT_PENDING;
}

static int stop(void *self)
{
	consul *c = self;
	regent_stop_reason why = c->h->stop_reason(c->ctx);
	c->stopping = true;
	consul_recover_stop(c);
	/* Discovery ends at once. */
	consul_disc_stop(c);
	return consul_reg_stop(c, why);
}

static void destroy(void *self)
{
	consul *c = self;
	c->stopping = true;
	consul_recover_stop(c);
	consul_reg_destroy(c);
	consul_disc_stop(c);
	consul_state_close(c);
	c->h->map_free(c->regs, NULL);
	free(c->base);
	free(c->shown);
	free(c->unix_path);
	free(c->token_hdr);
	free(c);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), consul_register_instance,
                                           consul_deregister_instance};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("consul"),
	.kind = REGENT_KIND_STORE,
	.version = REGENT_PLUGIN_VERSION, /* regent's own (CMakeLists.txt) */
	.description = "Consul: agent services with TTL checks, blocking-query discovery",
	.config_keys = keys,
	.ops = &ops,
	.store_ops = &store_ops,
};
