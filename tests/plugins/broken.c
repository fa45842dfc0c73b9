/* broken.c - deliberately broken plugins for the loader's refusal tests.
 * Built several times with one BROKEN_* define each. */
#include <regent/plugin.h>

#include <stdlib.h>

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	(void)ctx;
	(void)h;
	*self = NULL;
	return 0;
}

static void destroy(void *self)
{
	(void)self;
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, NULL, NULL, destroy};
#ifdef BROKEN_PORTKEY
/* A complete sink whose service key "port" is the core's own: its
 * configuration is refused (test_config). */
static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t n)
{
	(void)self, (void)cat, (void)changed, (void)n;
}
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};
static const regent_config_key PLUGIN_SERVICE_KEYS[] = {
	{"port", REGENT_CFG_INT, NULL, false, 1, 65535, "the core's key, declared again"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};
#else
static const regent_sink_ops sink_ops = {sizeof(sink_ops), NULL};
#define PLUGIN_SERVICE_KEYS NULL
#endif

#ifdef BROKEN_NOSYM
/* Exports something, but not the entry symbol. */
REGENT_PLUGIN_EXPORT int not_a_regent_plugin = 1;
#else
REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
#if defined(BROKEN_MAJOR)
	.abi_major = REGENT_ABI_MAJOR + 1, .abi_minor = 0, .size = sizeof(regent_plugin),
	.name = "badmajor",
#elif defined(BROKEN_MINOR)
	.abi_major = REGENT_ABI_MAJOR, .abi_minor = REGENT_ABI_MINOR + 5,
	.size = sizeof(regent_plugin), .name = "futureminor",
#elif defined(BROKEN_SIZE)
	.abi_major = REGENT_ABI_MAJOR, .abi_minor = REGENT_ABI_MINOR, .size = 16,
	.name = "badsize",
#elif defined(BROKEN_NAME)
	REGENT_PLUGIN_HEADER("someothername"),
#elif defined(BROKEN_OPS)
	REGENT_PLUGIN_HEADER("broken_ops"),
#else
	REGENT_PLUGIN_HEADER(PLUGIN_NAME),
#endif
	.kind = REGENT_KIND_SINK,
	.version = "broken",
	.ops = &ops,
	.service_keys = PLUGIN_SERVICE_KEYS,
	.kind_ops = &sink_ops, /* apply is NULL: only BROKEN_OPS (and PORTKEY) get this far */
};
#endif
