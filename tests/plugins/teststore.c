/* teststore.c - a test-only store: an in-memory registry.  What is
 * registered appears in the catalog (when this host watches); every call
 * (and start, its confirmation, stop with its reason) is appended to an
 * optional log file so tests can see what reached it.  confirm_after
 * makes start() REGENT_PENDING and confirms (or, with confirm_error,
 * fails) through host->started() later: make-before-break tests. */
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	regent_instance *inst;
	struct entry *next;
} entry;

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	entry *all;
	FILE *log;
	uv_timer_t *timer;
	uv_timer_t *confirm;
	bool dirty, started;
} state;

static const regent_config_key keys[] = {
	{"log", REGENT_CFG_STRING, NULL, false, 0, 0, "append register/deregister calls here"},
	{"delay", REGENT_CFG_DURATION, "0ms", false, 0, 60000, "delay before the catalog sees a change"},
	{"stop_delay", REGENT_CFG_DURATION, "0ms", false, 0, 60000, "how long stop() takes"},
	{"confirm_after", REGENT_CFG_DURATION, "0ms", false, 0, 60000,
	 "0: start() proves itself at once; else start() is pending and host->started() "
	 "is called this long after"},
	{"confirm_error", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "with confirm_after: host->started() reports this failure instead"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void publish(state *s)
{
	const regent_host *h = s->host;
	if (!h->want_catalog(s->ctx))
		return;
	/* Group by service; a full sync each time. */
	h->catalog_sync_begin(s->ctx);
	for (entry *e = s->all; e; e = e->next) {
		const char *svc = e->inst->service;
		bool done = false;
		for (entry *p = s->all; p != e; p = p->next)
			if (strcmp(p->inst->service, svc) == 0)
				done = true;
		if (done)
			continue;
		const regent_instance *list[1024];
		size_t n = 0;
		for (entry *q = e; q && n < 1024; q = q->next)
			if (strcmp(q->inst->service, svc) == 0)
				list[n++] = q->inst;
		h->catalog_set(s->ctx, svc, list, n);
	}
	h->catalog_sync_end(s->ctx);
	s->dirty = false;
}

static void on_timer(uv_timer_t *t)
{
	state *s = t->data;
	if (s->dirty)
		publish(s);
}

static void changed(state *s)
{
	s->dirty = true;
	uint64_t d = s->host->cfg_duration_ms(s->ctx, "delay");
	if (d == 0)
		publish(s);
	else if (!uv_is_active((uv_handle_t *)s->timer))
		uv_timer_start(s->timer, on_timer, d, 0);
}

static void logf_(state *s, const char *what, const regent_instance *i)
{
	if (!s->log)
		return;
	fprintf(s->log, "%s %s %s %s:%u\n", what, i->id, i->service, i->address, i->port);
	fflush(s->log);
}

static entry **find(state *s, const char *id)
{
	entry **pp = &s->all;
	while (*pp && strcmp((*pp)->inst->id, id) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void reg(void *self, const regent_instance *inst)
{
	state *s = self;
	logf_(s, "register", inst);
	char *json = s->host->instance_encode(inst);
	regent_instance *copy = NULL;
	s->host->instance_decode(json, strlen(json), inst->service, inst->id, &copy);
	free(json);
	if (!copy)
		return;
	entry **pp = find(s, inst->id);
	if (*pp) {
		s->host->instance_free((*pp)->inst);
		(*pp)->inst = copy;
	} else {
		entry *e = calloc(1, sizeof(*e));
		e->inst = copy;
		*pp = e;
	}
	changed(s);
}

static void dereg(void *self, const regent_instance *inst)
{
	state *s = self;
	logf_(s, "deregister", inst);
	entry **pp = find(s, inst->id);
	if (!*pp)
		return;
	entry *e = *pp;
	*pp = e->next;
	s->host->instance_free(e->inst);
	free(e);
	changed(s);
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	const char *log = h->cfg_string(ctx, "log");
	if (log) {
		s->log = fopen(log, "a");
		if (!s->log) {
			int e = errno;
			h->log(ctx, REGENT_LOG_ERROR, "cannot open %s: %s", log, strerror(e));
			free(s);
			return -e;
		}
	}
	*self = s;
	return 0;
}

static const char *reason_name(regent_stop_reason r)
{
	switch (r) {
	case REGENT_STOP_EXIT: return "exit";
	case REGENT_STOP_REPLACED: return "replaced";
	case REGENT_STOP_REMOVED: return "removed";
	case REGENT_STOP_FAILED: return "failed";
	}
	return "?";
}

static void logline(state *s, const char *line)
{
	if (s->log) {
		fprintf(s->log, "%s\n", line);
		fflush(s->log);
	}
}

static void on_confirm(uv_timer_t *t)
{
	state *s = t->data;
	const char *err = s->host->cfg_string(s->ctx, "confirm_error");
	logline(s, err ? "confirm failed" : "confirm ok");
	s->host->started(s->ctx, err ? -EIO : 0, err);
}

static int start(void *self)
{
	state *s = self;
	s->timer = s->host->timer_new(s->ctx, s);
	s->started = true;
	logline(s, "start");
	publish(s); /* the first (empty) read */
	uint64_t after = s->host->cfg_duration_ms(s->ctx, "confirm_after");
	if (after == 0)
		return 0;
	s->confirm = s->host->timer_new(s->ctx, s);
	uv_timer_start(s->confirm, on_confirm, after, 0);
	return REGENT_PENDING;
}

static void stop_done(uv_timer_t *t)
{
	state *s = t->data;
	if (s->log)
		fprintf(s->log, "stopped\n");
	s->host->stopped(s->ctx);
}

static int stop(void *self)
{
	state *s = self;
	if (s->log) {
		fprintf(s->log, "stop %s\n", reason_name(s->host->stop_reason(s->ctx)));
		fflush(s->log);
	}
	if (s->confirm)
		uv_timer_stop(s->confirm);
	uint64_t d = s->host->cfg_duration_ms(s->ctx, "stop_delay");
	uv_timer_stop(s->timer);
	if (d == 0)
		return 0;
	uv_timer_start(s->timer, stop_done, d, 0);
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	state *s = self;
	while (s->all) {
		entry *e = s->all;
		s->all = e->next;
		s->host->instance_free(e->inst);
		free(e);
	}
	s->host->timer_close(&s->timer);
	s->host->timer_close(&s->confirm);
	if (s->log)
		fclose(s->log);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};
static const regent_store_ops store_ops = {sizeof(store_ops), reg, dereg};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("teststore"),
	.kind = REGENT_KIND_STORE,
	.version = "test",
	.description = "in-memory registry (tests only)",
	.config_keys = keys,
	.ops = &ops,
	.store_ops = &store_ops,
};
