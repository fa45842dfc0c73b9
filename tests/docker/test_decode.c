/* test_decode.c - cmocka unit tests of plugins/docker/decode.c on recorded
 * and constructed Docker Engine API JSON (tests/docker/fixtures): the
 * mapping rules, published ports and internal mode (which a host-network
 * test daemon cannot produce live), hostile labels, malformed input. */
#include "decode.h"
#include "host.h" /* the core's host table (regent_core): decode.c allocates through it */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", DOCKER_FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open fixture %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void load(const char *name, dk_container *c)
{
	size_t len;
	char *json = slurp(name, &len);
	char why[200] = "";
	int rc = dk_container_parse(json, len, c, why, sizeof why);
	free(json);
	if (rc != 0)
		fail_msg("%s: %s", name, why);
}

static const dk_inst *find(const dk_result *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->insts[i].id, id) == 0)
			return &r->insts[i];
	return NULL;
}

static bool has_msg(char **msgs, size_t n, const char *needle)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(msgs[i], needle))
			return true;
	return false;
}

static void assert_inst(const dk_result *r, const char *id, const char *service,
                        const char *address, unsigned port, regent_proto proto, unsigned private_port,
                        const char *tags)
{
	const dk_inst *in = find(r, id);
	if (!in)
		fail_msg("no instance %s", id);
	assert_string_equal(in->service, service);
	assert_string_equal(in->address, address);
	assert_int_equal(in->port, port);
	assert_int_equal(in->proto, proto);
	assert_int_equal(in->private_port, private_port);
	char buf[256] = "";
	size_t o = 0;
	for (size_t i = 0; i < in->ntags; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? "," : "", in->tags[i]);
	assert_string_equal(buf, tags);
}

/* No message may carry a raw control character into a log line. */
static void assert_clean(const dk_result *r)
{
	for (size_t i = 0; i < r->nwarnings; i++)
		for (const char *p = r->warnings[i]; *p; p++)
			assert_true((unsigned char)*p >= 0x20);
	for (size_t i = 0; i < r->nnotes; i++)
		for (const char *p = r->notes[i]; *p; p++)
			assert_true((unsigned char)*p >= 0x20);
}

static const dk_settings host_mode = {
	.h = &regent_host_table, .node = "n1", .host_ip = "10.0.0.9", .internal = false};
static const dk_settings internal_mode = {
	.h = &regent_host_table, .node = "n1", .host_ip = NULL, .internal = true};

/* ------------------------------------------------------------------ */

