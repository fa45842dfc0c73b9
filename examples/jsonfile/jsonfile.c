/* jsonfile.c - an example out-of-tree regent sink: writes the catalog to a
 * JSON file atomically (temporary file, fsync, rename, fsync of the
 * directory), so that scripts always read a complete catalog.  It is built
 * against the installed <regent/plugin.h> alone (pkg-config regent-plugin)
 * and is walked through in the plugin author's guide (plugin-api.md).
 *
 *     [sink jsonfile]
 *     file     = /run/regent/catalog.json
 *     interval = 1s        ; at most one write per second (0 = every snapshot)
 *     mode     = 0644
 *
 * The host does the work every plugin would otherwise write again (ABI
 * 1.4): host->buf_* and buf_json render the file, host->file_write
 * replaces it atomically on libuv's thread pool (so a slow disk never
 * blocks the agent's loop), host->timer_new/timer_close pace the writes.
 * One write runs at a time; snapshots that arrive meanwhile are coalesced
 * into the newest. */
#define _POSIX_C_SOURCE 200809L
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if REGENT_ABI_MAJOR == 1 && REGENT_ABI_MINOR < 4
#error "jsonfile needs regent's plugin ABI 1.4 or newer (host->file_write, host->buf_*)"
#endif

/* ---- the plugin instance ---- */

typedef struct jsonfile {
	regent_ctx *ctx;
	const regent_host *host;
	char *path;
	int mode;
	uint64_t interval_ms;

	uv_timer_t *timer;         /* interval between writes, retry after an error */
	regent_file_write *write;  /* the write in flight, or NULL */
	regent_buffer out;         /* the rendered file */
	uint64_t last_ms;          /* when the last write began */
	regent_backoff backoff;

	const regent_catalog *pending; /* newest snapshot not yet written */
	const regent_catalog *writing; /* the snapshot being written */
	bool stopping, stop_pending;
	regent_metric *m_writes, *m_errors;
} jsonfile;

static const regent_config_key keys[] = {
	{"file", REGENT_CFG_STRING, NULL, true, 0, 0, "the JSON file to write (absolute path)"},
	{"interval", REGENT_CFG_DURATION, "0", false, 0, 3600000,
	 "minimum time between two writes; 0 writes every snapshot"},
	{"mode", REGENT_CFG_STRING, "0644", false, 0, 0, "the file's permissions, in octal"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void kick(jsonfile *s);

static int parse_mode(const char *text)
{
	char *end;
	errno = 0;
	long m = strtol(text, &end, 8);
	if (errno || end == text || *end || m < 0 || m > 0777)
		return -1;
	return (int)m;
}

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	const char *file = h->cfg_string(ctx, "file");
	if (file && (file[0] != '/' || file[strlen(file) - 1] == '/')) {
		h->cfg_error(ctx, "file", "expected an absolute file path, got \"%s\"", file);
		rc = -EINVAL;
	}
	const char *mode = h->cfg_string(ctx, "mode");
	if (mode && parse_mode(mode) < 0) {
		h->cfg_error(ctx, "mode", "expected an octal mode such as 0644, got \"%s\"", mode);
		rc = -EINVAL;
	}
	return rc;
}

/* The file: {"node": ..., "services": {"name": [instance, ...], ...}},
 * one instance per line so that grep works as well as jq. */
static void render(jsonfile *s, const regent_catalog *cat)
{
	const regent_host *h = s->host;
	regent_buffer *b = &s->out;
	b->len = 0; /* the buffer's memory is reused */
	h->buf_puts(b, "{\n  \"node\": ");
	h->buf_json(b, h->node(s->ctx));
	h->buf_puts(b, ",\n  \"services\": {");
	const char *const *names;
	size_t n = h->catalog_services(cat, &names);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = h->catalog_instances(cat, names[i], &insts);
		h->buf_puts(b, i ? ",\n    " : "\n    ");
		h->buf_json(b, names[i]);
		h->buf_puts(b, ": [");
		for (size_t j = 0; j < k; j++) {
			const regent_instance *in = insts[j];
			h->buf_puts(b, j ? ",\n      {\"id\": " : "\n      {\"id\": ");
			h->buf_json(b, in->id);
			h->buf_puts(b, ", \"address\": ");
			h->buf_json(b, in->address);
			h->buf_printf(b, ", \"port\": %u, \"proto\": \"%s\", \"service_port\": %u, \"node\": ",
			              in->port, in->proto == REGENT_PROTO_UDP ? "udp" : "tcp",
			              in->service_port);
			h->buf_json(b, in->node);
			h->buf_puts(b, ", \"tags\": [");
			for (size_t t = 0; t < in->ntags; t++) {
				h->buf_puts(b, t ? ", " : "");
				h->buf_json(b, in->tags[t]);
			}
			h->buf_puts(b, "], \"meta\": {");
			for (size_t m = 0; m < in->nmeta; m++) {
				h->buf_puts(b, m ? ", " : "");
				h->buf_json(b, in->meta[m].key);
				h->buf_puts(b, ": ");
				h->buf_json(b, in->meta[m].value);
			}
			h->buf_puts(b, "}}");
		}
		h->buf_puts(b, k ? "\n    ]" : "]");
	}
	h->buf_puts(b, n ? "\n  }\n}\n" : "}\n}\n");
}

