/* nginx.c - an example out-of-tree regent sink: keeps an nginx upstream
 * file in step with the catalog (one `upstream NAME { server ADDR:PORT; }`
 * block per service), checks the configuration with a command (`nginx -t`)
 * and reloads nginx with another (`nginx -s reload`).  It is built against
 * the installed <regent/plugin.h> alone (pkg-config regent-plugin) and is
 * the walkthrough of the plugin author's guide (plugin-api.md).
 *
 *     [sink nginx]
 *     file           = /etc/nginx/conf.d/regent-upstreams.conf
 *     check_command  = nginx -t -q
 *     reload_command = nginx -s reload
 *     [service web]          ; an upstream "web" even while it has no instance
 *     nginx_balance = least_conn
 *
 * One cycle runs at a time: render the newest snapshot, write the file
 * (temporary file, fsync, rename, on libuv's thread pool), run the check
 * command, run the reload command (both with uv_spawn: the loop never
 * waits), then report the snapshot applied.  Snapshots that arrive
 * meanwhile are coalesced into the newest.  A failed check puts the
 * previous file back and nginx keeps running its current configuration.
 *
 * It needs only ABI 1.0 (REGENT_PLUGIN_MIN_MINOR 0), so it loads into any
 * regent of major 1; it uses one later entry, cfg_service_error (1.2),
 * after checking that the host has it.
 *
 * HELPER: marks the parts that the host-table helpers of ABI 1.4 (strings,
 * buffer, atomic file write, spawning a command) replace: each is small
 * and stands alone, plain libc and libuv. */
#define _POSIX_C_SOURCE 200809L
#define REGENT_PLUGIN_MIN_MINOR 0
#include <regent/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- HELPER (1.4: the host's buffer): a growable text buffer ---- */

typedef struct buf {
	char *p;
	size_t len, cap;
	bool oom;
} buf;

