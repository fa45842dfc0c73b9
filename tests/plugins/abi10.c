/* abi10.c - the ABI 1.0 fixture: plugins built from the current header
 * that declare they need only 1.0, exactly as a plugin written for 1.0
 * looks to the core: the 1.0 descriptor (its size ends at kind_ops, set
 * through the untyped `kind_ops`), no key_size (1.0's key stride), and
 * only host entries of 1.0, called through a copy of the host table cut
 * to 1.0's entries (an entry of 1.1 or later would be a NULL call).
 * Built three times: ABI10_SINK (abi10sink, writes each snapshot to a
 * file), ABI10_SOURCE (abi10source, reports one instance from its section)
 * and ABI10_STORE (abi10store, an in-memory registry that logs what it is
 * given and reports it back as the catalog). */
#define REGENT_PLUGIN_MIN_MINOR 0
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host table of ABI 1.0: every entry before `started` (1.1). */
#define HOST_1_0_SIZE offsetof(regent_host, started)

#define MAX_INSTS 64

typedef struct state {
	regent_ctx *ctx;
	regent_host h; /* the first HOST_1_0_SIZE bytes of the core's, the rest zero */
	FILE *out;
	unsigned applies;
	regent_instance *insts[MAX_INSTS]; /* the store's registry (owned copies) */
	size_t ninsts;
} state;

static int create(regent_ctx *ctx, const regent_host *host, void **self)
{
	if (host->abi_major != REGENT_ABI_MAJOR || host->size < HOST_1_0_SIZE)
		return -EINVAL;
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	memcpy(&s->h, host, HOST_1_0_SIZE);
	s->h.size = HOST_1_0_SIZE;
	if (REGENT_HOST_HAS(&s->h, started)) { /* cannot happen: the cut above */
		free(s);
		return -EINVAL;
	}
	*self = s;
	return 0;
}

#ifdef ABI10_SINK
static const regent_config_key keys[] = {
	{"file", REGENT_CFG_STRING, NULL, true, 0, 0, "append each snapshot here"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static int start(void *self)
{
	state *s = self;
	const char *file = s->h.cfg_string(s->ctx, "file");
	s->out = fopen(file, "a");
	if (!s->out) {
		s->h.log(s->ctx, REGENT_LOG_ERROR, "cannot open %s: %s", file, strerror(errno));
		return -errno;
	}
	setvbuf(s->out, NULL, _IOLBF, 0);
	s->h.log(s->ctx, REGENT_LOG_INFO, "abi10 sink started (header %d.%d, needs 1.0)",
	         REGENT_ABI_MAJOR, REGENT_ABI_MINOR);
	return 0;
}

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t nchanged)
{
	state *s = self;
	(void)changed;
	const char *const *names;
	size_t n = s->h.catalog_services(cat, &names);
	fprintf(s->out, "apply %u nchanged=%zu\n", ++s->applies, nchanged);
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = s->h.catalog_instances(cat, names[i], &insts);
		for (size_t j = 0; j < k; j++)
			fprintf(s->out, "  %s %s %s:%u\n", names[i], insts[j]->id, insts[j]->address,
			        insts[j]->port);
	}
	fprintf(s->out, "end\n");
	s->h.applied(s->ctx, cat);
}

