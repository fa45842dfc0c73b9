/* crash.c - the daemon's report of a fatal signal: on SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE or SIGABRT one line on stderr (the log) naming the
 * signal, the thread and, for a fault, the address (for a signal sent by
 * another process, its pid), then the stack as glibc's backtrace() sees it,
 * one frame a line ("regent(+0x1a2b)[0x...]": `addr2line -f -e regent
 * 0x1a2b` names the function; plugins' frames name their .so).  Then the
 * signal's default action is restored and the signal raised again, so a
 * core dump and the exit status ("killed by SIGABRT") are what they were
 * without the report.
 *
 * Async-signal-safety: the handler formats by hand and writes with
 * write(2); backtrace() loads libgcc's unwinder (malloc, dlopen) on its
 * first call, so that call is made at install time; backtrace_symbols_fd()
 * does not allocate.  The handler runs on an alternate stack
 * (sigaltstack), so a stack overflow (SIGSEGV at the guard page) is
 * reported too; only the thread that installs it (the loop's) has that
 * stack: a helper thread's overflow dies unreported.  One report per
 * process: a second fatal signal while one is written (another thread)
 * waits for nothing and takes the default action.
 *
 * Not installed under AddressSanitizer or ThreadSanitizer: they report
 * these signals themselves (with symbols). */
#include "crash.h"

#include <execinfo.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REGENT_CRASH_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define REGENT_CRASH_SANITIZER 1
#endif
#endif

#ifndef REGENT_CRASH_SANITIZER
#define FRAMES_MAX 64

static const struct {
	int sig;
	const char *name;
} fatal[] = {
	{SIGSEGV, "SIGSEGV"}, {SIGBUS, "SIGBUS"}, {SIGILL, "SIGILL"},
	{SIGFPE, "SIGFPE"},   {SIGABRT, "SIGABRT"},
};

static bool journal;   /* stderr is the journal: "<2>" instead of a timestamp */
static long utc_offset; /* seconds east of UTC at install (a DST change since: off by 1 h) */
static int reporting;   /* set by the first fatal signal's handler */

/* ---- formatting without stdio ---- */

typedef struct line {
	char b[512];
	size_t n;
} line;

static void put(line *l, const char *s)
{
	size_t k = strlen(s);
	if (k > sizeof(l->b) - l->n)
		k = sizeof(l->b) - l->n;
	memcpy(l->b + l->n, s, k);
	l->n += k;
}

/* v in base 10 or 16, zero-padded to width digits. */
static void put_num(line *l, uintmax_t v, unsigned base, unsigned width)
{
	char tmp[32];
	size_t i = sizeof(tmp);
	tmp[--i] = '\0';
	do {
		tmp[--i] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v && i > 0);
	while (sizeof(tmp) - 1 - i < width && i > 0)
		tmp[--i] = '0';
	put(l, tmp + i);
}

/* "2026-12-02T01:44:41.073 " in local time, as log.c writes it (days to
 * a civil date by Howard Hinnant's algorithm: no localtime in a handler). */
static void put_stamp(line *l)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t t = (int64_t)ts.tv_sec + utc_offset;
	int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400, sec = t - days * 86400;
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = yoe + era * 400 + (m <= 2);
	put_num(l, (uintmax_t)y, 10, 4);
	put(l, "-");
	put_num(l, (uintmax_t)m, 10, 2);
	put(l, "-");
	put_num(l, (uintmax_t)d, 10, 2);
	put(l, "T");
	put_num(l, (uintmax_t)(sec / 3600), 10, 2);
	put(l, ":");
	put_num(l, (uintmax_t)(sec / 60 % 60), 10, 2);
	put(l, ":");
	put_num(l, (uintmax_t)(sec % 60), 10, 2);
	put(l, ".");
	put_num(l, (uintmax_t)(ts.tv_nsec / 1000000), 10, 3);
	put(l, " ");
}

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(STDERR_FILENO, p, n);
		if (k <= 0)
			return; /* EINTR cannot be: every signal is blocked here */
		p += k;
		n -= (size_t)k;
	}
}

static bool from_process(const siginfo_t *si)
{
	return si->si_code == SI_USER || si->si_code == SI_TKILL || si->si_code == SI_QUEUE;
}

static void on_fatal(int sig, siginfo_t *si, void *uctx)
{
	(void)uctx;
	if (__atomic_exchange_n(&reporting, 1, __ATOMIC_SEQ_CST) == 0) {
		const char *name = "a fatal signal";
		for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
			if (fatal[i].sig == sig)
				name = fatal[i].name;
		line l = {.n = 0};
		if (journal)
			put(&l, "<2>");
		else
			put_stamp(&l);
		put(&l, "error: core: fatal signal ");
		put(&l, name);
		put(&l, " (");
		put_num(&l, (uintmax_t)sig, 10, 0);
		put(&l, ") in thread ");
		put_num(&l, (uintmax_t)syscall(SYS_gettid), 10, 0);
		if (from_process(si)) {
			put(&l, ", sent by pid ");
			put_num(&l, (uintmax_t)si->si_pid, 10, 0);
			if (si->si_pid == getpid())
				put(&l, " (this process: abort() or raise())");
		} else if (sig != SIGABRT) {
			put(&l, ", address 0x");
			put_num(&l, (uintmax_t)(uintptr_t)si->si_addr, 16, 0);
			put(&l, ", code ");
			put_num(&l, (uintmax_t)(unsigned)si->si_code, 10, 0);
		}
		put(&l, "; backtrace (addr2line -f -e FILE OFFSET):\n");
		write_all(l.b, l.n);
		void *frames[FRAMES_MAX];
		int n = backtrace(frames, FRAMES_MAX);
		backtrace_symbols_fd(frames, n, STDERR_FILENO);
		static const char end[] = "end of backtrace\n";
		write_all(end, sizeof(end) - 1);
	}
	/* The default action, as without this handler: a fault retried on
	 * return faults again, a raised signal is delivered on return. */
	signal(sig, SIG_DFL);
	raise(sig);
}

#endif /* !REGENT_CRASH_SANITIZER */

int regent_crash_report_install(bool stderr_is_journal)
{
#ifdef REGENT_CRASH_SANITIZER
	(void)stderr_is_journal;
	return 0;
#else
	journal = stderr_is_journal;
	time_t now = time(NULL);
	struct tm tm;
	if (localtime_r(&now, &tm))
		utc_offset = tm.tm_gmtoff;
	void *warm[2];
	(void)backtrace(warm, 2); /* loads the unwinder now, not in the handler */
	/* The alternate stack: SIGSTKSZ may be small (8 KiB) for the unwinder,
	 * and is no longer a constant in glibc >= 2.34. */
	static char alt[64 * 1024] __attribute__((aligned(16)));
	stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
	if (sigaltstack(&ss, NULL) != 0)
		return -1;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fatal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		if (sigaction(fatal[i].sig, &sa, NULL) != 0)
			return -1;
	return 1;
#endif
}
