/* reload.c - the haproxy sink's reload: through the master CLI (show proc
 * before, reload, then the reload counter and the new worker on the admin
 * socket), by replacing an adopted master that runs another command line
 * (master.c hx_sup_replace: a new master beside it, then the new worker on
 * the admin socket) or through reload_command (then the admin socket's pid), with
 * backoff on failure, after waiting out a master that re-executes for
 * another reload (wait_master); and the debug line that says where a
 * pipeline's time went. */
#include "sink.h"

#include <errno.h>

/* ---- where a pipeline's time went ---- */

void hx_tstep(hx *s, tstep t)
{
	s->tm[t] = uv_hrtime();
}

void hx_timing_log(hx *s, const char *how)
{
	static const char *const names[T_NSTEPS] = {
		[T_RENDERED] = "render", [T_WRITTEN] = "write", [T_CHECKED] = "haproxy -c",
		[T_FINAL] = "final render+write", [T_DUMPED] = "state dump", [T_STATE] = "state write",
		[T_RENAMED] = "rename", [T_SENT] = "reload sent", [T_MASTER] = "new worker forked",
		[T_WORKER] = "new worker answers",
	};
	if (!s->tm[T_START])
		return;
	if (s->h->log_enabled(s->ctx, REGENT_LOG_DEBUG)) {
		char line[512];
		size_t n = 0;
		uint64_t prev = s->tm[T_START], last = prev;
		for (int i = T_START + 1; i < T_NSTEPS && n < sizeof(line); i++) {
			if (!s->tm[i])
				continue;
			if (s->tm[i] < prev) { /* ran beside the step before (the state dump) */
				n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s at +%.1f ms (beside)",
				                      n ? ", " : "", names[i],
				                      (double)(s->tm[i] - s->tm[T_START]) / 1e6);
				continue;
			}
			n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %.1f ms", n ? ", " : "",
			                      names[i], (double)(s->tm[i] - prev) / 1e6);
			prev = last = s->tm[i];
		}
		s->h->log(s->ctx, REGENT_LOG_DEBUG, "pipeline %s after %.1f ms: %s", how,
		          (double)(last - s->tm[T_START]) / 1e6, n ? line : "nothing done");
	}
	memset(s->tm, 0, sizeof(s->tm));
}

/* ---- reload: master CLI or a command, then confirmation ---- */

static void reload_ok(hx *s, long worker)
{
	uint64_t took = s->h->now_ms() - s->last_pipeline_ms;
	s->h->metric_add(s->m_reloads, 1);
	s->h->backoff_reset(&s->reload_backoff);
	s->retry_at = 0;
	if (s->reload_err) {
		hx_set_reason(s, &s->reload_err, NULL);
		hx_update_health(s);
	}
	s->h->log(s->ctx, REGENT_LOG_INFO, "haproxy reloaded (worker %ld), %llu ms after the change",
	          worker, (unsigned long long)took);
	if (s->sup)
		hx_sup_listeners_changed(s->sup); /* its copies of the listeners, anew */
	s->stale_run = false; /* it runs the installed file now */
	hx_drops_reread(s);   /* listeners closed before are the file's again */
	if (s->cold_skip_now)
		hx_ok_shapes_learn(s); /* the unchecked cold start candidate: accepted */
	hx_ap_from_file(s);
	hx_pipeline_done(s);
}

static void reload_fail(hx *s, const char *why)
{
	s->h->metric_add(s->m_reload_fail, 1);
	uint64_t d = s->h->backoff_next(&s->reload_backoff);
	s->retry_at = s->h->now_ms() + d;
	char *msg = s->h->xasprintf("haproxy reload failed: %s; retrying in %llu ms", why,
	                      (unsigned long long)d);
	s->h->log(s->ctx, REGENT_LOG_ERROR, "%s", msg);
	hx_set_reason(s, &s->reload_err, msg);
	free(msg);
	hx_update_health(s);
	/* The next candidate goes through haproxy -c again: if haproxy
	 * refused this one, that pins the cause on its services. */
	hx_ok_shapes_clear(s);
	if (s->cold_skip_now)
		hx_cold_skip_refused(s);
	s->force_reload = true;
	hx_ap_unknown(s);
	hx_drop_pending(s);
	hx_pipeline_done(s);
	if (!s->proven && !s->manage)
		hx_trial_fail(s, -EIO, why);
}

/* Confirmation: the master's reload counter moves (a higher failed count:
 * refused), then the admin socket answers from the new worker. */
#define CONFIRM_MS 15000

static int confirm_info(void *arg, int status, const char *out)
{
	hx *s = arg;
	if (status == HX_POLL_EXPIRED) { /* (one slow answer: asked again) */
		s->confirm = NULL;
		reload_fail(s, "the new worker did not show up in time");
		return 1;
	}
	long pid = status == 0 ? hx_parse_info_pid(out) : 0;
	if (pid && (s->want_worker ? pid == s->want_worker : pid != s->before_admin_pid)) {
		s->confirm = NULL;
		hx_tstep(s, T_WORKER);
		reload_ok(s, pid);
		return 1;
	}
	return 0;
}