static void test_image_service(void **state)
{
	(void)state;
	static const struct {
		const char *image, *want;
	} cases[] = {
		{"jwilder/whoami:latest", "whoami"},
		{"jwilder/whoami", "whoami"},
		{"whoami", "whoami"},
		{"nginx:1.25-alpine", "nginx"},
		{"registry.example.com:5000/acme/shop-web:2.1", "shop-web"},
		{"localhost:5000/web", "web"},
		{"quay.io/a/b/c/deep:tag@sha256:0123", "deep"},
		{"busybox@sha256:abcdef", "busybox"},
		{"sha256:9d61ddc1d1c3ef0e6cdbb9fee5da86f4e9514a19f66bd121a8c2cf5122100b7d", NULL},
		{"9d61ddc1d1c3ef0e6cdbb9fee5da86f4e9514a19f66bd121a8c2cf5122100b7d", NULL},
		{"", NULL},
		{"repo/:tag", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char out[128];
		bool ok = dk_image_service(cases[i].image, out, sizeof out);
		if (!cases[i].want) {
			if (ok)
				fail_msg("%s: expected no name, got %s", cases[i].image, out);
		} else {
			if (!ok)
				fail_msg("%s: expected %s, got none", cases[i].image, cases[i].want);
			assert_string_equal(out, cases[i].want);
		}
	}
}

static void test_published(void **state)
{
	(void)state;
	dk_container c;
	load("published.json", &c);
	assert_string_equal(c.name, "web1");
	assert_string_equal(c.network_mode, "default");
	const char *why;
	assert_true(dk_container_ready(&c, &why));
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 2);
	/* 0.0.0.0 and :: bindings of one port: one instance on host_ip; the image
	 * names the service, with the port as the container has several */
	assert_inst(&r, "n1/3f2a9c6d8e1b/8080", "shop-web-8080", "10.0.0.9", 18080, REGENT_PROTO_TCP, 8080,
	            "prod,eu");
	/* a specific HostIp is kept */
	assert_inst(&r, "n1/3f2a9c6d8e1b/9090/udp", "shop-web-9090", "10.170.71.20", 19090,
	            REGENT_PROTO_UDP, 9090, "prod,eu");
	assert_null(find(&r, "n1/3f2a9c6d8e1b/7070"));
	assert_int_equal(r.nwarnings, 0);
	assert_true(has_msg(r.notes, r.nnotes, "port 7070/tcp is not published"));
	assert_true(has_msg(r.notes, r.nnotes, "3868/sctp\" is neither tcp nor udp"));
	assert_clean(&r);
	dk_result_free(&r);

	/* the same container in internal mode: container IP + private ports */
	assert_int_equal(dk_build(&c, &internal_mode, &r), 0);
	assert_int_equal(r.n, 3);
	assert_inst(&r, "n1/3f2a9c6d8e1b/8080", "shop-web-8080", "172.17.0.2", 8080, REGENT_PROTO_TCP, 8080,
	            "prod,eu");
	assert_inst(&r, "n1/3f2a9c6d8e1b/7070", "shop-web-7070", "172.17.0.2", 7070, REGENT_PROTO_TCP, 7070,
	            "prod,eu");
	assert_inst(&r, "n1/3f2a9c6d8e1b/9090/udp", "shop-web-9090", "172.17.0.2", 9090, REGENT_PROTO_UDP,
	            9090, "prod,eu");
	dk_result_free(&r);

	/* no host_ip, not internal: nothing, with a note */
	dk_settings none = {.h = &regent_host_table, .node = "n1", .host_ip = NULL, .internal = false};
	assert_int_equal(dk_build(&c, &none, &r), 0);
	assert_int_equal(r.n, 0);
	assert_true(has_msg(r.notes, r.nnotes, "no host_ip"));
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_internal(void **state)
{
	(void)state;
	dk_container c;
	load("internal.json", &c);
	assert_string_equal(c.ip, ""); /* user-defined network: IP under Networks.appnet */
	dk_result r;
	assert_int_equal(dk_build(&c, &internal_mode, &r), 0);
	assert_int_equal(r.n, 3);
	assert_inst(&r, "n1/9d8c7b6a5f4e/53", "dns", "172.20.0.5", 53, REGENT_PROTO_TCP, 53, "");
	assert_inst(&r, "n1/9d8c7b6a5f4e/53/udp", "dns", "172.20.0.5", 53, REGENT_PROTO_UDP, 53, "");
	assert_inst(&r, "n1/9d8c7b6a5f4e/9153", "dns-metrics", "172.20.0.5", 9153, REGENT_PROTO_TCP,
	            9153, "");
	dk_result_free(&r);

	/* published mode: none of its ports is published */
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 0);
	assert_true(has_msg(r.notes, r.nnotes, "port 53/udp is not published"));
	assert_true(has_msg(r.notes, r.nnotes, "no usable port"));
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_host_network(void **state)
{
	(void)state;
	dk_container c;
	load("host_health.json", &c); /* recorded live */
	assert_string_equal(c.network_mode, "host");
	assert_string_equal(c.name, "w1");
	assert_int_equal(c.health, DK_HEALTH_STARTING);
	assert_true(dk_parse_time(c.started_at) == 1795559302751809633ull);
	assert_int_equal(c.pid, 22697); /* State.Pid (pidwatch.c) */
	const char *why;
	assert_false(dk_container_ready(&c, &why));
	assert_string_equal(why, "health check starting");
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	/* exposed ports on host_ip, service from SERVICE_NAME (with the port: several
	 * ports, registrator's rule), tags from the label */
	assert_int_equal(r.n, 2);
	assert_inst(&r, "n1/f5b6e5c52817/8000", "foo-8000", "10.0.0.9", 8000, REGENT_PROTO_TCP, 8000, "a,b");
	assert_inst(&r, "n1/f5b6e5c52817/18001", "foo-18001", "10.0.0.9", 18001, REGENT_PROTO_TCP, 18001,
	            "a,b");
	/* ids are a pure function of node, container and port: stable across restarts */
	dk_result r2;
	assert_int_equal(dk_build(&c, &host_mode, &r2), 0);
	for (size_t i = 0; i < r.n; i++)
		assert_string_equal(r.insts[i].id, r2.insts[i].id);
	dk_result_free(&r2);
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_env_naming(void **state)
{
	(void)state;
	dk_container c;
	load("env.json", &c);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 3);
	assert_inst(&r, "n1/0123456789ab/8080", "api-8080", "10.0.0.9", 8080, REGENT_PROTO_TCP, 8080, "v1,blue");
	assert_inst(&r, "n1/0123456789ab/8081", "api-admin", "10.0.0.9", 8081, REGENT_PROTO_TCP, 8081,
	            "internal");
	assert_inst(&r, "n1/0123456789ab/8083", "api-8083", "10.0.0.9", 8083, REGENT_PROTO_TCP, 8083, "v1,blue");
	assert_null(find(&r, "n1/0123456789ab/8082")); /* SERVICE_8082_IGNORE */
	assert_true(has_msg(r.notes, r.nnotes, "SERVICE_8082_IGNORE"));
	assert_int_equal(r.nwarnings, 0);
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_labels(void **state)
{
	(void)state;
	dk_container c;
	load("labels.json", &c);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 3);
	/* per-port label > regent.service > env > image */
	assert_inst(&r, "n1/fedcba987654/8000", "front", "10.0.0.9", 8000, REGENT_PROTO_TCP, 8000, "a,b");
	assert_inst(&r, "n1/fedcba987654/8001", "back", "10.0.0.9", 8001, REGENT_PROTO_TCP, 8001, "z");
	assert_inst(&r, "n1/fedcba987654/5353/udp", "back", "10.0.0.9", 5353, REGENT_PROTO_UDP, 5353,
	            "a,b");
	const dk_inst *in = find(&r, "n1/fedcba987654/8000");
	assert_int_equal(in->nmeta, 2); /* sorted by key */
	assert_string_equal(in->meta[0].key, "owner.email");
	assert_string_equal(in->meta[0].value, "ops@example.com");
	assert_string_equal(in->meta[1].key, "team");
	assert_string_equal(in->meta[1].value, "core");
	assert_int_equal(r.nwarnings, 0);
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_malicious(void **state)
{
	(void)state;
	dk_container c;
	load("malicious.json", &c);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	/* only the port with a good per-port name survives */
	assert_int_equal(r.n, 1);
	assert_inst(&r, "n1/aaaaaaaaaaaa/9002", "good", "10.0.0.9", 9002, REGENT_PROTO_TCP, 9002, "t1,t2");
	const dk_inst *in = &r.insts[0];
	assert_int_equal(in->nmeta, 1);
	assert_string_equal(in->meta[0].key, "ok");
	/* one warning per bad label, naming the container and the label */
	assert_true(has_msg(r.warnings, r.nwarnings,
	                    "container evil1 (aaaaaaaaaaaa): label regent.service = \"x/../../y\" is "
	                    "not a valid service name"));
	assert_true(has_msg(r.warnings, r.nwarnings, "label regent.service.9001 = \"a b\""));
	assert_true(has_msg(r.warnings, r.nwarnings, "tag \"bad\"tag\" is invalid"));
	assert_true(has_msg(r.warnings, r.nwarnings, "label regent.meta.bad: invalid meta value"));
	assert_true(has_msg(r.warnings, r.nwarnings, "label \"regent.meta.b@d\": invalid meta key"));
	size_t n_service = 0;
	for (size_t i = 0; i < r.nwarnings; i++)
		if (strstr(r.warnings[i], "label regent.service ="))
			n_service++;
	assert_int_equal(n_service, 1); /* 9000 and 9003 both fell on it: one warning */
	assert_int_equal(r.nwarnings, 5);
	assert_clean(&r);
	dk_result_free(&r);
	dk_container_free(&c);
}

static int parse_str(const char *json, dk_container *c)
{
	char why[200];
	return dk_container_parse(json, strlen(json), c, why, sizeof why);
}

#define CID "0000000000000000000000000000000000000000000000000000000000000001"

static void test_bad_env_names(void **state)
{
	(void)state;
	static const char json[] =
		"{\"Id\":\"" CID "\",\"Name\":\"/e1\",\"State\":{\"Running\":true},"
		"\"Config\":{\"Image\":\"x/y:z\",\"Env\":[\"SERVICE_NAME=a\\nb\","
		"\"SERVICE_8001_NAME=has space\",\"SERVICE_8002_NAME=../etc/passwd\",\"JUNK\",7],"
		"\"ExposedPorts\":{\"8000/tcp\":{},\"8001/tcp\":{},\"8002/tcp\":{}}},"
		"\"HostConfig\":{\"NetworkMode\":\"host\"}}";
	dk_container c;
	assert_int_equal(parse_str(json, &c), 0);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 0);
	assert_true(has_msg(r.warnings, r.nwarnings, "env SERVICE_NAME = \"a\\x0ab\""));
	assert_true(has_msg(r.warnings, r.nwarnings, "env SERVICE_8001_NAME = \"has space\""));
	assert_true(has_msg(r.warnings, r.nwarnings, "env SERVICE_8002_NAME = \"../etc/passwd\""));
	assert_int_equal(r.nwarnings, 3);
	assert_clean(&r);
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_ignore(void **state)
{
	(void)state;
	static const char *const jsons[] = {
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Labels\":{\"regent.ignore\":\"true\"},\"ExposedPorts\":{\"80/tcp\":{}}},"
		"\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Env\":[\"SERVICE_IGNORE=1\"],\"ExposedPorts\":{\"80/tcp\":{}}},"
		"\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Labels\":{\"regent.ignore.80\":\"yes\"},\"ExposedPorts\":{\"80/tcp\":{}}},"
		"\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		/* no port at all: skipped with a debug note */
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\"},"
		"\"HostConfig\":{\"NetworkMode\":\"host\"}}",
	};
	for (size_t i = 0; i < sizeof jsons / sizeof jsons[0]; i++) {
		dk_container c;
		assert_int_equal(parse_str(jsons[i], &c), 0);
		dk_result r;
		assert_int_equal(dk_build(&c, &host_mode, &r), 0);
		assert_int_equal(r.n, 0);
		assert_int_equal(r.nwarnings, 0);
		assert_true(r.nnotes >= 1);
		dk_result_free(&r);
		dk_container_free(&c);
	}
}

static const char *meta_of(const dk_inst *in, const char *key)
{
	for (size_t i = 0; i < in->nmeta; i++)
		if (strcmp(in->meta[i].key, key) == 0)
			return in->meta[i].value;
	return NULL;
}

/* registrator's conventions (labels.c): SERVICE_* from labels and env, a
 * label winning; SERVICE_<port>_* over SERVICE_*; attributes as meta;
 * SERVICE_ID; SERVICE_IGNORE from a label; <name>-<port>; regent.weight. */
static void test_registrator(void **state)
{
	(void)state;
	static const char json[] =
		"{\"Id\":\"" CID "\",\"Name\":\"/reg\",\"State\":{\"Running\":true},\"Config\":{"
		"\"Image\":\"acme/shop:1\",\"Env\":[\"SERVICE_NAME=fromenv\",\"SERVICE_TAGS=e1\","
		"\"SERVICE_REGION=envregion\",\"SERVICE_81_REGION=port81\",\"SERVICE_82_IGNORE=true\","
		"\"SERVICE_83_ID=custom:83\",\"SERVICE_ZONE=z1\",\"SERVICE_84_NAME=envport\"],"
		"\"Labels\":{\"SERVICE_NAME\":\"fromlabel\",\"SERVICE_REGION\":\"labelregion\","
		"\"SERVICE_84_NAME\":\"labelport\",\"SERVICE_BAD KEY\":\"x\",\"regent.meta.zone\":\"z2\","
		"\"regent.weight\":\"10\",\"regent.weight.81\":\"0\",\"SERVICE_WEIGHT\":\"99\"},"
		"\"ExposedPorts\":{\"80/tcp\":{},\"81/tcp\":{},\"82/tcp\":{},\"83/tcp\":{},"
		"\"84/tcp\":{}}},\"HostConfig\":{\"NetworkMode\":\"host\"}}";
	dk_container c;
	assert_int_equal(parse_str(json, &c), 0);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 4);
	/* label SERVICE_NAME beats env; several ports: <name>-<port> */
	assert_inst(&r, "n1/000000000000/80", "fromlabel-80", "10.0.0.9", 80, REGENT_PROTO_TCP, 80,
	            "e1");
	const dk_inst *i80 = find(&r, "n1/000000000000/80");
	assert_string_equal(meta_of(i80, "region"), "labelregion"); /* label beats env */
	assert_string_equal(meta_of(i80, "zone"), "z2");            /* regent.meta.* beats SERVICE_ */
	assert_string_equal(meta_of(i80, "weight"), "10");          /* regent.weight beats SERVICE_ */
	assert_null(meta_of(i80, "name"));
	assert_null(meta_of(i80, "tags"));
	const dk_inst *i81 = find(&r, "n1/000000000000/81");
	assert_non_null(i81);
	assert_string_equal(i81->service, "fromlabel-81");
	assert_string_equal(meta_of(i81, "region"), "port81"); /* SERVICE_81_* beats a label */
	assert_string_equal(meta_of(i81, "weight"), "0");      /* regent.weight.81 */
	assert_null(find(&r, "n1/000000000000/82"));           /* SERVICE_82_IGNORE */
	assert_true(has_msg(r.notes, r.nnotes, "env SERVICE_82_IGNORE is set; port 82/tcp skipped"));
	const dk_inst *i83 = find(&r, "custom:83"); /* SERVICE_83_ID */
	assert_non_null(i83);
	assert_string_equal(i83->service, "fromlabel-83");
	/* a per-port name: no suffix; the label wins over env */
	assert_inst(&r, "n1/000000000000/84", "labelport", "10.0.0.9", 84, REGENT_PROTO_TCP, 84, "e1");
	assert_true(has_msg(r.warnings, r.nwarnings,
	                    "label SERVICE_BAD KEY: not usable as a meta key"));
	dk_result_free(&r);
	dk_container_free(&c);

	/* SERVICE_IGNORE as a label (beats env SERVICE_IGNORE=false); one port: no suffix;
	 * SERVICE_ID; a bad weight is refused with a warning */
	static const char *const more[] = {
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Env\":[\"SERVICE_IGNORE=false\"],\"Labels\":{\"SERVICE_IGNORE\":\"true\"},"
		"\"ExposedPorts\":{\"80/tcp\":{}}},\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Labels\":{\"SERVICE_NAME\":\"one\",\"SERVICE_ID\":\"my-id\",\"regent.weight\":\"300\"},"
		"\"ExposedPorts\":{\"80/tcp\":{}}},\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		"{\"Id\":\"" CID "\",\"State\":{\"Running\":true},\"Config\":{\"Image\":\"a\","
		"\"Labels\":{\"SERVICE_ID\":\"same\",\"regent.service\":\"svc\"},"
		"\"ExposedPorts\":{\"80/tcp\":{},\"81/tcp\":{}}},\"HostConfig\":{\"NetworkMode\":\"host\"}}",
	};
	assert_int_equal(parse_str(more[0], &c), 0);
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 0);
	assert_true(has_msg(r.notes, r.nnotes, "label SERVICE_IGNORE is set; port 80/tcp skipped"));
	dk_result_free(&r);
	dk_container_free(&c);

	assert_int_equal(parse_str(more[1], &c), 0);
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.insts[0].id, "my-id");
	assert_string_equal(r.insts[0].service, "one");
	assert_null(meta_of(&r.insts[0], "weight"));
	assert_true(has_msg(r.warnings, r.nwarnings,
	                    "label regent.weight = \"300\": a weight is an integer from 0 to 256"));
	dk_result_free(&r);
	dk_container_free(&c);

	/* regent.service keeps both ports in one service; a shared SERVICE_ID is used once */
	assert_int_equal(parse_str(more[2], &c), 0);
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 2);
	assert_inst(&r, "same", "svc", "10.0.0.9", 80, REGENT_PROTO_TCP, 80, "");
	assert_inst(&r, "n1/000000000000/81", "svc", "10.0.0.9", 81, REGENT_PROTO_TCP, 81, "");
	assert_true(has_msg(r.warnings, r.nwarnings, "is already the id of another port"));
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_ready(void **state)
{
	(void)state;
	static const struct {
		const char *st;
		bool ready;
		const char *why;
	} cases[] = {
		{"{\"Running\":true}", true, "ready"},
		{"{\"Running\":false}", false, "not running"},
		{"{\"Running\":true,\"Paused\":true}", false, "paused"},
		{"{\"Running\":true,\"Health\":{\"Status\":\"healthy\"}}", true, "ready"},
		{"{\"Running\":true,\"Health\":{\"Status\":\"unhealthy\"}}", false, "unhealthy"},
		{"{\"Running\":true,\"Health\":{\"Status\":\"starting\"}}", false, "health check starting"},
		{"{\"Running\":true,\"Health\":{\"Status\":\"weird\"}}", false, "health check starting"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char json[512];
		snprintf(json, sizeof json, "{\"Id\":\"%s\",\"State\":%s}", CID, cases[i].st);
		dk_container c;
		assert_int_equal(parse_str(json, &c), 0);
		const char *why;
		assert_int_equal(dk_container_ready(&c, &why), cases[i].ready);
		assert_string_equal(why, cases[i].why);
		dk_container_free(&c);
	}
}

static void test_malformed_inspect(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "{", "[]", "null", "{\"Id\":5}", "{\"Id\":\"abc\"}",
		"{\"Id\":\"" CID "\",\"Id\":\"" CID "\"}", /* duplicate keys */
		"{\"Id\":\"../../etc/passwd000000000000000000000000000000000000000000000000\"}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		dk_container c;
		char why[200] = "";
		assert_int_equal(dk_container_parse(bad[i], strlen(bad[i]), &c, why, sizeof why), -EINVAL);
		assert_true(why[0] != '\0');
		assert_null(c.root);
	}
	/* wrong types everywhere: decoded leniently, no instance, no crash */
	static const char odd[] =
		"{\"Id\":\"" CID "\",\"Name\":7,\"State\":[],\"Config\":{\"Image\":null,\"Labels\":[1],"
		"\"Env\":{\"a\":1},\"ExposedPorts\":\"80/tcp\"},\"HostConfig\":\"host\","
		"\"NetworkSettings\":{\"Ports\":{\"80/tcp\":\"x\",\"abc\":[],\"99999/tcp\":null,"
		"\"81/tcp\":[{\"HostIp\":\"0.0.0.0\",\"HostPort\":\"x\"},{\"HostIp\":\"evil host\","
		"\"HostPort\":\"81\"}],\"82/tcp\":[{\"HostIp\":7,\"HostPort\":\"65536\"}]}}}";
	dk_container c;
	assert_int_equal(parse_str(odd, &c), 0);
	assert_false(c.running);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 0);
	assert_clean(&r);
	dk_result_free(&r);
	assert_int_equal(dk_build(&c, &internal_mode, &r), 0);
	assert_int_equal(r.n, 0);
	dk_result_free(&r);
	dk_container_free(&c);
}

