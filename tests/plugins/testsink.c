/* testsink.c - a test-only sink: prints every snapshot it is handed, to
 * stdout or appended to a file, so tests and the demo can watch the
 * catalog change.  confirm_after / confirm_error make start() pending and
 * confirm or fail later through host->started(); stop() prints its reason
 * (make-before-break tests).  unknown = true takes snapshots with
 * unknown services and prints them. */
#include <regent/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct state {
	regent_ctx *ctx;
	const regent_host *host;
	FILE *out;
	unsigned applies;
	uv_timer_t *confirm;
} state;

static const regent_config_key keys[] = {
	{"file", REGENT_CFG_STRING, NULL, false, 0, 0, "append snapshots here (default stdout)"},
	{"confirm_after", REGENT_CFG_DURATION, "0ms", false, 0, 60000,
	 "0: start() proves itself at once; else start() is pending and host->started() "
	 "is called this long after"},
	{"confirm_error", REGENT_CFG_STRING, NULL, false, 0, 0,
	 "with confirm_after: host->started() reports this failure instead"},
	{"unknown", REGENT_CFG_BOOL, "false", false, 0, 0,
	 "take snapshots with unknown services (host->catalog_want_unknown, ABI 1.9) and print "
	 "each as an \"unknown NAME\" line"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static const regent_config_key service_keys[] = {
	{"label", REGENT_CFG_STRING, NULL, false, 0, 0, "printed beside the service"},
	/* Only read by test_config (defaults of every type through the host table). */
	{"probe_every", REGENT_CFG_DURATION, "3s", false, 0, 0, "a duration with a default"},
	{"probe_on", REGENT_CFG_BOOL, "On", false, 0, 0, "a boolean with a default"},
	{"probe_count", REGENT_CFG_INT, "7", false, 0, 0, "an integer with a default"},
	{NULL, 0, NULL, false, 0, 0, NULL},
};

static void apply(void *self, const regent_catalog *cat, const char *const *changed, size_t nchanged)
{
	state *s = self;
	const regent_host *h = s->host;
	const char *const *names;
	size_t n = h->catalog_services(cat, &names);
	fprintf(s->out, "apply %u changed=", ++s->applies);
	for (size_t i = 0; i < nchanged; i++)
		fprintf(s->out, "%s%s", i ? "," : "", changed[i]);
	fprintf(s->out, "\n");
	for (size_t i = 0; i < n; i++) {
		const regent_instance *const *insts;
		size_t k = h->catalog_instances(cat, names[i], &insts);
		const char *label = h->service_string(s->ctx, names[i], "label");
		fprintf(s->out, "  %s%s%s%s (%zu)\n", names[i], label ? " [" : "", label ? label : "",
		        label ? "]" : "", k);
		for (size_t j = 0; j < k; j++)
			fprintf(s->out, "    %s %s:%u/%s node=%s\n", insts[j]->id, insts[j]->address,
			        insts[j]->port, insts[j]->proto == REGENT_PROTO_UDP ? "udp" : "tcp",
			        insts[j]->node ? insts[j]->node : "");
	}
	const char *const *unk;
	size_t nu = REGENT_HOST_HAS(h, catalog_unknown) ? h->catalog_unknown(cat, &unk) : 0;
	for (size_t i = 0; i < nu; i++)
		fprintf(s->out, "unknown %s\n", unk[i]);
	fprintf(s->out, "end\n");
	fflush(s->out);
	h->applied(s->ctx, cat);
}

static int create(regent_ctx *ctx, const regent_host *h, void **self)
{
	state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->host = h;
	const char *f = h->cfg_string(ctx, "file");
	s->out = f ? fopen(f, "a") : stdout;
	if (!s->out) {
		int e = errno;
		h->log(ctx, REGENT_LOG_ERROR, "cannot open %s: %s", f, strerror(e));
		free(s);
		return -e;
	}
	if (h->cfg_bool(ctx, "unknown") && REGENT_HOST_HAS(h, catalog_want_unknown))
		h->catalog_want_unknown(ctx);
	*self = s;
	return 0;
}

static void on_confirm(uv_timer_t *t)
{
	state *s = t->data;
	const char *err = s->host->cfg_string(s->ctx, "confirm_error");
	fprintf(s->out, "confirm %s\n", err ? "failed" : "ok");
	fflush(s->out);
	s->host->started(s->ctx, err ? -EIO : 0, err);
}

static int start(void *self)
{
	state *s = self;
	uint64_t after = s->host->cfg_duration_ms(s->ctx, "confirm_after");
	if (after == 0)
		return 0;
	s->confirm = s->host->timer_new(s->ctx, s);
	uv_timer_start(s->confirm, on_confirm, after, 0);
	return REGENT_PENDING;
}

static int stop(void *self)
{
	state *s = self;
	static const char *const names[] = {"exit", "replaced", "removed", "failed"};
	regent_stop_reason r = s->host->stop_reason(s->ctx);
	fprintf(s->out, "stop %s\n", (unsigned)r < 4 ? names[r] : "?");
	fflush(s->out);
	if (s->confirm)
		uv_timer_stop(s->confirm);
	return 0;
}

static void destroy(void *self)
{
	state *s = self;
	s->host->timer_close(&s->confirm);
	if (s->out != stdout)
		fclose(s->out);
	free(s);
}

/* A semantic check of a service key: a label may not start with '-'. */
static int validate(regent_ctx *ctx, const regent_host *h)
{
	const char *const *names;
	size_t n = h->services(ctx, &names);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		const char *label = h->service_string(ctx, names[i], "label");
		if (label && label[0] == '-') {
			h->cfg_service_error(ctx, names[i], "label", "must not start with '-', got \"%s\"",
			                     label);
			rc = -EINVAL;
		}
		/* test_config's purpose case: says why validate() runs (ABI 1.6). */
		if (label && strcmp(label, "?purpose") == 0) {
			h->cfg_service_error(ctx, names[i], "label", "validate purpose %d",
			                     REGENT_HOST_HAS(h, validate_purpose) ? h->validate_purpose(ctx)
			                                                          : -1);
			rc = -EINVAL;
		}
	}
	return rc;
}

static const regent_plugin_ops ops = {sizeof(ops), validate, create, start, stop, destroy};
static const regent_sink_ops sink_ops = {sizeof(sink_ops), apply};

REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
	REGENT_PLUGIN_HEADER("testsink"),
	.kind = REGENT_KIND_SINK,
	.version = "test",
	.description = "prints catalog snapshots (tests only)",
	.config_keys = keys,
	.service_keys = service_keys,
	.ops = &ops,
	.sink_ops = &sink_ops,
};
