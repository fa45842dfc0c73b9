/* test_render.c - unit tests of the haproxy sink's pure helpers
 * (plugins/haproxy/render.c): validation of everything that reaches the
 * generated file (hostile values included, bypassing the core's own
 * checks), rendering, and parsing of haproxy's answers.  The text grows
 * through the core's own host table (regent_core), as in the plugin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "host.h" /* the core's host table (regent_core) */
#include "hx.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static const regent_host *H = &regent_host_table;

static void test_valid_ip(void **st)
{
	(void)st;
	char out[HX_ADDR_MAX];
	bool v6;
	assert_true(hx_valid_ip("127.0.0.1", out, &v6));
	assert_string_equal(out, "127.0.0.1");
	assert_false(v6);
	assert_true(hx_valid_ip("0:0::1", out, &v6));
	assert_string_equal(out, "::1");
	assert_true(v6);
	static const char *const bad[] = {
		"", "0.0.0.0", "::", "evil.example", "127.0.0.1\n    server x 1.2.3.4:80",
		"127.0.0.1 ", " 127.0.0.1", "127.0.0.1#x", "1.2.3", "127.0.0.1:80", "[::1]",
		"0001:0002:0003:0004:0005:0006:0007:0008:0009", NULL,
	};
	for (size_t i = 0; bad[i]; i++)
		assert_false(hx_valid_ip(bad[i], out, &v6));
	assert_false(hx_valid_ip(NULL, out, &v6));
}

/* hx_ip4_str writes what inet_ntop writes, for every byte value in every
 * position. */
static void test_ip4_str(void **st)
{
	(void)st;
	char a[HX_ADDR_MAX], b[HX_ADDR_MAX];
	for (unsigned v = 0; v < 256; v++)
		for (int pos = 0; pos < 4; pos++) {
			unsigned char ip[4] = {1, 22, 203, 4};
			ip[pos] = (unsigned char)v;
			assert_ptr_equal(hx_ip4_str(ip, a), a);
			assert_non_null(inet_ntop(AF_INET, ip, b, sizeof(b)));
			assert_string_equal(a, b);
		}
	unsigned char top[4] = {255, 255, 255, 255};
	assert_string_equal(hx_ip4_str(top, a), "255.255.255.255");
}

