/* ctl.c - the control socket: a unix socket on the core's loop where
 * `regent ctl` asks, one line per connection, for the agent's status, its
 * catalog and local instances, a drain/undrain or a reload, and gets one
 * JSON object back.  Also owns the drain state: the marker file in
 * [agent] state_dir that keeps this host's instances out of the stores
 * across restarts until `regent ctl undrain`. */
#include "ctl.h"
#include "build_config.h"
#include "config.h"
#include "log.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define WHO "ctl"
/* How long a connection stays open after its answer, for the client to close. */
#define REGENT_CTL_LINGER_MS 1000

typedef struct ctl_client ctl_client;

struct regent_ctl {
	regent_agent *agent;
	uv_pipe_t server;
	char *path;
	dev_t dev; /* the socket file we created (removed only if it is still ours) */
	ino_t ino;
	ctl_client *clients;
	size_t nclients;
	bool closing;
	unsigned open_handles; /* server + every client's two handles */
};

struct ctl_client {
	regent_ctl *ctl;
	uv_pipe_t pipe;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	regent_buf in;
	char *answer;
	bool answered, closing;
	unsigned open_handles;
	ctl_client *next;
};

/* ---- the drain marker ---- */

static const char *state_dir(regent_agent *a)
{
	const regent_cfg_value *v = regent_cfg_find(a->cfg->agent, "state_dir");
	return v && v->raw && v->raw[0] ? v->raw : REGENT_STATE_DIR_DEFAULT;
}

static char *marker_path(regent_agent *a)
{
	return regent_xasprintf("%s/%s", state_dir(a), REGENT_CTL_DRAINED_FILE);
}

/* The marker's time (wall seconds), 0 when there is none. */
static int64_t marker_time(regent_agent *a)
{
	char *p = marker_path(a);
	struct stat st;
	int rc = stat(p, &st);
	free(p);
	return rc == 0 ? (int64_t)st.st_mtime : 0;
}

static int write_marker(regent_agent *a, char *warn, size_t warnlen)
{
	const char *dir = state_dir(a);
	int rc = regent_state_dir_prepare(dir, WHO);
	if (rc < 0) {
		snprintf(warn, warnlen, "cannot keep the drain across restarts: state_dir %s: %s", dir,
		         strerror(-rc));
		return rc;
	}
	char *p = marker_path(a);
	char *tmp = regent_xasprintf("%s.tmp", p);
	rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		rc = -errno;
	} else {
		char line[128];
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		size_t n = strftime(line, sizeof(line),
		                    "drained by `regent ctl drain` at %Y-%m-%dT%H:%M:%SZ\n", &tm);
		if (write(fd, line, n) != (ssize_t)n || fsync(fd) < 0)
			rc = errno ? -errno : -EIO;
		if (close(fd) < 0 && rc == 0)
			rc = -errno;
		if (rc == 0 && rename(tmp, p) < 0)
			rc = -errno;
		if (rc < 0)
			unlink(tmp);
	}
	if (rc < 0) {
		snprintf(warn, warnlen, "cannot keep the drain across restarts: %s: %s", p,
		         strerror(-rc));
		regent_log(REGENT_LOG_ERROR, WHO, "%s", warn);
	}
	free(tmp);
	free(p);
	return rc;
}

static void for_each_store(regent_agent *a, regent_inst *inst, bool up)
{
	for (regent_ctx *c = a->ctxs; c; c = c->next) {
		if (c->kind != REGENT_KIND_STORE || c->state != CTX_STARTED)
			continue;
		const regent_store_ops *so = c->desc->store_ops;
		if (up)
			so->register_instance(c->self, &inst->pub);
		else
			so->deregister_instance(c->self, &inst->pub);
	}
}

static void dereg_one(void *arg, regent_inst *inst)
{
	for_each_store(arg, inst, false);
}

static void reg_one(void *arg, regent_inst *inst)
{
	for_each_store(arg, inst, true);
}

int regent_ctl_drain(regent_agent *a, char *warn, size_t warnlen)
{
	warn[0] = '\0';
	if (a->stopping)
		return -ESHUTDOWN;
	size_t n = regent_localset_size(a->local);
	bool was = a->drained;
	/* Drained first: nothing registers again while the stores are told. */
	a->drained = true;
	regent_localset_foreach(a->local, dereg_one, a);
	regent_log(REGENT_LOG_WARN, WHO,
	           "drained%s: %zu local instance%s deregistered from every store; new ones are not "
	           "registered until `regent ctl undrain`",
	           was ? " (again)" : "", n, n == 1 ? "" : "s");
	write_marker(a, warn, warnlen);
	return (int)n;
}

