/* testcrash.c - a test-only source that crashes the process on purpose,
 * `after` its start, the way `crash` says: "abort" (abort()), "segv" (a
 * write through a null pointer), "stack" (unbounded recursion: a stack
 * overflow) or "thread" (abort() on a thread of its own).  Built only
 * with the tests (NO_INSTALL), never shipped: the daemon has no crash
 * switch of its own.  Used by tests/crash/crash_test.sh to see the
 * core's fatal-signal report (core/crash.c). */
#include <regent/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	uv_timer_t *timer;
} state;

static const regent_config_key keys[] = {
	{"crash", REGENT_CFG_STRING, "abort", false, 0, 0, "abort, segv, stack or thread"},
	{"after", REGENT_CFG_DURATION, "100ms", false, 0, 60000, "how long after start()"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* Each frame keeps a buffer the compiler cannot drop, and calls itself
 * before using it (no tail call); `deeper` is never 0, which the compiler
 * cannot know. */
static volatile int deeper = 1;

static int __attribute__((noinline)) recurse(volatile char *prev, int depth)
{
	volatile char buf[512];
	buf[0] = (char)depth;
	buf[511] = prev ? prev[0] : 0;
	if (!deeper)
		return buf[0];
	return recurse(buf, depth + 1) + buf[511];
}

static void *abort_thread(void *arg)
{
	(void)arg;
	abort();
}

static void on_timer(uv_timer_t *t)
{
	state *s = t->data;
	const char *how = s->host->cfg_string(s->ctx, "crash");
	s->host->log(s->ctx, REGENT_LOG_INFO, "crashing now (%s), as configured", how);
	if (strcmp(how, "segv") == 0) {
		volatile int *p = NULL;
		*p = 1;
	} else if (strcmp(how, "stack") == 0) {
		recurse(NULL, 0);
	} else if (strcmp(how, "thread") == 0) {
		pthread_t th;
		if (pthread_create(&th, NULL, abort_thread, NULL) == 0)
			pthread_join(th, NULL);
	}
	abort();
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	const char *how = h->cfg_string(ctx, "crash");
	if (strcmp(how, "abort") && strcmp(how, "segv") && strcmp(how, "stack") &&
	    strcmp(how, "thread")) {
		h->cfg_error(ctx, "crash", "expected abort, segv, stack or thread, got \"%s\"", how);
		return -EINVAL;
	}
	return 0;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	*self = s;
	return 0;
}

static int start(void *self)
{
	state *s = self;
	s->timer = s->host->timer_new(s->ctx, s);
	uv_timer_start(s->timer, on_timer, s->host->cfg_duration_ms(s->ctx, "after"), 0);
	return 0;
}

static int stop(void *self)
{
	state *s = self;
	uv_timer_stop(s->timer);
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	s->host->timer_close(&s->timer);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_source_ops source_ops = {sizeof(source_ops), NULL};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("testcrash"),
	.kind = REGENT_KIND_SOURCE,
	.version = "test",
	.description = "crashes the process on purpose (tests only)",
	.config_keys = keys,
	.ops = &ops,
	.source_ops = &source_ops,
};