static void buf_printf(buf *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
static void buf_printf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (b->oom || n < 0)
		return;
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- the sink's state ---- */

typedef struct nginx nginx;
typedef void (*step_done)(nginx *s, int status, const char *why);

struct nginx {
	regent_ctx *ctx;
	const regent_host *h;
	char *file, *check_cmd, *reload_cmd;
	uint64_t timeout_ms;
	const regent_catalog *pending; /* the newest snapshot not yet taken up */
	const regent_catalog *cur;     /* the one being applied */
	char *text;                    /* cur rendered */
	char *good;                    /* the file's text that passed check and reload */
	char *check_why;               /* a failed check's reason, while the old file goes back */
	bool busy, stopping, stop_pending, destroyed;
	unsigned inflight;             /* work requests and handles still to complete */
	regent_backoff backoff;
	uv_timer_t retry;
	regent_metric *reloads, *errors;
};

/* The state goes once it is destroyed and nothing is in flight. */
static void release(nginx *s)
{
	if (s->destroyed && s->inflight == 0) {
		free(s->text);
		free(s->good);
		free(s->check_why);
		free(s->file);
		free(s->check_cmd);
		free(s->reload_cmd);
		free(s);
	}
}

/* ---- HELPER (1.4: the host's atomic file write): write, fsync, rename ---- */

typedef struct write_job {
	uv_work_t req;
	nginx *s;
	step_done done;
	char *path, *data;
	int err;            /* errno of the failed step */
	const char *step;   /* what failed */
} write_job;

/* On libuv's thread pool: plain blocking calls are fine here, and touch
 * nothing but the job. */
static void write_work(uv_work_t *req)
{
	write_job *j = req->data;
	size_t plen = strlen(j->path), len = strlen(j->data), off = 0;
	char *tmp = malloc(plen + 5), *dir = strdup(j->path);
	if (!tmp || !dir) {
		j->err = ENOMEM, j->step = "out of memory";
		goto out;
	}
	memcpy(tmp, j->path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		j->err = errno, j->step = "cannot create the temporary file";
		goto out;
	}
	while (off < len) {
		ssize_t n = write(fd, j->data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			j->err = errno, j->step = "cannot write the temporary file";
			break;
		}
		off += (size_t)n;
	}
	if (!j->err && fchmod(fd, 0644) != 0)
		j->err = errno, j->step = "cannot set the temporary file's mode";
	if (!j->err && fsync(fd) != 0)
		j->err = errno, j->step = "cannot fsync the temporary file";
	if (close(fd) != 0 && !j->err)
		j->err = errno, j->step = "cannot close the temporary file";
	if (!j->err && rename(tmp, j->path) != 0)
		j->err = errno, j->step = "cannot rename the temporary file";
	if (j->err) {
		unlink(tmp);
		goto out;
	}
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		j->err = errno, j->step = "cannot fsync the directory";
	if (dfd >= 0)
		close(dfd);
out:
	free(tmp);
	free(dir);
}

/* Back on the loop. */
static void write_after(uv_work_t *req, int status)
{
	write_job *j = req->data;
	nginx *s = j->s;
	s->inflight--;
	if (!s->destroyed) {
		char why[512] = "";
		int err = status == UV_ECANCELED ? ECANCELED : j->err;
		if (err)
			snprintf(why, sizeof(why), "%s: %s", j->step ? j->step : "cancelled",
			         strerror(err));
		j->done(s, err ? -err : 0, why);
	}
	free(j->path);
	free(j->data);
	free(j);
	release(s);
}

static int write_file(nginx *s, const char *data, step_done done)
{
	write_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->s = s;
	j->done = done;
	j->path = strdup(s->file);
	j->data = strdup(data);
	j->req.data = j;
	if (!j->path || !j->data) {
		free(j->path);
		free(j->data);
		free(j);
		return -ENOMEM;
	}
	int rc = uv_queue_work(s->h->loop(s->ctx), &j->req, write_work, write_after);
	if (rc != 0) {
		free(j->path);
		free(j->data);
		free(j);
		return rc;
	}
	s->inflight++;
	return 0;
}

/* ---- HELPER (1.4: the host's spawn): run `/bin/sh -c CMD` on the loop,
 * its output (stdout and stderr) kept for the message, killed after
 * timeout_ms ---- */

typedef struct cmd_run {
	nginx *s;
	step_done done;
	const char *what;     /* "check", "reload" */
	uv_process_t proc;
	uv_pipe_t out;
	uv_timer_t timer;
	char output[1024];
	size_t outlen;
	int64_t exit_status;
	int term_signal;
	bool exited, eof, timed_out, finished;
	int open;             /* handles not closed yet */
} cmd_run;

static void cmd_closed(uv_handle_t *hd)
{
	cmd_run *r = hd->data;
	if (--r->open > 0)
		return;
	nginx *s = r->s;
	free(r);
	s->inflight--;
	release(s);
}

/* Both the exit and the end of the output are in: report, close. */
static void cmd_finish(cmd_run *r)
{
	if (!r->exited || !r->eof || r->finished)
		return;
	r->finished = true;
	nginx *s = r->s;
	uv_timer_stop(&r->timer);
	if (!s->destroyed) {
		/* the output's first line says why (nginx -t: "[emerg] ...") */
		r->output[r->outlen] = '\0';
		char *nl = strchr(r->output, '\n');
		if (nl)
			*nl = '\0';
		char why[1300];
		int status = 0;
		if (r->timed_out)
			snprintf(why, sizeof(why), "%s command timed out after %llu ms", r->what,
			         (unsigned long long)s->timeout_ms), status = -ETIMEDOUT;
		else if (r->term_signal)
			snprintf(why, sizeof(why), "%s command killed by signal %d", r->what,
			         r->term_signal), status = -EINTR;
		else if (r->exit_status != 0)
			snprintf(why, sizeof(why), "%s command failed (exit %lld)%s%s", r->what,
			         (long long)r->exit_status, r->output[0] ? ": " : "", r->output),
			        status = -EIO;
		else
			why[0] = '\0';
		r->done(s, status, why);
	}
	uv_close((uv_handle_t *)&r->proc, cmd_closed);
	uv_close((uv_handle_t *)&r->out, cmd_closed);
	uv_close((uv_handle_t *)&r->timer, cmd_closed);
}

/* The output is not waited for any longer (a killed command's children
 * may still hold the pipe). */
static void cmd_stop_reading(cmd_run *r)
{
	uv_read_stop((uv_stream_t *)&r->out);
	r->eof = true;
}

static void cmd_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
	cmd_run *r = p->data;
	r->exited = true;
	r->exit_status = exit_status;
	r->term_signal = term_signal;
	if (r->timed_out)
		cmd_stop_reading(r);
	cmd_finish(r);
}

