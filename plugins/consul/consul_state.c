/* consul_state.c - the Consul store's state file: how a reload's old
 * instance and its replacement agree on who holds which service at the
 * agent, with no list of live instances in the process.
 *
 * The file <state_dir>/<instance>.consul names the process (pid), the
 * instance that owns it (a token), the agent it registers at (address
 * without credentials, socket) and the Consul service ids that instance
 * holds at the agent, one "id=" line each.  It is written atomically by
 * the host (host->file_write, on the threadpool: O_EXCL|O_NOFOLLOW
 * temporary file, mode 0640, fsync, rename) by its owner only: the
 * instance that became ready last (consul_state_claim), then again,
 * debounced, whenever the set it holds changes; an owner that finds the
 * file claimed by another instance of its process leaves it alone.
 *
 * Writes finish later than they are decided, and the old and the new
 * instance of a reload decide on the same file.  So every change of the
 * file (a write, a removal) goes through one queue per path, shared by
 * the instances of this process (state_q): one operation at a time on the
 * disk, in the order they were decided, the newest waiting one replacing
 * an older waiting one (the file only ever needs its latest text).  While
 * one is pending, a read gets the text the file will hold once the queue
 * has run (the latest decided), not the disk's: a read-check-write (the
 * old owner's "taken over?", the stop's hand-over, the start's gate) sees
 * exactly what it saw when writes were synchronous, and a write decided
 * earlier can never land after one decided later.
 *
 * A reload that replaces [store consul] starts the new instance while the
 * old one runs.  The new one lists the agent's services, adopts those of
 * this node (the old one's among them), proves itself and claims the
 * file.  The old one, stopped REPLACED, reads it: a successor at the same
 * agent holds every id it lists, so the old one leaves those registered
 * and deregisters only what the successor holds neither in the file nor
 * through a source (both get every local instance from the core); a
 * successor at another agent holds nothing here: everything is
 * deregistered.  No readable successor's file: nothing is deregistered
 * (what nobody holds leaves after ttl + deregister_after).  A failed trial
 * puts the file back as it found it and deregisters only at an agent the
 * running instance does not use.  A removed section marks the file
 * "deregistering" until its deregistrations are answered, and a start of
 * the same section at the same agent waits for that (consul_state_gate).
 *
 * Owns: the state file, its queue of changes, its debounce and gate timers.
 */
#include "consul_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAX (64u << 20)   /* a file larger than this is not ours */
#define WRITE_DELAY_MS 100      /* debounce of the owner's rewrites */
#define GATE_POLL_MS 50
#define GATE_MAX_MS 8000        /* a predecessor's deregistrations: 3 s each, at most */

/* The changes of one state file, in the order they were decided (see the
 * top).  Lives while an instance of this process uses the path or a
 * change is pending; the loop's single thread is the only one to touch
 * it. */
struct consul_state_q {
	struct consul_state_q *next;
	char *path;
	consul **users;           /* live instances with this path (their ctx starts writes) */
	size_t nusers;
	regent_file_write *w;     /* the write on the disk now, or NULL */
	bool pending;             /* a change waits for w (or is w): latest is what it holds */
	bool waiting;             /* a change decided after w started, not started yet */
	char *latest;             /* the file's text once all is done; NULL: no file */
};

static struct consul_state_q *queues; /* this process's, one per path */

static void q_start(struct consul_state_q *q);

static void q_maybe_free(struct consul_state_q *q)
{
	if (q->nusers || q->w)
		return;
	for (struct consul_state_q **p = &queues; *p; p = &(*p)->next)
		if (*p == q) {
			*p = q->next;
			break;
		}
	free(q->path);
	free(q->users);
	free(q->latest);
	free(q);
}

static void q_written(void *arg, int status, const char *why)
{
	struct consul_state_q *q = arg;
	q->w = NULL;
	if (status < 0 && q->nusers) {
		consul *c = q->users[0];
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "cannot write %s: %s; a reload will leave services registered that the new "
		          "instance does not hold (they leave after ttl + deregister_after)",
		          q->path, why && *why ? why : strerror(-status));
	}
	if (q->waiting) {
		q->waiting = false;
		q_start(q);
		return;
	}
	q->pending = false; /* the disk holds latest (or the failure left the old file) */
	q_maybe_free(q);
}

