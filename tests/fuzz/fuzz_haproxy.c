/* fuzz_haproxy.c - libFuzzer harness: the haproxy sink's renderer
 * (plugins/haproxy/render.c) fed with fuzzed values after the plugin's
 * own validation, as the plugin does.  The input is NUL-separated fields:
 * service name, bind address, bind port, check path, balance, server
 * options (comma-separated, as the config list), state file, then
 * address, port, id for each server.  Checked: exactly one listen line,
 * naming the service; one server line per slot in order, read back by
 * hx_parse_file as rendered; no control byte but the newlines; the
 * runtime API command for each server is a single command on one line.
 * haproxy's answers (show proc/info/stat/servers state) are parsed from
 * the raw input too.  The text grows through the core's own host table
 * (core/helpers.c, linked from regent_core), as in the plugin. */
#include "core.h"
#include "fuzz.h"
#include "host.h"
#include "hx.h"

#include <errno.h>

#define MAX_SERVERS 8

typedef struct seen {
	bool got;
	char addr[HX_ADDR_MAX];
	unsigned port;
	char id[256];
	bool has_id, enabled;
} seen;

static const regent_host *H = &regent_host_table;

static seen got[MAX_SERVERS];
static size_t extra;

static void on_server(void *arg, const char *proxy, size_t slot, const char *addr, unsigned port,
                      const char *id)
{
	const char *name = arg;
	CHECK(strcmp(proxy, name) == 0, "server of proxy \"%s\"", proxy);
	if (slot >= MAX_SERVERS || got[slot].got) {
		extra++;
		return;
	}
	got[slot].got = true;
	got[slot].enabled = addr != NULL;
	snprintf(got[slot].addr, sizeof(got[slot].addr), "%s", addr ? addr : "");
	got[slot].port = port;
	got[slot].has_id = id != NULL;
	snprintf(got[slot].id, sizeof(got[slot].id), "%s", id ? id : "");
}

static void on_noop_server(void *arg, const char *proxy, size_t slot, const char *addr,
                           unsigned port, const char *id)
{
	(void)arg, (void)proxy, (void)slot, (void)addr, (void)port, (void)id;
}

static bool keep_all(void *arg, const char *px, const char *sv, const char *addr, unsigned port,
                     unsigned op, unsigned admin)
{
	(void)arg, (void)px, (void)sv, (void)addr, (void)port;
	return (admin + op) % 2 == 0;
}

static void on_stat(void *arg, const char *px, const char *sv, long scur)
{
	(void)arg, (void)px, (void)sv, (void)scur;
}