static void cmd_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
	(void)hint;
	cmd_run *r = hd->data;
	size_t room = sizeof(r->output) - 1 - r->outlen;
	static char discard[256]; /* output past what is kept is read and dropped */
	*b = room ? uv_buf_init(r->output + r->outlen, (unsigned)room)
	          : uv_buf_init(discard, sizeof(discard));
}

static void cmd_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	cmd_run *r = st->data;
	if (n > 0 && b->base == r->output + r->outlen)
		r->outlen += (size_t)n;
	if (n < 0) {
		uv_read_stop(st);
		r->eof = true;
		cmd_finish(r);
	}
}

static void cmd_timeout(uv_timer_t *t)
{
	cmd_run *r = t->data;
	if (r->exited) { /* it exited, something it started still holds its output */
		cmd_stop_reading(r);
		cmd_finish(r);
		return;
	}
	r->timed_out = true;
	uv_kill(-r->proc.pid, SIGKILL); /* its process group: the shell and its children */
}

static int run_command(nginx *s, const char *what, const char *cmd, step_done done)
{
	uv_loop_t *loop = s->h->loop(s->ctx);
	/* the shell sends its stderr (and the command's) to the pipe too */
	size_t len = strlen(cmd) + sizeof("exec 2>&1; ");
	char *script = malloc(len);
	cmd_run *r = calloc(1, sizeof(*r));
	if (!r || !script) {
		free(r);
		free(script);
		return UV_ENOMEM;
	}
	snprintf(script, len, "exec 2>&1; %s", cmd);
	r->s = s;
	r->done = done;
	r->what = what;
	uv_pipe_init(loop, &r->out, 0);
	uv_timer_init(loop, &r->timer);
	r->proc.data = r->out.data = r->timer.data = r;
	char *args[] = {(char *)"/bin/sh", (char *)"-c", script, NULL};
	uv_stdio_container_t stdio[2] = {
		{.flags = UV_IGNORE},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out},
	};
	uv_process_options_t o = {
		.exit_cb = cmd_exit, .file = args[0], .args = args, .stdio = stdio, .stdio_count = 2,
		.flags = UV_PROCESS_DETACHED, /* its own process group, killed as one */
	};
	int rc = uv_spawn(loop, &r->proc, &o);
	free(script);
	s->inflight++;
	if (rc != 0) {
		/* the process handle must be closed even when the spawn fails */
		r->open = 3;
		uv_close((uv_handle_t *)&r->proc, cmd_closed);
		uv_close((uv_handle_t *)&r->out, cmd_closed);
		uv_close((uv_handle_t *)&r->timer, cmd_closed);
		return rc;
	}
	r->open = 3;
	uv_read_start((uv_stream_t *)&r->out, cmd_alloc, cmd_read);
	uv_timer_start(&r->timer, cmd_timeout, s->timeout_ms, 0);
	return 0;
}

/* ---- rendering: the catalog as nginx upstream blocks ---- */

static const char *const balances[] = {"round_robin", "least_conn", "ip_hash", "random", NULL};