/* Issue 14.4: NetworkMode reaches a note escaped; HostPort is digits only. */
static void test_hostile_strings(void **state)
{
	(void)state;
	static const char nm[] =
		"{\"Id\":\"" CID "\",\"Name\":\"/e2\",\"State\":{\"Running\":true},"
		"\"Config\":{\"Image\":\"x/y:z\",\"ExposedPorts\":{\"80/tcp\":{}}},"
		"\"HostConfig\":{\"NetworkMode\":\"evil\\n\\u001b[2Jnet\\\\x\"},"
		"\"NetworkSettings\":{\"Networks\":{}}}";
	dk_container c;
	assert_int_equal(parse_str(nm, &c), 0);
	dk_result r;
	assert_int_equal(dk_build(&c, &internal_mode, &r), 0);
	assert_int_equal(r.n, 0);
	assert_clean(&r);
	assert_true(has_msg(r.notes, r.nnotes,
	                    "container e2 (000000000000): no container IP address (network mode "
	                    "\"evil\\x0a\\x1b[2Jnet\\\\x\"); skipped"));
	dk_result_free(&r);
	dk_container_free(&c);

	static const char *const ports[] = {"+80", " 80", "80 ", "8 0", "0x50", "-80", "8e1",
	                                    "80\n", "0", "65536", "99999999999999999999"};
	for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
		char json[1024];
		char hp[64];
		/* as a JSON string */
		size_t o = 0;
		for (const char *p = ports[i]; *p; p++)
			o += (size_t)snprintf(hp + o, sizeof hp - o, *p == '\n' ? "\\n" : "%c", *p);
		snprintf(json, sizeof json,
		         "{\"Id\":\"" CID "\",\"Name\":\"/p\",\"State\":{\"Running\":true},"
		         "\"Config\":{\"Image\":\"x/y:z\"},\"HostConfig\":{\"NetworkMode\":\"bridge\"},"
		         "\"NetworkSettings\":{\"Ports\":{\"80/tcp\":[{\"HostIp\":\"0.0.0.0\","
		         "\"HostPort\":\"%s\"}]}}}",
		         hp);
		assert_int_equal(parse_str(json, &c), 0);
		assert_int_equal(dk_build(&c, &host_mode, &r), 0);
		if (r.n != 0)
			fail_msg("HostPort \"%s\" was accepted", ports[i]);
		assert_clean(&r);
		assert_true(has_msg(r.notes, r.nnotes, "has a binding with a bad HostPort"));
		dk_result_free(&r);
		dk_container_free(&c);
	}
	/* port keys: digits, then /tcp or /udp */
	static const char *const keys[] = {"+80/tcp", " 80/tcp", "80 /tcp", "0x50/tcp", "80/tcp ",
	                                   "-80/tcp"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		char json[1024];
		snprintf(json, sizeof json,
		         "{\"Id\":\"" CID "\",\"Name\":\"/p\",\"State\":{\"Running\":true},"
		         "\"Config\":{\"Image\":\"x/y:z\",\"ExposedPorts\":{\"%s\":{}}},"
		         "\"HostConfig\":{\"NetworkMode\":\"host\"}}",
		         keys[i]);
		assert_int_equal(parse_str(json, &c), 0);
		assert_int_equal(dk_build(&c, &host_mode, &r), 0);
		if (r.n != 0)
			fail_msg("port key \"%s\" was accepted", keys[i]);
		dk_result_free(&r);
		dk_container_free(&c);
	}
}

