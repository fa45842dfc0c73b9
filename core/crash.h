/* crash.h - the daemon's report of a fatal signal (crash.c). */
#ifndef REGENT_CORE_CRASH_H
#define REGENT_CORE_CRASH_H

#include <stdbool.h>

/* Installs the report on SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (a
 * line naming the signal and a backtrace on stderr, then the default
 * action); its alternate stack is the calling thread's.  1 when
 * installed, 0 under a sanitizer (it reports them itself), -1 with errno
 * when sigaltstack or sigaction failed. */
int regent_crash_report_install(bool stderr_is_journal);

#endif
