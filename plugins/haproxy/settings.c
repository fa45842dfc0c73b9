/* settings.c - the haproxy sink's configuration: its [sink] keys and
 * [service] keys, validate (also --check-config: the haproxy binary runs
 * and accepts the user's includes) and reading the settings at create. */
#include "sink.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Configuration                                                      */
/* ------------------------------------------------------------------ */

const regent_config_key hx_keys[] = {
	{"config_file", REGENT_CFG_STRING, "/var/lib/regent/haproxy.cfg", false, 0, 0,
	 "the file regent generates (haproxy loads it beside the user's files)"},
	{"manage", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "start and supervise haproxy in master-worker mode"},
	{"keep_running", REGENT_CFG_BOOL, "true", false, 0, 0,
	 "manage: haproxy keeps serving when regent stops (the next start adopts it); false: "
	 "stopped with regent"},
	{"haproxy", REGENT_CFG_STRING, "haproxy", false, 0, 0, "the haproxy binary"},
	{"include", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "the user's own config files/dirs, loaded before config_file (manage) and used by "
	 "haproxy -c"},
	{"admin_socket", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "haproxy's admin socket (stats socket ... level admin)"},
	{"master_socket", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy's master CLI socket"},
	{"reload_command", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "reload command run with /bin/sh -c instead of the master CLI"},
	{"state_file", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "server-state file (default: config_file's directory/haproxy.state)"},
	{"bind_address", REGENT_CFG_STRING, "127.0.0.1", false, 0, 0,
	 "address the service listeners bind (* or an IP literal)"},
	{"stats", REGENT_CFG_STRING, "127.0.0.1:1936", false, 0, 0,
	 "stats listener ADDR:PORT, or off (loopback only unless stats_public = true)"},
	{"stats_public", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "allow the stats listener on a non-loopback address (like the stats sink's public)"},
	{"empty_grace", REGENT_CFG_DURATION, "60s", false, 0, 86400000,
	 "how long a service whose instances all left keeps its listener (503/close meanwhile)"},
	{"reload_interval", REGENT_CFG_DURATION, "1s", false, 0, 3600000,
	 "minimum time between two reloads (changes in between coalesce)"},
	{"drain_timeout", REGENT_CFG_DURATION, "10s", false, 0, 3600000,
	 "longest time a leaving instance is drained before maintenance"},
	{"server_state_interval", REGENT_CFG_DURATION, "5s", false, 0, 3600000,
	 "how often to ask haproxy for each server's state and last check (shown by the stats "
	 "sink's page); 0: never"},
	{"startup_grace", REGENT_CFG_DURATION, "5s", false, 0, 600000,
	 "at start, how long an empty catalog waits before it may empty the routes of an earlier run"},
	{"start_wait", REGENT_CFG_DURATION, "5s", false, 0, 60000,
	 "manage, nothing to adopt: how long haproxy's first start waits for the registry's first "
	 "complete read (a service to route), to start once with every service instead of empty "
	 "and then reloaded; 0: at once"},
	{"check_timeout", REGENT_CFG_DURATION, "30s", false, 100, 600000,
	 "time limit of haproxy -c"},
	{"command_timeout", REGENT_CFG_DURATION, "5s", false, 100, 600000,
	 "time limit of one admin or master socket request"},
	{"slots", REGENT_CFG_INT, "8", false, 1, 4096, "server slots per service"},
	{"retries", REGENT_CFG_INT, "3", false, 0, 100, "connection retries per request"},
	{"timeout_connect", REGENT_CFG_DURATION, "5s", false, 1, 86400000, "default connect timeout"},
	{"timeout_client", REGENT_CFG_DURATION, "1m", false, 1, 86400000, "default client timeout"},
	{"timeout_server", REGENT_CFG_DURATION, "1m", false, 1, 86400000, "default server timeout"},
	{"timeout_check", REGENT_CFG_DURATION, "0", false, 0, 86400000,
	 "default health check timeout (0: haproxy's)"},
	{"check_interval", REGENT_CFG_DURATION, "2s", false, 100, 86400000,
	 "default health check interval"},
	{"strict_limits", REGENT_CFG_BOOL, "true", false, 0, 0,
	 "manage: haproxy refuses to start when its hard open-file limit is below one descriptor "
	 "per listener and checked server; false: `no strict-limits`, only listeners + 2 x "
	 "maxconn are budgeted (needs maxconn; docs/haproxy.md)"},
	{"maxconn", REGENT_CFG_INT, NULL, false, 1, 10000000,
	 "manage: haproxy's global maxconn (2 descriptors per connection out of the open-file "
	 "budget); default: haproxy's own"},
	{"output_max_size", REGENT_CFG_INT, "16777216", false, 0, 1099511627776,
	 "manage: bytes haproxy's output file (<state_dir>/<config name>.log) may reach before "
	 "regent keeps it as <file>.1 and empties it (checked every minute); 0: never"},
	{"max_spread_checks", REGENT_CFG_DURATION, "20s", false, 0, 3600000,
	 "manage: haproxy's global max-spread-checks, the longest a new worker spreads its first "
	 "health checks over (haproxy 2.6 overflows its spread when check_interval x checked "
	 "servers passes 2^31 ms and runs about half of the checks at once); 0: not written"},
	{"threads", REGENT_CFG_INT, "0", false, 0, 64,
	 "manage: haproxy's global nbthread (haproxy 2.6 builds its Lua lists of every proxy and "
	 "server once per thread, plus once, at every start and reload); 0: not written "
	 "(haproxy's own: one per CPU)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

const regent_config_key hx_service_keys[] = {
	{"mode", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy: tcp (default) or http"},
	{"check", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "haproxy: HTTP health check path (default: TCP connect check)"},
	{"balance", REGENT_CFG_STRING, NULL, false, 0, 0, "haproxy: balance algorithm (roundrobin)"},
	{"maxconn", REGENT_CFG_INT, NULL, false, 1, 10000000, "haproxy: listener maxconn"},
	{"retries", REGENT_CFG_INT, NULL, false, 0, 100, "haproxy: connection retries"},
	{"timeout_connect", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: connect timeout"},
	{"timeout_client", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: client timeout"},
	{"timeout_server", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: server timeout"},
	{"timeout_check", REGENT_CFG_DURATION, NULL, false, 1, 86400000, "haproxy: check timeout"},
	{"check_interval", REGENT_CFG_DURATION, NULL, false, 100, 86400000,
	 "haproxy: health check interval"},
	{"server_options", REGENT_CFG_LIST, NULL, false, 0, 0,
	 "haproxy: extra server options from the allow-list"},
	{"slots", REGENT_CFG_INT, NULL, false, 1, 4096, "haproxy: server slots"},
	{"empty_grace", REGENT_CFG_DURATION, NULL, false, 0, 86400000,
	 "haproxy: how long the listener stays once every instance left (default: the sink's)"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

/* Default paths beside config_file. */
static char *beside(const regent_host *h, const char *file, const char *name)
{
	const char *slash = strrchr(file, '/');
	int dirlen = slash ? (int)(slash - file) : 0;
	return h->xasprintf("%.*s/%s", dirlen, file, name);
}

static bool socket_path_ok(const char *p)
{
	struct sockaddr_un sa;
	return hx_valid_file_path(p) && strlen(p) < sizeof(sa.sun_path);
}

/* "ADDR:PORT" / "[V6]:PORT" / "*:PORT" -> haproxy bind text and port;
 * *loopback says whether ADDR is 127.0.0.0/8 or ::1. */
static bool parse_stats(const char *v, char *out, size_t outlen, uint16_t *port, bool *loopback)
{
	char addr[64];
	const char *colon = strrchr(v, ':');
	if (!colon || (size_t)(colon - v) >= sizeof(addr))
		return false;
	memcpy(addr, v, (size_t)(colon - v));
	addr[colon - v] = '\0';
	size_t al = strlen(addr);
	if (al >= 2 && addr[0] == '[' && addr[al - 1] == ']') {
		memmove(addr, addr + 1, al - 2);
		addr[al - 2] = '\0';
	}
	uint16_t p;
	if (!hx_parse_port(colon + 1, &p)) /* digits only: "+80", " 80", "80x" are refused */
		return false;
	*port = p;
	char canon[HX_ADDR_MAX];
	bool v6 = false;
	*loopback = hx_valid_ip(addr, canon, &v6) &&
	            (v6 ? strcmp(canon, "::1") == 0 : strncmp(canon, "127.", 4) == 0);
	return hx_format_bind(addr, (unsigned)p, out, outlen);
}

/* --check-config (and a reload's validation): the haproxy binary runs and
 * accepts the user's includes with the part regent writes first in its
 * file (hx_check_binary, master.c).  Returns 0, or a negative errno with
 * the reason in why. */
static int check_binary(regent_ctx *ctx, const regent_host *h, char *why, size_t whylen)
{
	bool manage = h->cfg_bool(ctx, "manage");
	const char *st = h->cfg_string(ctx, "stats");
	char sb[80];
	bool lb = false;
	uint16_t sport = 0;
	bool stats_on = st && strcmp(st, "off") != 0 && parse_stats(st, sb, sizeof(sb), &sport, &lb);
	const char *const *inc;
	size_t ninc = h->cfg_list(ctx, "include", &inc);
	hx_global_opts go = {
		.admin_socket = manage ? "/nonexistent/regent-check.sock" : NULL,
		.stats_bind = stats_on ? sb : NULL,
		.strict_limits = h->cfg_bool(ctx, "strict_limits"),
		.maxconn = h->cfg_is_set(ctx, "maxconn") ? h->cfg_int(ctx, "maxconn") : 0,
		.spread_ms = manage ? (int64_t)h->cfg_duration_ms(ctx, "max_spread_checks") : 0,
		.threads = manage ? h->cfg_int(ctx, "threads") : 0,
		.no_hc_ca = manage && ninc == 0,
	};
	char *global = hx_render_global(h, &go);
	int rc = hx_check_binary(h, h->cfg_string(ctx, "haproxy"), inc, ninc, global,
	                         h->cfg_duration_ms(ctx, "check_timeout"), why, whylen);
	free(global);
	return rc;
}

/* The directory a generated file (and its temporary files) lives in must
 * not be writable by others: anyone could plant or swap files there.  A
 * directory that does not exist yet is not refused here (the writes fail
 * and are retried, with the cause on /healthz). */
static int check_dir(regent_ctx *ctx, const regent_host *h, const char *key, const char *file)
{
	char *d = beside(h, file, "");
	size_t dl = strlen(d);
	if (dl > 1)
		d[dl - 1] = '\0'; /* "DIR/" -> "DIR" ("/" stays) */
	struct stat st;
	int rc = 0;
	if (stat(d, &st) == 0 && (st.st_mode & S_IWOTH)) {
		h->cfg_error(ctx, key,
		             "the directory %s of %s is writable by others (mode %04o): regent writes its "
		             "temporary and generated files there; use a directory only regent's user "
		             "(and group) can write",
		             d, file, (unsigned)(st.st_mode & 07777));
		rc = -EINVAL;
	}
	free(d);
	return rc;
}

/* strict_limits, maxconn, max_spread_checks and threads: the managed haproxy's
 * global (a driven haproxy's global is the user's); strict_limits = false
 * needs maxconn;
 * 2 x maxconn must leave haproxy descriptors for listeners under the hard
 * open-file limit it inherits (this process's: the daemon's at its start,
 * the shell's under --check-config). */
static int check_limits(regent_ctx *ctx, const regent_host *h, bool manage)
{
	bool strict = h->cfg_bool(ctx, "strict_limits");
	bool has_mc = h->cfg_is_set(ctx, "maxconn");
	int64_t mc = has_mc ? h->cfg_int(ctx, "maxconn") : 0;
	int rc = 0;
	static const char *const keys[] = {"strict_limits", "maxconn"};
	for (size_t i = 0; i < 2; i++)
		if (!manage && h->cfg_is_set(ctx, keys[i]) && (i == 1 || !strict)) {
			h->cfg_error(ctx, keys[i],
			             "needs manage = true (a haproxy regent does not start has its own "
			             "global section: set `%s` there)",
			             i ? "maxconn" : "no strict-limits");
			rc = -EINVAL;
		}
	static const char *const gkeys[][2] = {{"max_spread_checks", "max-spread-checks"},
	                                       {"threads", "nbthread"}};
	for (size_t i = 0; i < 2; i++)
		if (!manage && h->cfg_is_set(ctx, gkeys[i][0]) &&
		    (i ? h->cfg_int(ctx, "threads") : (int64_t)h->cfg_duration_ms(ctx, gkeys[i][0])) > 0) {
			h->cfg_error(ctx, gkeys[i][0],
			             "needs manage = true (a haproxy regent does not start has its own "
			             "global section: set `%s` there)",
			             gkeys[i][1]);
			rc = -EINVAL;
		}
	if (rc < 0)
		return rc;
	struct rlimit rl;
	uint64_t lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY
	                   ? (uint64_t)rl.rlim_max
	                   : 0;
	long nc = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned ncpu = nc > 0 ? (nc > 64 ? 64 : (unsigned)nc) : 64;
	if (!strict && !has_mc) {
		size_t half = hx_fd_budget(lim, ncpu, 0);
		h->cfg_error(ctx, "strict_limits",
		             "false needs maxconn: without it haproxy sizes its connections from the "
		             "descriptors it counts and, over the hard open-file limit, falls back to "
		             "maxconn 100; maxconn = %llu would leave half of what the limit (%llu) "
		             "allows to listeners",
		             lim ? (unsigned long long)(half / 4) : 10000ull, (unsigned long long)lim);
		return -EINVAL;
	}
	if (has_mc && lim && hx_fd_budget(lim, ncpu, mc) == 0) {
		h->cfg_error(ctx, "maxconn",
		             "%lld connections take %lld descriptors (2 each): with haproxy's reserve "
		             "(%llu) none is left for a listener under the hard open-file limit %llu "
		             "haproxy inherits from this process (at most %llu)",
		             (long long)mc, 2 * (long long)mc,
		             (unsigned long long)(lim - hx_fd_budget(lim, ncpu, 0)),
		             (unsigned long long)lim,
		             (unsigned long long)(hx_fd_budget(lim, ncpu, 0) / 2));
		return -EINVAL;
	}
	return 0;
}

int hx_validate(regent_ctx *ctx, const regent_host *h)
{
	int bad = 0;
	const char *cf = h->cfg_string(ctx, "config_file");
	if (!hx_valid_file_path(cf)) {
		h->cfg_error(ctx, "config_file",
		             "must be an absolute path of letters, digits and ._/+@=,- (got \"%s\")", cf);
		bad = -EINVAL;
	} else if (check_dir(ctx, h, "config_file", cf) < 0) {
		bad = -EINVAL;
	}
	bool manage = h->cfg_bool(ctx, "manage");
	static const char *const sockets[] = {"admin_socket", "master_socket"};
	for (size_t i = 0; i < 2; i++) {
		const char *p = h->cfg_string(ctx, sockets[i]);
		if (p && !socket_path_ok(p)) {
			h->cfg_error(ctx, sockets[i],
			             "must be an absolute path of letters, digits and ._/+@=,- shorter than "
			             "108 bytes (got \"%s\")",
			             p);
			bad = -EINVAL;
		}
	}
	const char *sf = h->cfg_string(ctx, "state_file");
	if (sf && !hx_valid_file_path(sf)) {
		h->cfg_error(ctx, "state_file",
		             "must be an absolute path of letters, digits and ._/+@=,- (got \"%s\")", sf);
		bad = -EINVAL;
	} else if (sf && check_dir(ctx, h, "state_file", sf) < 0) {
		bad = -EINVAL;
	}
	if (!manage) {
		if (!h->cfg_string(ctx, "admin_socket")) {
			h->cfg_error(ctx, NULL,
			             "admin_socket is required unless manage = true (haproxy's `stats socket "
			             "PATH level admin`)");
			bad = -EINVAL;
		}
		if (!h->cfg_string(ctx, "master_socket") && !h->cfg_string(ctx, "reload_command")) {
			h->cfg_error(ctx, NULL,
			             "master_socket or reload_command is required unless manage = true");
			bad = -EINVAL;
		}
	} else if (h->cfg_string(ctx, "reload_command")) {
		h->cfg_error(ctx, "reload_command",
		             "not used with manage = true (regent reloads its own haproxy)");
		bad = -EINVAL;
	}
	if (check_limits(ctx, h, manage) < 0)
		bad = -EINVAL;
	const char *const *inc;
	size_t ninc = h->cfg_list(ctx, "include", &inc);
	for (size_t i = 0; i < ninc; i++)
		if (!hx_valid_file_path(inc[i])) {
			h->cfg_error(ctx, "include", "\"%s\" is not an absolute path of letters, digits and "
			                             "._/+@=,-", inc[i]);
			bad = -EINVAL;
		}
	const char *ba = h->cfg_string(ctx, "bind_address");
	char tmp[80];
	if (!hx_format_bind(ba, 1, tmp, sizeof(tmp))) {
		h->cfg_error(ctx, "bind_address", "must be * or an IP literal (got \"%s\")", ba);
		bad = -EINVAL;
	}
	const char *st = h->cfg_string(ctx, "stats");
	uint16_t sport = 0;
	bool lo = false;
	if (st && strcmp(st, "off") != 0 && !parse_stats(st, tmp, sizeof(tmp), &sport, &lo)) {
		h->cfg_error(ctx, "stats", "must be ADDR:PORT (ADDR: * or an IP literal) or off (got \"%s\")",
		             st);
		bad = -EINVAL;
	} else if (st && strcmp(st, "off") != 0 && !lo && !h->cfg_bool(ctx, "stats_public")) {
		h->cfg_error(ctx, "stats",
		             "%s is not a loopback address: haproxy's stats page would be reachable "
		             "from other hosts; set stats_public = true if that is meant",
		             st);
		bad = -EINVAL;
	}
	/* [service] sections: settings and ports. */
	const char *const *names;
	size_t n = h->services(ctx, &names);
	for (size_t i = 0; i < n; i++) {
		svc_settings ss;
		char why[512];
		if (hx_read_settings(ctx, h, names[i], &ss, why, sizeof(why)) < 0) {
			/* at the key's own line: "service web.mode: must be ..." */
			char prefix[160];
			int pl = snprintf(prefix, sizeof(prefix), "[service %s] %s: ", names[i],
			                  ss.bad_key ? ss.bad_key : "");
			const char *detail = ss.bad_key && pl > 0 && strncmp(why, prefix, (size_t)pl) == 0
			                         ? why + pl
			                         : why;
			h->cfg_service_error(ctx, names[i], ss.bad_key, "%s", detail);
			bad = -EINVAL;
		}
		hx_buf_free(&ss.srvopts);
		int64_t p = h->service_is_set(ctx, names[i], "port") ? h->service_int(ctx, names[i], "port")
		                                                     : 0;
		if (!p)
			continue;
		if (p == sport) {
			h->cfg_service_error(ctx, names[i], "port", "%lld is the stats listener's port",
			                     (long long)p);
			bad = -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (h->service_is_set(ctx, names[j], "port") &&
			    h->service_int(ctx, names[j], "port") == p) {
				h->cfg_service_error(ctx, names[i], "port",
				                     "services %s and %s both claim port %lld", names[j],
				                     names[i], (long long)p);
				bad = -EINVAL;
			}
	}
	/* At the daemon's first start the sink's own first haproxy -c (of the
	 * file it starts haproxy with) checks the same binary and includes, off
	 * the loop, and a refusal fails the sink's start: the blocking run here
	 * would only delay everything (50-300 ms before the stores even ask). */
	bool first_start = REGENT_HOST_HAS(h, validate_purpose) &&
	                   h->validate_purpose(ctx) == REGENT_VALIDATE_START;
	if (!bad && !first_start) {
		char why[1024];
		int rc = check_binary(ctx, h, why, sizeof(why));
		if (rc < 0) {
			h->cfg_error(ctx, rc == -ENOENT ? "haproxy" : "include", "%s", why);
			bad = -EINVAL;
		}
	}
	return bad;
}

void hx_sink_configure(hx *s)
{
	regent_ctx *ctx = s->ctx;
	const regent_host *h = s->h;
	s->manage = h->cfg_bool(ctx, "manage");
	s->strict_limits = !s->manage || h->cfg_bool(ctx, "strict_limits");
	s->maxconn = s->manage && h->cfg_is_set(ctx, "maxconn") ? h->cfg_int(ctx, "maxconn") : 0;
	s->spread_ms = s->manage ? (int64_t)h->cfg_duration_ms(ctx, "max_spread_checks") : 0;
	s->threads = s->manage ? h->cfg_int(ctx, "threads") : 0;
	s->config_file = h->xstrdup(h->cfg_string(ctx, "config_file"));
	/* Temporary files per instance (pid and a sequence number): during a
	 * make-before-break trial the old and the new instance both write
	 * candidates and state files, side by side. */
	static unsigned seq;
	unsigned n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	long pid = (long)getpid();
	s->cand_path = h->xasprintf("%s.%ld-%u.new", s->config_file, pid, n);
	s->tmp_path = h->xasprintf("%s.%ld-%u.tmp", s->config_file, pid, n);
	const char *sf = h->cfg_string(ctx, "state_file");
	s->state_file = sf ? h->xstrdup(sf) : beside(h, s->config_file, "haproxy.state");
	s->state_tmp = h->xasprintf("%s.%ld-%u.tmp", s->state_file, pid, n);
	const char *as = h->cfg_string(ctx, "admin_socket");
	const char *ms = h->cfg_string(ctx, "master_socket");
	s->admin_socket = as ? h->xstrdup(as) : beside(h, s->config_file, "haproxy-admin.sock");
	s->master_socket = ms ? h->xstrdup(ms)
	                      : s->manage ? beside(h, s->config_file, "haproxy-master.sock") : NULL;
	s->reload_command = h->xstrdup(h->cfg_string(ctx, "reload_command"));
	s->haproxy_bin = h->xstrdup(h->cfg_string(ctx, "haproxy"));
	s->ninclude = h->cfg_list(ctx, "include", &s->include);
	const char *ba = h->cfg_string(ctx, "bind_address");
	snprintf(s->bind_addr, sizeof(s->bind_addr), "%s", ba ? ba : "*");
	const char *st = h->cfg_string(ctx, "stats");
	bool lo = false;
	s->stats_on = st && strcmp(st, "off") != 0 &&
	              parse_stats(st, s->stats_bind, sizeof(s->stats_bind), &s->stats_port, &lo) &&
	              (lo || h->cfg_bool(ctx, "stats_public"));
	s->reload_interval = h->cfg_duration_ms(ctx, "reload_interval");
	s->drain_timeout = h->cfg_duration_ms(ctx, "drain_timeout");
	s->check_timeout = h->cfg_duration_ms(ctx, "check_timeout");
	s->cmd_timeout = h->cfg_duration_ms(ctx, "command_timeout");
	s->startup_grace = h->cfg_duration_ms(ctx, "startup_grace");
	s->start_wait = h->cfg_duration_ms(ctx, "start_wait");
	s->slots_default = h->cfg_int(ctx, "slots");
	s->retries_default = h->cfg_int(ctx, "retries");
	s->t_connect = h->cfg_duration_ms(ctx, "timeout_connect");
	s->t_client = h->cfg_duration_ms(ctx, "timeout_client");
	s->t_server = h->cfg_duration_ms(ctx, "timeout_server");
	s->t_check = h->cfg_duration_ms(ctx, "timeout_check");
	s->inter = h->cfg_duration_ms(ctx, "check_interval");
}
