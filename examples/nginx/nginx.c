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
 * (host->file_write: temporary file, fsync, rename, on libuv's thread
 * pool), run the check command, run the reload command (host->spawn: the
 * loop never waits), then report the snapshot applied.  Snapshots that
 * arrive meanwhile are coalesced into the newest.  A failed check puts the
 * previous file back and nginx keeps running its current configuration.
 *
 * It needs ABI 1.4 (REGENT_PLUGIN_MIN_MINOR 4) for the host's helpers:
 * strings, the growable buffer, the atomic file write, the command runner
 * and self-closing timers; a regent older than 1.4 refuses to load it,
 * saying so. */
#define _POSIX_C_SOURCE 200809L
#define REGENT_PLUGIN_MIN_MINOR 4
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	bool busy, stopping, stop_pending;
	regent_file_write *write;      /* the write in flight, or NULL */
	regent_spawn *cmd;             /* the command running, or NULL */
	const char *cmd_what;          /* its name: "check", "reload" */
	step_done next;                /* what the write or the command calls when done */
	regent_backoff backoff;
	uv_timer_t *retry;
	regent_metric *reloads, *errors;
};

/* ---- the two steps, both the host's: write the file, run a command ---- */

static void write_done(void *arg, int status, const char *why)
{
	nginx *s = arg;
	s->write = NULL;
	s->next(s, status, why);
}

/* Replaces the file with data (temporary file, fsync, rename, off the
 * loop); done is called on the loop.  Returns 0 or a negative errno. */
static int write_file(nginx *s, const char *data, step_done done)
{
	regent_file_write_opts o = {
		.size = sizeof(o),
		.path = s->file,
		.data = data, /* copied by the host */
		.len = strlen(data),
		.mode = 0644,
		.on_done = write_done,
		.arg = s,
	};
	int err = 0;
	s->next = done;
	s->write = s->h->file_write(s->ctx, &o, &err);
	return s->write ? 0 : err;
}

static void command_done(void *arg, const regent_spawn_result *res)
{
	nginx *s = arg;
	s->cmd = NULL;
	/* the output's first line says why (nginx -t: "[emerg] ...") */
	int line = (int)strcspn(res->output, "\n");
	char why[1300] = "";
	int status = 0;
	if (res->error == -ETIMEDOUT)
		snprintf(why, sizeof(why), "%s command timed out after %llu ms", s->cmd_what,
		         (unsigned long long)s->timeout_ms), status = -ETIMEDOUT;
	else if (res->term_signal)
		snprintf(why, sizeof(why), "%s command killed by signal %d", s->cmd_what,
		         res->term_signal), status = -EINTR;
	else if (res->exit_status != 0)
		snprintf(why, sizeof(why), "%s command failed (exit %d)%s%.*s", s->cmd_what,
		         res->exit_status, line ? ": " : "", line, res->output), status = -EIO;
	s->next(s, status, why);
}

/* Runs `/bin/sh -c CMD` (stdout and stderr captured, killed with its
 * children after timeout_ms); done is called on the loop.  Returns 0 or
 * a negative errno. */
