/* fuzz_consul.c - libFuzzer harness: plugins/consul/consul_util.c on
 * untrusted Consul answers.  The input is decoded as /v1/health/service,
 * /v1/catalog/services, /v1/health/state/any and /v1/agent/services
 * bodies; the string helpers get it as text.
 * Checked: an instance the core accepts renders a registration body that
 * is a JSON object; messages and escaped paths carry no control byte; a
 * state answer read twice gives the same signatures, none of them 0, and
 * a count of checks or -EINVAL; an agent's service has its ids. */
#include "consul_util.h"
#include "core.h"
#include "helpers.h"
#include "fuzz.h"
#include "host.h" /* the core's host table: consul_util.c allocates through it */

#include <ctype.h>
#include <errno.h>
#include <jansson.h>

static const regent_host *H = &regent_host_table;

static void check_health(const uint8_t *data, size_t size)
{
	consul_instances ins;
	size_t skipped = 0;
	char why[256] = "";
	if (consul_parse_health(H, (const char *)data, size, "web",
	                        CONSUL_STATE_PASSING | CONSUL_STATE_WARNING, &ins, &skipped, why, sizeof(why)) !=
	    0) {
		CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
		return;
	}
	CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
	for (size_t i = 0; i < ins.n; i++) {
		const regent_instance *in = ins.ptrs[i];
		CHECK(in != NULL, "NULL instance");
		char cwhy[256];
		regent_inst *c = regent_inst_copy(in, "", cwhy, sizeof(cwhy));
		if (!c)
			continue; /* the core refuses it with a warning: fine */
		char dropped[256] = "";
		char *body = consul_register_body(H, &c->pub, "node-1", 15000, 60000, dropped,
		                                  sizeof(dropped), NULL);
		CHECK(body != NULL, "no body");
		json_t *j = json_loads(body, 0, NULL);
		CHECK(json_is_object(j), "body is not a JSON object: %s", body);
		json_t *meta = json_object_get(j, "Meta");
		CHECK(!meta || json_object_size(meta) <= CONSUL_META_MAX, "%zu meta pairs",
		      json_object_size(meta));
		json_decref(j);
		free(body);
		regent_inst_unref(c);
	}
	consul_instances_free(&ins);
}

static void check_services(const uint8_t *data, size_t size)
{
	consul_services s;
	char why[256] = "";
	if (consul_parse_services(H, (const char *)data, size, &s, why, sizeof(why)) < 0) {
		CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
		return;
	}
	static const char *const want[] = {"prod"};
	for (size_t i = 0; i < s.n; i++) {
		CHECK(s.v[i].name != NULL, "name");
		(void)consul_tags_match(s.v[i].tags, s.v[i].ntags, want, 1);
	}
	consul_services_free(&s);
}

/* The signatures of one state answer: name -> sig, and the node's. */
static int read_state(const uint8_t *data, size_t size, regent_map *sigs, uint64_t *node_sig)
{
	char why[256] = "";
	int rc = consul_parse_state(H, (const char *)data, size, sigs, node_sig, why, sizeof(why));
	CHECK(rc >= 0 || rc == -EINVAL, "consul_parse_state returned %d", rc);
	CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
	return rc;
}

static void check_state(const uint8_t *data, size_t size)
{
	regent_map *a = H->map_new(), *b = H->map_new();
	uint64_t na = 0, nb = 0;
	int ra = read_state(data, size, a, &na);
	int rb = read_state(data, size, b, &nb);
	CHECK(ra == rb, "two reads of one answer: %d, then %d checks", ra, rb);
	if (ra >= 0) {
		CHECK(na == nb, "the node's signature differs between two reads");
		CHECK(H->map_size(a) == H->map_size(b), "%zu, then %zu services", H->map_size(a),
		      H->map_size(b));
		regent_map_iter it = {0};
		const char *k;
		void *v;
		while (H->map_next(a, &it, &k, &v)) {
			CHECK((uintptr_t)v != 0, "service \"%s\": signature 0", k);
			CHECK(H->map_get(b, k) == v, "service \"%s\": another signature on a second read", k);
		}
	}
	H->map_free(a, NULL);
	H->map_free(b, NULL);
}

static void check_agent_services(const uint8_t *data, size_t size)
{
	consul_agent_services s;
	char why[256] = "";
	if (consul_parse_agent_services(H, (const char *)data, size, "node-1", &s, why, sizeof(why)) <
	    0) {
		CHECK(fz_clean(why, strlen(why), ""), "why \"%s\"", why);
		return;
	}
	for (size_t i = 0; i < s.n; i++) {
		CHECK(s.v[i].cid != NULL && s.v[i].rid != NULL, "service %zu without its ids", i);
		CHECK(s.v[i].hash != NULL, "service %zu without a hash (\"\" when none)", i);
	}
	consul_agent_services_free(&s);
}

static void check_strings(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size);
	/* consul's escaper is the host's url_escape since ABI 1.4 (core/helpers.c) */
	char *e = regent_url_escape(s, 0);
	CHECK(e != NULL, "url_escape returned NULL");
	for (const char *p = e; *p; p++)
		CHECK(isalnum((unsigned char)*p) || strchr("._~-%", *p), "escaped \"%s\"", e);
	free(e);
	char *base = NULL, *unix_path = NULL, why[256] = "";
	if (consul_parse_address(H, s, &base, &unix_path, why, sizeof(why)) == 0) {
		CHECK(base != NULL, "no base");
		char *r = consul_redact_url(H, base);
		free(r);
	}
	free(base);
	free(unix_path);
	(void)consul_parse_index(s);
	(void)consul_meta_key_ok(s);
	char *cid = consul_check_id(H, s);
	free(cid);
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
	check_health(data, size);
	check_services(data, size);
	check_state(data, size);
	check_agent_services(data, size);
	check_strings(data, size);
	return 0;
}
