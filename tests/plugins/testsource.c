/* testsource.c - a test-only source: reports the instances listed in a
 * file, re-reading it when it changes (a full resync each time).
 * Line format:  ID SERVICE ADDRESS PORT [udp] [tag,tag] ; '#' comments.
 * require_file makes start() fail when the file is missing (a source that
 * cannot start); confirm_after / confirm_error make start() pending and
 * confirm or fail later through host->started() (make-before-break tests);
 * list_after delays the first listing past start() (a source that lists
 * asynchronously, like docker).
 * crash (with crash_after) crashes the process on purpose: "abort"
 * (abort()), "segv" (a write through a null pointer), "stack" (unbounded
 * recursion: a stack overflow) or "thread" (abort() on a thread of its
 * own), for tests/crash/crash_test.sh and the core's fatal-signal report
 * (core/crash.c).  Test-only, never installed: the daemon itself has no
 * crash switch. */
#include <regent/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	uv_timer_t *timer;
	uv_timer_t *confirm;
	uv_timer_t *crash;
	char *last;
} state;

static const regent_config_key keys[] = {
	{"file", REGENT_CFG_STRING, NULL, true, 0, 0, "file listing the instances"},
	{"interval", REGENT_CFG_DURATION, "100ms", false, 10, 60000, "how often to re-read it"},
	{"list_after", REGENT_CFG_DURATION, "0ms", false, 0, 60000,
	 "0: the first listing from inside start(); else this long after start()"},
	{"require_file", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "start() fails (-ENOENT) when the file does not exist"},
	{"confirm_after", REGENT_CFG_DURATION, "0ms", false, 0, 60000,
	 "0: start() proves itself at once; else start() is pending and host->started() "
	 "is called this long after"},
	{"confirm_error", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "with confirm_after: host->started() reports this failure instead"},
	{"crash", REGENT_CFG_STRING, "none", false, 0, 0,
	 "none, or crash the process crash_after the start: abort, segv, stack or thread"},
	{"crash_after", REGENT_CFG_DURATION, "100ms", false, 0, 60000, "see crash"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static const char *const crash_ways[] = {"none", "abort", "segv", "stack", "thread"};

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

static void on_crash(uv_timer_t *t)
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

static char *slurp(const regent_host *h, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	regent_buffer b = {0};
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		h->buf_add(&b, tmp, n);
	fclose(f);
	h->buf_add(&b, "", 0); /* an empty file: "" */
	return b.data;
}

static void report(state *s, char *text)
{
	const regent_host *h = s->host;
	h->local_resync_begin(s->ctx);
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#' || line[0] == '\0')
			continue;
		char id[256], svc[128], addr[128], extra1[64] = "", extra2[256] = "";
		unsigned port;
		int n = sscanf(line, "%255s %127s %127s %u %63s %255s", id, svc, addr, &port, extra1,
		               extra2);
		if (n < 4 || port > 65535) {
			h->log(s->ctx, REGENT_LOG_WARN, "bad line: %s", line);
			continue;
		}
		regent_instance in = {.service = svc, .id = id, .address = addr,
		                      .port = (uint16_t)port, .service_port = (uint16_t)port};
		const char *tags[16];
		char *tagsrc = NULL;
		if (strcmp(extra1, "udp") == 0)
			in.proto = REGENT_PROTO_UDP;
		else if (extra1[0])
			tagsrc = extra1;
		if (extra2[0])
			tagsrc = extra2;
		if (tagsrc) {
			char *ts = NULL;
			for (char *t = strtok_r(tagsrc, ",", &ts); t && in.ntags < 16;
			     t = strtok_r(NULL, ",", &ts))
				tags[in.ntags++] = t;
			in.tags = tags;
		}
		h->local_up(s->ctx, &in);
	}
	h->local_resync_end(s->ctx);
}

static void tick(uv_timer_t *t)
{
	state *s = t->data;
	char *text = slurp(s->host, s->host->cfg_string(s->ctx, "file"));
	if (!text)
		return; /* missing file: keep what we have */
	if (s->last && strcmp(s->last, text) == 0) {
		free(text);
		return;
	}
	free(s->last);
	s->last = s->host->xstrdup(text);
	report(s, text);
	free(text);
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	const char *f = h->cfg_string(ctx, "file");
	if (f && f[0] != '/') {
		h->cfg_error(ctx, "file", "must be an absolute path, got \"%s\"", f);
		return -EINVAL;
	}
	const char *how = h->cfg_string(ctx, "crash");
	for (size_t i = 0; i < sizeof(crash_ways) / sizeof(crash_ways[0]); i++)
		if (strcmp(how, crash_ways[i]) == 0)
			return 0;
	h->cfg_error(ctx, "crash", "expected none, abort, segv, stack or thread, got \"%s\"", how);
	return -EINVAL;
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

static void on_confirm(uv_timer_t *t)
{
	state *s = t->data;
	const char *err = s->host->cfg_string(s->ctx, "confirm_error");
	s->host->started(s->ctx, err ? -EIO : 0, err);
}

static int start(void *self)
{
	state *s = self;
	const char *file = s->host->cfg_string(s->ctx, "file");
	struct stat st;
	if (s->host->cfg_bool(s->ctx, "require_file") && stat(file, &st) < 0) {
		int e = errno;
		s->host->log(s->ctx, REGENT_LOG_ERROR, "%s: %s", file, strerror(e));
		return -e;
	}
	s->timer = s->host->timer_new(s->ctx, s);
	uint64_t iv = s->host->cfg_duration_ms(s->ctx, "interval");
	uint64_t first = s->host->cfg_duration_ms(s->ctx, "list_after");
	if (first == 0)
		tick(s->timer); /* the first listing from inside start(), as the ABI allows */
	uv_timer_start(s->timer, tick, first ? first : iv, iv);
	if (strcmp(s->host->cfg_string(s->ctx, "crash"), "none") != 0) {
		s->crash = s->host->timer_new(s->ctx, s);
		uv_timer_start(s->crash, on_crash, s->host->cfg_duration_ms(s->ctx, "crash_after"), 0);
	}
	uint64_t after = s->host->cfg_duration_ms(s->ctx, "confirm_after");
	if (after == 0)
		return 0;
	s->confirm = s->host->timer_new(s->ctx, s);
	uv_timer_start(s->confirm, on_confirm, after, 0);
	return REGENT_PENDING;
}

static int stop(void *self)
{
	state *s = self;
	if (s->timer)
		uv_timer_stop(s->timer);
	if (s->confirm)
		uv_timer_stop(s->confirm);
	if (s->crash)
		uv_timer_stop(s->crash);
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	s->host->timer_close(&s->timer);
	s->host->timer_close(&s->confirm);
	s->host->timer_close(&s->crash);
	free(s->last);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_source_ops source_ops = {sizeof(source_ops), NULL};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("testsource"),
	.kind = REGENT_KIND_SOURCE,
	.version = "test",
	.description = "reports instances listed in a file (tests only)",
	.config_keys = keys,
	.ops = &ops,
	.source_ops = &source_ops,
};