/* The master has its new worker: wait until the admin socket is that
 * worker's (by the deadline the confirmation began with). */
static void confirm_worker(hx *s, long worker)
{
	s->want_worker = worker;
	hx_tstep(s, T_MASTER);
	uint64_t now = s->h->now_ms();
	s->confirm = hx_poll_start(s->h, s->loop, s->admin_socket, "show info", 0, 50,
	                           s->confirm_deadline > now ? s->confirm_deadline - now : 1,
	                           s->cmd_timeout, confirm_info, s);
}

static int confirm_proc(void *arg, int status, const char *out)
{
	hx *s = arg;
	if (status == HX_POLL_EXPIRED) { /* (one slow answer: asked again) */
		s->confirm = NULL;
		reload_fail(s, "the new worker did not show up in time");
		return 1;
	}
	hx_proc_info pi;
	if (status == 0 && hx_parse_show_proc(out, &pi) == 0 && pi.reloads > s->before.reloads) {
		if (pi.failed > s->before.failed) {
			s->confirm = NULL;
			reload_fail(s, "haproxy refused the new configuration (its log says why); the old "
			               "worker keeps serving");
			return 1;
		}
		if (pi.worker_pid) {
			confirm_worker(s, pi.worker_pid);
			return 1;
		}
	}
	return 0;
}

static void enter_confirm(hx *s)
{
	s->ps = P_CONFIRM;
	s->confirm_deadline = s->h->now_ms() + CONFIRM_MS;
	s->want_worker = 0;
	bool proc = s->master_socket != NULL;
	s->confirm = hx_poll_start(s->h, s->loop, proc ? s->master_socket : s->admin_socket,
	                           proc ? "show proc" : "show info", 20, 50, CONFIRM_MS, s->cmd_timeout,
	                           proc ? confirm_proc : confirm_info, s);
}

static void wait_master(hx *s, int status);

static void on_reload_sent(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	/* The master re-executes itself and closes the connection: an EOF or a
	 * reset is the normal answer.  Only "could not connect" is an error,
	 * but for a master that is re-executing for another reload. */
	if (status == UV_ENOENT || status == UV_ECONNREFUSED) {
		wait_master(s, status);
		return;
	}
	if (status == UV_ETIMEDOUT) {
		char why[256];
		snprintf(why, sizeof(why), "master socket %s: %s", s->master_socket, uv_strerror(status));
		reload_fail(s, why);
		return;
	}
	if (out[0])
		hx_log_output(s, REGENT_LOG_WARN, out);
	hx_tstep(s, T_SENT);
	enter_confirm(s);
}

static void send_reload(hx *s)
{
	int err = 0;
	s->master_req = hx_cli_request(s->h, s->loop, s->master_socket, "reload", s->cmd_timeout,
	                               on_reload_sent, s, &err);
	if (!s->master_req)
		reload_fail(s, strerror(-err));
}

/* The master's `show proc` before the reload (its counters, to confirm
 * the reload by), then the reload; or why not. */
static void reload_after_proc(hx *s, int status, const char *out)
{
	if (status < 0 || hx_parse_show_proc(out, &s->before) < 0) {
		char why[256];
		snprintf(why, sizeof(why), "master socket %s: %s", s->master_socket,
		         status < 0 ? uv_strerror(status) : "unexpected answer to show proc");
		reload_fail(s, why);
		return;
	}
	send_reload(s);
}

/* The master CLI refuses connections (or its socket is not there) while
 * haproxy's master re-executes itself for a reload: another one than
 * ours, e.g. the previous instance's during a configuration reload's
 * hand-over (its reload and the new instance's first one a few ms apart),
 * or an operator's.  That takes ~0.2 s at 200 services and seconds at
 * thousands.  Rather than failing the reload (an error, unhealthy, a
 * backoff of a second or more), the master CLI is asked every
 * MASTER_WAIT_POLL_MS until it answers, then the reload goes; only a
 * master that stays away MASTER_WAIT_MS fails it. */
#define MASTER_WAIT_MS 15000
#define MASTER_WAIT_POLL_MS 50

static int on_master_back(void *arg, int status, const char *out)
{
	hx *s = arg;
	if (status == HX_POLL_EXPIRED) { /* (one slow answer: asked again) */
		s->confirm = NULL;
		char why[300];
		snprintf(why, sizeof(why), "master socket %s: no answer for %d s after it refused a "
		         "connection", s->master_socket, MASTER_WAIT_MS / 1000);
		reload_fail(s, why);
		return 1;
	}
	if (status < 0)
		return 0; /* still away: ask again */
	s->confirm = NULL;
	s->h->log(s->ctx, REGENT_LOG_INFO, "master socket %s answers again: reloading",
	          s->master_socket);
	reload_after_proc(s, status, out);
	return 1;
}

