/* fuzz_config.c - libFuzzer harness: the configuration loader (inih, the
 * section headers, every typed value of [agent] and [service] sections, the
 * errors) on a file holding the input, with an empty plugin directory (no
 * plugin is loaded).  The same bytes go through the strict number and
 * duration parsers and the log escaping, whose promises are checked. */
#include "core.h"
#include "fuzz.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

static int fd = -1;
static char path[64];
static char plugin_dir[] = "/tmp/regent-fuzz-noplugins-XXXXXX";

static void remove_plugin_dir(void)
{
	rmdir(plugin_dir);
}

static void setup(void)
{
	fd = memfd_create("regent-fuzz.ini", 0);
	if (fd < 0 || !mkdtemp(plugin_dir))
		abort();
	atexit(remove_plugin_dir); /* every run left an empty directory in /tmp */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	regent_log_threshold = REGENT_LOG_ERROR;
}

static void check_escape(const uint8_t *data, size_t size)
{
	char out[256];
	size_t n = regent_log_escape((const char *)data, size, out, sizeof(out));
	CHECK(n < sizeof(out) && strlen(out) == n, "length %zu", n);
	CHECK(fz_clean(out, n, ""), "control byte in \"%s\"", out);
	/* Escaping is idempotent (nothing left to escape). */
	char again[256];
	regent_log_escape(out, n, again, sizeof(again));
	CHECK(strcmp(out, again) == 0, "\"%s\" escaped again as \"%s\"", out, again);
}

static void check_numbers(const uint8_t *data, size_t size)
{
	uint64_t v;
	if (regent_parse_uint((const char *)data, size, UINT64_MAX, &v) == 0) {
		for (size_t i = 0; i < size; i++)
			CHECK(data[i] >= '0' && data[i] <= '9', "non-digit accepted");
		char back[32];
		snprintf(back, sizeof(back), "%llu", (unsigned long long)v);
		size_t z = 0;
		while (z + 1 < size && data[z] == '0')
			z++;
		CHECK(size - z == strlen(back) && memcmp(data + z, back, size - z) == 0,
		      "value %s", back);
	}
	char *s = fz_strndup(data, size);
	int64_t ms, unit;
	if (regent_parse_duration(s, &ms, &unit) == 0) {
		CHECK(ms >= 0, "negative duration %lld", (long long)ms);
		CHECK(s[0] >= '0' && s[0] <= '9', "\"%s\" accepted", s);
		char txt[64];
		regent_format_duration(ms, unit, txt, sizeof(txt));
		int64_t ms2, unit2;
		CHECK(regent_parse_duration(txt, &ms2, &unit2) == 0 && ms2 == ms,
		      "\"%s\" formatted as \"%s\"", s, txt);
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0)
		setup();
	if (size > 1 << 16)
		return 0;
	check_escape(data, size);
	check_numbers(data, size);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	regent_config *c = regent_config_load(path, plugin_dir);
	CHECK(c != NULL, "no config");
	for (size_t i = 0; i < c->nerrors; i++)
		CHECK(fz_clean(c->errors[i], strlen(c->errors[i]), ""),
		      "control byte in the error \"%s\"", c->errors[i]);
	for (size_t i = 0; i < c->nsections; i++)
		CHECK(c->sections[i]->lp == NULL, "a plugin was loaded from an empty directory");
	regent_config_unref(c);
	regent_plugins_unload_unused();
	return 0;
}
