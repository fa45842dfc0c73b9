/* log.h - the agent's log (log.c): levels, one escaped line per event on
 * stderr, journald priority prefixes when stderr is the journal. */
#ifndef REGENT_CORE_LOG_H
#define REGENT_CORE_LOG_H

#include <regent/plugin.h>
#include <stdarg.h>
#include <stdbool.h>

extern regent_log_level regent_log_threshold;
void regent_log(regent_log_level level, const char *who, const char *fmt, ...) REGENT_PRINTF(3, 4);
void regent_vlogf(regent_log_level level, const char *who, const char *fmt, va_list ap);
int regent_log_level_parse(const char *s, regent_log_level *out);
const char *regent_log_level_name(regent_log_level level);
/* True when stderr is the journal's stream: JOURNAL_STREAM ("DEV:INODE",
 * set by systemd) matches fstat(2) of stderr. */
bool regent_log_stderr_is_journal(void);
/* Decides, once, between "<N>" priority prefixes (stderr is the journal)
 * and timestamps; called again after stderr or JOURNAL_STREAM changed. */
void regent_log_init(void);

#endif
