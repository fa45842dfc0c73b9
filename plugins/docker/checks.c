/* checks.c - agent-run checks of the docker plugin's instances (docker.h,
 * dk_checker): one per checked instance, each probe on the agent's loop
 * with no thread and no blocking call -- http through the core's libcurl
 * multi client, tcp as a libuv connect, exec as three Docker API requests
 * (create the exec, start it and wait for its end, read its exit code).
 * A checker is failing until `rise` successes in a row, then passing until
 * `fall` failures in a row; each change calls back ctrs.c, which reports
 * the instance up or down. */
#include "docker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tcp connect in flight: freed by its close callback, whatever happens
 * to the checker meanwhile (k is cleared when the checker goes). */
typedef struct tcp_probe {
	uv_tcp_t tcp;
	uv_connect_t conn;
	dk_checker *k;
} tcp_probe;

struct dk_checker {
	state *st;
	ctr *c;
	dk_checker_cb cb;
	dk_inst in;          /* deep copy */
	char what[480];      /* "container NAME (ID): instance X check http GET /health" */
	uv_timer_t *tick;    /* every interval */
	uv_timer_t *tmo;     /* the probe's deadline */
	bool busy;           /* a probe in flight */
	regent_http_req *req;
	tcp_probe *tp;
	int exec_step;       /* 1 create, 2 start, 3 inspect */
	char exec_id[72];
	unsigned ok_run, fail_run;
	bool passing, reported_fail;
};

static void verdict(dk_checker *k, bool ok, const char *why);

static void cancel_probe(dk_checker *k)
{
	if (k->req) {
		k->st->h->http_cancel(k->req);
		k->req = NULL;
	}
	if (k->tp) {
		k->tp->k = NULL;
		if (!uv_is_closing((uv_handle_t *)&k->tp->tcp))
			uv_close((uv_handle_t *)&k->tp->tcp, (uv_close_cb)free);
		k->tp = NULL;
	}
	if (k->tmo)
		uv_timer_stop(k->tmo);
	k->busy = false;
	k->exec_step = 0;
}

/* ---- http ---- */

static int discard(void *arg, const char *data, size_t len)
{
	(void)arg;
	(void)data;
	(void)len;
	return 0;
}

static void on_http(void *arg, const regent_http_result *res)
{
	dk_checker *k = arg;
	k->req = NULL;
	char why[200];
	bool ok;
	if (res->error) {
		k->st->h->http_describe(res, why, sizeof why);
		ok = false;
	} else {
		ok = k->in.check.status ? res->status == k->in.check.status
		                        : res->status >= 200 && res->status < 400;
		snprintf(why, sizeof why, "HTTP %ld", res->status);
	}
	cancel_probe(k);
	verdict(k, ok, why);
}

static void probe_http(dk_checker *k)
{
	char url[700];
	bool v6 = strchr(k->in.address, ':') != NULL;
	snprintf(url, sizeof url, "http://%s%s%s:%u%s", v6 ? "[" : "", k->in.address, v6 ? "]" : "",
	         k->in.port, k->in.check.arg);
	regent_http_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.method = k->in.check.method;
	o.url = url;
	o.timeout_ms = k->in.check.timeout_ms;
	o.connect_timeout_ms = k->in.check.timeout_ms;
	o.on_data = discard;
	o.on_done = on_http;
	o.arg = k;
	int err = 0;
	k->req = k->st->h->http_request(k->st->ctx, &o, &err);
	if (!k->req) {
		char why[100];
		snprintf(why, sizeof why, "cannot send the request: %s", strerror(-err));
		cancel_probe(k);
		verdict(k, false, why);
	}
}

/* ---- tcp ---- */

static void on_connect(uv_connect_t *req, int status)
{
	tcp_probe *tp = req->data;
	dk_checker *k = tp->k;
	if (!uv_is_closing((uv_handle_t *)&tp->tcp))
		uv_close((uv_handle_t *)&tp->tcp, (uv_close_cb)free);
	if (!k)
		return; /* the checker went, or the probe timed out */
	k->tp = NULL;
	char why[120];
	snprintf(why, sizeof why, "connect: %s", status == 0 ? "ok" : uv_strerror(status));
	cancel_probe(k);
	verdict(k, status == 0, why);
}