static bool valid_balance(const char *v)
{
	for (size_t i = 0; balances[i]; i++)
		if (strcmp(v, balances[i]) == 0)
			return true;
	return false;
}

static void render_service(nginx *s, buf *b, const regent_catalog *cat, const char *name)
{
	const regent_instance *const *insts;
	size_t n = cat ? s->h->catalog_instances(cat, name, &insts) : 0, servers = 0;
	const char *balance = s->h->service_string(s->ctx, name, "nginx_balance");
	buf_printf(b, "upstream %s {\n", name);
	if (balance && strcmp(balance, "round_robin") != 0)
		buf_printf(b, "    %s;\n", balance);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *in = insts[i];
		if (in->proto != REGENT_PROTO_TCP)
			continue; /* an http upstream is TCP */
		/* The core validated the address (an IP literal or a DNS name,
		 * no blanks or ';'): safe to write as it is. */
		bool v6 = strchr(in->address, ':') != NULL;
		buf_printf(b, "    server %s%s%s:%u;  # %s\n", v6 ? "[" : "", in->address, v6 ? "]" : "",
		           in->port, in->id);
		servers++;
	}
	if (servers == 0) /* nginx refuses an upstream without a server */
		buf_printf(b, "    server 127.0.0.1:9 down;  # no instance\n");
	buf_printf(b, "}\n");
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every service of the snapshot, and every [service NAME] section even
 * while it has no instance (the nginx configuration may name it), sorted
 * by name: the file is stable.  NULL when out of memory. */