static void answers(const uint8_t *data, size_t size)
{
	char *s = fz_strndup(data, size);
	hx_proc_info pi;
	(void)hx_parse_show_proc(s, &pi);
	(void)hx_parse_info_pid(s);
	hx_parse_show_stat(s, on_stat, NULL);
	char *f = hx_filter_state(H, s, keep_all, NULL);
	free(f);
	size_t len = 0;
	(void)hx_cli_error(s, &len);
	hx_parse_file(s, on_noop_server, NULL, NULL);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	answers(data, size);

	char *f[7 + 3 * MAX_SERVERS] = {0};
	size_t nf = fz_split(data, size, 0, f, sizeof(f) / sizeof(f[0]));
	hx_buf out = {.h = H}, opts = {.h = H};
	char *listen = NULL;
	if (nf < 7)
		goto done;
	/* What the plugin validates before rendering. */
	const char *name = f[0];
	if (!regent_valid_service(name))
		goto done;
	uint16_t bport;
	if (regent_parse_port(f[2], strlen(f[2]), &bport) != 0)
		goto done;
	char bind[80];
	if (!hx_format_bind(f[1], bport, bind, sizeof(bind)))
		goto done;
	const char *items[64];
	size_t nitems = 0;
	for (char *save = NULL, *t = strtok_r(f[5], ",", &save); t && nitems < 64;
	     t = strtok_r(NULL, ",", &save))
		items[nitems++] = regent_trim(t);
	char why[256] = "";
	if (hx_server_options(items, nitems, &opts, why, sizeof(why)) != 0)
		hx_buf_free(&opts); /* refused with FILE:LINE by the plugin */
	const char *srvopts = hx_buf_str(&opts);
	CHECK(fz_clean(srvopts, strlen(srvopts), ""), "server options \"%s\"", srvopts);
	hx_svc_cfg cfg = {
		.name = name,
		.id = HX_FIRST_ID,
		.bind = bind,
		.http = f[3][0] != '\0',
		.check_path = hx_valid_check_path(f[3]) ? f[3] : NULL,
		.balance = hx_valid_balance(f[4]) ? f[4] : "roundrobin",
		.maxconn = 100,
		.retries = 3,
		.t_connect = 5000,
		.t_client = 60000,
		.t_server = 60000,
		.t_check = 0,
		.state_file = hx_valid_file_path(f[6]) ? f[6] : NULL,
		.server_defaults = srvopts, /* as the plugin: once, not on each server line */
	};
	listen = hx_render_listen(H, &cfg);
	hx_buf_puts(&out, listen);
	size_t nslots = (nf - 7) / 3;
	char canon[MAX_SERVERS][HX_ADDR_MAX];
	bool enabled[MAX_SERVERS];
	uint16_t ports[MAX_SERVERS];
	for (size_t i = 0; i < nslots; i++) {
		const char *addr = f[7 + 3 * i], *port = f[8 + 3 * i], *id = f[9 + 3 * i];
		bool v6;
		enabled[i] = hx_valid_ip(addr, canon[i], &v6) &&
		             regent_parse_port(port, strlen(port), &ports[i]) == 0;
		hx_server_line l = {.enabled = enabled[i], .addr = canon[i], .port = ports[i], .id = id};
		hx_render_server(&out, i, &l, "");
		if (!enabled[i])
			continue;
		/* The runtime API command the plugin sends for this slot. */
		char cmd[512];
		int n = snprintf(cmd, sizeof(cmd), "set server %s/s%zu addr %s port %u", name, i + 1,
		                 canon[i], (unsigned)ports[i]);
		CHECK(n > 0 && (size_t)n < sizeof(cmd), "command too long");
		CHECK(fz_clean(cmd, (size_t)n, "") && !strchr(cmd, ';'), "command \"%s\"", cmd);
		size_t words = 0;
		for (char *save = NULL, *t = strtok_r(cmd, " ", &save); t; t = strtok_r(NULL, " ", &save))
			words++;
		CHECK(words == 7, "%zu words in the command", words);
	}
	const char *text = hx_buf_str(&out);
	CHECK(fz_clean(text, strlen(text), "\n"), "control byte in:\n%s", text);
	/* One listen line, naming the service; every other line indented. */
	size_t listens = 0, servers = 0;
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		CHECK(nl != NULL, "unterminated line");
		if (strncmp(p, "listen ", 7) == 0) {
			listens++;
			CHECK((size_t)(nl - p) == 7 + strlen(name) && strncmp(p + 7, name, strlen(name)) == 0,
			      "listen line \"%.*s\"", (int)(nl - p), p);
		} else {
			CHECK(strncmp(p, "    ", 4) == 0 && p[4] != ' ', "line \"%.*s\"", (int)(nl - p), p);
		}
		if (strncmp(p, "    server ", 11) == 0) {
			char want[32];
			snprintf(want, sizeof(want), "    server s%zu ", servers + 1);
			CHECK(strncmp(p, want, strlen(want)) == 0, "server line \"%.*s\"", (int)(nl - p), p);
			servers++;
		}
		p = nl + 1;
	}
	CHECK(listens == 1, "%zu listen lines", listens);
	CHECK(servers == nslots, "%zu server lines for %zu slots", servers, nslots);
	/* What the plugin reads back after a restart is what it wrote. */
	memset(got, 0, sizeof(got));
	extra = 0;
	hx_parse_file(text, on_server, NULL, (void *)name);
	CHECK(extra == 0, "%zu unexpected server lines", extra);
	for (size_t i = 0; i < nslots; i++) {
		CHECK(got[i].got, "slot %zu not read back", i + 1);
		CHECK(got[i].enabled == enabled[i], "slot %zu enabled %d", i + 1, got[i].enabled);
		if (!enabled[i])
			continue;
		CHECK(strcmp(got[i].addr, canon[i]) == 0 && got[i].port == ports[i],
		      "slot %zu read back as %s:%u", i + 1, got[i].addr, got[i].port);
		const char *id = f[9 + 3 * i];
		bool has = hx_valid_comment_id(id);
		CHECK(got[i].has_id == has && (!has || strcmp(got[i].id, id) == 0),
		      "slot %zu id \"%s\" read back as \"%s\"", i + 1, id, got[i].id);
	}
	hx_global_opts go = {.stats_bind = bind, .strict_limits = true};
	char *g = hx_render_global(H, &go);
	CHECK(fz_clean(g, strlen(g), "\n"), "global");
	free(g);
done:
	free(listen);
	hx_buf_free(&out);
	hx_buf_free(&opts);
	for (size_t i = 0; i < nf; i++)
		free(f[i]);
	return 0;
}