/* At most DK_MAX_TAGS tags and DK_MAX_META meta pairs per instance, the
 * rest skipped with one warning (the core would refuse the instance). */
static void test_limits(void **state)
{
	(void)state;
	char *json = malloc(200000);
	assert_non_null(json);
	size_t o = (size_t)sprintf(json, "{\"Id\":\"" CID "\",\"Name\":\"/big\",\"State\":{\"Running\""
	                                 ":true},\"Config\":{\"Image\":\"x/y:z\",\"ExposedPorts\":"
	                                 "{\"80/tcp\":{}},\"Labels\":{\"regent.tags\":\"");
	for (int i = 0; i < 5000; i++)
		o += (size_t)sprintf(json + o, "%st%d", i ? "," : "", i);
	o += (size_t)sprintf(json + o, "\"");
	for (int i = 0; i < 1000; i++)
		o += (size_t)sprintf(json + o, ",\"regent.meta.k%04d\":\"v\"", i);
	sprintf(json + o, "}},\"HostConfig\":{\"NetworkMode\":\"host\"}}");
	dk_container c;
	assert_int_equal(parse_str(json, &c), 0);
	free(json);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.insts[0].ntags, DK_MAX_TAGS);
	assert_string_equal(r.insts[0].tags[63], "t63");
	assert_int_equal(r.insts[0].nmeta, DK_MAX_META);
	assert_string_equal(r.insts[0].meta[63].key, "k0063");
	assert_int_equal(r.nwarnings, 2);
	assert_true(has_msg(r.warnings, r.nwarnings,
	                    "container big (000000000000): label regent.tags: more than 64 tags; the "
	                    "rest skipped"));
	assert_true(has_msg(r.warnings, r.nwarnings,
	                    "container big (000000000000): 1000 meta entries (at most 64); meta "
	                    "k0064 and those after it (by name) skipped"));
	dk_result_free(&r);
	dk_container_free(&c);
}

