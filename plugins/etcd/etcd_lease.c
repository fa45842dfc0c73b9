/*
 * etcd_lease.c - the etcd store's lease across restarts: the file
 * <state_dir>/<instance>.lease naming the lease (with the ttl and prefix
 * it was granted for), written atomically (O_EXCL|O_NOFOLLOW, mode 0640,
 * rename), read at start to re-attach; and the table of this plugin's
 * live instances in the process, so that a reload's new instance never
 * re-attaches to the lease its predecessor still holds.
 *
 * Owns: the lease file and the live-instance table.
 */
#include "etcd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Live instances of this plugin in the process                       */
/* ------------------------------------------------------------------ */

/* A reload's new instance runs next to the one it replaces: it must not
 * re-attach to the lease the old one still holds (revoking it would take
 * the new one's keys).  One loop, so no lock. */
#define MAX_LIVE 64
static etcd *live[MAX_LIVE];

static void live_add(etcd *e)
{
	for (size_t i = 0; i < MAX_LIVE; i++)
		if (!live[i]) {
			live[i] = e;
			return;
		}
}

void reg_live_forget(etcd *e)
{
	for (size_t i = 0; i < MAX_LIVE; i++)
		if (live[i] == e)
			live[i] = NULL;
}

static bool lease_held_elsewhere(const etcd *e, int64_t id)
{
	for (size_t i = 0; i < MAX_LIVE; i++)
		if (live[i] && live[i] != e && !live[i]->stop_done && live[i]->lease == id)
			return true;
	return false;
}

static etcd *live_sibling(const etcd *e)
{
	for (size_t i = 0; i < MAX_LIVE; i++)
		if (live[i] && live[i] != e && !live[i]->stopping && live[i]->lease &&
		    strcmp(e->h->instance_name(live[i]->ctx), e->h->instance_name(e->ctx)) == 0)
			return live[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The lease file                                                     */
/* ------------------------------------------------------------------ */

static char *lease_path(etcd *e)
{
	const char *dir = e->h->state_dir(e->ctx);
	if (!dir)
		return NULL;
	const char *name = e->h->instance_name(e->ctx);
	char *safe = xstrdup(name);
	for (char *p = safe; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			*p = '_';
	char *path = xasprintf("%s/%s.lease", dir, safe);
	free(safe);
	return path;
}

/* Writes the file naming lease id (atomically: a new file, then rename). */
void lease_file_write(etcd *e, int64_t id)
{
	if (!e->lease_file)
		return;
	char *tmp = xasprintf("%s.new", e->lease_file);
	char buf[900];
	const char *node = e->h->node(e->ctx);
	int n = snprintf(buf, sizeof(buf), "lease=%llx\nttl=%lld\nnode=%.200s\nprefix=%s\n",
	                 (unsigned long long)id, (long long)e->ttl_s, node ? node : "", e->prefix);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s: prefix too long to record; a restart will "
		          "register under a new lease", e->lease_file);
		free(tmp);
		return;
	}
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	bool ok = fd >= 0 && write(fd, buf, (size_t)n) == n;
	if (fd >= 0 && close(fd) != 0)
		ok = false;
	if (ok && rename(tmp, e->lease_file) != 0)
		ok = false;
	if (!ok) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "cannot write %s: %s; a restart will register under a new lease",
		          e->lease_file, strerror(errno));
		unlink(tmp);
	}
	free(tmp);
}

/* The lease id the file names, 0 when none (or for another prefix/ttl). */
int64_t lease_file_read(etcd *e, const char *path, bool quiet)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT && !quiet)
			e->h->log(e->ctx, REGENT_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
		return 0;
	}
	char buf[1000];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	unsigned long long id = 0;
	long long ttl = 0;
	char prefix[600] = "";
	const char *p = strstr(buf, "lease=");
	const char *t = strstr(buf, "ttl=");
	const char *x = strstr(buf, "prefix=");
	if (!p || sscanf(p, "lease=%llx", &id) != 1 || !t || sscanf(t, "ttl=%lld", &ttl) != 1 ||
	    !x || sscanf(x, "prefix=%599[^\n]", prefix) < 0)
		return 0;
	if (x[7] == '\n')
		prefix[0] = '\0';
	if (quiet)
		return (int64_t)id;
	/* Another agent's file (two agents given one state_dir): never
	 * re-attach to a lease whose keys are someone else's. */
	const char *nd = strstr(buf, "\nnode=");
	const char *me = e->h->node(e->ctx);
	size_t ml = me ? strlen(me) : 0;
	if (!nd || strncmp(nd + 6, me ? me : "", ml) != 0 || nd[6 + ml] != '\n') {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "%s names lease %llx of another node (or has no node): not re-attaching; give "
		          "each agent its own [agent] state_dir",
		          path, id);
		return 0;
	}
	if (ttl != e->ttl_s || strcmp(prefix, e->prefix) != 0) {
		e->h->log(e->ctx, REGENT_LOG_INFO,
		          "%s names lease %llx for ttl %lld s and prefix \"%s\"; the configuration "
		          "changed: not re-attaching (its keys expire with it)",
		          path, id, ttl, prefix);
		return 0;
	}
	return (int64_t)id;
}

void lease_file_load(etcd *e)
{
	free(e->lease_file);
	e->lease_file = lease_path(e);
	live_add(e);
	if (!e->lease_file) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "no usable state_dir: the lease cannot be kept across restarts");
		return;
	}
	int64_t id = lease_file_read(e, e->lease_file, false);
	if (id && lease_held_elsewhere(e, id)) {
		e->h->log(e->ctx, REGENT_LOG_DEBUG,
		          "lease %llx is held by the instance this one replaces; granting a new one",
		          (unsigned long long)id);
		id = 0;
	}
	e->adopt = id;
}

/* The lease file after this instance: kept for a restart, handed back to
 * the instance a failed trial was to replace, or removed. */
void lease_file_on_stop(etcd *e, regent_stop_reason why, bool revoke)
{
	if (!e->lease_file)
		return;
	if (why == REGENT_STOP_FAILED) {
		etcd *old = live_sibling(e);
		if (old)
			lease_file_write(e, old->lease);
		else if (e->lease && lease_file_read(e, e->lease_file, true) == e->lease)
			unlink(e->lease_file);
		return;
	}
	if (why == REGENT_STOP_REPLACED)
		return; /* the new instance wrote its own */
	if (revoke && e->lease && lease_file_read(e, e->lease_file, true) == e->lease)
		unlink(e->lease_file);
}

