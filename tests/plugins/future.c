/* future.c - the fixture of a plugin built against a newer header than
 * the core's (ABI 1.<core's minor + 1>) that uses no entry of it: it
 * declares it needs only 1.4 (the first minor whose core reads key_size:
 * its keys are longer than 1.0's), its descriptor is longer than the core's
 * (a field the core does not know follows key_size) and its key tables
 * have a longer stride (each key carries a field the core does not know).
 * The core must load it, walk its tables with its key_size and run it.
 * Its service key "label" is also testsink's: test_config loads both to
 * see the clash refused. */
#define REGENT_PLUGIN_MIN_MINOR 4
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* regent_config_key as a newer header would have it. */
typedef struct wide_key {
	regent_config_key k;
	const char *future_hint;
	int64_t future_flags;
} wide_key;

static const wide_key keys[] = {
	{{"file", REGENT_CFG_STRING, NULL, true, 0, 0, "append each snapshot here"}, "hint", -1},
	{{"greeting", REGENT_CFG_STRING, "hello", false, 0, 0, "written first"}, "hint", -1},
	{{"count", REGENT_CFG_INT, "3", false, 1, 10, "an integer with a range"}, "hint", -1},
	{{NULL, 0, NULL, false, 0, 0, NULL}, NULL, 0},
};

static const wide_key service_keys[] = {
	{{"label", REGENT_CFG_STRING, NULL, false, 0, 0, "printed beside the service"}, "x", -1},
	{{"weight", REGENT_CFG_INT, "1", false, 1, 256, "printed beside the service"}, "x", -1},
	{{NULL, 0, NULL, false, 0, 0, NULL}, NULL, 0},
};

typedef struct state {
	regent_ctx *ctx;
	const regent_host *h;
	FILE *out;
	unsigned applies;
} state;

static int create(regent_ctx *ctx, const regent_host *host, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = host;
	*self = s;
	return 0;
}

static int start(void *self)
{
	state *s = self;
	const char *file = s->h->cfg_string(s->ctx, "file");
	s->out = fopen(file, "a");
	if (!s->out)
		return -errno;
	setvbuf(s->out, NULL, _IOLBF, 0);
	fprintf(s->out, "%s count=%lld\n", s->h->cfg_string(s->ctx, "greeting"),
	        (long long)s->h->cfg_int(s->ctx, "count"));
	return 0;
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t nchanged)
{
	state *s = self;
	(void)changed;
	const char *const *names;
	size_t n = s->h->catalog_services(cat, &names);
	fprintf(s->out, "apply %u nchanged=%zu\n", ++s->applies, nchanged);
	for (size_t i = 0; i < n; i++) {
		const char *label = s->h->service_string(s->ctx, names[i], "label");
		fprintf(s->out, "  %s label=%s weight=%lld\n", names[i], label ? label : "-",
		        (long long)s->h->service_int(s->ctx, names[i], "weight"));
	}
	fprintf(s->out, "end\n");
	s->h->applied(s->ctx, cat);
}

static int stop(void *self)
{
	(void)self;
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	if (s->out)
		fclose(s->out);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

/* The descriptor as a newer header would have it: one more field. */
typedef struct future_plugin {
	regent_plugin d;
	const char *future_field;
} future_plugin;

REGENT_PLUGIN_EXPORT const future_plugin REGENT_PLUGIN_ENTRY = {
	.d = {
		.abi_major = REGENT_ABI_MAJOR,
		.abi_minor = REGENT_PLUGIN_MIN_MINOR,
		.size = sizeof(future_plugin),
		.name = "futuresink",
		.kind = REGENT_KIND_SINK,
		.version = "future",
		.description = "a plugin built against a newer header (tests only)",
		.config_keys = &keys[0].k,
		.service_keys = &service_keys[0].k,
		.ops = &ops,
		.sink_ops = &sink_ops,
		.header_minor = REGENT_ABI_MINOR + 1,
		.key_size = sizeof(wide_key),
	},
	.future_field = "unknown to this core",
};
