/* flakystore.c - a test-only store for the stats tests: it registers
 * nothing in any registry, but its health follows a file ("the registry
 * is down while down_file exists"), and it counts what it is asked to do
 * through the core's metrics, as a real store would:
 *   regent_store_ops_total{plugin,op="register"|"deregister"}
 *   regent_store_errors_total{plugin,op="read"} (one per failed check)
 *   regent_watch_reconnects_total{plugin} (one per recovery). */
#include <regent/plugin.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	uv_timer_t *timer;
	bool down;
	regent_metric *m_reg, *m_dereg, *m_err, *m_reconn;
} state;

static const regent_config_key keys[] = {
	{"down_file", REGENT_CFG_STRING, NULL, true, 0, 0, "unhealthy while this file exists"},
	{"interval", REGENT_CFG_DURATION, "50ms", false, 10, 60000, "how often to look"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void tick(uv_timer_t *t)
{
	state *s = t->data;
	const char *f = s->host->cfg_string(s->ctx, "down_file");
	bool down = access(f, F_OK) == 0;
	if (down) {
		s->host->metric_add(s->m_err, 1);
		if (!s->down)
			s->host->set_health(s->ctx, false, "registry unreachable: test file exists");
	} else if (s->down) {
		s->host->metric_add(s->m_reconn, 1);
		s->host->set_health(s->ctx, true, NULL);
	}
	s->down = down;
}

static void reg(void *self, const regent_instance *inst)
{
	state *s = self;
	(void)inst;
	s->host->metric_add(s->m_reg, 1);
}

static void dereg(void *self, const regent_instance *inst)
{
	state *s = self;
	(void)inst;
	s->host->metric_add(s->m_dereg, 1);
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	static const char ops_help[] = "Operations a store carried out, by kind.";
	static const char err_help[] = "Store operations that failed, by kind.";
	s->m_reg = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total", ops_help,
	                     "op=\"register\"");
	s->m_dereg = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_ops_total",
	                       ops_help, "op=\"deregister\"");
	s->m_err = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_store_errors_total", err_help,
	                     "op=\"read\"");
	s->m_reconn = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_watch_reconnects_total",
	                        "Watch streams that ended and were started again.", NULL);
	*self = s;
	return 0;
}

static int start(void *self)
{
	state *s = self;
	s->timer = calloc(1, sizeof(*s->timer));
	if (!s->timer)
		return -ENOMEM;
	uv_timer_init(s->host->loop(s->ctx), s->timer);
	s->timer->data = s;
	uv_timer_start(s->timer, tick, 0, s->host->cfg_duration_ms(s->ctx, "interval"));
	if (s->host->want_catalog(s->ctx)) {
		/* One (empty) full read, so the catalog does not wait for us. */
		s->host->catalog_sync_begin(s->ctx);
		s->host->catalog_sync_end(s->ctx);
	}
	return 0;
}

static int stop(void *self)
{
	state *s = self;
	if (s->timer)
		uv_timer_stop(s->timer);
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	free(h);
}

static void destroy(void *self)
{
	state *s = self;
	if (s->timer)
		uv_close((uv_handle_t *)s->timer, on_closed);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), reg, dereg};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("stats_flakystore"),
	.kind = REGENT_KIND_STORE,
	.version = "test",
	.description = "health follows a file (stats tests only)",
	.config_keys = keys,
	.ops = &ops,
	.kind_ops = &store_ops,
};