static void probe_tcp(dk_checker *k)
{
	struct sockaddr_storage sa;
	char why[160];
	if (uv_ip4_addr(k->in.address, k->in.port, (struct sockaddr_in *)&sa) != 0 &&
	    uv_ip6_addr(k->in.address, k->in.port, (struct sockaddr_in6 *)&sa) != 0) {
		snprintf(why, sizeof why, "address %s is not an IP address", k->in.address);
		cancel_probe(k);
		verdict(k, false, why);
		return;
	}
	tcp_probe *tp = calloc(1, sizeof *tp);
	if (!tp) {
		cancel_probe(k);
		verdict(k, false, "out of memory");
		return;
	}
	int rc = uv_tcp_init(k->st->h->loop(k->st->ctx), &tp->tcp);
	if (rc != 0) {
		free(tp);
		snprintf(why, sizeof why, "socket: %s", uv_strerror(rc));
		cancel_probe(k);
		verdict(k, false, why);
		return;
	}
	tp->k = k;
	tp->conn.data = tp;
	k->tp = tp;
	rc = uv_tcp_connect(&tp->conn, &tp->tcp, (const struct sockaddr *)&sa, on_connect);
	if (rc != 0) {
		snprintf(why, sizeof why, "connect: %s", uv_strerror(rc));
		cancel_probe(k); /* closes tp */
		verdict(k, false, why);
	}
}

/* ---- exec: POST /containers/{id}/exec, POST /exec/{id}/start (answers
 * when the command ends), GET /exec/{id}/json for its ExitCode ---- */

static void exec_send(dk_checker *k);

static void on_exec(void *arg, const regent_http_result *res)
{
	dk_checker *k = arg;
	k->req = NULL;
	char why[200];
	if (res->error || (k->exec_step == 1 ? res->status != 201 : res->status != 200)) {
		char d[160];
		if (res->error)
			snprintf(why, sizeof why, "docker exec: %s",
			         k->st->h->http_describe(res, d, sizeof d));
		else
			snprintf(why, sizeof why, "docker exec: HTTP %ld at step %d", res->status,
			         k->exec_step);
		cancel_probe(k);
		verdict(k, false, why);
		return;
	}
	if (k->exec_step == 2) {
		k->exec_step = 3;
		exec_send(k);
		return;
	}
	json_t *j = res->body ? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
	if (k->exec_step == 1) {
		const char *id = dk_jstr(j, "Id");
		bool good = id && strlen(id) < sizeof k->exec_id && strspn(id, "0123456789abcdef") ==
		                                                       strlen(id) && id[0];
		if (good)
			snprintf(k->exec_id, sizeof k->exec_id, "%s", id);
		json_decref(j);
		if (!good) {
			cancel_probe(k);
			verdict(k, false, "docker exec: no valid Id in the answer");
			return;
		}
		k->exec_step = 2;
		exec_send(k);
		return;
	}
	json_t *code = json_is_object(j) ? json_object_get(j, "ExitCode") : NULL;
	json_t *running = json_is_object(j) ? json_object_get(j, "Running") : NULL;
	bool ok = json_is_integer(code) && json_integer_value(code) == 0 && !json_is_true(running);
	if (json_is_true(running))
		snprintf(why, sizeof why, "the command is still running");
	else if (json_is_integer(code))
		snprintf(why, sizeof why, "exit code %lld", (long long)json_integer_value(code));
	else
		snprintf(why, sizeof why, "docker exec: no ExitCode in the answer");
	json_decref(j);
	cancel_probe(k);
	verdict(k, ok, why);
}

static void exec_send(dk_checker *k)
{
	static const char *const hdrs[] = {"Content-Type: application/json"};
	char url[300];
	char *body = NULL;
	regent_http_opts o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.unix_socket = k->st->socket;
	o.timeout_ms = k->in.check.timeout_ms;
	o.on_done = on_exec;
	o.arg = k;
	o.max_body = 1 << 16;
	if (k->exec_step == 1) {
		snprintf(url, sizeof url, "%s/containers/%s/exec", k->st->base, k->c->id);
		json_t *b = json_pack("{s:[s,s,s],s:b,s:b}", "Cmd", "sh", "-c", k->in.check.arg,
		                      "AttachStdout", 1, "AttachStderr", 1); /* start waits for its end */
		body = b ? json_dumps(b, JSON_COMPACT) : NULL;
		json_decref(b);
	} else if (k->exec_step == 2) {
		snprintf(url, sizeof url, "%s/exec/%s/start", k->st->base, k->exec_id);
		body = strdup("{\"Detach\":false,\"Tty\":false}");
		o.on_data = discard;
	} else {
		snprintf(url, sizeof url, "%s/exec/%s/json", k->st->base, k->exec_id);
	}
	if (k->exec_step != 3) {
		if (!body) {
			cancel_probe(k);
			verdict(k, false, "out of memory");
			return;
		}
		o.method = "POST";
		o.body = body;
		o.body_len = strlen(body);
		o.headers = hdrs;
		o.nheaders = 1;
	}
	o.url = url;
	int err = 0;
	k->req = k->st->h->http_request(k->st->ctx, &o, &err);
	free(body); /* the core copied it */
	if (!k->req) {
		char why[100];
		snprintf(why, sizeof why, "docker exec: cannot send the request: %s", strerror(-err));
		cancel_probe(k);
		verdict(k, false, why);
	}
}

/* ---- the schedule ---- */

