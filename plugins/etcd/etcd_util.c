/* etcd_util.c - pure helpers of the etcd store plugin (see etcd_util.h):
 * no loop, no host table, so the unit test links this file directly.  The
 * plugin's maps are the host's (host->map_*). */
#include "etcd_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ---- */

etcd_key_kind etcd_split_key(const char *key, size_t len, const char *prefix, char **service,
                             char **id)
{
	*service = NULL;
	*id = NULL;
	size_t pl = strlen(prefix);
	if (len < pl + 1 || memcmp(key, prefix, pl) != 0 || key[pl] != '/')
		return ETCD_KEY_BAD;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
			return ETCD_KEY_BAD;
	const char *svc = key + pl + 1;
	const char *end = key + len;
	const char *slash = memchr(svc, '/', (size_t)(end - svc));
	if (!slash || slash == svc || slash + 1 >= end)
		return ETCD_KEY_BAD;
	size_t sl = (size_t)(slash - svc), il = (size_t)(end - slash - 1);
	char *s = malloc(sl + 1);
	if (!s)
		abort();
	memcpy(s, svc, sl);
	s[sl] = '\0';
	if (il == 4 && memcmp(slash + 1, "port", 4) == 0) {
		*service = s;
		return ETCD_KEY_PORT;
	}
	char *i = malloc(il + 1);
	if (!i)
		abort();
	memcpy(i, slash + 1, il);
	i[il] = '\0';
	*service = s;
	*id = i;
	return ETCD_KEY_INSTANCE;
}

char *etcd_prefix_end(const char *p, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1);
	if (!out)
		abort();
	memcpy(out, p, len);
	while (len > 0 && (unsigned char)out[len - 1] == 0xff)
		len--;
	if (len == 0) {
		out[0] = '\0';
		*outlen = 1; /* "\0": every key >= the start */
		return out;
	}
	out[len - 1] = (char)((unsigned char)out[len - 1] + 1);
	out[len] = '\0';
	*outlen = len;
	return out;
}

char *etcd_normalize_prefix(const char *p)
{
	if (!p)
		return NULL;
	size_t n = strlen(p);
	if (n > 512)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return NULL;
	if (n > 0 && p[0] != '/')
		return NULL;
	while (n > 0 && p[n - 1] == '/')
		n--;
	char *out = malloc(n + 1);
	if (!out)
		abort();
	memcpy(out, p, n);
	out[n] = '\0';
	return out;
}

bool etcd_json_int64(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	const char *s = json_string_value(v);
	if (!s[0] || strlen(s) > 20)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (int64_t)x;
	return true;
}

char *etcd_printable(const char *s, size_t len, size_t max)
{
	size_t cut = len > max ? max : len;
	/* Exact size first: a sane key costs its own length, not 4x. */
	size_t need = cut < len ? 4 : 1;
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)s[i];
		need += (c < 0x20 || c >= 0x7f || c == '\\') ? 4 : 1;
	}
	char *out = malloc(need);
	if (!out)
		abort();
	size_t o = 0;
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\') { /* quotes kept: JSON stays readable */
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	if (cut < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

int etcd_parse_port(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	while (len > i && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
	                   s[len - 1] == '\r'))
		len--;
	if (i == len || len - i > 5)
		return 0;
	int port = 0;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		port = port * 10 + (s[i] - '0');
	}
	return port >= 1 && port <= 65535 ? port : 0;
}