static void test_list(void **state)
{
	(void)state;
	size_t len;
	char *json = slurp("list.json", &len);
	char(*ids)[DK_ID_LEN + 1];
	size_t n, bad;
	char why[200];
	assert_int_equal(dk_list_parse(json, len, &ids, &n, &bad, why, sizeof why), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bad, 0);
	assert_string_equal(ids[0], "f5b6e5c528172b7de05e387d2d152fcad623425d1660b490db368664647ba5e2");
	free(ids);
	free(json);

	static const char mixed[] = "[{\"Id\":\"" CID "\"},{\"Id\":\"nope\"},{},3]";
	assert_int_equal(dk_list_parse(mixed, strlen(mixed), &ids, &n, &bad, why, sizeof why), 0);
	assert_int_equal(n, 1);
	assert_int_equal(bad, 3);
	free(ids);
	static const char *const broken[] = {"", "{}", "[", "{\"message\":\"page not found\"}"};
	for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++)
		assert_int_equal(dk_list_parse(broken[i], strlen(broken[i]), &ids, &n, &bad, why,
		                               sizeof why),
		                 -EINVAL);
}

static void test_events(void **state)
{
	(void)state;
	size_t len;
	char *text = slurp("events.jsonl", &len);
	size_t counts[DK_EV_UNHEALTHY + 1] = {0};
	size_t ncontainer = 0, nother_type = 0;
	int kill_signal = 0;
	uint64_t last = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		dk_event ev;
		char why[200] = "";
		if (dk_event_parse(line, strlen(line), &ev, why, sizeof why) != 0)
			fail_msg("recorded event did not parse: %s: %.80s", why, line);
		assert_true(ev.time_ns > 1000000000ull * 1000000000ull);
		if (!ev.container) {
			nother_type++;
			continue;
		}
		ncontainer++;
		assert_string_equal(ev.id,
		                    "f5b6e5c528172b7de05e387d2d152fcad623425d1660b490db368664647ba5e2");
		assert_string_equal(ev.name, "w1");
		counts[ev.action]++;
		if (ev.action == DK_EV_KILL)
			kill_signal = ev.signal;
		assert_true(ev.time_ns >= last); /* recorded in order */
		last = ev.time_ns;
	}
	free(text);
	assert_int_equal(nother_type, 2);
	assert_int_equal(counts[DK_EV_START], 1);
	assert_int_equal(counts[DK_EV_HEALTHY], 1);
	assert_int_equal(counts[DK_EV_UNHEALTHY], 1);
	assert_int_equal(counts[DK_EV_KILL], 1);
	assert_int_equal(kill_signal, 15);
	assert_int_equal(counts[DK_EV_DIE], 1);
	assert_int_equal(counts[DK_EV_STOP], 1);
	assert_true(counts[DK_EV_OTHER] > 5); /* create, exec_* */

	static const char *const bad[] = {
		"", "{", "[1]", "{\"Type\":\"container\"}",
		"{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"short\"}}",
		"{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":\"" CID "/../x\"}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		dk_event ev;
		char why[200] = "";
		assert_int_equal(dk_event_parse(bad[i], strlen(bad[i]), &ev, why, sizeof why), -EINVAL);
		assert_true(why[0] != '\0');
	}
	/* an error body on the stream names the daemon's message */
	static const char err[] = "{\"message\":\"client version 1.99 is too new\"}";
	dk_event ev;
	char why[200];
	assert_int_equal(dk_event_parse(err, strlen(err), &ev, why, sizeof why), -EINVAL);
	assert_non_null(strstr(why, "error from the daemon: client version 1.99 is too new"));
	/* health_status with and without the space; time in seconds only */
	static const char h1[] = "{\"Type\":\"container\",\"Action\":\"health_status:unhealthy\","
	                         "\"Actor\":{\"ID\":\"" CID "\"},\"time\":1700000000}";
	assert_int_equal(dk_event_parse(h1, strlen(h1), &ev, why, sizeof why), 0);
	assert_int_equal(ev.action, DK_EV_UNHEALTHY);
	assert_true(ev.time_ns == 1700000000ull * 1000000000ull);
	static const char k9[] = "{\"Type\":\"container\",\"Action\":\"kill\",\"Actor\":{\"ID\":\"" CID
	                         "\",\"Attributes\":{\"signal\":\"SIGKILL\",\"name\":\"a\\nb\"}}}";
	assert_int_equal(dk_event_parse(k9, strlen(k9), &ev, why, sizeof why), 0);
	assert_int_equal(ev.signal, 9);
	assert_string_equal(ev.name, "a\\x0ab");
}

