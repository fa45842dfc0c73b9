/* ctl_client.c - `regent ctl`: connects to a running agent's control
 * socket (core/ctl.c), sends one request line, and prints the JSON answer
 * as text (or as it is with --json).  A short-lived command: blocking I/O,
 * no loop. */
#include "build_config.h"
#include "ctl.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_TIMEOUT_MS 60000 /* --timeout's default */
#define MAX_ANSWER (64u << 20)

static void ctl_usage(FILE *out)
{
	fprintf(out,
	        "usage: regent ctl [-s SOCKET | -c FILE] [--json] COMMAND\n"
	        "\n"
	        "commands:\n"
	        "  status             plugins and their health, local instances, catalog size,\n"
	        "                     last catalog change, drained or not\n"
	        "  catalog [SERVICE]  what this agent routes to (every service, or one)\n"
	        "  local              this host's instances, as its sources report them\n"
	        "  drain [--wait D]   deregister this host's instances from every store, keep\n"
	        "                     them out (also across restarts) until undrain; then wait D\n"
	        "                     (e.g. 10s) for clients to finish\n"
	        "  undrain            register this host's instances again\n"
	        "  reload             re-read the configuration (as SIGHUP) and report the result\n"
	        "\n"
	        "  -s, --socket PATH  the agent's control socket (default: [agent] control_socket\n"
	        "                     of the -c file or of " REGENT_CONFIG_FILE_DEFAULT ", else %s)\n"
	        "  -c, --config FILE  read the socket path from FILE\n"
	        "  -j, --json         print the agent's JSON answer\n"
	        "  -w, --wait D       with drain: wait D after the deregistration (50ms, 10s, 1m)\n"
	        "  -t, --timeout D    give up when the agent has not accepted the connection, or\n"
	        "                     not answered, within D (default 60s)\n"
	        "  -h, --help         this text\n"
	        "exit status: 0 done, 1 the agent refused or cannot be reached, 2 usage\n",
	        REGENT_CTL_DEFAULT_SOCKET);
}

/* ---- the socket path ---- */

typedef struct find_socket {
	char *path;
	bool in_agent;
} find_socket;

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	find_socket *f = user;
	if (strcmp(section, "agent") == 0 && name && strcmp(name, "control_socket") == 0) {
		free(f->path);
		f->path = regent_xstrdup(value ? value : "");
	}
	return 1;
}

/* The control_socket key of FILE, or NULL (file unreadable, key unset). */
static char *socket_from_config(const char *file)
{
	find_socket f = {0};
	FILE *in = fopen(file, "r");
	if (!in)
		return NULL;
	ini_parse_file(in, on_ini_entry, &f);
	fclose(in);
	if (f.path)
		regent_trim(f.path);
	return f.path;
}

/* ---- talking to the agent ---- */

/* within: the timeout as the user wrote it, for the messages. */
static int ask(const char *path, const char *request, uint64_t timeout_ms, const char *within,
               json_t **answer)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "regent ctl: %s: socket path longer than %zu bytes\n", path,
		        sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "regent ctl: socket: %s\n", strerror(errno));
		return -1;
	}
	/* Before connect(): a unix socket's connect waits while the agent's
	 * backlog is full (an agent that accepts nothing: its loop busy or
	 * stopped), for as long as SO_SNDTIMEO says, which is forever unless
	 * set.  It waited there for good once set only after. */
	struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
	                     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		const char *hint = "";
		if (e == ENOENT)
			hint = " (is regent running? its socket is [agent] control_socket; -s PATH "
			       "chooses another)";
		else if (e == EACCES || e == EPERM)
			hint = " (run as root or as a member of the group regent)";
		else if (e == ECONNREFUSED)
			hint = " (nobody answers: regent is not running, or this is not its socket)";
		if (e == EAGAIN || e == EWOULDBLOCK)
			fprintf(stderr, "regent ctl: cannot connect to %s: the agent accepted no "
			                "connection within %s (its loop is busy or stopped)\n",
			        path, within);
		else
			fprintf(stderr, "regent ctl: cannot connect to %s: %s%s\n", path, strerror(e),
			        hint);
		close(fd);
		return -1;
	}
	char *line = regent_xasprintf("%s\n", request);
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "regent ctl: %s: sending the request: %s\n", path, strerror(errno));
			free(line);
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	free(line);
	regent_buf in = {0};
	for (;;) {
		char buf[65536];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			if (e == EAGAIN || e == EWOULDBLOCK)
				fprintf(stderr, "regent ctl: %s: reading the answer: no answer within %s\n",
				        path, within);
			else
				fprintf(stderr, "regent ctl: %s: reading the answer: %s\n", path, strerror(e));
			regent_buf_free(&in);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		regent_buf_add(&in, buf, (size_t)n);
		if (in.len > MAX_ANSWER) {
			fprintf(stderr, "regent ctl: %s: answer larger than %u bytes\n", path, MAX_ANSWER);
			regent_buf_free(&in);
			close(fd);
			return -1;
		}
	}
	close(fd);
	json_error_t err;
	*answer = in.len ? json_loadb(in.data, in.len, 0, &err) : NULL;
	if (!*answer || !json_is_object(*answer)) {
		fprintf(stderr, "regent ctl: %s: %s\n", path,
		        in.len ? "the answer is not a JSON object" : "the agent closed without answering");
		json_decref(*answer);
		*answer = NULL;
		regent_buf_free(&in);
		return -1;
	}
	regent_buf_free(&in);
	return 0;
}

