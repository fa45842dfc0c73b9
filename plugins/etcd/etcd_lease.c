/*
 * etcd_lease.c - the etcd store's lease across restarts and reloads: the
 * file <state_dir>/<instance>.lease naming the lease (with the ttl, node
 * and prefix it was granted for), written atomically (O_EXCL|O_NOFOLLOW,
 * mode 0640, rename), read at start to re-attach.
 *
 * A reload that replaces [store etcd] hands the lease over through this
 * file, make-before-break, with no list of live instances: the new
 * instance starts while the old one still runs and keeps the lease
 * alive; when the file's settings match its own and the lease lives, it
 * re-attaches to it (both keeping it alive meanwhile is harmless),
 * reconciles and rewrites the file as its owner; only once it has proven
 * itself is the old one stopped (REPLACED), and the old one reads the
 * file: if it names the old one's own lease, the new one holds it and
 * nothing is revoked; otherwise (ttl or prefix changed, so the new one
 * granted its own lease and has already written its keys) the old lease
 * is revoked.  A failed trial that re-attached leaves the lease to the
 * instance it was to replace; one that granted its own lease puts the
 * file back as it found it and revokes its lease.
 *
 * Owns: the lease file.
 */
#include "etcd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_MAX 1000

/* ------------------------------------------------------------------ */
/* The lease file                                                     */
/* ------------------------------------------------------------------ */

static char *lease_path(etcd *e)
{
	const char *dir = e->h->state_dir(e->ctx);
	if (!dir)
		return NULL;
	const char *name = e->h->instance_name(e->ctx);
	char *safe = e->h->xstrdup(name);
	for (char *p = safe; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			*p = '_';
	char *path = e->h->xasprintf("%s/%s.lease", dir, safe);
	free(safe);
	return path;
}

/* Replaces the file with buf (atomically: a new file, then rename). */
static bool file_put(etcd *e, const char *buf, size_t n)
{
	char *tmp = e->h->xasprintf("%s.new", e->lease_file);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	bool ok = fd >= 0 && write(fd, buf, n) == (ssize_t)n;
	if (fd >= 0 && close(fd) != 0)
		ok = false;
	if (ok && rename(tmp, e->lease_file) != 0)
		ok = false;
	int err = errno;
	if (!ok)
		unlink(tmp);
	free(tmp);
	errno = err;
	return ok;
}

/* Writes the file naming lease id. */
void lease_file_write(etcd *e, int64_t id)
{
	if (!e->lease_file)
		return;
	char buf[900];
	const char *node = e->h->node(e->ctx);
	int n = snprintf(buf, sizeof(buf), "lease=%llx\nttl=%lld\nnode=%.200s\nprefix=%s\n",
	                 (unsigned long long)id, (long long)e->ttl_s, node ? node : "", e->prefix);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		e->h->log(e->ctx, REGENT_LOG_WARN, "%s: prefix too long to record; a restart will "
		          "register under a new lease", e->lease_file);
		return;
	}
	if (!file_put(e, buf, (size_t)n))
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "cannot write %s: %s; a restart will register under a new lease",
		          e->lease_file, strerror(errno));
}

/* The file's text (NUL-terminated, malloc'd), NULL when absent or empty. */
static char *file_get(etcd *e, const char *path, bool quiet)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT && !quiet)
			e->h->log(e->ctx, REGENT_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = e->h->xcalloc(1, FILE_MAX);
	ssize_t n = read(fd, buf, FILE_MAX - 1);
	close(fd);
	if (n <= 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

/* The lease id buf names, 0 when none (or, unless quiet, for another
 * node, prefix or ttl). */
static int64_t parse(etcd *e, const char *path, const char *buf, bool quiet)
{
	if (!buf)
		return 0;
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
		          "changed: granting a new lease (the old one is revoked by the instance this "
		          "one replaces, or expires)",
		          path, id, ttl, prefix);
		return 0;
	}
	return (int64_t)id;
}

int64_t lease_file_read(etcd *e, const char *path, bool quiet)
{
	char *buf = file_get(e, path, quiet);
	int64_t id = parse(e, path, buf, quiet);
	free(buf);
	return id;
}

void lease_file_load(etcd *e)
{
	free(e->lease_file);
	e->lease_file = lease_path(e);
	if (!e->lease_file) {
		e->h->log(e->ctx, REGENT_LOG_WARN,
		          "no usable state_dir: the lease cannot be kept across restarts");
		return;
	}
	free(e->file_prev);
	e->file_prev = file_get(e, e->lease_file, false);
	/* A reload's new instance re-attaches to the lease the running one
	 * holds, as a restart does: the lease is shared until the old one
	 * is stopped (lease_file_on_stop). */
	e->adopt = parse(e, e->lease_file, e->file_prev, false);
}

/* The lease file after this instance; true when the lease must be kept
 * without a last keepalive (another instance holds it). */
bool lease_file_on_stop(etcd *e, regent_stop_reason why, bool revoke)
{
	if (!e->lease_file)
		return false;
	int64_t named = e->lease ? lease_file_read(e, e->lease_file, true) : 0;
	if (why == REGENT_STOP_REPLACED)
		/* The new instance re-attached to our lease (and rewrote the
		 * file): it is its lease now.  Otherwise it has its own. */
		return e->lease && named == e->lease;
	if (why == REGENT_STOP_FAILED) {
		if (e->lease && e->lease == e->adopted)
			return true; /* the instance it was to replace holds it */
		if (e->lease && named == e->lease) {
			/* We wrote the file for a lease of our own: put back what the
			 * running instance relies on. */
			bool ok = e->file_prev ? file_put(e, e->file_prev, strlen(e->file_prev))
			                       : unlink(e->lease_file) == 0;
			if (!ok)
				e->h->log(e->ctx, REGENT_LOG_WARN, "cannot restore %s: %s", e->lease_file,
				          strerror(errno));
		}
		return false;
	}
	if (revoke && e->lease && named == e->lease)
		unlink(e->lease_file);
	return false;
}