static const regent_sink_ops kind_ops = {sizeof(kind_ops), apply};
#define KIND REGENT_KIND_SINK
#define NAME "abi10sink"
#elif defined(ABI10_STORE)
static const regent_config_key keys[] = {
	{"log", REGENT_CFG_STRING, NULL, true, 0, 0, "append register/deregister calls here"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static int start(void *self)
{
	state *s = self;
	const char *file = s->h.cfg_string(s->ctx, "log");
	s->out = fopen(file, "a");
	if (!s->out)
		return -errno;
	setvbuf(s->out, NULL, _IOLBF, 0);
	if (s->h.want_catalog(s->ctx)) { /* a first full read: empty */
		s->h.catalog_sync_begin(s->ctx);
		s->h.catalog_sync_end(s->ctx);
	}
	s->h.log(s->ctx, REGENT_LOG_INFO, "abi10 store started (header %d.%d, needs 1.0)",
	         REGENT_ABI_MAJOR, REGENT_ABI_MINOR);
	return 0;
}

/* Reports the service of name back (every instance of it held). */
static void report(state *s, const char *service)
{
	if (!s->h.want_catalog(s->ctx))
		return;
	const regent_instance *list[MAX_INSTS];
	size_t n = 0;
	for (size_t i = 0; i < s->ninsts; i++)
		if (strcmp(s->insts[i]->service, service) == 0)
			list[n++] = s->insts[i];
	s->h.catalog_set(s->ctx, service, list, n);
}

static void deregister_instance(void *self, const regent_instance *inst)
{
	state *s = self;
	fprintf(s->out, "deregister %s\n", inst->id);
	for (size_t i = 0; i < s->ninsts; i++) {
		if (strcmp(s->insts[i]->id, inst->id) != 0)
			continue;
		s->h.instance_free(s->insts[i]);
		s->insts[i] = s->insts[--s->ninsts];
		break;
	}
	report(s, inst->service);
}

static void register_instance(void *self, const regent_instance *inst)
{
	state *s = self;
	fprintf(s->out, "register %s %s:%u\n", inst->id, inst->address, inst->port);
	/* a copy through the 1.0 JSON helpers: inst is borrowed for the call */
	char *json = s->h.instance_encode(inst);
	regent_instance *copy = NULL;
	if (!json || s->h.instance_decode(json, strlen(json), inst->service, inst->id, &copy) != 0) {
		free(json);
		s->h.log(s->ctx, REGENT_LOG_ERROR, "cannot copy %s", inst->id);
		return;
	}
	free(json);
	for (size_t i = 0; i < s->ninsts; i++) {
		if (strcmp(s->insts[i]->id, inst->id) == 0) {
			s->h.instance_free(s->insts[i]);
			s->insts[i] = copy;
			copy = NULL;
		}
	}
	if (copy && s->ninsts < MAX_INSTS)
		s->insts[s->ninsts++] = copy;
	else if (copy)
		s->h.instance_free(copy);
	report(s, inst->service);
}

static const regent_store_ops kind_ops = {sizeof(kind_ops), register_instance,
                                          deregister_instance};
#define KIND REGENT_KIND_STORE
#define NAME "abi10store"
#else /* ABI10_SOURCE */
static const regent_config_key keys[] = {
	{"service", REGENT_CFG_STRING, NULL, true, 0, 0, "the instance's service"},
	{"id", REGENT_CFG_STRING, NULL, true, 0, 0, "the instance's id"},
	{"address", REGENT_CFG_STRING, "127.0.0.1", false, 0, 0, "its address"},
	{"port", REGENT_CFG_INT, NULL, true, 1, 65535, "its port"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static int start(void *self)
{
	state *s = self;
	regent_instance inst = {
		.service = s->h.cfg_string(s->ctx, "service"),
		.id = s->h.cfg_string(s->ctx, "id"),
		.address = s->h.cfg_string(s->ctx, "address"),
		.port = (uint16_t)s->h.cfg_int(s->ctx, "port"),
		.proto = REGENT_PROTO_TCP,
		.service_port = (uint16_t)s->h.cfg_int(s->ctx, "port"),
	};
	s->h.local_resync_begin(s->ctx);
	int rc = s->h.local_up(s->ctx, &inst);
	s->h.local_resync_end(s->ctx);
	s->h.log(s->ctx, REGENT_LOG_INFO, "abi10 source reported %s (%d)", inst.id, rc);
	return rc;
}

static const regent_source_ops kind_ops = {sizeof(kind_ops), NULL};
#define KIND REGENT_KIND_SOURCE
#define NAME "abi10source"
#endif

static int stop(void *self)
{
	state *s = self;
	s->h.log(s->ctx, REGENT_LOG_INFO, "abi10 %s stopped", NAME);
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	if (s->out)
		fclose(s->out);
	for (size_t i = 0; i < s->ninsts; i++)
		s->h.instance_free(s->insts[i]);
	free(s);
}

static const regent_plugin_ops ops = {sizeof(ops), NULL, create, start, stop, destroy};

/* The 1.0 descriptor, with 1.0's layout and size (a core reading past it
 * reads past the object: ASan's redzones catch that).  REGENT_PLUGIN_HEADER
 * would fill header_minor and key_size, which 1.0 lacks. */
struct regent_plugin_1_0 {
	uint32_t abi_major, abi_minor;
	size_t size;
	const char *name;
	regent_kind kind;
	const char *version;
	const char *description;
	const regent_config_key *config_keys;
	const regent_config_key *service_keys;
	const regent_plugin_ops *ops;
	const void *kind_ops;
};
_Static_assert(sizeof(struct regent_plugin_1_0) == REGENT_PLUGIN_SIZE_1_0, "1.0 descriptor size");
_Static_assert(offsetof(struct regent_plugin_1_0, kind_ops) == offsetof(regent_plugin, kind_ops),
               "1.0 descriptor layout");

REGENT_PLUGIN_EXPORT const struct regent_plugin_1_0 REGENT_PLUGIN_ENTRY = {
	.abi_major = REGENT_ABI_MAJOR,
	.abi_minor = 0,
	.size = sizeof(struct regent_plugin_1_0),
	.name = NAME,
	.kind = KIND,
	.version = "1.0.0",
	.description = "a plugin as ABI 1.0 sees it (tests only)",
	.config_keys = keys,
	.service_keys = NULL,
	.ops = &ops,
	.kind_ops = &kind_ops,
};