static void test_check_path(void **st)
{
	(void)st;
	assert_true(hx_valid_check_path("/"));
	assert_true(hx_valid_check_path("/health?x=1&y=2"));
	static const char *const bad[] = {"", "health", "/a b", "/a#b", "/a\nlisten x", "/a\"b",
	                                  "/a'b", "/a\\b", "/${X}", "/a\tb", NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_false(hx_valid_check_path(bad[i]));
}

static void test_paths_ids(void **st)
{
	(void)st;
	assert_true(hx_valid_file_path("/var/lib/regent/haproxy.cfg"));
	assert_false(hx_valid_file_path("relative.cfg"));
	assert_false(hx_valid_file_path("/a b"));
	assert_false(hx_valid_file_path("/a#b"));
	assert_false(hx_valid_file_path("/a\nb"));
	assert_true(hx_valid_comment_id("node-1/abcdef123456/8080"));
	assert_false(hx_valid_comment_id("x\nlisten evil"));
	assert_false(hx_valid_comment_id("x#y"));
	assert_false(hx_valid_comment_id(""));
}

static void test_bind(void **st)
{
	(void)st;
	char out[80];
	assert_true(hx_format_bind("*", 80, out, sizeof(out)));
	assert_string_equal(out, "*:80");
	assert_true(hx_format_bind("127.0.0.1", 8000, out, sizeof(out)));
	assert_string_equal(out, "127.0.0.1:8000");
	assert_true(hx_format_bind("::", 8000, out, sizeof(out)));
	assert_string_equal(out, "[::]:8000");
	assert_false(hx_format_bind("localhost", 80, out, sizeof(out)));
	assert_false(hx_format_bind("127.0.0.1", 0, out, sizeof(out)));
	assert_false(hx_format_bind("127.0.0.1", 70000, out, sizeof(out)));
}

static int opts(const char *const *items, size_t n, char *out, size_t outlen)
{
	hx_buf b = {.h = H};
	char why[256] = "";
	int rc = hx_server_options(items, n, &b, why, sizeof(why));
	snprintf(out, outlen, "%s", rc == 0 ? hx_buf_str(&b) : why);
	hx_buf_free(&b);
	return rc;
}

static void test_server_options(void **st)
{
	(void)st;
	char out[256];
	const char *good[] = {"weight 10", "maxconn 100", "slowstart 10s", "send-proxy-v2",
	                      "observe layer7", "verify none"};
	assert_int_equal(opts(good, 6, out, sizeof(out)), 0);
	assert_string_equal(out,
	                    " weight 10 maxconn 100 slowstart 10s send-proxy-v2 observe layer7 verify none");
	static const char *const bad[] = {
		"bogus",        "weight",        "weight 300",       "weight 1 2",   "send-proxy yes",
		"slowstart 1y", "observe layer9", "weight 10\nlisten", "track x/y",  "addr 1.2.3.4",
		"maxconn -1",   "inter 1s",      "weight \r0",      "weight\v10", "weight 1\r",
		"weight +10",   "weight\f1",     "ssl\x7f",           NULL,
	};
	for (size_t i = 0; bad[i]; i++) {
		const char *one[] = {bad[i]};
		assert_int_equal(opts(one, 1, out, sizeof(out)), -EINVAL);
		assert_true(strlen(out) > 0);
	}
}

static void test_server_options_split(void **st)
{
	(void)st;
	char out[256];
	/* tabs and runs of blanks separate the name from its value */
	const char *tabbed[] = {"weight\t10", "  maxconn   5 "};
	assert_int_equal(opts(tabbed, 2, out, sizeof(out)), 0);
	assert_string_equal(out, " weight 10 maxconn 5");
	const char *cr[] = {"weight \r0"};
	assert_int_equal(opts(cr, 1, out, sizeof(out)), -EINVAL);
	assert_non_null(strstr(out, "control byte"));
}

static void test_parse_port(void **st)
{
	(void)st;
	uint16_t p = 0;
	assert_true(hx_parse_port("80", &p));
	assert_int_equal(p, 80);
	assert_true(hx_parse_port("65535", &p));
	static const char *const bad[] = {"+80", " 80", "80 ", "80x", "0", "65536", "-1", "",
	                                  "0x50", "8\n0", " 27816", "000080", NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_false(hx_parse_port(bad[i], &p));
}


/* hx_render_global with the options in a row (threads 0 unless said) */
static char *render_global(const char *admin, const char *state, const char *stats, bool strict,
                           int64_t maxconn, int64_t spread_ms, bool no_hc_ca)
{
	hx_global_opts o = {.admin_socket = admin,
	                    .state_file = state,
	                    .stats_bind = stats,
	                    .strict_limits = strict,
	                    .maxconn = maxconn,
	                    .spread_ms = spread_ms,
	                    .no_hc_ca = no_hc_ca};
	return hx_render_global(H, &o);
}

static void test_render(void **st)
{
	(void)st;
	hx_svc_cfg c = {.name = "web", .id = 10001, .bind = "127.0.0.1:8000", .http = true, .check_path = "/h",
	                .balance = "roundrobin", .maxconn = 100, .retries = 3, .t_connect = 5000,
	                .t_client = 60000, .t_server = 1500, .state_global = true};
	char *l = hx_render_listen(H, &c);
	assert_non_null(strstr(l, "listen web\n    id 10001\n    bind 127.0.0.1:8000\n    mode http\n"));
	assert_non_null(strstr(l, "    timeout server 1500ms\n"));
	assert_non_null(strstr(l, "    option httpchk GET /h\n"));
	assert_non_null(strstr(l, "    option redispatch 1\n"));
	assert_non_null(strstr(l, "    load-server-state-from-file global\n"));
	assert_null(strstr(l, "server-state-file-name")); /* declared once, in global */
	assert_null(strstr(l, "default-server")); /* no shared server options: no line */
	free(l);
	/* the options every server shares: once, the block's last line (before the servers) */
	c.server_defaults = " check inter 2s weight 5";
	l = hx_render_listen(H, &c);
	size_t ll = strlen(l), dl = strlen("    default-server check inter 2s weight 5\n");
	assert_true(ll > dl);
	assert_string_equal(l + ll - dl, "    default-server check inter 2s weight 5\n");
	free(l);
	c.server_defaults = NULL;
	c.state_global = false; /* drive mode: the user's global is theirs */
	c.state_file = "/s/state";
	l = hx_render_listen(H, &c);
	assert_non_null(strstr(l, "    load-server-state-from-file local\n"
	                          "    server-state-file-name /s/state\n"));
	free(l);
	hx_buf b = {.h = H};
	hx_server_line a = {.enabled = true, .addr = "10.0.0.1", .port = 80, .id = "n/1/80"};
	hx_server_line d = {.enabled = false};
	hx_server_line v6 = {.enabled = true, .addr = "::1", .port = 81, .id = "x\nlisten evil"};
	hx_render_server(&b, 0, &a, " check");
	hx_render_server(&b, 1, &d, " check");
	hx_render_server(&b, 2, &v6, " check");
	/* Each line names its id, its slot's number: haproxy 2.6 then skips its
	 * O(n^2) comparison of server names (8.3 s of `haproxy -c` at 16,616
	 * servers in one listen without, 0.11 s with). */
	assert_string_equal(hx_buf_str(&b), "    server s1 10.0.0.1:80 id 1 check  # n/1/80\n"
	                                    "    server s2 0.0.0.0:0 id 2 check disabled\n"
	                                    "    server s3 [::1]:81 id 3 check\n");
	hx_buf_free(&b);
	hx_server_line far = {.enabled = true, .addr = "10.0.0.1", .port = 80};
	hx_render_server(&b, 16615, &far, "");
	hx_render_server(&b, 99999, &d, "");
	assert_string_equal(hx_buf_str(&b), "    server s16616 10.0.0.1:80 id 16616\n"
	                                    "    server s100000 0.0.0.0:0 id 100000 disabled\n");
	hx_buf_free(&b);
	char *g = render_global("/run/a.sock", "/s/state", "127.0.0.1:1936", true, 0, 0, false);
	assert_non_null(strstr(g, "global\n    stats socket /run/a.sock mode 600 level admin expose-fd listeners\n"
	                          "    server-state-file /s/state\n\n"));
	assert_non_null(strstr(g, "listen " HX_STATS_PROXY "\n    id 10000\n    bind 127.0.0.1:1936\n"));
	free(g);
	g = render_global(NULL, NULL, NULL, true, 0, 0, false);
	assert_string_equal(g, "");
	free(g);
	g = render_global(NULL, "/s/state", NULL, true, 0, 0, false);
	assert_string_equal(g, "global\n    server-state-file /s/state\n\n");
	free(g);
	/* strict_limits = false and a global maxconn, in the global section */
	g = render_global("/run/a.sock", "/s/state", NULL, false, 4000, 0, false);
	assert_string_equal(g, "global\n    stats socket /run/a.sock mode 600 level admin expose-fd listeners\n"
	                       "    server-state-file /s/state\n"
	                       "    no strict-limits\n"
	                       "    maxconn 4000\n\n");
	free(g);
	g = render_global(NULL, NULL, NULL, true, 250, 0, false);
	assert_string_equal(g, "global\n    maxconn 250\n\n");
	free(g);
	g = render_global(NULL, NULL, NULL, false, 0, 0, false);
	assert_string_equal(g, "global\n    no strict-limits\n\n");
	free(g);
	/* max_spread_checks: a cap on the first checks' spread, after maxconn */
	g = render_global("/run/a.sock", "/s/state", NULL, true, 250, 20000, false);
	assert_string_equal(g, "global\n    stats socket /run/a.sock mode 600 level admin expose-fd listeners\n"
	                       "    server-state-file /s/state\n"
	                       "    maxconn 250\n"
	                       "    max-spread-checks 20s\n\n");
	free(g);
	g = render_global(NULL, NULL, NULL, true, 0, 1500, false);
	assert_string_equal(g, "global\n    max-spread-checks 1500ms\n\n");
	free(g);
	/* no_hc_ca (manage, no include): the httpclient's CA store not loaded, last */
	g = render_global("/run/a.sock", "/s/state", NULL, true, 0, 20000, true);
	assert_string_equal(g, "global\n    stats socket /run/a.sock mode 600 level admin expose-fd listeners\n"
	                       "    server-state-file /s/state\n"
	                       "    max-spread-checks 20s\n"
	                       "    httpclient.ssl.verify none\n\n");
	free(g);
	g = render_global(NULL, NULL, NULL, true, 0, 0, true);
	assert_string_equal(g, "global\n    httpclient.ssl.verify none\n\n");
	free(g);
	/* threads: nbthread, before the httpclient line */
	hx_global_opts o = {.strict_limits = true, .threads = 1, .no_hc_ca = true};
	g = hx_render_global(H, &o);
	assert_string_equal(g, "global\n    nbthread 1\n    httpclient.ssl.verify none\n\n");
	free(g);
	o = (hx_global_opts){.strict_limits = true, .threads = 4};
	g = hx_render_global(H, &o);
	assert_string_equal(g, "global\n    nbthread 4\n\n");
	free(g);
}

typedef struct seen {
	char text[1024];
} seen;

static void on_server(void *arg, const char *proxy, size_t slot, const char *addr, unsigned port,
                      const char *id)
{
	seen *s = arg;
	size_t n = strlen(s->text);
	snprintf(s->text + n, sizeof(s->text) - n, "%s/%zu=%s:%u(%s) ", proxy, slot,
	         addr ? addr : "-", port, id ? id : "-");
}

static void on_id(void *arg, const char *proxy, unsigned id)
{
	seen *s = arg;
	size_t n = strlen(s->text);
	snprintf(s->text + n, sizeof(s->text) - n, "%s#%u ", proxy, id);
}

static void test_parse_file(void **st)
{
	(void)st;
	const char *file = "# comment\n"
	                   "global\n    stats socket /x mode 600 level admin expose-fd listeners\n"
	                   "listen regent-stats\n    bind 127.0.0.1:1936\n"
	                   "listen web\n    id 10003\n    bind *:80\n"
	                   "    server s1 10.0.0.1:80 check  # n/1/80\n"
	                   "    server s2 0.0.0.0:0 id 2 check disabled\n"
	                   "    server s3 [::1]:81 id 3 check inter 2s  # b\n"
	                   "    server x4 10.0.0.1:80\n"
	                   "listen api\n    server s1 10.0.0.2:90 check\n";
	seen s = {""};
	hx_parse_file(file, on_server, on_id, &s);
	assert_string_equal(s.text, "web#10003 web/0=10.0.0.1:80(n/1/80) web/1=-:0(-) web/2=::1:81(b) "
	                            "api/0=10.0.0.2:90(-) ");
}

static void test_show_proc(void **st)
{
	(void)st;
	hx_proc_info pi;
	const char *out = "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
	                  "6564            master          3 [failed: 1]   0d00h00m29s     2.6.12\n"
	                  "# workers\n"
	                  "8448            worker          0               0d00h00m15s     2.6.12\n"
	                  "# old workers\n"
	                  "7726            worker          1               0d00h01m15s     2.6.12\n"
	                  "# programs\n\n";
	assert_int_equal(hx_parse_show_proc(out, &pi), 0);
	assert_int_equal(pi.master_pid, 6564);
	assert_int_equal(pi.reloads, 3);
	assert_int_equal(pi.failed, 1);
	assert_int_equal(pi.worker_pid, 8448);
	assert_int_equal(pi.nworkers, 1);
	assert_int_equal(hx_parse_show_proc("garbage\n", &pi), -EINVAL);
	assert_int_equal(hx_parse_info_pid("Name: HAProxy\nVersion: 2.6\nPid: 1234\nUptime: x\n"), 1234);
	assert_int_equal(hx_parse_info_pid("Name: HAProxy\n"), 0);
}

static void on_stat(void *arg, const char *px, const char *sv, long scur)
{
	seen *s = arg;
	size_t n = strlen(s->text);
	snprintf(s->text + n, sizeof(s->text) - n, "%s/%s=%ld ", px, sv, scur);
}

static void test_show_stat(void **st)
{
	(void)st;
	const char *out = "# pxname,svname,qcur,qmax,scur,smax\n"
	                  "web,FRONTEND,,,3,4\n"
	                  "web,s1,0,0,2,5\n"
	                  "web,s2,0,0,0,5\n"
	                  "web,BACKEND,0,0,2,5\n\n"
	                  "# pxname,svname,qcur,qmax,scur,smax\n"
	                  "api,s1,0,0,1,1\n";
	seen s = {""};
	hx_parse_show_stat(out, on_stat, &s);
	assert_string_equal(s.text, "web/s1=2 web/s2=0 api/s1=1 ");
}

static bool keep_s1(void *arg, const char *px, const char *sv, const char *addr, unsigned port,
                    unsigned op, unsigned admin)
{
	(void)arg;
	assert_int_equal(op, 2);
	return strcmp(px, "web") != 0 ||
	       (strcmp(sv, "s1") == 0 && strcmp(addr, "10.0.0.1") == 0 && port == 80 && admin == 0);
}

static void test_filter_state(void **st)
{
	(void)st;
	const char *dump =
		"1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...\n"
		"2 web 1 s1 10.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
		"2 web 2 s2 10.0.0.2 2 0 1 1 2 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
		"3 other 1 a 10.9.9.9 2 0 1 1 2 6 3 4 6 0 0 0 - 99 - 0 0 - - 0\n\n"
		/* fields split as strtok_r(" ") splits them: runs of spaces are
		 * one separator (kept as they were), a short line is dropped */
		"  2  web 1   s1 10.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 - 80 - 0 0 - - 0 \n"
		"2 web 1 s1 10.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 -\n";
	char *f = hx_filter_state(H, dump, keep_s1, NULL);
	assert_string_equal(f, "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state "
	                       "srv_admin_state ...\n"
	                       "2 web 1 s1 10.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 - 80 - 0 0 - - 0\n"
	                       "3 other 1 a 10.9.9.9 2 0 1 1 2 6 3 4 6 0 0 0 - 99 - 0 0 - - 0\n"
	                       "  2  web 1   s1 10.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 - 80 - 0 0 - - 0 \n");
	free(f);
}

/* A pending server's state line: haproxy 2.6's 25 fields, stopped with
 * health 0 (what "show servers state" prints for such a server). */
static void test_state_pending_line(void **st)
{
	(void)st;
	hx_buf b = {.h = H};
	hx_state_pending_line(&b, 7, "web", 2, "10.0.0.3", 8080, 1, false);
	hx_state_pending_line(&b, 0, "api", 0, "::1", 443, 5, true);
	assert_string_equal(hx_buf_str(&b),
	                    "7 web 3 s3 10.0.0.3 0 0 1 1 0 1 0 0 6 0 1 0 - 8080 - 0 0 - - 0\n"
	                    "0 api 1 s1 ::1 0 0 5 5 0 1 0 0 6 0 0 0 - 443 - 1 0 - - 0\n");
	size_t nf = 0;
	for (const char *c = hx_buf_str(&b); *c != '\n'; c++)
		nf += *c == ' ';
	assert_int_equal(nf + 1, 25);
	hx_buf_free(&b);
}

static void test_cli_error(void **st)
{
	(void)st;
	size_t len = 0;
	assert_null(hx_cli_error("IP changed from '0.0.0.0' to '10.0.0.1', port changed from '+0' "
	                         "to '80' by 'stats socket command'\n\n\n",
	                         &len));
	assert_null(hx_cli_error("", &len));
	const char *out = "\n\nNo such server.\n\n";
	const char *e = hx_cli_error(out, &len);
	assert_non_null(e);
	assert_int_equal(len, strlen("No such server."));
	assert_non_null(hx_cli_error("Unknown command. Please enter one of the following...\n", &len));
}

static void test_fmt_ms(void **st)
{
	(void)st;
	char t[32];
	hx_fmt_ms(t, sizeof(t), 2000);
	assert_string_equal(t, "2s");
	hx_fmt_ms(t, sizeof(t), 1500);
	assert_string_equal(t, "1500ms");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_ip),      cmocka_unit_test(test_ip4_str),
		cmocka_unit_test(test_check_path),
		cmocka_unit_test(test_paths_ids),     cmocka_unit_test(test_bind),
		cmocka_unit_test(test_server_options), cmocka_unit_test(test_render),
		cmocka_unit_test(test_server_options_split), cmocka_unit_test(test_parse_port),
		cmocka_unit_test(test_parse_file),    cmocka_unit_test(test_show_proc),
		cmocka_unit_test(test_show_stat),     cmocka_unit_test(test_filter_state),
		cmocka_unit_test(test_state_pending_line),
		cmocka_unit_test(test_cli_error),     cmocka_unit_test(test_fmt_ms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
