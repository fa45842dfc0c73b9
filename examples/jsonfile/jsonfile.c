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
 * Every file operation is a libuv request (uv_fs_*) run on libuv's thread
 * pool, so a slow disk never blocks the agent's loop.  One write runs at a
 * time; snapshots that arrive meanwhile are coalesced into the newest. */
#define _POSIX_C_SOURCE 200809L
#include <regent/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable text buffer and JSON string escaping ---- */

typedef struct buf {
	char *p;
	size_t len, cap;
	bool oom;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_printf(buf *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
static void buf_printf(buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t n;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, min = 0x80;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, min = 0x800;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, min = 0x10000;
	else
		return 0;
	unsigned cp = c & (0x3Fu >> (n - 1));
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

/* A JSON string.  Names and values come from container labels and the
 * registry, i.e. from anyone: quotes, backslashes and control characters
 * are escaped, and bytes that are not UTF-8 become U+FFFD, so the file is
 * always valid JSON. */
static void buf_json(buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	buf_add(b, "\"", 1);
	while (*p) {
		size_t n = utf8_len(p);
		if (n == 0) {
			buf_str(b, "\\ufffd");
			p++;
		} else if (*p == '"' || *p == '\\') {
			buf_add(b, "\\", 1);
			buf_add(b, (const char *)p, 1);
			p++;
		} else if (*p < 0x20) {
			buf_printf(b, "\\u%04x", *p);
			p++;
		} else {
			buf_add(b, (const char *)p, n);
			p += n;
		}
	}
	buf_add(b, "\"", 1);
}

/* ---- the plugin instance ---- */

typedef enum step {
	S_OPEN, S_FCHMOD, S_WRITE, S_FSYNC, S_CLOSE, S_RENAME, /* the file */
	S_DIROPEN, S_DIRFSYNC, S_DIRCLOSE,                     /* its directory */
	S_ABORT_CLOSE, S_ABORT_UNLINK,                         /* after an error */
} step;

typedef struct jsonfile {
	regent_ctx *ctx;
	const regent_host *host;
	uv_loop_t *loop;
	char *path, *tmp, *dir;
	int mode;
	uint64_t interval_ms;

	uv_timer_t timer;    /* interval between writes, retry after an error */
	uv_fs_t req;         /* the one file operation in flight */
	step step;
	bool busy;           /* a write is in flight */
	uv_file fd;
	buf out;             /* the rendered file */
	size_t off;          /* bytes of out written so far */
	int error;           /* the failed step's libuv error */
	const char *failed;  /* what failed */
	uint64_t last_ms;    /* when the last write began */
	regent_backoff backoff;

	const regent_catalog *pending; /* newest snapshot not yet written */
	const regent_catalog *writing; /* the snapshot being written */
	bool stopping, stop_pending, destroyed, timer_closed;
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
static void on_fs(uv_fs_t *req);

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
	buf *b = &s->out;
	b->len = 0;
	b->oom = false;
	buf_str(b, "{\n  \"node\": ");
	buf_json(b, h->node(s->ctx));
	buf_str(b, ",\n  \"services\": {");
	const char *const *names;
	size_t n = h->catalog_services(cat, &names);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = h->catalog_instances(cat, names[i], &insts);
		buf_str(b, i ? ",\n    " : "\n    ");
		buf_json(b, names[i]);
		buf_str(b, ": [");
		for (size_t j = 0; j < k; j++) {
			const regent_instance *in = insts[j];
			buf_str(b, j ? ",\n      {\"id\": " : "\n      {\"id\": ");
			buf_json(b, in->id);
			buf_str(b, ", \"address\": ");
			buf_json(b, in->address);
			buf_printf(b, ", \"port\": %u, \"proto\": \"%s\", \"service_port\": %u, \"node\": ",
			           in->port, in->proto == REGENT_PROTO_UDP ? "udp" : "tcp",
			           in->service_port);
			buf_json(b, in->node);
			buf_str(b, ", \"tags\": [");
			for (size_t t = 0; t < in->ntags; t++) {
				buf_str(b, t ? ", " : "");
				buf_json(b, in->tags[t]);
			}
			buf_str(b, "], \"meta\": {");
			for (size_t m = 0; m < in->nmeta; m++) {
				buf_str(b, m ? ", " : "");
				buf_json(b, in->meta[m].key);
				buf_str(b, ": ");
				buf_json(b, in->meta[m].value);
			}
			buf_str(b, "}}");
		}
		buf_str(b, k ? "\n    ]" : "]");
	}
	buf_str(b, n ? "\n  }\n}\n" : "}\n}\n");
}

/* ---- the write: open, fchmod, write, fsync, close, rename, fsync dir ---- */

static void next(jsonfile *s, step st)
{
	s->step = st;
	int rc = 0;
	switch (st) {
	case S_OPEN:
		rc = uv_fs_open(s->loop, &s->req, s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		                s->mode, on_fs);
		break;
	case S_FCHMOD: /* the umask must not change the mode the user asked for */
		rc = uv_fs_fchmod(s->loop, &s->req, s->fd, s->mode, on_fs);
		break;
	case S_WRITE: {
		uv_buf_t ub = uv_buf_init(s->out.p + s->off, (unsigned)(s->out.len - s->off));
		rc = uv_fs_write(s->loop, &s->req, s->fd, &ub, 1, -1, on_fs);
		break;
	}
	case S_FSYNC: rc = uv_fs_fsync(s->loop, &s->req, s->fd, on_fs); break;
	case S_CLOSE:
	case S_DIRCLOSE:
	case S_ABORT_CLOSE: rc = uv_fs_close(s->loop, &s->req, s->fd, on_fs); break;
	case S_RENAME: rc = uv_fs_rename(s->loop, &s->req, s->tmp, s->path, on_fs); break;
	case S_DIROPEN:
		rc = uv_fs_open(s->loop, &s->req, s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, on_fs);
		break;
	case S_DIRFSYNC: rc = uv_fs_fsync(s->loop, &s->req, s->fd, on_fs); break;
	case S_ABORT_UNLINK: rc = uv_fs_unlink(s->loop, &s->req, s->tmp, on_fs); break;
	}
	if (rc < 0) { /* could not even queue it: finish as if it had failed */
		s->req.result = rc;
		on_fs(&s->req);
	}
}

static void free_state(jsonfile *s)
{
	free(s->out.p);
	free(s->path);
	free(s->tmp);
	free(s->dir);
	free(s);
}

static void on_timer_closed(uv_handle_t *handle)
{
	jsonfile *s = handle->data;
	s->timer_closed = true;
	if (!s->busy)
		free_state(s);
}

static void on_timer(uv_timer_t *t)
{
	kick(t->data);
}

/* The write is over (ok or not): report, then write again if needed. */
static void finish(jsonfile *s, bool ok)
{
	s->busy = false;
	s->fd = -1;
	if (s->destroyed) { /* destroy() ran meanwhile: only memory is left */
		if (s->timer_closed)
			free_state(s);
		return;
	}
	const regent_host *h = s->host;
	if (ok) {
		h->metric_add(s->m_writes, 1);
		h->backoff_reset(&s->backoff);
		h->set_health(s->ctx, true, NULL);
		h->applied(s->ctx, s->writing);
		h->catalog_unref(s->writing);
		s->writing = NULL;
	} else {
		h->metric_add(s->m_errors, 1);
		char reason[512];
		snprintf(reason, sizeof(reason), "cannot write %s: %s: %s", s->path, s->failed,
		         uv_strerror(s->error));
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
			uv_timer_start(&s->timer, on_timer, delay, 0);
			return;
		}
		h->log(s->ctx, REGENT_LOG_ERROR, "%s; stopping without retrying", reason);
	}
	if (s->stopping) {
		if (ok && s->pending) { /* flush the newest snapshot before stopping */
			kick(s);
			if (s->busy)
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

static void fail(jsonfile *s, const char *what, int err)
{
	s->failed = what;
	s->error = err;
	if (s->fd >= 0)
		next(s, S_ABORT_CLOSE);
	else
		next(s, S_ABORT_UNLINK);
}

static void on_fs(uv_fs_t *req)
{
	jsonfile *s = req->data;
	int r = (int)req->result;
	uv_fs_req_cleanup(req);
	switch (s->step) {
	case S_OPEN:
		if (r < 0) {
			fail(s, "cannot create the temporary file", r);
		} else {
			s->fd = r;
			next(s, S_FCHMOD);
		}
		break;
	case S_FCHMOD:
		if (r < 0)
			fail(s, "cannot set its mode", r);
		else
			next(s, S_WRITE);
		break;
	case S_WRITE:
		if (r < 0) {
			fail(s, "cannot write", r);
		} else {
			s->off += (size_t)r;
			next(s, s->off < s->out.len ? S_WRITE : S_FSYNC);
		}
		break;
	case S_FSYNC:
		if (r < 0)
			fail(s, "cannot fsync", r);
		else
			next(s, S_CLOSE);
		break;
	case S_CLOSE:
		s->fd = -1; /* closed even when close() reports an error */
		if (r < 0)
			fail(s, "cannot close", r);
		else
			next(s, S_RENAME);
		break;
	case S_RENAME:
		if (r < 0)
			fail(s, "cannot rename the temporary file over it", r);
		else
			next(s, S_DIROPEN);
		break;
	case S_DIROPEN:
		if (r < 0) { /* the new file is in place; only durability is weaker */
			if (!s->destroyed)
				s->host->log(s->ctx, REGENT_LOG_WARN, "cannot open directory %s to fsync it: %s",
				             s->dir, uv_strerror(r));
			finish(s, true);
		} else {
			s->fd = r;
			next(s, S_DIRFSYNC);
		}
		break;
	case S_DIRFSYNC:
		if (r < 0 && !s->destroyed)
			s->host->log(s->ctx, REGENT_LOG_WARN, "cannot fsync directory %s: %s", s->dir,
			             uv_strerror(r));
		next(s, S_DIRCLOSE);
		break;
	case S_DIRCLOSE:
		finish(s, true);
		break;
	case S_ABORT_CLOSE:
		s->fd = -1;
		next(s, S_ABORT_UNLINK);
		break;
	case S_ABORT_UNLINK: /* best effort: no temporary file is left behind */
		finish(s, false);
		break;
	}
}

/* Start writing the newest snapshot if nothing holds it back. */
static void kick(jsonfile *s)
{
	const regent_host *h = s->host;
	if (s->busy || !s->pending || uv_is_active((uv_handle_t *)&s->timer))
		return;
	uint64_t now = h->now_ms();
	if (!s->stopping && s->interval_ms && s->last_ms && now - s->last_ms < s->interval_ms) {
		uv_timer_start(&s->timer, on_timer, s->interval_ms - (now - s->last_ms), 0);
		return;
	}
	s->writing = s->pending;
	s->pending = NULL;
	render(s, s->writing);
	if (s->out.oom) {
		s->busy = true;
		s->failed = "cannot render the catalog";
		s->error = UV_ENOMEM;
		finish(s, false);
		return;
	}
	if (h->log_enabled(s->ctx, REGENT_LOG_DEBUG))
		h->log(s->ctx, REGENT_LOG_DEBUG, "writing %zu bytes to %s", s->out.len, s->path);
	s->busy = true;
	s->off = 0;
	s->last_ms = now;
	next(s, S_OPEN);
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

static char *dup_printf(const char *fmt, ...) REGENT_PRINTF(1, 2);
static char *dup_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	jsonfile *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	s->loop = h->loop(ctx);
	s->fd = -1;
	s->req.data = s;
	const char *file = h->cfg_string(ctx, "file");
	const char *slash = strrchr(file, '/');
	s->path = dup_printf("%s", file);
	s->tmp = dup_printf("%s.tmp", file);
	if (!slash) /* validate() refuses relative paths; be safe anyway */
		s->dir = dup_printf(".");
	else if (slash == file)
		s->dir = dup_printf("/");
	else
		s->dir = dup_printf("%.*s", (int)(slash - file), file);
	s->mode = parse_mode(h->cfg_string(ctx, "mode"));
	s->interval_ms = h->cfg_duration_ms(ctx, "interval");
	if (!s->path || !s->tmp || !s->dir) {
		free_state(s);
		return -ENOMEM;
	}
	uv_timer_init(s->loop, &s->timer);
	s->timer.data = s;
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
	uv_timer_stop(&s->timer);
	kick(s); /* flush a snapshot the interval was holding back */
	if (!s->busy)
		return 0;
	s->stop_pending = true;
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	jsonfile *s = self;
	const regent_host *h = s->host;
	s->stopping = true;
	s->destroyed = true; /* a write still in flight finishes without the host */
	if (s->pending)
		h->catalog_unref(s->pending);
	if (s->writing)
		h->catalog_unref(s->writing);
	s->pending = s->writing = NULL;
	uv_close((uv_handle_t *)&s->timer, on_timer_closed); /* frees s when idle */
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
	.kind_ops = &sink_ops,
};