int regent_ctl_undrain(regent_agent *a, char *warn, size_t warnlen)
{
	warn[0] = '\0';
	if (a->stopping)
		return -ESHUTDOWN;
	char *p = marker_path(a);
	if (unlink(p) < 0 && errno != ENOENT) {
		int e = errno;
		snprintf(warn, warnlen, "cannot remove the drain marker %s: %s (the agent will start "
		         "drained again after a restart)", p, strerror(e));
		regent_log(REGENT_LOG_ERROR, WHO, "%s", warn);
	}
	free(p);
	size_t n = regent_localset_size(a->local);
	bool was = a->drained;
	a->drained = false;
	regent_localset_foreach(a->local, reg_one, a);
	regent_log(REGENT_LOG_INFO, WHO, "undrained%s: %zu local instance%s registered again",
	           was ? "" : " (was not drained)", n, n == 1 ? "" : "s");
	return (int)n;
}

/* ---- answers ---- */

static json_t *instance_json(const regent_instance *in)
{
	json_t *o = json_object();
	json_object_set_new(o, "service", json_string(in->service));
	json_object_set_new(o, "id", json_string(in->id));
	json_object_set_new(o, "address", json_string(in->address));
	json_object_set_new(o, "port", json_integer(in->port));
	json_object_set_new(o, "proto", json_string(regent_proto_name(in->proto)));
	if (in->service_port)
		json_object_set_new(o, "service_port", json_integer(in->service_port));
	if (in->node)
		json_object_set_new(o, "node", json_string(in->node));
	json_t *tags = json_array();
	for (size_t i = 0; i < in->ntags; i++)
		json_array_append_new(tags, json_string(in->tags[i]));
	json_object_set_new(o, "tags", tags);
	json_t *meta = json_object();
	for (size_t i = 0; i < in->nmeta; i++)
		json_object_set_new(meta, in->meta[i].key, json_string(in->meta[i].value));
	json_object_set_new(o, "meta", meta);
	return o;
}

static json_t *error_json(const char *fmt, ...) REGENT_PRINTF(1, 2);
static json_t *error_json(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_false());
	json_object_set_new(o, "error", json_string(buf));
	return o;
}

static json_t *ok_json(void)
{
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_true());
	return o;
}

static const char *state_name(ctx_state s)
{
	switch (s) {
	case CTX_NEW: return "new";
	case CTX_CREATED: return "created";
	case CTX_PENDING: return "on trial";
	case CTX_STARTED: return "started";
	case CTX_STOPPING: return "stopping";
	case CTX_STOPPED: return "stopped";
	}
	return "unknown";
}

static json_t *do_status(regent_agent *a)
{
	json_t *o = ok_json();
	const regent_cfg_value *node = regent_cfg_find(a->cfg->agent, "node");
	json_object_set_new(o, "version", json_string(REGENT_VERSION));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "node", json_string(node && node->raw ? node->raw : ""));
	json_object_set_new(o, "config", json_string(a->cfg->path));
	uint64_t now = regent_wall_ns();
	json_object_set_new(o, "uptime_s",
	                    json_integer((json_int_t)((now - a->start_wall_ns) / 1000000000ull)));
	json_object_set_new(o, "stopping", json_boolean(a->stopping));
	json_object_set_new(o, "drained", json_boolean(a->drained));
	if (a->drained) {
		int64_t t = marker_time(a);
		if (t)
			json_object_set_new(o, "drained_since", json_integer(t));
	}
	json_object_set_new(o, "local_instances", json_integer((json_int_t)regent_localset_size(a->local)));
	json_t *cat = json_object();
	if (a->cat) {
		const regent_catalog *snap = regent_cat_current(a->cat);
		json_object_set_new(cat, "complete", json_boolean(regent_cat_flushed(a->cat)));
		json_object_set_new(cat, "services",
		                    json_integer((json_int_t)regent_catalog_services(snap, NULL)));
		json_object_set_new(cat, "instances", json_integer((json_int_t)regent_catalog_total(snap)));
		if (regent_cat_flushed(a->cat)) {
			uint64_t t = regent_catalog_origin_ns(snap);
			json_object_set_new(cat, "last_change", json_real((double)t / 1e9));
		}
	}
	json_object_set_new(o, "catalog", cat);
	json_t *plugins = json_array();
	for (int pass = 0; pass < 2; pass++)
		for (regent_ctx *c = pass == 0 ? a->ctxs : a->dying; c; c = c->next) {
			json_t *p = json_object();
			json_object_set_new(p, "section", json_string(c->sec->header));
			json_object_set_new(p, "kind", json_string(regent_kind_name(c->kind)));
			json_object_set_new(p, "plugin", json_string(c->desc->name));
			json_object_set_new(p, "version", json_string(c->desc->version ? c->desc->version : ""));
			json_object_set_new(p, "state", json_string(state_name(c->state)));
			json_object_set_new(p, "healthy", json_boolean(c->healthy && !c->failed_start));
			if (c->health_reason)
				json_object_set_new(p, "reason", json_string(c->health_reason));
			else if (c->failed_start)
				json_object_set_new(p, "reason", json_string("failed to start"));
			json_array_append_new(plugins, p);
		}
	json_object_set_new(o, "plugins", plugins);
	return o;
}