/* Puts latest on the disk (the queue is idle). */
static void q_start(struct consul_state_q *q)
{
	if (!q->latest) { /* a removal: metadata only, done at once */
		if (unlink(q->path) != 0 && errno != ENOENT && q->nusers)
			q->users[0]->h->log(q->users[0]->ctx, REGENT_LOG_WARN, "cannot remove %s: %s",
			                    q->path, strerror(errno));
		q->pending = false;
		q_maybe_free(q);
		return;
	}
	if (!q->nusers) {
		/* Nobody of this process uses the file any more: its readers are
		 * instances of this process (pid=), so there is no one to tell. */
		q->pending = false;
		q_maybe_free(q);
		return;
	}
	consul *c = q->users[0];
	regent_file_write_opts o = {
		.size = sizeof(o),
		.path = q->path,
		.data = q->latest,
		.len = strlen(q->latest),
		.mode = 0640,
		.on_done = q_written,
		.arg = q,
	};
	int err = 0;
	q->w = c->h->file_write(c->ctx, &o, &err);
	if (!q->w) {
		c->h->log(c->ctx, REGENT_LOG_WARN, "cannot write %s: %s", q->path, strerror(-err));
		q->pending = false;
		q_maybe_free(q);
	}
}

/* Decides the file's next text (NULL: remove it). */
static void file_put(consul *c, const char *text)
{
	struct consul_state_q *q = c->state_q;
	free(q->latest);
	q->latest = text ? c->h->xstrdup(text) : NULL;
	q->pending = true;
	if (q->w)
		q->waiting = true;
	else
		q_start(q);
}

static void q_join(consul *c)
{
	struct consul_state_q *q = queues;
	while (q && strcmp(q->path, c->state_path) != 0)
		q = q->next;
	if (!q) {
		q = c->h->xcalloc(1, sizeof(*q));
		q->path = c->h->xstrdup(c->state_path);
		q->next = queues;
		queues = q;
	}
	q->users = c->h->xrealloc(q->users, (q->nusers + 1) * sizeof(*q->users));
	q->users[q->nusers++] = c;
	c->state_q = q;
}

static void q_leave(consul *c)
{
	struct consul_state_q *q = c->state_q;
	if (!q)
		return;
	for (size_t i = 0; i < q->nusers; i++)
		if (q->users[i] == c) {
			q->users[i] = q->users[--q->nusers];
			break;
		}
	c->state_q = NULL;
	q_maybe_free(q);
}