/* ---- printing ---- */

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static json_int_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static void fmt_duration(char *out, size_t n, int64_t s)
{
	if (s < 60)
		snprintf(out, n, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, n, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, n, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else
		snprintf(out, n, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

static void fmt_time(char *out, size_t n, double t)
{
	time_t sec = (time_t)t;
	struct tm tm;
	gmtime_r(&sec, &tm);
	char base[32];
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	int ms = (int)((t - (double)sec) * 1000);
	if (ms < 0)
		ms = 0;
	if (ms > 999)
		ms = 999;
	snprintf(out, n, "%s.%03dZ", base, ms);
}

static void print_status(json_t *o)
{
	char up[32];
	fmt_duration(up, sizeof(up), jint(o, "uptime_s"));
	printf("regent %s (pid %lld), node %s, up %s%s\n", jstr(o, "version"),
	       (long long)jint(o, "pid"), jstr(o, "node"), up,
	       json_is_true(json_object_get(o, "stopping")) ? ", stopping" : "");
	printf("config:          %s\n", jstr(o, "config"));
	if (json_is_true(json_object_get(o, "drained"))) {
		json_t *since = json_object_get(o, "drained_since");
		char t[48] = "";
		if (since)
			fmt_time(t, sizeof(t), (double)json_integer_value(since));
		printf("drained:         yes%s%s (local instances are not registered; "
		       "`regent ctl undrain` registers them)\n",
		       since ? ", since " : "", t);
	} else {
		printf("drained:         no\n");
	}
	printf("local instances: %lld\n", (long long)jint(o, "local_instances"));
	json_t *cat = json_object_get(o, "catalog");
	if (!json_is_true(json_object_get(cat, "complete"))) {
		printf("catalog:         not complete yet (waiting for the stores' first read)\n");
	} else {
		char t[48] = "", ago[32] = "";
		double last = json_real_value(json_object_get(cat, "last_change"));
		fmt_time(t, sizeof(t), last);
		double d = (double)time(NULL) - last;
		fmt_duration(ago, sizeof(ago), d > 0 ? (int64_t)d : 0);
		json_int_t ns = jint(cat, "services"), ni = jint(cat, "instances");
		printf("catalog:         %lld service%s, %lld instance%s; last change %s (%s ago)\n",
		       (long long)ns, ns == 1 ? "" : "s", (long long)ni, ni == 1 ? "" : "s", t, ago);
	}
	json_t *plugins = json_object_get(o, "plugins");
	size_t w = strlen("SECTION"), wp = strlen("PLUGIN"), i;
	json_t *p;
	json_array_foreach(plugins, i, p) {
		if (strlen(jstr(p, "section")) > w)
			w = strlen(jstr(p, "section"));
		if (strlen(jstr(p, "plugin")) + 1 + strlen(jstr(p, "version")) > wp)
			wp = strlen(jstr(p, "plugin")) + 1 + strlen(jstr(p, "version"));
	}
	printf("plugins:\n  %-*s  %-*s  %-8s  %s\n", (int)w, "SECTION", (int)wp, "PLUGIN", "STATE",
	       "HEALTH");
	json_array_foreach(plugins, i, p) {
		char pv[256];
		snprintf(pv, sizeof(pv), "%s %s", jstr(p, "plugin"), jstr(p, "version"));
		bool healthy = json_is_true(json_object_get(p, "healthy"));
		const char *reason = jstr(p, "reason");
		printf("  %-*s  %-*s  %-8s  %s%s%s\n", (int)w, jstr(p, "section"), (int)wp, pv,
		       jstr(p, "state"), healthy ? "healthy" : "unhealthy", reason[0] ? ": " : "", reason);
	}
}

static void print_cell(const char *text, size_t width, bool last)
{
	if (last)
		printf("%s\n", text);
	else
		printf("%-*s  ", (int)width, text);
}

/* Prints instances (one JSON array per service, or one array) as a table. */
static void print_instances(json_t **arrays, size_t narrays, bool with_node)
{
	static const char *const heads[] = {"SERVICE", "ID", "ADDRESS", "PORT", "PROTO", "NODE", "TAGS"};
	size_t w[7];
	for (size_t c = 0; c < 7; c++)
		w[c] = strlen(heads[c]);
	/* Two passes: widths, then rows. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			for (size_t c = 0; c < 7; c++)
				if (c != 5 || with_node)
					print_cell(heads[c], w[c], c == 6);
		}
		for (size_t a = 0; a < narrays; a++) {
			size_t i;
			json_t *in;
			json_array_foreach(arrays[a], i, in) {
				char port[16], tags[1024] = "";
				snprintf(port, sizeof(port), "%lld", (long long)jint(in, "port"));
				size_t j, off = 0;
				json_t *t;
				json_array_foreach(json_object_get(in, "tags"), j, t) {
					int n = snprintf(tags + off, sizeof(tags) - off, "%s%s", j ? "," : "",
					                 json_string_value(t) ? json_string_value(t) : "");
					if (n < 0 || (size_t)n >= sizeof(tags) - off)
						break;
					off += (size_t)n;
				}
				const char *node = jstr(in, "node");
				const char *cols[7] = {jstr(in, "service"), jstr(in, "id"), jstr(in, "address"),
				                       port, jstr(in, "proto"), node[0] ? node : "-",
				                       tags[0] ? tags : "-"};
				for (size_t c = 0; c < 7; c++) {
					if (pass == 0) {
						if (strlen(cols[c]) > w[c])
							w[c] = strlen(cols[c]);
					} else if (c != 5 || with_node) {
						print_cell(cols[c], w[c], c == 6);
					}
				}
			}
		}
	}
}

static void print_catalog(json_t *o)
{
	json_t *svcs = json_object_get(o, "services");
	size_t n = json_object_size(svcs), k = 0;
	json_t **arrays = regent_xcalloc(n + 1, sizeof(*arrays));
	const char *name;
	json_t *arr;
	json_object_foreach(svcs, name, arr) arrays[k++] = arr;
	print_instances(arrays, k, true);
	free(arrays);
	if (!json_is_true(json_object_get(o, "complete")))
		fprintf(stderr, "regent ctl: the catalog is not complete yet (waiting for the stores' "
		                "first read)\n");
}

static int parse_wait(const char *s, uint64_t *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0 || s[0] < '0' || s[0] > '9')
		return -1;
	double mult;
	if (!*end || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return -1;
	if (v * mult > 7 * 86400e3)
		return -1;
	*ms = (uint64_t)(v * mult + 0.5);
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int regent_ctl_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"wait", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = NULL, *config = NULL, *wait_arg = NULL, *timeout_arg = "60 s";
	bool json = false;
	uint64_t wait_ms = 0, timeout_ms = ANSWER_TIMEOUT_MS;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:c:jw:t:h", opts, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'c': config = optarg; break;
		case 'j': json = true; break;
		case 'w':
			wait_arg = optarg;
			if (parse_wait(optarg, &wait_ms) != 0) {
				fprintf(stderr, "regent ctl: --wait: expected a duration such as 500ms, 10s or "
				                "1m, got \"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 't':
			timeout_arg = optarg;
			if (parse_wait(optarg, &timeout_ms) != 0 || timeout_ms == 0) {
				fprintf(stderr, "regent ctl: --timeout: expected a duration above 0 such as "
				                "500ms, 10s or 1m, got \"%s\"\n",
				        optarg);
				return 2;
			}
			break;
		case 'h': ctl_usage(stdout); return 0;
		default: ctl_usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "regent ctl: no command given\n");
		ctl_usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	const char *arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	static const char *const known[] = {"status", "catalog", "local", "drain", "undrain", "reload"};
	bool ok = false;
	for (size_t i = 0; i < REGENT_ARRAY_LEN(known); i++)
		ok |= strcmp(cmd, known[i]) == 0;
	if (!ok) {
		fprintf(stderr, "regent ctl: unknown command \"%s\"\n", cmd);
		ctl_usage(stderr);
		return 2;
	}
	int max_args = strcmp(cmd, "catalog") == 0 ? 1 : 0;
	if (argc - optind - 1 > max_args) {
		fprintf(stderr, "regent ctl %s: unexpected argument \"%s\"\n", cmd,
		        argv[optind + 1 + max_args]);
		return 2;
	}
	if (arg && (strchr(arg, ' ') || strchr(arg, '\n') || strchr(arg, '\t') || !arg[0])) {
		fprintf(stderr, "regent ctl %s: invalid service name \"%s\"\n", cmd, arg);
		return 2;
	}
	if (wait_arg && strcmp(cmd, "drain") != 0) {
		fprintf(stderr, "regent ctl %s: --wait only goes with drain\n", cmd);
		return 2;
	}

	char *from_cfg = NULL;
	if (!sock) {
		from_cfg = socket_from_config(config ? config : REGENT_CONFIG_FILE_DEFAULT);
		if (config && !from_cfg && access(config, R_OK) != 0) {
			fprintf(stderr, "regent ctl: cannot read %s: %s\n", config, strerror(errno));
			return 1;
		}
		if (from_cfg && !from_cfg[0]) {
			fprintf(stderr, "regent ctl: %s disables the control socket (control_socket is "
			                "empty)\n",
			        config ? config : REGENT_CONFIG_FILE_DEFAULT);
			free(from_cfg);
			return 1;
		}
		sock = from_cfg ? from_cfg : REGENT_CTL_DEFAULT_SOCKET;
	}
	char *request = arg ? regent_xasprintf("%s %s", cmd, arg) : regent_xstrdup(cmd);
	json_t *ans = NULL;
	int rc = ask(sock, request, timeout_ms, timeout_arg, &ans);
	free(request);
	if (rc < 0) {
		free(from_cfg);
		return 1;
	}
	free(from_cfg);
	bool good = json_is_true(json_object_get(ans, "ok"));
	int code = good ? 0 : 1;
	if (json) {
		char *text = json_dumps(ans, JSON_INDENT(2));
		printf("%s\n", text ? text : "");
		free(text);
	} else if (!good) {
		fprintf(stderr, "regent ctl %s: %s\n", cmd, jstr(ans, "error"));
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(ans, "errors"), i, e)
			fprintf(stderr, "  %s\n", json_string_value(e) ? json_string_value(e) : "");
	} else if (strcmp(cmd, "status") == 0) {
		print_status(ans);
	} else if (strcmp(cmd, "catalog") == 0) {
		print_catalog(ans);
	} else if (strcmp(cmd, "local") == 0) {
		json_t *arr = json_object_get(ans, "instances");
		print_instances(&arr, 1, false);
		if (json_is_true(json_object_get(ans, "drained")))
			fprintf(stderr, "regent ctl: drained: these instances are not registered\n");
	} else if (strcmp(cmd, "drain") == 0 || strcmp(cmd, "undrain") == 0) {
		json_int_t n = jint(ans, "instances"), s = jint(ans, "stores");
		if (strcmp(cmd, "drain") == 0)
			printf("drained: %lld local instance%s deregistered from %lld store%s; they stay "
			       "out, also across restarts, until `regent ctl undrain`\n",
			       (long long)n, n == 1 ? "" : "s", (long long)s, s == 1 ? "" : "s");
		else
			printf("undrained: %lld local instance%s registered with %lld store%s\n",
			       (long long)n, n == 1 ? "" : "s", (long long)s, s == 1 ? "" : "s");
	} else if (strcmp(cmd, "reload") == 0) {
		printf("configuration reloaded (%s)\n", jstr(ans, "config"));
	}
	const char *warn = jstr(ans, "warning");
	if (warn[0]) {
		fprintf(stderr, "regent ctl %s: warning: %s\n", cmd, warn);
		code = 1;
	}
	if (good && strcmp(cmd, "drain") == 0 && wait_ms > 0) {
		if (!json) {
			printf("waiting %s for clients to stop sending new requests...\n", wait_arg);
			fflush(stdout);
		}
		sleep_ms(wait_ms);
		if (!json)
			printf("done\n");
	}
	fflush(stdout);
	json_decref(ans);
	return code;
}