static json_t *do_catalog(regent_agent *a, const char *service)
{
	if (!a->cat)
		return error_json("the agent is stopping");
	const regent_catalog *snap = regent_cat_current(a->cat);
	const char *const *names;
	size_t n = regent_catalog_services(snap, &names);
	json_t *o = ok_json();
	json_object_set_new(o, "complete", json_boolean(regent_cat_flushed(a->cat)));
	json_t *svcs = json_object();
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		if (service && strcmp(service, names[i]) != 0)
			continue;
		found = true;
		const regent_instance *const *insts;
		size_t k = regent_catalog_instances(snap, names[i], &insts);
		json_t *arr = json_array();
		for (size_t j = 0; j < k; j++)
			json_array_append_new(arr, instance_json(insts[j]));
		json_object_set_new(svcs, names[i], arr);
	}
	json_object_set_new(o, "services", svcs);
	if (service && !found) {
		json_decref(o);
		return error_json("no service \"%s\" in the catalog", service);
	}
	return o;
}

static void add_local(void *arg, regent_inst *inst)
{
	json_array_append_new(arg, instance_json(&inst->pub));
}

static json_t *do_local(regent_agent *a)
{
	json_t *o = ok_json();
	json_object_set_new(o, "drained", json_boolean(a->drained));
	json_t *arr = json_array();
	regent_localset_foreach(a->local, add_local, arr);
	json_object_set_new(o, "instances", arr);
	return o;
}

static json_t *do_drain(regent_agent *a, bool drain)
{
	char warn[512];
	int n = drain ? regent_ctl_drain(a, warn, sizeof(warn)) : regent_ctl_undrain(a, warn, sizeof(warn));
	if (n < 0)
		return error_json("the agent is stopping");
	size_t stores = 0;
	for (regent_ctx *c = a->ctxs; c; c = c->next)
		if (c->kind == REGENT_KIND_STORE && c->state == CTX_STARTED)
			stores++;
	json_t *o = ok_json();
	json_object_set_new(o, "drained", json_boolean(a->drained));
	json_object_set_new(o, "instances", json_integer(n));
	json_object_set_new(o, "stores", json_integer((json_int_t)stores));
	if (warn[0])
		json_object_set_new(o, "warning", json_string(warn));
	return o;
}

static json_t *do_reload(regent_agent *a)
{
	if (a->stopping)
		return error_json("the agent is stopping");
	char *path = regent_xstrdup(a->cfg->path);
	int rc = regent_agent_reload(a);
	json_t *o;
	if (rc == 0) {
		o = ok_json();
	} else {
		o = json_object();
		json_object_set_new(o, "ok", json_false());
		json_object_set_new(o, "error",
		                    json_string("new configuration refused; the running one stays"));
		/* The reload logged the errors; read them again for the answer. */
		json_t *errs = json_array();
		if (rc == -EINVAL) {
			regent_config *n = regent_config_load_for(path, a->plugin_dir_override,
			                                          REGENT_VALIDATE_RELOAD);
			for (size_t i = 0; i < n->nerrors; i++)
				json_array_append_new(errs, json_string(n->errors[i]));
			regent_config_unref(n);
		} else {
			json_array_append_new(errs, json_string(strerror(-rc)));
		}
		json_object_set_new(o, "errors", errs);
	}
	json_object_set_new(o, "config", json_string(path));
	free(path);
	return o;
}

