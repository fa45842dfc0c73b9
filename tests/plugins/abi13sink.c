/* abi13sink.c - a test fixture: a sink built against the frozen ABI 1.3
 * header (tests/plugins/abi13/regent/plugin.h, the header of regent before
 * the 1.4 host helpers), so that a plugin of an older minor is proven to
 * load and work on this core unchanged (test_helpers: older_plugin).
 * create() refuses (-ENOTSUP) unless the host table is at least as long
 * as the one it was built against and its entries answer as 1.3's did. */
#include <regent/plugin.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if REGENT_ABI_MINOR != 3
#error "abi13sink must be built against the frozen ABI 1.3 header"
#endif

typedef struct oldsink {
	regent_ctx *ctx;
	const regent_host *h;
	size_t applies;
} oldsink;

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	if (h->abi_major != 1 || h->abi_minor < 3 || h->size < sizeof(regent_host) ||
	    !REGENT_HOST_HAS(h, catalog_instance_remove))
		return -ENOTSUP;
	char *b64 = h->base64_encode("abi13", 5);
	size_t n = 0;
	char *back = b64 ? h->base64_decode(b64, &n) : NULL;
	bool ok = back && n == 5 && memcmp(back, "abi13", 5) == 0 && h->valid_service("web") &&
	          !h->valid_service("no spaces");
	free(b64);
	free(back);
	if (!ok)
		return -ENOTSUP;
	oldsink *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->h = h;
	h->log(ctx, REGENT_LOG_INFO, "built for plugin ABI 1.3, running on a core of ABI %u.%u",
	       (unsigned)h->abi_major, (unsigned)h->abi_minor);
	*self = s;
	return 0;
}

static int start(void *self)
{
	(void)self;
	return 0;
}

static int stop(void *self)
{
	(void)self;
	return 0;
}

static void destroy(void *self)
{
	free(self);
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed,
                  size_t nchanged)
{
	(void)changed;
	(void)nchanged;
	oldsink *s = self;
	const char *const *names;
	size_t n = s->h->catalog_services(cat, &names);
	s->applies++;
	s->h->log(s->ctx, REGENT_LOG_INFO, "apply %zu: %zu services", s->applies, n);
	s->h->applied(s->ctx, cat);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("abi13sink"),
	.kind = REGENT_KIND_SINK,
	.version = "1.3-fixture",
	.description = "a sink built against the ABI 1.3 header (test fixture)",
	.ops = &ops,
	.kind_ops = &sink_ops,
};
