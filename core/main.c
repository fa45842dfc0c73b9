/* main.c - the regent command: option parsing, --check-config,
 * --list-plugins, --version, `regent ctl ...` (core/ctl_client.c), and the
 * daemon's run in the foreground with its control socket (core/ctl.c). */
#include "build_config.h"
#include "ctl.h"
#include "host.h"
#include "config.h"
#include "crash.h"
#include "loader.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The daemon's soft open-file limit raised to its hard one (at most
 * FD_SOFT_MAX): systemd starts services with 1024:524288 and asks those
 * that need more to raise the soft limit themselves (systemd.exec(5),
 * LimitNOFILE=).  regent needs more with a big fleet: the haproxy sink
 * holds a copy of every listening socket (fdkeep.c: ~1,000 services are
 * past 1024), agent-run checks hold a socket each.  Nothing here uses
 * select().  haproxy, which inherits the limits, sizes itself from the
 * larger of the two (compute_ideal_maxconn), so it is unchanged. */
#define FD_SOFT_MAX 1048576

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > FD_SOFT_MAX ? FD_SOFT_MAX
	                                                                         : rl.rlim_max;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return;
	rlim_t was = rl.rlim_cur;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		regent_log(REGENT_LOG_WARN, NULL,
		           "open files: cannot raise the soft limit from %llu to %llu: %s",
		           (unsigned long long)was, (unsigned long long)want, strerror(errno));
	else
		regent_log(REGENT_LOG_INFO, NULL, "open files: soft limit raised from %llu to %llu (%s)",
		           (unsigned long long)was, (unsigned long long)want,
		           want == rl.rlim_max ? "the hard limit" : "the hard limit is higher");
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: regent [-c FILE] [--plugin-dir DIR] [--log-level LEVEL]\n"
	        "       regent --check-config [-c FILE]\n"
	        "       regent --list-plugins [--plugin-dir DIR]\n"
	        "       regent --version\n"
	        "       regent ctl [-s SOCKET] COMMAND   (regent ctl --help)\n"
	        "\n"
	        "  -c, --config FILE     configuration (default " REGENT_CONFIG_FILE_DEFAULT ")\n"
	        "  -t, --check-config    validate the configuration, load its plugins, exit 0 or 1\n"
	        "  -l, --list-plugins    list the plugins in the plugin directory\n"
	        "  -p, --plugin-dir DIR  load plugins from DIR (default: [agent] plugin_dir,\n"
	        "                        $REGENT_PLUGIN_DIR, or %s)\n"
	        "  -L, --log-level LEVEL error, warn, info or debug (overrides the config)\n"
	        "  -V, --version         print the version\n"
	        "  -h, --help            this text\n",
	        REGENT_DEFAULT_PLUGIN_DIR);
}

static void print_errors(const regent_config *cfg)
{
	for (size_t i = 0; i < cfg->nerrors; i++)
		fprintf(stderr, "%s\n", cfg->errors[i]);
	fprintf(stderr, "regent: %zu error%s in %s\n", cfg->nerrors, cfg->nerrors == 1 ? "" : "s",
	        cfg->path);
}

static regent_ctl *the_ctl;

static void on_agent_exit(regent_agent *a)
{
	(void)a;
	regent_ctl_close(the_ctl);
	the_ctl = NULL;
}

int main(int argc, char **argv)
{
	regent_log_init(); /* stderr is the journal or not: decided once */
	if (argc > 1 && strcmp(argv[1], "ctl") == 0)
		return regent_ctl_main(argc - 1, argv + 1);
	/* A fatal signal leaves its name and a backtrace in the log (crash.c) */
	if (regent_crash_report_install(regent_log_stderr_is_journal()) < 0)
		regent_log(REGENT_LOG_WARN, NULL, "no report of fatal signals: %s", strerror(errno));
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 't'},
		{"list-plugins", no_argument, NULL, 'l'},
		{"plugin-dir", required_argument, NULL, 'p'},
		{"log-level", required_argument, NULL, 'L'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *config = REGENT_CONFIG_FILE_DEFAULT;
	const char *plugin_dir = NULL;
	bool check = false, list = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:tlp:L:Vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': config = optarg; break;
		case 't': check = true; break;
		case 'l': list = true; break;
		case 'p': plugin_dir = optarg; break;
		case 'L':
			if (regent_log_level_parse(optarg, &regent_log_threshold) != 0) {
				fprintf(stderr, "regent: --log-level: expected error, warn, info or debug, "
				                "got \"%s\"\n",
				        optarg);
				return 2;
			}
			setenv("REGENT_LOG_LEVEL", optarg, 1);
			break;
		case 'V': printf("regent %s (plugin ABI %d.%d)\n", REGENT_VERSION, REGENT_ABI_MAJOR,
			         REGENT_ABI_MINOR);
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "regent: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	const char *env_level = getenv("REGENT_LOG_LEVEL");
	if (env_level && regent_log_level_parse(env_level, &regent_log_threshold) != 0)
		unsetenv("REGENT_LOG_LEVEL");

	if (list)
		return regent_list_plugins(plugin_dir ? plugin_dir : regent_default_plugin_dir(),
		                           stdout);

	/* The daemon's first start: a plugin may leave a costly check its start
	 * makes anyway to that start (host->validate_purpose). */
	regent_config *cfg = regent_config_load_for(config, plugin_dir,
	                                            check ? REGENT_VALIDATE_CHECK
	                                                  : REGENT_VALIDATE_START);
	if (cfg->nerrors) {
		print_errors(cfg);
		regent_config_unref(cfg);
		regent_plugins_unload_unused();
		return 1;
	}
	if (check) {
		printf("%s: configuration OK\n", config);
		regent_config_unref(cfg);
		regent_plugins_unload_unused();
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
	/* The few helper threads (libuv's pool, libcurl's resolver) share one
	 * arena instead of one each.  (A fixed M_MMAP_THRESHOLD was measured
	 * and refused: buffers of 256 KiB-1 MiB that a sink allocates per
	 * change then cost fresh page faults each time, 1 -> 40 ms CPU per
	 * change at 10,000 instances.) */
	mallopt(M_ARENA_MAX, 2);
#endif
	uv_loop_t loop;
	uv_loop_init(&loop);
	regent_agent *a = regent_agent_new(&loop, cfg, plugin_dir);
	regent_config_unref(cfg);
	regent_agent_handle_signals(a);
	regent_log(REGENT_LOG_INFO, NULL, "regent %s starting with %s", REGENT_VERSION, config);
	raise_fd_limit();
	a->on_exit = on_agent_exit;
	int rc = regent_ctl_start(a, &the_ctl);
	if (rc < 0) {
		regent_log(REGENT_LOG_ERROR, NULL, "cannot set up the control socket; stopping");
		a->exit_code = 1;
		regent_agent_shutdown(a);
	} else if ((rc = regent_agent_start(a)) < 0) {
		regent_log(REGENT_LOG_ERROR, NULL, "a plugin failed to start; stopping");
		a->exit_code = 1;
		regent_agent_shutdown(a);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	int code = a->exit_code;
	if (!a->finished) /* a second signal cut the shutdown short */
		return code;
	regent_agent_free(a);
	if (uv_loop_close(&loop) != 0)
		regent_log(REGENT_LOG_WARN, NULL, "the loop still had open handles at exit");
	regent_plugins_unload_unused();
	return code;
}
