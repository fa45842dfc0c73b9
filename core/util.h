/* util.h - small helpers the whole core shares (util.c): checked allocation,
 * time, backoff, base64, strict numbers and durations, log escaping, the
 * string-keyed map and the growable buffer. */
#ifndef REGENT_CORE_UTIL_H
#define REGENT_CORE_UTIL_H

#include <regent/plugin.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define REGENT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *regent_xmalloc(size_t n);
void *regent_xcalloc(size_t n, size_t size);
void *regent_xrealloc(void *p, size_t n);
char *regent_xstrdup(const char *s);
char *regent_xasprintf(const char *fmt, ...) REGENT_PRINTF(1, 2);
char *regent_xvasprintf(const char *fmt, va_list ap);
char *regent_trim(char *s);
uint64_t regent_now_ms(void);
uint64_t regent_wall_ns(void);
uint64_t regent_backoff_next(regent_backoff *b);
void regent_backoff_reset(regent_backoff *b);
/* host->failure_note: a failure's repeats quiet, a reminder every
 * REGENT_FAILURE_REMIND_MS (plugin.h, ABI 1.10). */
#define REGENT_FAILURE_REMIND_MS 60000
regent_log_level regent_failure_note(regent_failure *f, bool ongoing, regent_log_level level,
                                     bool same_text, uint64_t now, bool *remind);
/* host->failure_text (ABI 1.11): "8.9 s and 17 failures". */
const char *regent_failure_text(const regent_failure *f, uint64_t now, char *buf, size_t size);
char *regent_base64_encode(const void *data, size_t len);
void *regent_base64_decode(const char *text, size_t *len);
/* Strict numbers (no sign, blank, base prefix, exponent or trailing byte):
 * 1 to 19 ASCII digits; -EINVAL when not such a number, -ERANGE when over
 * max.  len is the text's length (the text need not be NUL-terminated). */
int regent_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);
/* A port: a strict number from 1 to 65535.  0 or -EINVAL. */
int regent_parse_port(const char *s, size_t len, uint16_t *out);
/* A duration: digits then an optional unit ms, s, m or h (bare = seconds).
 * *ms gets the value, *unit_ms (if not NULL) the unit written (1, 1000,
 * 60000, 3600000).  0, -EINVAL or -ERANGE. */
int regent_parse_duration(const char *s, int64_t *ms, int64_t *unit_ms);
/* ms as text in the largest unit it is a whole number of ("2s", "1h",
 * "1500ms"); 0 is written in unit_ms's unit ("0s" for 1000). */
void regent_format_duration(int64_t ms, int64_t unit_ms, char *buf, size_t len);
/* Untrusted text made safe for one log line: control bytes (and DEL) as
 * \xNN, bytes that are not valid UTF-8 as \xNN, everything else (quotes,
 * backslashes, UTF-8) kept.  Writes at most outlen-1 bytes (cut with "...")
 * and returns the length written. */
size_t regent_log_escape(const char *in, size_t inlen, char *out, size_t outlen);

/* FNV-1a: regent_hash_str(REGENT_HASH_SEED, s) hashes s; a further call
 * with the result goes on hashing (a NUL between two strings is one more
 * multiplication by REGENT_HASH_PRIME).  The map below, the catalog's
 * pending table and the core's annotations use it. */
#define REGENT_HASH_SEED 1469598103934665603ull
#define REGENT_HASH_PRIME 1099511628211ull
uint64_t regent_hash_str(uint64_t h, const char *s);

/* A string-keyed hash map of void pointers (keys copied); regent_map and
 * regent_map_iter are declared in plugin.h (host->map_*, ABI 1.4). */
regent_map *regent_map_new(void);
void regent_map_free(regent_map *m, void (*free_value)(void *));
void *regent_map_get(const regent_map *m, const char *key);
/* Returns the previous value (or NULL). */
void *regent_map_put(regent_map *m, const char *key, void *value);
void *regent_map_del(regent_map *m, const char *key);
size_t regent_map_size(const regent_map *m);
/* Iteration: safe against deleting the current entry. */
bool regent_map_next(const regent_map *m, regent_map_iter *it, const char **key, void **value);
/* Keys sorted (malloc'd array of borrowed pointers). */
const char **regent_map_sorted_keys(const regent_map *m, size_t *n);

/* Texts held once for every holder and counted ("words", in a map of
 * text -> word made on first use): the held copy of text, one more
 * reference (NULL stays NULL); put drops one (NULL: none) and frees the
 * word with its last. */
const char *regent_word_get(regent_map **words, const char *text);
void regent_word_put(regent_map *words, const char *text);

/* A growable byte buffer: plugin.h's regent_buffer (host->buf_*, ABI 1.4). */
typedef regent_buffer regent_buf;
void regent_buf_add(regent_buf *b, const void *data, size_t len);
void regent_buf_printf(regent_buf *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
void regent_buf_vprintf(regent_buf *b, const char *fmt, va_list ap);
void regent_buf_free(regent_buf *b);
/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
size_t regent_utf8_len(const unsigned char *p, size_t n);

#endif