static json_t *handle(regent_agent *a, char *line)
{
	char *save = NULL;
	char *cmd = strtok_r(line, " \t\r", &save);
	char *arg = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
	char *extra = arg ? strtok_r(NULL, " \t\r", &save) : NULL;
	if (!cmd)
		return error_json("empty request");
	if (extra)
		return error_json("%s: too many arguments", cmd);
	if (strcmp(cmd, "catalog") == 0)
		return do_catalog(a, arg);
	if (arg)
		return error_json("%s: unexpected argument \"%s\"", cmd, arg);
	if (strcmp(cmd, "status") == 0)
		return do_status(a);
	if (strcmp(cmd, "local") == 0)
		return do_local(a);
	if (strcmp(cmd, "drain") == 0)
		return do_drain(a, true);
	if (strcmp(cmd, "undrain") == 0)
		return do_drain(a, false);
	if (strcmp(cmd, "reload") == 0)
		return do_reload(a);
	return error_json("unknown request \"%.64s\" (status, catalog [SERVICE], local, drain, "
	                  "undrain, reload)",
	                  cmd);
}

/* ---- connections ---- */

static void ctl_maybe_free(regent_ctl *ctl)
{
	if (ctl->closing && ctl->open_handles == 0) {
		free(ctl->path);
		free(ctl);
	}
}

static void client_handle_closed(uv_handle_t *h)
{
	ctl_client *cl = h->data;
	if (--cl->open_handles > 0)
		return;
	regent_ctl *ctl = cl->ctl;
	for (ctl_client **pp = &ctl->clients; *pp; pp = &(*pp)->next)
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	ctl->nclients--;
	ctl->open_handles--;
	regent_buf_free(&cl->in);
	free(cl->answer);
	free(cl);
	ctl_maybe_free(ctl);
}

static void client_close(ctl_client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	uv_timer_stop(&cl->timer);
	uv_close((uv_handle_t *)&cl->timer, client_handle_closed);
	uv_close((uv_handle_t *)&cl->pipe, client_handle_closed);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
	(void)r;
	(void)status; /* the client's EOF (or the linger timer) closes */
}

/* After the answer: end our side and wait (briefly) for the client to
 * close its own, reading and dropping what it still sends, so that it
 * reads the whole answer instead of a reset. */
static void on_written(uv_write_t *w, int status)
{
	ctl_client *cl = w->data;
	if (cl->closing)
		return;
	if (status < 0) {
		regent_log(REGENT_LOG_DEBUG, WHO, "writing an answer: %s", uv_strerror(status));
		client_close(cl);
		return;
	}
	cl->sreq.data = cl;
	if (uv_shutdown(&cl->sreq, (uv_stream_t *)&cl->pipe, on_shutdown) < 0)
		client_close(cl);
}

static void on_linger_timeout(uv_timer_t *t)
{
	client_close(t->data);
}

static void answer(ctl_client *cl, json_t *o)
{
	cl->answered = true;
	uv_timer_start(&cl->timer, on_linger_timeout, REGENT_CTL_LINGER_MS, 0);
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	cl->answer = regent_xasprintf("%s\n", text ? text : "{\"ok\":false,\"error\":\"out of memory\"}");
	free(text);
	uv_buf_t b = uv_buf_init(cl->answer, (unsigned)strlen(cl->answer));
	cl->wreq.data = cl;
	int rc = uv_write(&cl->wreq, (uv_stream_t *)&cl->pipe, &b, 1, on_written);
	if (rc < 0) {
		regent_log(REGENT_LOG_DEBUG, WHO, "writing an answer: %s", uv_strerror(rc));
		client_close(cl);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char chunk[REGENT_CTL_MAX_REQUEST + 1];
	*buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	ctl_client *cl = s->data;
	if (cl->closing)
		return;
	if (cl->answered) { /* dropped; the client's EOF ends the connection */
		if (nread < 0)
			client_close(cl);
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF)
			regent_log(REGENT_LOG_DEBUG, WHO, "reading a request: %s", uv_strerror((int)nread));
		if (nread == UV_EOF && cl->in.len > 0) {
			/* A request without its newline: take it as it is. */
		} else {
			client_close(cl);
			return;
		}
	} else {
		regent_buf_add(&cl->in, buf->base, (size_t)nread);
	}
	char *nl = cl->in.len ? memchr(cl->in.data, '\n', cl->in.len) : NULL;
	if (!nl && nread != UV_EOF) {
		if (cl->in.len > REGENT_CTL_MAX_REQUEST)
			answer(cl, error_json("request longer than %d bytes", REGENT_CTL_MAX_REQUEST));
		return;
	}
	size_t len = nl ? (size_t)(nl - cl->in.data) : cl->in.len;
	if (len > REGENT_CTL_MAX_REQUEST) {
		answer(cl, error_json("request longer than %d bytes", REGENT_CTL_MAX_REQUEST));
		return;
	}
	char line[REGENT_CTL_MAX_REQUEST + 1];
	memcpy(line, cl->in.data, len);
	line[len] = '\0';
	if (memchr(line, '\0', len)) {
		answer(cl, error_json("request contains a NUL byte"));
		return;
	}
	/* Queries at debug (monitoring polls them), changes at info. */
	bool query = strncmp(line, "status", 6) == 0 || strncmp(line, "catalog", 7) == 0 ||
	             strncmp(line, "local", 5) == 0;
	regent_log(query ? REGENT_LOG_DEBUG : REGENT_LOG_INFO, WHO, "request: %.200s", line);
	answer(cl, handle(cl->ctl->agent, line));
}

