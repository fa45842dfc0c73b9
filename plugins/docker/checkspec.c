/* checkspec.c - the agent-run check of an instance as written by its
 * owner (decode.h, dk_check): parsing "http:/path", "tcp", "exec:command"
 * and the interval/timeout/rise/fall/method/status parameters, with their
 * limits.  Pure: used by labels.c (labels) and docker.c (the service's
 * agent_check* keys); run by checks.c. */
#include "decode.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHY(...)                                          \
	do {                                              \
		if (why && whylen)                        \
			snprintf(why, whylen, __VA_ARGS__); \
	} while (0)

void dk_check_free(dk_check *c)
{
	free(c->arg);
	memset(c, 0, sizeof *c);
}

bool dk_check_equal(const dk_check *a, const dk_check *b)
{
	if (a->type != b->type)
		return false;
	if (a->type == DK_CHECK_NONE)
		return true;
	return strcmp(a->arg ? a->arg : "", b->arg ? b->arg : "") == 0 &&
	       strcmp(a->method, b->method) == 0 && a->status == b->status &&
	       a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
	       a->rise == b->rise && a->fall == b->fall;
}

/* An http path: / then printable bytes without blanks, quotes or '\'. */
static bool valid_path(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) > 512)
		return false;
	for (const unsigned char *q = (const unsigned char *)p; *q; q++)
		if (*q <= 0x20 || *q >= 0x7f || *q == '"' || *q == '\\' || *q == '#')
			return false;
	return true;
}

static bool valid_command(const char *c)
{
	if (!c || !c[0] || strlen(c) > 1024)
		return false;
	for (const unsigned char *q = (const unsigned char *)c; *q; q++)
		if (*q < 0x20 || *q == 0x7f)
			return false;
	return true;
}

int dk_check_parse(const char *spec, dk_check *c, char *why, size_t whylen)
{
	memset(c, 0, sizeof *c);
	c->interval_ms = DK_CHECK_INTERVAL_MS;
	c->timeout_ms = DK_CHECK_TIMEOUT_MS;
	c->rise = DK_CHECK_RISE;
	c->fall = DK_CHECK_FALL;
	snprintf(c->method, sizeof c->method, "GET");
	if (!spec)
		spec = "";
	if (strcmp(spec, "tcp") == 0) {
		c->type = DK_CHECK_TCP;
		return 0;
	}
	if (strncmp(spec, "http:", 5) == 0) {
		if (!valid_path(spec + 5)) {
			WHY("\"%.60s\" is not an http path (/ then printable characters without blanks, "
			    "quotes, # or backslashes, at most 512 bytes)", spec + 5);
			return -EINVAL;
		}
		c->type = DK_CHECK_HTTP;
		return (c->arg = strdup(spec + 5)) ? 0 : -ENOMEM;
	}
	if (strncmp(spec, "exec:", 5) == 0) {
		if (!valid_command(spec + 5)) {
			WHY("exec: the command is empty, longer than 1024 bytes or has control "
			    "characters");
			return -EINVAL;
		}
		c->type = DK_CHECK_EXEC;
		return (c->arg = strdup(spec + 5)) ? 0 : -ENOMEM;
	}
	WHY("expected http:<path>, tcp or exec:<command>");
	return -EINVAL;
}

/* "500ms", "2s", "1m", or a bare number of seconds, into ms. */
static bool parse_duration(const char *v, uint64_t *ms)
{
	if (!v || !isdigit((unsigned char)v[0]))
		return false;
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	if (n > 86400000ull)
		return false;
	if (strcmp(end, "ms") == 0)
		*ms = n;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		*ms = n * 1000;
	else if (strcmp(end, "m") == 0)
		*ms = n * 60000;
	else
		return false;
	return true;
}

static bool parse_uint(const char *v, long min, long max, long *out)
{
	if (!v || !isdigit((unsigned char)v[0]))
		return false;
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < min || n > max)
		return false;
	*out = n;
	return true;
}

int dk_check_param(dk_check *c, const char *name, const char *value, char *why, size_t whylen)
{
	uint64_t ms;
	long n;
	if (strcmp(name, "interval") == 0 || strcmp(name, "timeout") == 0) {
		bool interval = name[0] == 'i';
		uint64_t min = interval ? 100 : 50;
		if (!parse_duration(value, &ms) || ms < min || ms > 3600000) {
			WHY("%s: \"%.40s\" is not a duration from %llums to 1h (e.g. 500ms, 2s)", name,
			    value ? value : "", (unsigned long long)min);
			return -EINVAL;
		}
		if (interval) {
			c->interval_ms = (uint32_t)ms;
			/* a default timeout follows a shorter interval */
			if (!c->timeout_set && c->timeout_ms > ms)
				c->timeout_ms = (uint32_t)ms;
		} else {
			c->timeout_ms = (uint32_t)ms;
			c->timeout_set = true;
		}
		return 0;
	}
	if (strcmp(name, "rise") == 0 || strcmp(name, "fall") == 0) {
		if (!parse_uint(value, 1, 100, &n)) {
			WHY("%s: \"%.40s\" is not an integer from 1 to 100", name, value ? value : "");
			return -EINVAL;
		}
		if (name[0] == 'r')
			c->rise = (uint16_t)n;
		else
			c->fall = (uint16_t)n;
		return 0;
	}
	if (strcmp(name, "status") == 0) {
		if (!parse_uint(value, 100, 599, &n)) {
			WHY("status: \"%.40s\" is not an HTTP status (100-599)", value ? value : "");
			return -EINVAL;
		}
		c->status = (int)n;
		return 0;
	}
	if (strcmp(name, "method") == 0) {
		size_t l = value ? strlen(value) : 0;
		bool ok = l > 0 && l < sizeof c->method;
		for (size_t i = 0; ok && i < l; i++)
			ok = isupper((unsigned char)value[i]) != 0;
		if (!ok) {
			WHY("method: \"%.40s\" is not an HTTP method (upper-case letters, e.g. GET, HEAD)",
			    value ? value : "");
			return -EINVAL;
		}
		memcpy(c->method, value, l + 1);
		return 0;
	}
	WHY("unknown check parameter \"%.40s\" (interval, timeout, rise, fall, method, status)",
	    name);
	return -EINVAL;
}

int dk_check_validate(const dk_check *c, char *why, size_t whylen)
{
	if (c->type != DK_CHECK_NONE && c->timeout_ms > c->interval_ms) {
		WHY("timeout (%ums) longer than interval (%ums)", (unsigned)c->timeout_ms,
		    (unsigned)c->interval_ms);
		return -EINVAL;
	}
	return 0;
}

void dk_check_describe(const dk_check *c, char *out, size_t outlen)
{
	char arg[96];
	dk_escape(c->arg ? c->arg : "", arg, sizeof arg);
	switch (c->type) {
	case DK_CHECK_HTTP:
		if (c->status)
			snprintf(out, outlen, "http %s %s (status %d)", c->method, arg, c->status);
		else
			snprintf(out, outlen, "http %s %s", c->method, arg);
		break;
	case DK_CHECK_TCP:
		snprintf(out, outlen, "tcp connect");
		break;
	case DK_CHECK_EXEC:
		snprintf(out, outlen, "exec \"%s\"", arg);
		break;
	default:
		snprintf(out, outlen, "none");
	}
}