static int run_command(nginx *s, const char *what, const char *cmd, step_done done)
{
	const char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
	regent_spawn_opts o = {
		.size = sizeof(o),
		.argv = argv,
		.timeout_ms = s->timeout_ms,
		.max_output = 1024,
		.on_done = command_done,
		.arg = s,
	};
	int err = 0;
	s->cmd_what = what;
	s->next = done;
	s->cmd = s->h->spawn(s->ctx, &o, &err);
	return s->cmd ? 0 : err;
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

static void render_service(nginx *s, regent_buffer *b, const regent_catalog *cat,
                           const char *name)
{
	const regent_instance *const *insts;
	size_t n = cat ? s->h->catalog_instances(cat, name, &insts) : 0, servers = 0;
	const char *balance = s->h->service_string(s->ctx, name, "nginx_balance");
	s->h->buf_printf(b, "upstream %s {\n", name);
	if (balance && strcmp(balance, "round_robin") != 0)
		s->h->buf_printf(b, "    %s;\n", balance);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *in = insts[i];
		if (in->proto != REGENT_PROTO_TCP)
			continue; /* an http upstream is TCP */
		/* The core validated the address (an IP literal or a DNS name,
		 * no blanks or ';'): safe to write as it is. */
		bool v6 = strchr(in->address, ':') != NULL;
		s->h->buf_printf(b, "    server %s%s%s:%u;  # %s\n", v6 ? "[" : "", in->address,
		                 v6 ? "]" : "", in->port, in->id);
		servers++;
	}
	if (servers == 0) /* nginx refuses an upstream without a server */
		s->h->buf_printf(b, "    server 127.0.0.1:9 down;  # no instance\n");
	s->h->buf_printf(b, "}\n");
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every service of the snapshot, and every [service NAME] section even
 * while it has no instance (the nginx configuration may name it), sorted
 * by name: the file is stable.  malloc'd. */
static char *render(nginx *s, const regent_catalog *cat)
{
	regent_buffer b = {0};
	const char *const *names, *const *declared;
	size_t n = s->h->catalog_services(cat, &names);
	size_t nd = s->h->services(s->ctx, &declared);
	s->h->buf_printf(&b, "# Written by regent's nginx sink: every change is overwritten.\n");
	/* merge two sorted lists; [service] names come in file order: sort a copy */
	const char **d = s->h->xmalloc(nd * sizeof(*d));
	if (nd)
		memcpy(d, declared, nd * sizeof(*d));
	qsort(d, nd, sizeof(*d), cmp_name);
	size_t i = 0, k = 0;
	while (i < n || k < nd) {
		int c = i == n ? 1 : k == nd ? -1 : strcmp(names[i], d[k]);
		render_service(s, &b, cat, c <= 0 ? names[i] : d[k]);
		i += c <= 0;
		k += c >= 0;
	}
	free(d);
	return b.data; /* taken over from the buffer: free() it */
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
			uv_timer_start(s->retry, on_retry, delay, 0);
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
			snprintf(w, sizeof(w), "cannot run the reload command: %s", strerror(-rc));
			finish(s, rc, w);
		}
		return;
	}
	/* nginx -t refused the new file: put the last good one back so that a
	 * later reload (by anyone) does not pick up a file nginx refuses.
	 * (None yet: the file stays as written, nginx runs what it runs.) */
	if (s->good) {
		s->check_why = s->h->xstrdup(why);
		if (write_file(s, s->good, restored) == 0)
			return;
	}
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
		snprintf(w, sizeof(w), "cannot run the check command: %s", strerror(-rc));
		finish(s, rc, w);
	}
}

/* Starts a cycle for the newest snapshot unless one runs or a retry waits. */
static void kick(nginx *s)
{
	if (s->busy || !s->pending || uv_is_active((uv_handle_t *)s->retry))
		return;
	s->cur = s->pending;
	s->pending = NULL;
	s->busy = true;
	s->text = render(s, s->cur);
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
		snprintf(w, sizeof(w), "cannot start writing %s: %s", s->file, strerror(-rc));
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
		/* at the key's own line (FILE:LINE of nginx_balance) */
		h->cfg_service_error(ctx, names[i], "nginx_balance",
		                     "expected round_robin, least_conn, ip_hash or random, got \"%s\"",
		                     v);
	}
	return rc;
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	nginx *s = h->xcalloc(1, sizeof(*s)); /* the host's x* entries never return NULL */
	s->ctx = ctx;
	s->h = h;
	s->file = h->xstrdup(h->cfg_string(ctx, "file"));
	s->check_cmd = h->xstrdup(h->cfg_string(ctx, "check_command"));
	s->reload_cmd = h->xstrdup(h->cfg_string(ctx, "reload_command"));
	s->timeout_ms = h->cfg_duration_ms(ctx, "command_timeout");
	s->retry = h->timer_new(ctx, s); /* ->data = s; closed by destroy */
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
	uv_timer_stop(s->retry);
	if (!s->busy)
		return 0;
	s->stop_pending = true; /* finish() calls host->stopped() */
	return REGENT_PENDING;
}

static void destroy(void *self)
{
	nginx *s = self;
	/* A cycle still in flight (stop timed out) is cancelled: the host
	 * calls none of its callbacks (a write under way still completes). */
	s->h->file_write_cancel(s->write);
	s->h->spawn_cancel(s->cmd);
	s->h->timer_close(&s->retry);
	if (s->pending)
		s->h->catalog_unref(s->pending);
	if (s->cur)
		s->h->catalog_unref(s->cur);
	free(s->text);
	free(s->good);
	free(s->check_why);
	free(s->file);
	free(s->check_cmd);
	free(s->reload_cmd);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("nginx"), /* ABI, needs 1.4, sizes, name */
	.kind = REGENT_KIND_SINK,
	.version = "1.0.0",
	.description = "writes nginx upstreams, checks and reloads nginx",
	.config_keys = keys,
	.service_keys = service_keys,
	.ops = &ops,
	.sink_ops = &sink_ops,
};