/* ---- the write ---- */

static void on_timer(uv_timer_t *t)
{
	kick(t->data);
}

/* The write is over (status 0 or a negative errno with why): report, then
 * write again if needed. */
static void finish(jsonfile *s, int status, const char *why)
{
	const regent_host *h = s->host;
	if (status == 0) {
		h->metric_add(s->m_writes, 1);
		h->backoff_reset(&s->backoff);
		h->set_health(s->ctx, true, NULL);
		h->applied(s->ctx, s->writing);
		h->catalog_unref(s->writing);
		s->writing = NULL;
	} else {
		h->metric_add(s->m_errors, 1);
		char reason[1024];
		snprintf(reason, sizeof(reason), "cannot write %s: %s", s->path, why);
		h->set_health(s->ctx, false, reason);
		/* Retry this snapshot, unless a newer one came meanwhile. */
		if (!s->pending)
			s->pending = s->writing;
		else
			h->catalog_unref(s->writing);
		s->writing = NULL;
		if (!s->stopping) {
			uint64_t delay = h->backoff_next(&s->backoff);
			h->log(s->ctx, REGENT_LOG_ERROR, "%s; retrying in %llu ms", reason,
			       (unsigned long long)delay);
			uv_timer_start(s->timer, on_timer, delay, 0);
			return;
		}
		h->log(s->ctx, REGENT_LOG_ERROR, "%s; stopping without retrying", reason);
	}
	if (s->stopping) {
		if (status == 0 && s->pending) { /* flush the newest snapshot before stopping */
			kick(s);
			if (s->write)
				return;
		}
		if (s->stop_pending) {
			s->stop_pending = false;
			h->stopped(s->ctx);
		}
		return;
	}
	kick(s);
}

static void on_written(void *arg, int status, const char *why)
{
	jsonfile *s = arg;
	s->write = NULL;
	finish(s, status, why);
}

/* Start writing the newest snapshot if nothing holds it back. */
static void kick(jsonfile *s)
{
	const regent_host *h = s->host;
	if (s->write || !s->pending || uv_is_active((uv_handle_t *)s->timer))
		return;
	uint64_t now = h->now_ms();
	if (!s->stopping && s->interval_ms && s->last_ms && now - s->last_ms < s->interval_ms) {
		uv_timer_start(s->timer, on_timer, s->interval_ms - (now - s->last_ms), 0);
		return;
	}
	s->writing = s->pending;
	s->pending = NULL;
	render(s, s->writing);
	if (h->log_enabled(s->ctx, REGENT_LOG_DEBUG))
		h->log(s->ctx, REGENT_LOG_DEBUG, "writing %zu bytes to %s", s->out.len, s->path);
	s->last_ms = now;
	regent_file_write_opts o = {
		.size = sizeof(o),
		.path = s->path, /* written as <file>.tmp, then renamed over it */
		.data = s->out.data,
		.len = s->out.len,
		.mode = (unsigned)s->mode,
		.on_done = on_written,
		.arg = s,
	};
	int err = 0;
	s->write = h->file_write(s->ctx, &o, &err);
	if (!s->write)
		finish(s, err, strerror(-err));
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed,
                  size_t nchanged)
{
	(void)changed;
	(void)nchanged; /* the whole file is rewritten: what changed does not matter */
	jsonfile *s = self;
	if (s->pending)
		s->host->catalog_unref(s->pending);
	s->pending = s->host->catalog_ref(cat);
	if (!s->stopping)
		kick(s);
}

/* ---- lifecycle ---- */

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	jsonfile *s = h->xcalloc(1, sizeof(*s)); /* the host's: never NULL */
	s->ctx = ctx;
	s->host = h;
	s->path = h->xstrdup(h->cfg_string(ctx, "file"));
	s->mode = parse_mode(h->cfg_string(ctx, "mode"));
	s->interval_ms = h->cfg_duration_ms(ctx, "interval");
	s->timer = h->timer_new(ctx, s);
	s->m_writes = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_jsonfile_writes_total",
	                        "Catalog files written.", NULL);
	s->m_errors = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_jsonfile_errors_total",
	                        "Catalog file writes that failed.", NULL);
	*self = s;
	return 0;
}

static int start(void *self)
{
	jsonfile *s = self;
	s->host->log(s->ctx, REGENT_LOG_INFO, "writing the catalog to %s", s->path);
	return 0; /* the first snapshot comes through apply() */
}

static int stop(void *self)
{
	jsonfile *s = self;
	s->stopping = true;
	uv_timer_stop(s->timer);
	kick(s); /* flush a snapshot the interval was holding back */
	if (!s->write)
		return 0;
	s->stop_pending = true;
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	jsonfile *s = self;
	const regent_host *h = s->host;
	/* A write still in flight finishes on its own, without calling back. */
	h->file_write_cancel(s->write);
	if (s->pending)
		h->catalog_unref(s->pending);
	if (s->writing)
		h->catalog_unref(s->writing);
	h->timer_close(&s->timer);
	h->buf_free(&s->out);
	free(s->path);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("jsonfile"),
	.kind = REGENT_KIND_SINK,
	.version = "1.0.0",
	.description = "writes the catalog to a JSON file atomically",
	.config_keys = keys,
	.service_keys = NULL,
	.ops = &ops,
	.sink_ops = &sink_ops,
};