static void on_timeout(uv_timer_t *t)
{
	ctl_client *cl = t->data;
	regent_log(REGENT_LOG_WARN, WHO, "a client sent no complete request within %d ms; closing it",
	           REGENT_CTL_REQUEST_TIMEOUT_MS);
	answer(cl, error_json("no complete request within %d ms", REGENT_CTL_REQUEST_TIMEOUT_MS));
}

static void on_connection(uv_stream_t *server, int status)
{
	regent_ctl *ctl = server->data;
	if (status < 0) {
		regent_log(REGENT_LOG_WARN, WHO, "%s: accept: %s", ctl->path, uv_strerror(status));
		return;
	}
	ctl_client *cl = regent_xcalloc(1, sizeof(*cl));
	cl->ctl = ctl;
	uv_pipe_init(server->loop, &cl->pipe, 0);
	uv_timer_init(server->loop, &cl->timer);
	cl->pipe.data = cl;
	cl->timer.data = cl;
	cl->open_handles = 2;
	cl->next = ctl->clients;
	ctl->clients = cl;
	ctl->nclients++;
	ctl->open_handles++;
	int rc = uv_accept(server, (uv_stream_t *)&cl->pipe);
	if (rc < 0) {
		regent_log(REGENT_LOG_WARN, WHO, "%s: accept: %s", ctl->path, uv_strerror(rc));
		client_close(cl);
		return;
	}
	if (ctl->nclients > REGENT_CTL_MAX_CLIENTS) {
		regent_log(REGENT_LOG_WARN, WHO, "%s: more than %d connections at once; refusing one",
		           ctl->path, REGENT_CTL_MAX_CLIENTS);
		answer(cl, error_json("busy: more than %d connections at once", REGENT_CTL_MAX_CLIENTS));
		return;
	}
	uv_timer_start(&cl->timer, on_timeout, REGENT_CTL_REQUEST_TIMEOUT_MS, 0);
	rc = uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_read);
	if (rc < 0) {
		regent_log(REGENT_LOG_WARN, WHO, "%s: read: %s", ctl->path, uv_strerror(rc));
		client_close(cl);
	}
}

/* ---- the listening socket ---- */

/* Makes room for the socket at path: fine when nothing is there, a stale
 * socket is removed; anything else is refused (returned, logged). */
static int clear_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		regent_log(REGENT_LOG_ERROR, WHO,
		           "control_socket %s exists and is not a socket; refusing to replace it", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path));
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	if (rc == 0) {
		regent_log(REGENT_LOG_ERROR, WHO,
		           "control_socket %s: another process (a running regent?) answers on it", path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: cannot tell whether it is in use: %s",
		           path, strerror(e));
		return -e;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		e = errno;
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: cannot remove the stale socket: %s",
		           path, strerror(e));
		return -e;
	}
	regent_log(REGENT_LOG_INFO, WHO, "control_socket %s: removed a stale socket nobody answers on",
	           path);
	return 0;
}