static void test_helpers(void **state)
{
	(void)state;
	assert_int_equal(dk_signal_number("15"), 15);
	assert_int_equal(dk_signal_number("SIGTERM"), 15);
	assert_int_equal(dk_signal_number("quit"), 3);
	assert_int_equal(dk_signal_number("SIGRTMIN+3"), -1);
	assert_int_equal(dk_signal_number(NULL), -1);
	assert_int_equal(dk_signal_number("15x"), -1);

	assert_true(dk_parse_time("2026-11-24T22:28:22.751809633Z") == 1795559302751809633ull);
	assert_true(dk_parse_time("2024-02-29T00:00:00Z") == 1709164800000000000ull);
	assert_true(dk_parse_time("2026-01-01T01:30:00.5+01:00") == 1767227400500000000ull);
	assert_true(dk_parse_time("0001-01-01T00:00:00Z") == 0);
	assert_true(dk_parse_time("") == 0);
	assert_true(dk_parse_time(NULL) == 0);
	assert_true(dk_parse_time("2026-11-24 22:28:22Z") == 0);
	assert_true(dk_parse_time("2026-11-24T22:28:22.Z") == 0);
	assert_true(dk_parse_time("2026-11-24T22:28:22Zjunk") == 0);

	assert_true(dk_is_loopback("127.0.0.1"));
	assert_true(dk_is_loopback("127.1.2.3"));
	assert_true(dk_is_loopback("::1"));
	assert_true(dk_is_loopback("::ffff:127.0.0.1"));
	assert_true(dk_is_loopback("localhost"));
	assert_true(dk_is_loopback("LOCALHOST."));
	assert_true(dk_is_loopback("app.localhost"));
	assert_false(dk_is_loopback("10.170.71.10"));
	assert_false(dk_is_loopback("128.0.0.1"));
	assert_false(dk_is_loopback("::2"));
	assert_false(dk_is_loopback("notlocalhost"));
	assert_false(dk_is_loopback("backend-1.example.com"));

	char out[16];
	/* quotes kept (issue 17), a backslash doubled, control bytes as \xNN */
	dk_escape("a\nb\"c\\", out, sizeof out);
	assert_string_equal(out, "a\\x0ab\"c\\\\");
	dk_escape("{\"k\":\"v\"}", out, sizeof out);
	assert_string_equal(out, "{\"k\":\"v\"}");
	dk_escape("0123456789abcdefghij", out, sizeof out);
	assert_string_equal(out, "0123456789ab...");
	assert_true(strlen(out) < sizeof out);
	dk_escape("\xff\x01", out, sizeof out);
	assert_string_equal(out, "\\xff\\x01");

	/* the service-name rule the labels are checked with: the host's */
	assert_true(regent_host_table.valid_service("whoami"));
	assert_true(regent_host_table.valid_service("a.b_c-d9"));
	assert_false(regent_host_table.valid_service("-a"));
	assert_false(regent_host_table.valid_service("x/../../y"));
	assert_false(regent_host_table.valid_service("a b"));
	assert_false(regent_host_table.valid_service("a\nb"));
	assert_false(regent_host_table.valid_service(""));
	char long_name[70];
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	assert_false(regent_host_table.valid_service(long_name));
	long_name[63] = '\0';
	assert_true(regent_host_table.valid_service(long_name));
}

