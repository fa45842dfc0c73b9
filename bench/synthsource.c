/* synthsource.c - a benchmark-only source: reports `count` synthetic
 * instances spread over `services` services, and optionally moves one
 * instance to a new port every `churn` interval, so the register side can
 * be measured without Docker.  Every instance's service port is 8000, or
 * with `service_port_base` B the s-th service's is B + s (a client then
 * gives each service a listener of its own: bench/run soak).
 *
 * The full listing is reported from a zero-delay timer, not from start():
 * the core ignores reports a source makes before its start() has returned
 * (core/host.c, h_local_up: ctx->state != CTX_STARTED). */
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	uv_timer_t *timer;
	uint64_t every;
	bool listed;
	int64_t count, services, next, port_base;
	unsigned gen;
} state;

static const regent_config_key keys[] = {
	{"count", REGENT_CFG_INT, "1000", false, 1, 1000000, "instances to report"},
	{"services", REGENT_CFG_INT, "100", false, 1, 100000, "services they spread over"},
	{"address", REGENT_CFG_STRING, "127.0.0.1", false, 0, 0, "address of every instance"},
	{"service_port_base", REGENT_CFG_INT, "0", false, 0, 65535,
	 "service port of the first service, the next one's +1 (0: every service 8000)"},
	{"churn", REGENT_CFG_DURATION, "0ms", false, 0, 3600000,
	 "move one instance to another port this often (0 = never)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void report(state *s, int64_t i, unsigned gen)
{
	char svc[32], id[96];
	snprintf(svc, sizeof(svc), "svc%05lld", (long long)(i % s->services));
	snprintf(id, sizeof(id), "%s/synth%07lld/8000", s->host->node(s->ctx), (long long)i);
	regent_instance in = {
		.service = svc,
		.id = id,
		.address = s->host->cfg_string(s->ctx, "address"),
		.port = (uint16_t)(10000 + (i + gen) % 50000),
		.service_port = (uint16_t)(s->port_base ? s->port_base + i % s->services : 8000),
	};
	s->host->local_up(s->ctx, &in);
}

static void list_all(state *s)
{
	s->host->local_resync_begin(s->ctx);
	for (int64_t i = 0; i < s->count; i++)
		report(s, i, 0);
	s->host->local_resync_end(s->ctx);
	s->host->log(s->ctx, REGENT_LOG_INFO, "reported %lld instances in %lld services",
	             (long long)s->count, (long long)s->services);
}

static void tick(uv_timer_t *t)
{
	state *s = t->data;
	if (!s->listed) {
		s->listed = true;
		list_all(s);
		if (s->every)
			uv_timer_start(s->timer, tick, s->every, s->every);
		return;
	}
	s->host->mark_change(s->ctx, s->host->wall_ns());
	report(s, s->next, ++s->gen);
	s->next = (s->next + 1) % s->count;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	s->count = h->cfg_int(ctx, "count");
	s->services = h->cfg_int(ctx, "services");
	s->port_base = h->cfg_int(ctx, "service_port_base");
	if (s->port_base && s->port_base + s->services - 1 > 65535) {
		h->log(ctx, REGENT_LOG_ERROR, "service_port_base %lld + %lld services passes port 65535",
		       (long long)s->port_base, (long long)s->services);
		free(s);
		return -EINVAL;
	}
	*self = s;
	return 0;
}

static int start(void *self)
{
	state *s = self;
	s->every = s->host->cfg_duration_ms(s->ctx, "churn");
	s->timer = calloc(1, sizeof(*s->timer));
	if (!s->timer)
		return -ENOMEM;
	uv_timer_init(s->host->loop(s->ctx), s->timer);
	s->timer->data = s;
	uv_timer_start(s->timer, tick, 0, 0);
	return 0;
}

static int stop(void *self)
{
	state *s = self;
	if (s->timer)
		uv_timer_stop(s->timer);
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	if (s->timer)
		uv_close((uv_handle_t *)s->timer, (uv_close_cb)free);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};
static const regent_source_ops source_ops = {sizeof(source_ops), NULL};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("synthsource"),
	.kind = REGENT_KIND_SOURCE,
	.version = "bench",
	.description = "synthetic instances (benchmarks only)",
	.config_keys = keys,
	.ops = &ops,
	.source_ops = &source_ops,
};