static char *render(nginx *s, const regent_catalog *cat)
{
	buf b = {0};
	const char *const *names, *const *declared;
	size_t n = s->h->catalog_services(cat, &names);
	size_t nd = s->h->services(s->ctx, &declared);
	buf_printf(&b, "# Written by regent's nginx sink: every change is overwritten.\n");
	/* merge two sorted lists; [service] names come in file order: sort a copy */
	const char **d = nd ? malloc(nd * sizeof(*d)) : NULL;
	if (nd && !d)
		return NULL;
	if (nd) {
		memcpy(d, declared, nd * sizeof(*d));
		qsort(d, nd, sizeof(*d), cmp_name);
	}
	size_t i = 0, k = 0;
	while (i < n || k < nd) {
		int c = i == n ? 1 : k == nd ? -1 : strcmp(names[i], d[k]);
		render_service(s, &b, cat, c <= 0 ? names[i] : d[k]);
		i += c <= 0;
		k += c >= 0;
	}
	free(d);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- one cycle: write, check, reload ---- */

static void kick(nginx *s);
static void on_retry(uv_timer_t *t);

/* The end of a cycle, successful (status 0) or not. */
static void finish(nginx *s, int status, const char *why)
{
	if (status == 0) {
		free(s->good);
		s->good = s->text;
		s->text = NULL;
		s->h->backoff_reset(&s->backoff);
		s->h->set_health(s->ctx, true, NULL);
		s->h->metric_add(s->reloads, 1);
		s->h->applied(s->ctx, s->cur); /* the latency of this snapshot */
		s->h->catalog_unref(s->cur);
	} else {
		free(s->text);
		s->text = NULL;
		uint64_t delay = s->stopping ? 0 : s->h->backoff_next(&s->backoff);
		if (s->stopping)
			s->h->log(s->ctx, REGENT_LOG_ERROR, "cannot apply the catalog to %s: %s; stopping",
			          s->file, why);
		else
			s->h->log(s->ctx, REGENT_LOG_ERROR,
			          "cannot apply the catalog to %s: %s; retrying in %llu ms", s->file, why,
			          (unsigned long long)delay);
		s->h->set_health(s->ctx, false, why);
		s->h->metric_add(s->errors, 1);
		if (!s->pending) /* retry this snapshot unless a newer one came */
			s->pending = s->cur;
		else
			s->h->catalog_unref(s->cur);
		if (!s->stopping)
			uv_timer_start(&s->retry, on_retry, delay, 0);
	}
	s->cur = NULL;
	s->busy = false;
	if (s->stopping) {
		if (s->stop_pending) {
			s->stop_pending = false;
			s->h->stopped(s->ctx);
		}
		return;
	}
	kick(s);
}

static void reloaded(nginx *s, int status, const char *why)
{
	if (status == 0)
		s->h->log(s->ctx, REGENT_LOG_INFO, "%s written, checked and nginx reloaded", s->file);
	finish(s, status, why);
}

static void restored(nginx *s, int status, const char *why)
{
	char *msg = s->check_why;
	s->check_why = NULL;
	char full[1600];
	snprintf(full, sizeof(full), "%s; %s", msg ? msg : "check failed",
	         status == 0 ? "the previous file is back" : why);
	free(msg);
	finish(s, -EINVAL, full);
}

static void checked(nginx *s, int status, const char *why)
{
	if (status == 0) {
		int rc = run_command(s, "reload", s->reload_cmd, reloaded);
		if (rc != 0) {
			char w[256];
			snprintf(w, sizeof(w), "cannot run the reload command: %s", uv_strerror(rc));
			finish(s, rc, w);
		}
		return;
	}
	/* nginx -t refused the new file: put the last good one back so that a
	 * later reload (by anyone) does not pick up a file nginx refuses.
	 * (None yet: the file stays as written, nginx runs what it runs.) */
	if (s->good && (s->check_why = strdup(why)) && write_file(s, s->good, restored) == 0)
		return;
	free(s->check_why);
	s->check_why = NULL;
	finish(s, status, why);
}

static void written(nginx *s, int status, const char *why)
{
	if (status != 0) {
		finish(s, status, why);
		return;
	}
	int rc = run_command(s, "check", s->check_cmd, checked);
	if (rc != 0) {
		char w[256];
		snprintf(w, sizeof(w), "cannot run the check command: %s", uv_strerror(rc));
		finish(s, rc, w);
	}
}

/* Starts a cycle for the newest snapshot unless one runs or a retry waits. */
static void kick(nginx *s)
{
	if (s->busy || !s->pending || uv_is_active((uv_handle_t *)&s->retry))
		return;
	s->cur = s->pending;
	s->pending = NULL;
	s->busy = true;
	s->text = render(s, s->cur);
	if (!s->text) {
		finish(s, -ENOMEM, "out of memory rendering the upstreams");
		return;
	}
	if (s->good && strcmp(s->text, s->good) == 0) {
		/* nothing nginx sees has changed (a UDP instance, a change of
		 * tags): applied as it is, no reload */
		free(s->good);
		s->good = s->text;
		s->text = NULL;
		s->h->applied(s->ctx, s->cur);
		s->h->catalog_unref(s->cur);
		s->cur = NULL;
		s->busy = false;
		kick(s);
		return;
	}
	int rc = write_file(s, s->text, written);
	if (rc != 0) {
		char w[256];
		snprintf(w, sizeof(w), "cannot queue the write: %s", uv_strerror(rc));
		finish(s, rc, w);
	}
}

static void on_retry(uv_timer_t *t)
{
	kick(t->data);
}

/* ---- the plugin's entry points ---- */

static const regent_config_key keys[] = {
	{"file", REGENT_CFG_STRING, NULL, true, 0, 0,
	 "the upstream file to write (absolute path), included by nginx.conf"},
	{"check_command", REGENT_CFG_STRING, "nginx -t -q", false, 0, 0,
	 "run by /bin/sh after each write; a failure puts the previous file back"},
	{"reload_command", REGENT_CFG_STRING, "nginx -s reload", false, 0, 0,
	 "run by /bin/sh once the check passed"},
	{"command_timeout", REGENT_CFG_DURATION, "10s", false, 100, 600000,
	 "a command still running after this long is killed"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* Service keys are shared by every plugin: named after the plugin. */
static const regent_config_key service_keys[] = {
	{"nginx_balance", REGENT_CFG_STRING, "round_robin", false, 0, 0,
	 "nginx: round_robin, least_conn, ip_hash or random"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static int validate(regent_ctx *ctx, const regent_host *h)
{
	int rc = 0;
	const char *file = h->cfg_string(ctx, "file");
	if (file && (file[0] != '/' || file[strlen(file) - 1] == '/')) {
		h->cfg_error(ctx, "file", "expected an absolute file path, got \"%s\"", file);
		rc = -EINVAL;
	}
	const char *const *names;
	size_t n = h->services(ctx, &names);
	for (size_t i = 0; i < n; i++) {
		const char *v = h->service_string(ctx, names[i], "nginx_balance");
		if (!v || valid_balance(v))
			continue;
		rc = -EINVAL;
		/* ABI 1.2: at the key's own line; an older core: at our header */
		if (REGENT_HOST_HAS(h, cfg_service_error))
			h->cfg_service_error(ctx, names[i], "nginx_balance",
			                     "expected round_robin, least_conn, ip_hash or random, "
			                     "got \"%s\"", v);
		else
			h->cfg_error(ctx, NULL, "service %s: nginx_balance: expected round_robin, "
			             "least_conn, ip_hash or random, got \"%s\"", names[i], v);
	}
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	nginx *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = h;
	s->file = strdup(h->cfg_string(ctx, "file"));
	s->check_cmd = strdup(h->cfg_string(ctx, "check_command"));
	s->reload_cmd = strdup(h->cfg_string(ctx, "reload_command"));
	s->timeout_ms = h->cfg_duration_ms(ctx, "command_timeout");
	if (!s->file || !s->check_cmd || !s->reload_cmd) {
		s->destroyed = true;
		release(s);
		return -ENOMEM;
	}
	uv_timer_init(h->loop(ctx), &s->retry);
	s->retry.data = s;
	s->inflight = 1; /* the retry timer, closed by destroy */
	s->reloads = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_nginx_reloads_total",
	                       "nginx reloads after a change of the upstreams.", NULL);
	s->errors = h->metric(ctx, REGENT_METRIC_COUNTER, "regent_nginx_errors_total",
	                      "Failed writes, checks and reloads.", NULL);
	*self = s;
	return 0;
}

static int start(void *self)
{
	nginx *s = self;
	s->h->log(s->ctx, REGENT_LOG_INFO, "keeping the nginx upstreams in %s", s->file);
	return 0;
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t nchanged)
{
	nginx *s = self;
	(void)changed; /* the file is rewritten whole */
	(void)nchanged;
	if (s->pending)
		s->h->catalog_unref(s->pending);
	s->pending = s->h->catalog_ref(cat); /* keep it past the call */
	if (!s->stopping)
		kick(s);
}

static int stop(void *self)
{
	nginx *s = self;
	s->stopping = true;
	uv_timer_stop(&s->retry);
	if (!s->busy)
		return 0;
	s->stop_pending = true; /* finish() calls host->stopped() */
	return REGENT_PENDING;
}

static void retry_closed(uv_handle_t *hd)
{
	nginx *s = hd->data;
	s->inflight--;
	release(s);
}

static void destroy(void *self)
{
	nginx *s = self;
	/* A cycle still in flight (stop timed out) finishes without calling
	 * the host: its callbacks see `destroyed`. */
	if (s->pending)
		s->h->catalog_unref(s->pending);
	if (s->cur)
		s->h->catalog_unref(s->cur);
	s->pending = s->cur = NULL;
	s->destroyed = true;
	uv_close((uv_handle_t *)&s->retry, retry_closed);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("nginx"), /* ABI, needs 1.0, sizes, name */
	.kind = REGENT_KIND_SINK,
	.version = "1.0.0",
	.description = "writes nginx upstreams, checks and reloads nginx",
	.config_keys = keys,
	.service_keys = service_keys,
	.ops = &ops,
	.sink_ops = &sink_ops,
};
