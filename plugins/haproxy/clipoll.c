/* clipoll.c - the one "poll a CLI until an answer says so" helper
 * (hx_poll, hx.h) every wait on the master CLI or the admin socket uses:
 * a one-shot request (cli.c) every interval until the caller's function
 * says done or the deadline passes (cli.c owns the requests). */
#include "hx.h"

#include <errno.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Poll a CLI until                                                   */
/* ------------------------------------------------------------------ */

struct hx_poll {
	const regent_host *h;
	uv_loop_t *loop;
	char *path, *cmd;
	uint64_t interval, deadline, cmd_timeout;
	hx_poll_fn fn;
	void *arg;
	hx_cli *req;
	uv_timer_t timer;
	bool done;
};

static void poll_free(uv_handle_t *h)
{
	hx_poll *p = h->data;
	free(p->path);
	free(p->cmd);
	free(p);
}

static void poll_finish(hx_poll *p)
{
	p->done = true;
	uv_close((uv_handle_t *)&p->timer, poll_free);
}

static void poll_send(uv_timer_t *t);

static void poll_answer(void *arg, int status, const char *out, size_t len)
{
	hx_poll *p = arg;
	(void)len;
	p->req = NULL;
	/* fn may cancel p itself (p stays allocated until its close). */
	if (p->fn(p->arg, status, status == 0 ? out : "") != 0) {
		if (!p->done)
			poll_finish(p);
		return;
	}
	if (p->done)
		return;
	if (p->deadline && uv_now(p->loop) >= p->deadline) {
		p->fn(p->arg, HX_POLL_EXPIRED, "");
		if (!p->done)
			poll_finish(p);
		return;
	}
	uv_timer_start(&p->timer, poll_send, p->interval, 0);
}

static void poll_send(uv_timer_t *t)
{
	hx_poll *p = t->data;
	int err = 0;
	p->req = hx_cli_request(p->h, p->loop, p->path, p->cmd, p->cmd_timeout, poll_answer, p, &err);
	if (!p->req)
		poll_answer(p, err, "", 0);
}

hx_poll *hx_poll_start(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t first_ms, uint64_t interval_ms, uint64_t timeout_ms,
                       uint64_t cmd_timeout_ms, hx_poll_fn fn, void *arg)
{
	hx_poll *p = h->xcalloc(1, sizeof(*p));
	p->h = h;
	p->path = h->xstrdup(path);
	p->cmd = h->xstrdup(cmd);
	p->loop = loop;
	p->interval = interval_ms;
	p->deadline = timeout_ms ? uv_now(loop) + timeout_ms : 0;
	p->cmd_timeout = cmd_timeout_ms;
	p->fn = fn;
	p->arg = arg;
	uv_timer_init(loop, &p->timer);
	p->timer.data = p;
	uv_timer_start(&p->timer, poll_send, first_ms, 0);
	return p;
}

void hx_poll_cancel(hx_poll *p)
{
	if (!p || p->done)
		return;
	hx_cli_cancel(p->req);
	p->req = NULL;
	poll_finish(p);
}