static void on_timeout(uv_timer_t *t)
{
	dk_checker *k = t->data;
	if (!k->busy)
		return;
	char why[80];
	snprintf(why, sizeof why, "no answer within %u ms", (unsigned)k->in.check.timeout_ms);
	cancel_probe(k);
	verdict(k, false, why);
}

static void on_tick(uv_timer_t *t)
{
	dk_checker *k = t->data;
	if (k->busy)
		return; /* the deadline ends it */
	k->busy = true;
	if (k->st->m_checks)
		k->st->h->metric_add(k->st->m_checks, 1);
	/* the deadline: a little after curl's own timeout for http */
	uv_timer_start(k->tmo, on_timeout, k->in.check.timeout_ms + 50, 0);
	switch (k->in.check.type) {
	case DK_CHECK_HTTP:
		probe_http(k);
		break;
	case DK_CHECK_TCP:
		probe_tcp(k);
		break;
	case DK_CHECK_EXEC:
		k->exec_step = 1;
		exec_send(k);
		break;
	default:
		cancel_probe(k);
	}
}

static void verdict(dk_checker *k, bool ok, const char *why)
{
	const regent_host *h = k->st->h;
	char esc[200];
	dk_escape(why, esc, sizeof esc);
	if (ok) {
		k->fail_run = 0;
		k->reported_fail = false;
		if (k->ok_run < 65535)
			k->ok_run++;
		if (!k->passing && k->ok_run >= k->in.check.rise) {
			k->passing = true;
			h->log(k->st->ctx, REGENT_LOG_INFO, "%s passed %u time%s in a row: up", k->what,
			       k->ok_run, k->ok_run == 1 ? "" : "s");
			k->cb(k->c);
		}
		return;
	}
	k->ok_run = 0;
	if (k->fail_run < 65535)
		k->fail_run++;
	if (k->st->m_check_fail)
		h->metric_add(k->st->m_check_fail, 1);
	if (k->passing && k->fail_run >= k->in.check.fall) {
		k->passing = false;
		h->log(k->st->ctx, REGENT_LOG_WARN, "%s failed %u time%s in a row (last: %s): down",
		       k->what, k->fail_run, k->fail_run == 1 ? "" : "s", esc);
		k->cb(k->c);
	} else if (!k->reported_fail) {
		/* once per run of failures: a slow start is not news */
		h->log(k->st->ctx, REGENT_LOG_DEBUG, "%s failed (%s); %s", k->what, esc,
		       k->passing ? "still up" : "not up yet");
		k->reported_fail = true;
	}
}

/* ---- life cycle ---- */

static uint32_t hash(const char *s)
{
	uint32_t x = 2166136261u;
	for (; *s; s++)
		x = (x ^ (unsigned char)*s) * 16777619u;
	return x;
}

dk_checker *dk_checker_new(state *st, ctr *c, const dk_inst *in, dk_checker_cb cb)
{
	dk_checker *k = calloc(1, sizeof *k);
	if (!k)
		return NULL;
	k->st = st;
	k->c = c;
	k->cb = cb;
	if (dk_inst_copy(&k->in, in) < 0) {
		free(k);
		return NULL;
	}
	k->tick = st->h->timer_new(st->ctx, k);
	k->tmo = st->h->timer_new(st->ctx, k);
	char d[128];
	dk_check_describe(&in->check, d, sizeof d);
	snprintf(k->what, sizeof k->what, "container %s (%s): instance %s check %s", c->name,
	         c->short_id, in->id, d);
	st->nchecks++;
	/* The first probe at once (or nearly: spread over up to 250 ms so
	 * that a thousand checks do not fire in the same millisecond). */
	uint64_t spread = in->check.interval_ms < 250 ? in->check.interval_ms : 250;
	uv_timer_start(k->tick, on_tick, hash(in->id) % (spread ? spread : 1),
	               in->check.interval_ms);
	st->h->log(st->ctx, REGENT_LOG_DEBUG,
	           "%s: every %u ms, timeout %u ms, up after %u passes, down after %u failures",
	           k->what, (unsigned)in->check.interval_ms, (unsigned)in->check.timeout_ms,
	           (unsigned)in->check.rise, (unsigned)in->check.fall);
	return k;
}

bool dk_checker_passing(const dk_checker *k)
{
	return k->passing;
}

const char *dk_checker_id(const dk_checker *k)
{
	return k->in.id;
}

bool dk_checker_same(const dk_checker *k, const dk_inst *in)
{
	return strcmp(k->in.id, in->id) == 0 && strcmp(k->in.address, in->address) == 0 &&
	       k->in.port == in->port && dk_check_equal(&k->in.check, &in->check);
}

void dk_checker_free(dk_checker *k)
{
	if (!k)
		return;
	cancel_probe(k);
	k->st->nchecks--;
	k->st->h->timer_close(&k->tick);
	k->st->h->timer_close(&k->tmo);
	dk_inst_free(&k->in);
	free(k);
}