/* 0 when the directory that will hold path exists, else -errno. */
static int parent_dir_exists(const char *path, char **dir_out)
{
	char *dir = regent_xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	struct stat st;
	int rc = stat(dir, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	*dir_out = dir;
	return rc;
}

static void server_closed(uv_handle_t *h)
{
	regent_ctl *ctl = h->data;
	ctl->open_handles--;
	ctl_maybe_free(ctl);
}

static int listen_on(regent_ctl *ctl)
{
	const char *path = ctl->path;
	struct sockaddr_un sa;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: path longer than %zu bytes", path,
		           sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	char *dir;
	int rc = parent_dir_exists(path, &dir);
	if (rc < 0)
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: its directory %s: %s", path, dir,
		           strerror(-rc));
	free(dir);
	if (rc < 0)
		return rc;
	rc = clear_path(path);
	if (rc < 0)
		return rc;
	uv_pipe_init(ctl->agent->loop, &ctl->server, 0);
	ctl->server.data = ctl;
	ctl->open_handles = 1;
	/* Created 0660 (no window where others could connect). */
	mode_t old = umask(0117);
	rc = uv_pipe_bind(&ctl->server, path);
	umask(old);
	if (rc < 0) {
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: cannot listen: %s", path,
		           uv_strerror(rc));
		return rc;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		ctl->dev = st.st_dev;
		ctl->ino = st.st_ino;
	}
	/* The group regent may connect, when it exists (root or regent's own
	 * user can give the socket to it). */
	struct group *g = getgrnam("regent");
	if (g && st.st_gid != g->gr_gid && chown(path, (uid_t)-1, g->gr_gid) < 0)
		regent_log(REGENT_LOG_WARN, WHO, "control_socket %s: cannot give it to the group regent: %s",
		           path, strerror(errno));
	if (chmod(path, 0660) < 0)
		regent_log(REGENT_LOG_WARN, WHO, "control_socket %s: chmod 0660: %s", path,
		           strerror(errno));
	rc = uv_listen((uv_stream_t *)&ctl->server, 8, on_connection);
	if (rc < 0) {
		regent_log(REGENT_LOG_ERROR, WHO, "control_socket %s: listen: %s", path, uv_strerror(rc));
		unlink(path);
		return rc;
	}
	regent_log(REGENT_LOG_INFO, WHO, "listening on %s", path);
	return 0;
}

int regent_ctl_start(regent_agent *a, regent_ctl **out)
{
	*out = NULL;
	int64_t t = marker_time(a);
	if (t) {
		a->drained = true;
		char *p = marker_path(a);
		regent_log(REGENT_LOG_WARN, WHO,
		           "drained (%s exists): local instances are not registered until `regent ctl "
		           "undrain`",
		           p);
		free(p);
	}
	const regent_cfg_value *v = regent_cfg_find(a->cfg->agent, "control_socket");
	bool explicit = v && v->set;
	const char *path = v && v->raw ? v->raw : REGENT_CTL_DEFAULT_SOCKET;
	if (!path[0]) {
		regent_log(REGENT_LOG_INFO, WHO, "no control socket (control_socket is empty)");
		return 0;
	}
	if (!explicit) {
		/* The default lives in /run/regent, which systemd creates
		 * (RuntimeDirectory=regent): without it, run without a socket. */
		char *dir;
		bool have = parent_dir_exists(path, &dir) == 0;
		if (!have)
			regent_log(REGENT_LOG_INFO, WHO,
			           "no control socket: %s does not exist (systemd creates it; set [agent] "
			           "control_socket to choose another path)",
			           dir);
		free(dir);
		if (!have)
			return 0;
	}
	regent_ctl *ctl = regent_xcalloc(1, sizeof(*ctl));
	ctl->agent = a;
	ctl->path = regent_xstrdup(path);
	int rc = listen_on(ctl);
	if (rc < 0) {
		bool fatal = explicit || rc == -EEXIST;
		if (!fatal)
			regent_log(REGENT_LOG_WARN, WHO, "running without a control socket");
		if (ctl->open_handles) {
			ctl->closing = true;
			uv_close((uv_handle_t *)&ctl->server, server_closed);
		} else {
			free(ctl->path);
			free(ctl);
		}
		return fatal ? rc : 0;
	}
	*out = ctl;
	return 0;
}

void regent_ctl_close(regent_ctl *ctl)
{
	if (!ctl || ctl->closing)
		return;
	ctl->closing = true;
	struct stat st;
	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	for (ctl_client *cl = ctl->clients; cl; cl = cl->next)
		client_close(cl);
	uv_close((uv_handle_t *)&ctl->server, server_closed);
}