static void test_inst_copy(void **state)
{
	(void)state;
	dk_container c;
	load("labels.json", &c);
	dk_result r;
	assert_int_equal(dk_build(&c, &host_mode, &r), 0);
	dk_inst copy;
	assert_int_equal(dk_inst_copy(&copy, &r.insts[0]), 0);
	regent_instance v;
	dk_inst_view(&copy, &v);
	assert_string_equal(v.id, r.insts[0].id);
	assert_string_equal(v.service, r.insts[0].service);
	assert_int_equal(v.ntags, r.insts[0].ntags);
	assert_int_equal(v.nmeta, r.insts[0].nmeta);
	assert_int_equal(v.service_port, r.insts[0].private_port);
	assert_null(v.node);
	dk_inst_free(&copy);
	dk_result_free(&r);
	dk_container_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_service),
		cmocka_unit_test(test_published),
		cmocka_unit_test(test_internal),
		cmocka_unit_test(test_host_network),
		cmocka_unit_test(test_env_naming),
		cmocka_unit_test(test_labels),
		cmocka_unit_test(test_malicious),
		cmocka_unit_test(test_bad_env_names),
		cmocka_unit_test(test_ignore),
		cmocka_unit_test(test_registrator),
		cmocka_unit_test(test_ready),
		cmocka_unit_test(test_malformed_inspect),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_hostile_strings),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_helpers),
		cmocka_unit_test(test_inst_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
