/* fuzz_docker.c - libFuzzer harness: plugins/docker/decode.c on untrusted
 * Docker Engine API text.  The input is decoded as a container inspect
 * (then mapped to instances in the three address modes), as a container
 * list, and each of its lines as an /events line; the small parsers get it
 * as a string.  Checked: every instance is one the core accepts, no
 * warning, note or escaped string carries a control byte, copies are
 * equal to their source. */
#include "core.h"
#include "decode.h"
#include "fuzz.h"
#include "host.h" /* the core's host table: decode.c allocates through it */

#include <errno.h>

static const dk_settings modes[] = {
	{.h = &regent_host_table, .node = "n1", .host_ip = "10.0.0.9", .internal = false},
	{.h = &regent_host_table, .node = "n1", .host_ip = NULL, .internal = true},
	{.h = &regent_host_table, .node = "node-2", .host_ip = "fd00::9", .internal = true},
	{.h = &regent_host_table, .node = "n1", .host_ip = NULL, .internal = false},
};

static void check_msgs(char **m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		CHECK(fz_clean(m[i], strlen(m[i]), ""), "control byte in \"%s\"", m[i]);
}

static void check_inspect(const uint8_t *data, size_t size)
{
	dk_container c;
	char why[256] = "";
	if (dk_container_parse((const char *)data, size, &c, why, sizeof(why)) != 0) {
		CHECK(why[0] && fz_clean(why, strlen(why), ""), "why \"%s\"", why);
		CHECK(c.root == NULL, "root kept on failure");
		return;
	}
	const char *notready = NULL;
	(void)dk_container_ready(&c, &notready);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		dk_result r;
		CHECK(dk_build(&c, &modes[m], &r) == 0, "dk_build failed");
		check_msgs(r.warnings, r.nwarnings);
		check_msgs(r.notes, r.nnotes);
		for (size_t i = 0; i < r.n; i++) {
			const dk_inst *in = &r.insts[i];
			CHECK(in->ntags <= DK_MAX_TAGS && in->nmeta <= DK_MAX_META, "%zu tags %zu meta",
			      in->ntags, in->nmeta);
			regent_instance v;
			dk_inst_view(in, &v);
			char cwhy[256] = "";
			regent_inst *ci = regent_inst_copy(&v, "n1", cwhy, sizeof(cwhy));
			CHECK(ci != NULL, "the core refuses instance %s: %s", in->id, cwhy);
			dk_inst copy;
			CHECK(dk_inst_copy(&copy, in) == 0, "copy");
			regent_instance cv;
			dk_inst_view(&copy, &cv);
			cv.node = "n1";
			CHECK(regent_instance_equal(&ci->pub, &cv), "copy of %s differs", in->id);
			dk_inst_free(&copy);
			regent_inst_unref(ci);
			/* ids are unique within one container */
			for (size_t j = 0; j < i; j++)
				CHECK(strcmp(r.insts[j].id, in->id) != 0, "duplicate id %s", in->id);
		}
		dk_result_free(&r);
	}
	dk_container_free(&c);
}

static void check_list(const uint8_t *data, size_t size)
{
	char(*ids)[DK_ID_LEN + 1] = NULL;
	size_t n = 0, bad = 0;
	char why[256] = "";
	if (dk_list_parse((const char *)data, size, &ids, &n, &bad, why, sizeof(why)) == 0) {
		for (size_t i = 0; i < n; i++) {
			CHECK(strlen(ids[i]) == DK_ID_LEN, "id length");
			for (size_t k = 0; k < DK_ID_LEN; k++)
				CHECK((ids[i][k] >= '0' && ids[i][k] <= '9') ||
				              (ids[i][k] >= 'a' && ids[i][k] <= 'f'),
				      "id %s", ids[i]);
		}
	} else {
		CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
	}
	free(ids);
}

static void check_events(const uint8_t *data, size_t size)
{
	size_t start = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		dk_event ev;
		char why[256] = "";
		if (dk_event_parse((const char *)data + start, i - start, &ev, why, sizeof(why)) == 0) {
			CHECK(fz_clean(ev.action_text, strlen(ev.action_text), ""), "action \"%s\"",
			      ev.action_text);
			CHECK(fz_clean(ev.name, strlen(ev.name), ""), "name \"%s\"", ev.name);
			CHECK(strlen(ev.id) == 0 || strlen(ev.id) == DK_ID_LEN, "id \"%s\"", ev.id);
		} else {
			CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
		}
		start = i + 1;
	}
}

static void check_strings(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size);
	char out[96];
	dk_escape(s, out, sizeof(out));
	CHECK(strlen(out) < sizeof(out) && fz_clean(out, strlen(out), ""), "escape \"%s\"", out);
	for (const unsigned char *p = (const unsigned char *)out; *p; p++)
		CHECK(*p < 0x80, "non-ASCII byte in \"%s\"", out);
	char svc[128];
	if (dk_image_service(s, svc, sizeof(svc)))
		CHECK(strlen(svc) < sizeof(svc), "image service");
	int sig = dk_signal_number(s);
	CHECK(sig == -1 || (sig > 0 && sig < 65), "signal %d", sig);
	(void)dk_parse_time(s);
	(void)dk_is_loopback(s);
	(void)regent_host_table.valid_service(s);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		regent_log_threshold = REGENT_LOG_ERROR;
		quiet = true;
	}
	if (size > 1 << 18)
		return 0;
	check_inspect(data, size);
	check_list(data, size);
	check_events(data, size);
	check_strings(data, size);
	return 0;
}