static void wait_master(hx *s, int status)
{
	s->h->log(s->ctx, REGENT_LOG_INFO,
	          "master socket %s: %s (haproxy's master re-executing for another reload?): "
	          "waiting for it before reloading",
	          s->master_socket, uv_strerror(status));
	s->confirm = hx_poll_start(s->h, s->loop, s->master_socket, "show proc", MASTER_WAIT_POLL_MS,
	                           MASTER_WAIT_POLL_MS, MASTER_WAIT_MS, s->cmd_timeout,
	                           on_master_back, s);
}

static void on_before_proc(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	if (status == UV_ENOENT || status == UV_ECONNREFUSED)
		wait_master(s, status);
	else
		reload_after_proc(s, status, out);
}

/* The master's counters asked for beside the skip path's writes
 * (hx_reload_prefetch): the reload goes as soon as the files are in. */
static void on_early_proc(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	bool ok = status == 0 && hx_parse_show_proc(out, &s->before) == 0;
	s->early_proc = ok ? 2 : 0;
	if (!s->reload_waits)
		return;
	s->reload_waits = false;
	s->early_proc = 0;
	if (ok)
		send_reload(s);
	else
		hx_reload_start(s); /* asks again, and says why it fails */
}

void hx_reload_prefetch(hx *s)
{
	if (!s->master_socket || s->master_req || (s->manage && !s->master_ready))
		return;
	int err = 0;
	s->master_req = hx_cli_request(s->h, s->loop, s->master_socket, "show proc", s->cmd_timeout,
	                               on_early_proc, s, &err);
	s->early_proc = s->master_req ? 1 : 0;
}

/* A pipeline that ends drops a prefetch it did not use. */
void hx_reload_prefetch_drop(hx *s)
{
	if (s->early_proc == 1) {
		hx_cli_cancel(s->master_req);
		s->master_req = NULL;
	}
	s->early_proc = 0;
	s->reload_waits = false;
}

static void on_reload_command(void *arg, const regent_spawn_result *res)
{
	hx *s = arg;
	s->run = NULL;
	if (res->error || res->term_signal || res->exit_status != 0) {
		hx_log_output(s, REGENT_LOG_ERROR, res->output);
		char cause[160], why[300];
		snprintf(why, sizeof(why), "reload_command %s: %s",
		         res->error ? "did not finish" : "failed",
		         hx_spawn_cause(res, cause, sizeof(cause)));
		reload_fail(s, why);
		return;
	}
	hx_tstep(s, T_SENT);
	enter_confirm(s);
}

static void on_before_info(void *arg, int status, const char *out, size_t len)
{
	hx *s = arg;
	(void)len;
	s->master_req = NULL;
	s->before_admin_pid = status == 0 ? hx_parse_info_pid(out) : 0;
	const char *argv[] = {"/bin/sh", "-c", s->reload_command, NULL};
	hx_spawn(s, argv, NULL, on_reload_command);
}

/* The replacement's end (master.c): its new worker, or why there is none
 * (the old master serves on, with its own command line; retried like a
 * failed reload). */
void hx_reload_replaced(hx *s, long worker, const char *why)
{
	if (s->ps != P_RELOAD)
		return;
	if (!worker) {
		reload_fail(s, why);
		/* A SIGHUP's instance on trial: the configuration cannot run, the
		 * running instance goes on (as when haproxy -c refuses it). */
		if (!s->proven && s->ho_peer)
			hx_trial_fail(s, -EIO, why);
		return;
	}
	s->ps = P_CONFIRM;
	s->confirm_deadline = s->h->now_ms() + CONFIRM_MS;
	confirm_worker(s, worker);
}

void hx_reload_start(hx *s)
{
	s->force_reload = false;
	if (s->manage && !s->master_ready) {
		/* Not running (yet): the (re)start loads the new file; one
		 * starting right now may have read the old one. */
		hx_pipeline_done(s);
		return;
	}
	s->ps = P_RELOAD;
	if (s->sup && hx_sup_stale(s->sup)) {
		/* Its own reload would run its own command line again. */
		hx_reload_prefetch_drop(s);
		int rc = hx_sup_replace(s->sup);
		if (rc == 0) {
			hx_tstep(s, T_SENT);
			return; /* hx_reload_replaced */
		}
		s->h->log(s->ctx, REGENT_LOG_INFO,
		          "haproxy (master pid %ld) is reloaded, not replaced (%s): its command line "
		          "stays its own until it starts anew",
		          hx_sup_pid(s->sup),
		          rc == -ENOTCONN ? "no copies of its listening sockets to hand a new master"
		                          : strerror(-rc));
	}
	if (s->master_socket && s->early_proc == 1) {
		s->reload_waits = true; /* on_early_proc sends it */
		return;
	}
	if (s->master_socket && s->early_proc == 2) {
		s->early_proc = 0;
		send_reload(s);
		return;
	}
	int err = 0;
	if (s->master_socket)
		s->master_req = hx_cli_request(s->h, s->loop, s->master_socket, "show proc", s->cmd_timeout,
		                               on_before_proc, s, &err);
	else
		s->master_req = hx_cli_request(s->h, s->loop, s->admin_socket, "show info", s->cmd_timeout,
		                               on_before_info, s, &err);
	if (!s->master_req)
		reload_fail(s, strerror(-err));
}
