/* fuzz.h - what the libFuzzer harnesses of tests/fuzz share: a check that
 * aborts (so libFuzzer keeps the input) and splitting an input into
 * NUL-terminated fields. */
#ifndef REGENT_FUZZ_H
#define REGENT_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "CHECK failed at %s:%d: %s: ", __FILE__, \
			        __LINE__, #cond);                               \
			fprintf(stderr, __VA_ARGS__);                           \
			fputc('\n', stderr);                                    \
			abort();                                                \
		}                                                               \
	} while (0)

/* A NUL-terminated copy of n bytes (the harness frees it). */
static inline char *fz_strndup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Splits data on sep into at most max fields, each a NUL-terminated copy
 * (the last field takes the rest).  Returns the number of fields. */
static inline size_t fz_split(const uint8_t *data, size_t size, uint8_t sep, char **out,
                              size_t max)
{
	size_t n = 0, start = 0;
	for (size_t i = 0; i <= size && n < max; i++) {
		if (i == size || (data[i] == sep && n + 1 < max)) {
			out[n++] = fz_strndup(data + start, i - start);
			start = i + 1;
		}
	}
	return n;
}

/* No control byte other than those allowed (e.g. "\n"). */
static inline bool fz_clean(const char *s, size_t n, const char *allowed)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 || c == 0x7f) && !(c && strchr(allowed, c)))
			return false;
	}
	return true;
}

#endif