static char *state_path(consul *c)
{
	const char *dir = c->h->state_dir(c->ctx);
	if (!dir)
		return NULL;
	char *safe = c->h->xstrdup(c->h->instance_name(c->ctx));
	for (char *p = safe; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			*p = '_';
	char *path = c->h->xasprintf("%s/%s.consul", dir, safe);
	free(safe);
	return path;
}

/* The whole file, NUL-terminated and malloc'd; NULL when absent.  With a
 * change pending, the text it will hold once the queue has run. */
static char *file_get(consul *c, const char *path)
{
	if (c->state_q && c->state_q->pending)
		return c->state_q->latest ? c->h->xstrdup(c->state_q->latest) : NULL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			c->h->log(c->ctx, REGENT_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > STATE_MAX) {
		close(fd);
		return NULL;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = c->h->xmalloc(cap);
	ssize_t k;
	while (n + 1 < cap && (k = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	buf[n] = '\0';
	return buf;
}

bool consul_state_read(consul *c, const char *text, consul_state_file *f)
{
	memset(f, 0, sizeof(*f));
	if (!text)
		return false;
	f->ids = c->h->map_new();
	long pid = -1;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			break; /* a line without its newline was not written whole */
		size_t len = (size_t)(nl - p);
		char *line = c->h->xstrndup(p, len);
		if (strncmp(line, "pid=", 4) == 0)
			pid = strtol(line + 4, NULL, 10);
		else if (strncmp(line, "owner=", 6) == 0 && !f->owner)
			f->owner = c->h->xstrdup(line + 6);
		else if (strncmp(line, "agent=", 6) == 0 && !f->agent)
			f->agent = c->h->xstrdup(line + 6);
		else if (strncmp(line, "node=", 5) == 0 && !f->node)
			f->node = c->h->xstrdup(line + 5);
		else if (strcmp(line, "deregistering=1") == 0)
			f->deregistering = true;
		else if (strncmp(line, "id=", 3) == 0 && line[3])
			c->h->map_put(f->ids, line + 3, (void *)1);
		free(line);
		p = nl + 1;
	}
	f->ours_pid = pid == (long)getpid() && f->owner && f->agent;
	return f->owner && f->agent;
}

void consul_state_file_free(consul *c, consul_state_file *f)
{
	free(f->owner);
	free(f->agent);
	free(f->node);
	if (f->ids)
		c->h->map_free(f->ids, NULL);
	memset(f, 0, sizeof(*f));
}

/* The file as this instance would write it now. */
static char *render(consul *c, bool deregistering)
{
	size_t cap = 512, n = 0;
	for (reg *r = c->head; r; r = r->next)
		cap += strlen(r->cid) + 4;
	const char *node = c->h->node(c->ctx);
	if (strchr(node, '\n'))
		node = "";
	cap += strlen(node) + strlen(c->agent_id) + strlen(c->token);
	char *buf = c->h->xmalloc(cap);
	n = (size_t)snprintf(buf, cap, "pid=%ld\nowner=%s\nagent=%s\nnode=%s\n%s", (long)getpid(),
	                     c->token, c->agent_id, node, deregistering ? "deregistering=1\n" : "");
	for (reg *r = c->head; r && n < cap; r = r->next)
		if (r->known && !strchr(r->cid, '\n'))
			n += (size_t)snprintf(buf + n, cap - n, "id=%s\n", r->cid);
	return buf;
}

/* Another instance of this process took the file over. */
static bool taken_over(consul *c)
{
	char *text = file_get(c, c->state_path);
	consul_state_file f;
	bool other = consul_state_read(c, text, &f) && f.ours_pid && strcmp(f.owner, c->token) != 0;
	consul_state_file_free(c, &f);
	free(text);
	return other;
}

static void write_now(consul *c, bool claim)
{
	c->state_dirty = false;
	if (!c->owns || !c->state_path || c->stopping)
		return;
	if (!claim && taken_over(c)) {
		/* A new instance claimed it (a failed trial puts it back). */
		c->h->log(c->ctx, REGENT_LOG_DEBUG, "%s: the new instance owns it now", c->state_path);
		return;
	}
	char *text = render(c, false);
	file_put(c, text);
	free(text);
}

static void on_state_timer(uv_timer_t *t)
{
	write_now(t->data, false);
}

void consul_state_open(consul *c)
{
	snprintf(c->token, sizeof(c->token), "%llx-%lx", (unsigned long long)uv_hrtime(),
	         (unsigned long)(uintptr_t)c);
	c->agent_id = c->h->xasprintf("%s%s%s", c->shown, c->unix_path ? " via " : "",
	                               c->unix_path ? c->unix_path : "");
	for (char *p = c->agent_id; *p; p++)
		if (*p == '\n')
			*p = ' ';
	c->state_timer = c->h->timer_new(c->ctx, c);
	c->gate_timer = c->h->timer_new(c->ctx, c);
	c->state_path = state_path(c);
	if (!c->state_path) {
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "no usable state_dir: a reload cannot hand the registered services over "
		          "(the old instance then leaves them all registered)");
		return;
	}
	q_join(c);
	c->state_prev = file_get(c, c->state_path);
}

void consul_state_claim(consul *c)
{
	if (!c->state_path)
		return;
	c->owns = true;
	uv_timer_stop(c->state_timer);
	write_now(c, true);
}

void consul_state_changed(consul *c)
{
	if (!c->owns || c->stopping || c->state_dirty)
		return;
	c->state_dirty = true;
	uv_timer_start(c->state_timer, on_state_timer, WRITE_DELAY_MS, 0);
}

bool consul_state_gate(consul *c)
{
	if (!c->state_path)
		return false;
	if (!c->gate_since)
		c->gate_since = uv_now(c->h->loop(c->ctx));
	char *text = file_get(c, c->state_path);
	consul_state_file f;
	bool busy = consul_state_read(c, text, &f) && f.ours_pid && f.deregistering &&
	            strcmp(f.owner, c->token) != 0 && strcmp(f.agent, c->agent_id) == 0;
	consul_state_file_free(c, &f);
	free(text);
	if (busy && uv_now(c->h->loop(c->ctx)) - c->gate_since >= GATE_MAX_MS) {
		c->h->log(c->ctx, REGENT_LOG_WARN,
		          "%s: the previous instance still deregisters after %d ms; going on",
		          c->state_path, GATE_MAX_MS);
		busy = false;
	}
	return busy;
}

bool consul_state_handover(consul *c)
{
	consul_state_file f;
	bool yes = consul_state_read(c, c->state_prev, &f) && f.ours_pid &&
	           strcmp(f.owner, c->token) != 0 && strcmp(f.agent, c->agent_id) == 0 &&
	           !f.deregistering;
	consul_state_file_free(c, &f);
	return yes;
}

/* Marks every service the agent may hold for deregistration. */
static size_t mark(consul *c, const regent_map *keep, bool keep_sourced)
{
	size_t n = 0;
	for (reg *r = c->head; r; r = r->next) {
		r->stop_todo = r->known && !(keep && c->h->map_get(keep, r->cid)) && !(keep_sourced && r->body);
		n += r->stop_todo;
	}
	return n;
}

size_t consul_state_on_stop(consul *c, regent_stop_reason why, const char **because)
{
	*because = "";
	if (!c->agent_id)
		return 0; /* never started: holds nothing */
	uv_timer_stop(c->state_timer);
	consul_state_file f;
	size_t n = 0;
	char *text = NULL;
	switch (why) {
	case REGENT_STOP_EXIT:
		if (c->dereg_on_stop) {
			*because = "deregister_on_stop = true";
			return mark(c, NULL, false);
		}
		*because = "deregister_on_stop = false: a restarted regent takes them over; "
		           "if none comes back, they leave ?passing reads after ttl";
		return mark(c, c->regs, false); /* keeps all */
	case REGENT_STOP_REMOVED:
		*because = "";
		n = mark(c, NULL, false);
		if (n && c->state_path) {
			/* A start of this section at this agent waits for these. */
			char *t = render(c, true);
			file_put(c, t);
			c->state_removing = true;
			free(t);
		}
		return n;
	case REGENT_STOP_REPLACED:
		text = c->state_path ? file_get(c, c->state_path) : NULL;
		if (!consul_state_read(c, text, &f) || !f.ours_pid || strcmp(f.owner, c->token) == 0) {
			*because = "the new instance did not record what it holds (no state file): "
			           "those it does not hold leave after ttl + deregister_after";
			n = mark(c, c->regs, false);
		} else if (strcmp(f.agent, c->agent_id) == 0) {
			/* Same node: the core reports every local instance to both,
			 * under the same ids, so the new one holds what a source
			 * reports even if its file does not list it yet. */
			*because = "the new instance at the same agent holds them";
			n = mark(c, f.ids, f.node && strcmp(f.node, c->h->node(c->ctx)) == 0);
		} else {
			*because = "the new instance registers at another agent";
			n = mark(c, NULL, false);
		}
		consul_state_file_free(c, &f);
		free(text);
		return n;
	default: /* FAILED: the instance it was to replace still runs */
		if (c->owns && c->state_path) {
			/* Put back what the running instance relies on (NULL:
			 * there was no file). */
			file_put(c, c->state_prev);
			c->owns = false;
		}
		if (consul_state_read(c, c->state_prev, &f) && f.ours_pid &&
		    strcmp(f.agent, c->agent_id) != 0) {
			*because = "this instance never took over, and the running one uses another agent";
			n = mark(c, NULL, false);
		} else {
			*because = "this instance never took over; the running one keeps them";
			n = mark(c, c->regs, false);
		}
		consul_state_file_free(c, &f);
		return n;
	}
}

void consul_state_stopped(consul *c)
{
	if (!c->state_removing)
		return;
	c->state_removing = false;
	char *text = file_get(c, c->state_path);
	consul_state_file f;
	if (consul_state_read(c, text, &f) && strcmp(f.owner, c->token) == 0)
		file_put(c, NULL);
	consul_state_file_free(c, &f);
	free(text);
}

void consul_state_close(consul *c)
{
	consul_state_stopped(c);
	q_leave(c);
	c->h->timer_close(&c->state_timer);
	c->h->timer_close(&c->gate_timer);
	free(c->state_path);
	free(c->state_prev);
	free(c->agent_id);
}
