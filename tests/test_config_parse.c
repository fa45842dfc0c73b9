/* test_config_parse.c - config parsing without the loader: this program is
 * linked from config.c, log.c, util.c and model.c alone (no loader.c, no
 * host.c, no dlopen), so it only builds while parsing needs no plugin.
 * Parsing yields the sections, their entries with their lines and the
 * [agent] values; plugin sections stay unbound (keys unchecked). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/regent-cfgp-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(dir);
}

static regent_config *parse(const char *text)
{
	snprintf(path, sizeof(path), "%s/regent.ini", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return regent_config_parse(path);
}

static const regent_cfg_entry *entry(const regent_cfg_section *s, const char *key)
{
	for (size_t i = 0; i < s->nentries; i++)
		if (strcmp(s->entries[i].key, key) == 0)
			return &s->entries[i];
	return NULL;
}

/* Plugin sections naming plugins that exist nowhere, with keys no plugin
 * declares: parsing reports nothing about them and loads nothing. */
static void sections_without_plugins(void **state)
{
	(void)state;
	regent_config *c = parse("[agent]\n"
	                         "node = n1\n"
	                         "plugin_dir = /nonexistent/plugins\n"
	                         "\n"
	                         "[store nosuchstore]\n"
	                         "endpoints = http://127.0.0.1:2379\n"
	                         "whatever = 1\n"
	                         "[sink nosuchsink edge]\n"
	                         "x = y\n"
	                         "[service web]\n"
	                         "port = 80\n"
	                         "weight = 7\n");
	assert_int_equal(c->nerrors, 0);
	assert_null(c->unbind);
	assert_int_equal(c->nsections, 4);
	const regent_cfg_section *st = c->sections[1], *sk = c->sections[2], *sv = c->sections[3];
	assert_int_equal(st->kind, REGENT_SECTION_STORE);
	assert_string_equal(st->plugin, "nosuchstore");
	assert_int_equal(st->line, 5);
	assert_null(st->lp);
	assert_int_equal(st->nvalues, 0); /* keys unchecked until bound */
	assert_int_equal(st->nentries, 2);
	const regent_cfg_entry *e = entry(st, "whatever");
	assert_non_null(e);
	assert_string_equal(e->value, "1");
	assert_int_equal(e->line, 7);
	assert_int_equal(sk->kind, REGENT_SECTION_SINK);
	assert_string_equal(sk->plugin, "nosuchsink");
	assert_string_equal(sk->name, "nosuchsink edge");
	assert_null(sk->lp);
	assert_int_equal(sv->kind, REGENT_SECTION_SERVICE);
	assert_int_equal(c->nservice_names, 1);
	assert_string_equal(c->service_names[0], "web");
	assert_ptr_equal(regent_config_service(c, "web"), sv);
	/* [agent] is validated by the parser: typed values and defaults */
	assert_ptr_equal(c->agent, c->sections[0]);
	assert_string_equal(regent_cfg_find(c->agent, "node")->raw, "n1");
	assert_string_equal(regent_cfg_find(c->agent, "plugin_dir")->raw, "/nonexistent/plugins");
	assert_int_equal(regent_cfg_find(c->agent, "debounce")->i, 50);
	regent_config_unref(c);
}

/* The parser's own errors, FILE:LINE as ever, in the file's order. */
static void parse_errors(void **state)
{
	(void)state;
	regent_config *c = parse("[agent]\n"
	                         "debounce = 2x\n"
	                         "log_level = loud\n"
	                         "[service web]\n"
	                         "port = 80\n");
	char *want1 = regent_xasprintf("%s:2: agent.debounce: ", path);
	char *want2 = regent_xasprintf("%s:3: agent.log_level: expected error, warn, info or debug, "
	                               "got \"loud\"",
	                               path);
	char *want3 = regent_xasprintf("%s: no [source NAME], [store NAME] or [sink NAME] section: "
	                               "nothing to run",
	                               path);
	assert_int_equal(c->nerrors, 3);
	assert_memory_equal(c->errors[0], want1, strlen(want1));
	assert_string_equal(c->errors[1], want2);
	assert_string_equal(c->errors[2], want3);
	free(want1);
	free(want2);
	free(want3);
	regent_config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sections_without_plugins),
		cmocka_unit_test(parse_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
