/* test_log.c - the log line format (issue 17): sd-daemon "<N>" priority
 * prefixes when stderr is the journal's stream (JOURNAL_STREAM matching
 * fstat(2) of stderr, faked here with a socketpair), timestamps when it is
 * not (a pipe, or a JOURNAL_STREAM naming another file), quotes readable
 * and control bytes escaped, and one warning per unhealthy cause. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "util.h"

static int saved_stderr = -1;
static int rd = -1; /* read end of what stderr writes to */

/* Makes stderr one end of a socketpair (journal = true) or a pipe. */
static void redirect(bool socket)
{
	int fds[2];
	if (socket)
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	else
		assert_int_equal(pipe(fds), 0);
	fflush(stderr);
	if (saved_stderr < 0)
		saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
	close(fds[1]);
	if (rd >= 0)
		close(rd);
	rd = fds[0];
	fcntl(rd, F_SETFL, O_NONBLOCK);
}

static void restore(void)
{
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(rd);
	rd = -1;
}

/* Everything written to stderr so far. */
static char *drain(void)
{
	fflush(stderr);
	static char buf[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(rd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	return buf;
}

static void journal_stream_of_stderr(char *out, size_t len, long ino_delta)
{
	struct stat st;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(out, len, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino + ino_delta);
}

static void log_all_levels(void)
{
	regent_log(REGENT_LOG_ERROR, "store etcd", "e1");
	regent_log(REGENT_LOG_WARN, "store etcd", "w1");
	regent_log(REGENT_LOG_INFO, NULL, "i1");
	regent_log(REGENT_LOG_DEBUG, "sink haproxy", "d1");
}

static void journal_priorities(void **state)
{
	(void)state;
	regent_log_threshold = REGENT_LOG_DEBUG;
	redirect(true);
	char js[64];
	journal_stream_of_stderr(js, sizeof(js), 0);
	setenv("JOURNAL_STREAM", js, 1);
	regent_log_init();
	bool is_journal = regent_log_stderr_is_journal();
	log_all_levels();
	char *got = drain();
	restore();
	assert_true(is_journal);
	assert_string_equal(got, "<3>error: store etcd: e1\n"
	                         "<4>warn: store etcd: w1\n"
	                         "<6>info: core: i1\n"
	                         "<7>debug: sink haproxy: d1\n");
}

static void assert_stamped(const char *got)
{
	regex_t re;
	assert_int_equal(regcomp(&re,
	                         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} "
	                         "error: store etcd: e1\n"
	                         "[0-9T:.-]+ warn: store etcd: w1\n"
	                         "[0-9T:.-]+ info: core: i1\n"
	                         "[0-9T:.-]+ debug: sink haproxy: d1\n$",
	                         REG_EXTENDED),
	                 0);
	int rc = regexec(&re, got, 0, NULL, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("not four timestamped lines without a priority prefix:\n%s", got);
}

/* JOURNAL_STREAM inherited from a parent whose stderr was the journal,
 * while this one's stderr is something else: timestamps, no prefixes. */
static void stale_journal_stream(void **state)
{
	(void)state;
	regent_log_threshold = REGENT_LOG_DEBUG;
	redirect(true);
	char js[64];
	journal_stream_of_stderr(js, sizeof(js), 1); /* another inode */
	setenv("JOURNAL_STREAM", js, 1);
	regent_log_init();
	bool is_journal = regent_log_stderr_is_journal();
	log_all_levels();
	char *first = regent_xstrdup(drain());
	assert_false(is_journal);
	/* garbage in the variable */
	setenv("JOURNAL_STREAM", "12:abc", 1);
	regent_log_init();
	bool garbage_is_journal = regent_log_stderr_is_journal();
	log_all_levels();
	char *second = regent_xstrdup(drain());
	restore();
	assert_false(garbage_is_journal);
	assert_stamped(first);
	assert_stamped(second);
	free(first);
	free(second);
}

static void plain_pipe(void **state)
{
	(void)state;
	regent_log_threshold = REGENT_LOG_DEBUG;
	redirect(false);
	unsetenv("JOURNAL_STREAM");
	regent_log_init();
	log_all_levels();
	char *got = regent_xstrdup(drain());
	restore();
	assert_stamped(got);
	free(got);
}

/* Quotes and backslashes stay readable (a JSON value logs as itself);
 * newlines, ESC and invalid UTF-8 are escaped so one event is one line. */
static void escaping(void **state)
{
	(void)state;
	redirect(true);
	char js[64];
	journal_stream_of_stderr(js, sizeof(js), 0);
	setenv("JOURNAL_STREAM", js, 1);
	regent_log_init();
	regent_log(REGENT_LOG_WARN, "store etcd", "bad value %s",
	           "{\"port\":\"80\\\\\"}\n\x1b[2J\xff caf\xc3\xa9");
	char *got = drain();
	restore();
	assert_string_equal(got, "<4>warn: store etcd: bad value "
	                         "{\"port\":\"80\\\\\"}\\x0a\\x1b[2J\\xff caf\xc3\xa9\n");
}

static void local_second(time_t t, char *out, size_t len)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

/* The seconds of the stamp are formatted once per second (log.c): a line
 * in the next second carries the next second, and the milliseconds and
 * the rest of the line are there in every line. */
static void stamp_follows_clock(void **state)
{
	(void)state;
	regent_log_threshold = REGENT_LOG_INFO;
	redirect(false);
	unsetenv("JOURNAL_STREAM");
	regent_log_init();
	char s[3][32];
	time_t t0 = time(NULL);
	regent_log(REGENT_LOG_INFO, "store etcd", "first");
	regent_log(REGENT_LOG_INFO, "store etcd", "second %d", 2);
	while (time(NULL) < t0 + 2)
		usleep(20000);
	regent_log(REGENT_LOG_INFO, NULL, "third");
	time_t t1 = time(NULL);
	char *got = regent_xstrdup(drain());
	restore();
	regex_t re;
	assert_int_equal(regcomp(&re,
	                         "^([0-9T:-]{19})\\.[0-9]{3} info: store etcd: first\n"
	                         "([0-9T:-]{19})\\.[0-9]{3} info: store etcd: second 2\n"
	                         "([0-9T:-]{19})\\.[0-9]{3} info: core: third\n$",
	                         REG_EXTENDED),
	                 0);
	regmatch_t m[4];
	int rc = regexec(&re, got, 4, m, 0);
	regfree(&re);
	if (rc != 0)
		fail_msg("not three stamped lines:\n%s", got);
	for (int i = 1; i <= 3; i++)
		snprintf(s[i - 1], sizeof(s[0]), "%.*s", (int)(m[i].rm_eo - m[i].rm_so), got + m[i].rm_so);
	char lo[32], hi[32], mid[32];
	local_second(t0, lo, sizeof(lo));
	local_second(t0 + 1, mid, sizeof(mid));
	local_second(t1, hi, sizeof(hi));
	/* the first two within [t0, t0 + 1], the third at t0 + 2 or later */
	assert_true(strcmp(s[0], lo) == 0 || strcmp(s[0], mid) == 0);
	assert_true(strcmp(s[1], lo) == 0 || strcmp(s[1], mid) == 0);
	assert_true(strcmp(s[2], mid) > 0 && strcmp(s[2], hi) <= 0);
	free(got);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* A plugin logs its cause as a warning and then reports unhealthy with
 * the same reason: one warning, the transition at info. */
static void unhealthy_warned_once(void **state)
{
	(void)state;
	regent_log_threshold = REGENT_LOG_DEBUG;
	redirect(true);
	char js[64];
	journal_stream_of_stderr(js, sizeof(js), 0);
	setenv("JOURNAL_STREAM", js, 1);
	regent_log_init();
	regent_ctx *ctx = regent_xcalloc(1, sizeof(*ctx));
	ctx->who = regent_xstrdup("store etcd");
	ctx->healthy = true;
	const regent_host *h = &regent_host_table;
	h->log(ctx, REGENT_LOG_WARN, "discovery: 127.0.0.1:2379: connection refused");
	h->set_health(ctx, false, "discovery: 127.0.0.1:2379: connection refused");
	h->set_health(ctx, false, "discovery: 127.0.0.1:2379: connection refused");
	h->set_health(ctx, true, NULL);
	/* a cause the plugin did not log itself: the transition warns */
	h->set_health(ctx, false, "lease lost");
	char *got = drain();
	restore();
	assert_int_equal(count(got, "connection refused"), 1);
	assert_int_equal(count(got, "<4>"), 2);
	assert_string_equal(got, "<4>warn: store etcd: discovery: 127.0.0.1:2379: connection refused\n"
	                         "<6>info: store etcd: unhealthy (the warning above)\n"
	                         "<6>info: store etcd: healthy\n"
	                         "<4>warn: store etcd: unhealthy: lease lost\n");
	free(ctx->who);
	free(ctx->health_reason);
	free(ctx->health_note);
	free(ctx->last_warning);
	free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(journal_priorities),   cmocka_unit_test(stale_journal_stream),
		cmocka_unit_test(plain_pipe),           cmocka_unit_test(escaping),
		cmocka_unit_test(unhealthy_warned_once), cmocka_unit_test(stamp_follows_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
