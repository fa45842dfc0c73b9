/* log.c - the agent's log: one line per event on stderr, with a level and
 * the name of whoever speaks ("store etcd", "core"), control bytes escaped.
 * When stderr is the journal's stream (JOURNAL_STREAM names the device and
 * inode of stderr itself, not merely set in the environment) each line
 * starts with the sd-daemon priority prefix "<N>" so journald files it at
 * that priority (journalctl -p warning) and carries no timestamp, since
 * journald adds its own; anywhere else a line starts with a timestamp. */
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

regent_log_level regent_log_threshold = REGENT_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *regent_log_level_name(regent_log_level level)
{
	if ((unsigned)level >= REGENT_ARRAY_LEN(level_names))
		return "?";
	return level_names[level];
}

int regent_log_level_parse(const char *s, regent_log_level *out)
{
	for (size_t i = 0; i < REGENT_ARRAY_LEN(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (regent_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = REGENT_LOG_WARN;
		return 0;
	}
	return -1;
}

/* sd-daemon(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static const int level_prio[] = {3, 4, 6, 7};

static int journal_mode = -1; /* -1: not decided yet */

bool regent_log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	if (!js || !js[0])
		return false;
	uintmax_t dev, ino;
	char tail;
	if (sscanf(js, "%ju:%ju%c", &dev, &ino, &tail) != 2)
		return false;
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return false;
	return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

void regent_log_init(void)
{
	journal_mode = regent_log_stderr_is_journal();
}

/* The local time down to the second, formatted once per second (a line
 * per event: localtime_r and strftime for every line were a good share of
 * a busy agent's logging). */
static size_t stamp_seconds(time_t sec, char *out, size_t outlen)
{
	static __thread time_t last = (time_t)-1;
	static __thread char text[32];
	static __thread size_t len;
	if (sec != last) {
		struct tm tm;
		localtime_r(&sec, &tm);
		len = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
		last = sec;
	}
	if (len >= outlen)
		return 0;
	memcpy(out, text, len);
	return len;
}

static size_t put(char *line, size_t at, size_t cap, const char *s, size_t n)
{
	if (at + n > cap)
		n = cap > at ? cap - at : 0;
	memcpy(line + at, s, n);
	return at + n;
}

void regent_vlogf(regent_log_level level, const char *who, const char *fmt, va_list ap)
{
	if (level > regent_log_threshold)
		return;
	char raw[2048], msg[4096];
	int rn = vsnprintf(raw, sizeof(raw), fmt, ap);
	size_t rlen = rn < 0 ? 0 : (size_t)rn >= sizeof(raw) ? sizeof(raw) - 1 : (size_t)rn;
	/* One event, one line: values from containers and registries reach
	 * messages, so every control byte (newline, CR, ESC...) and every
	 * byte that is not UTF-8 is written as \xNN; quotes and backslashes
	 * stay as they are (JSON values stay readable). */
	size_t mlen = regent_log_escape(raw, rlen, msg, sizeof(msg));
	if (journal_mode < 0)
		regent_log_init();
	/* "<stamp><level>: <who>: <msg>\n", assembled here and written with
	 * one call (stderr is unbuffered: one write per line). */
	char line[sizeof(msg) + 160];
	size_t n = 0, cap = sizeof(line) - 1;
	if (journal_mode) {
		n = (size_t)snprintf(line, 8, "<%d>", level_prio[level]);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		n = stamp_seconds(ts.tv_sec, line, 40);
		long ms = ts.tv_nsec / 1000000;
		line[n++] = '.';
		line[n++] = (char)('0' + ms / 100);
		line[n++] = (char)('0' + ms / 10 % 10);
		line[n++] = (char)('0' + ms % 10);
		line[n++] = ' ';
	}
	const char *lv = level_names[level], *w = who ? who : "core";
	n = put(line, n, cap, lv, strlen(lv));
	n = put(line, n, cap, ": ", 2);
	n = put(line, n, cap, w, strlen(w));
	n = put(line, n, cap, ": ", 2);
	n = put(line, n, cap, msg, mlen);
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void regent_log(regent_log_level level, const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	regent_vlogf(level, who, fmt, ap);
	va_end(ap);
}
