/* test_loader.c - every refusal of the plugin loader, with its message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "loader.h"
#include "log.h"
#include "model.h"
#include "util.h"

static const char *broken_dir(void)
{
	const char *d = getenv("REGENT_BROKEN_DIR");
	assert_non_null(d);
	return d;
}

static const char *plugin_dir(void)
{
	const char *d = getenv("REGENT_PLUGIN_DIR");
	assert_non_null(d);
	return d;
}

/* Loads and expects a refusal whose message contains both the path and want. */
static void refused(const char *dir, const char *name, int kind, const char *want)
{
	char err[1024] = "";
	regent_loaded_plugin *lp = regent_plugin_load(dir, name, kind, err, sizeof(err));
	if (lp)
		fail_msg("%s/%s.so loaded but should be refused", dir, name);
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	if (!strstr(err, path) || !strstr(err, want))
		fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, path, want);
}

static void missing_file(void **state)
{
	(void)state;
	refused(plugin_dir(), "nosuchplugin", REGENT_KIND_STORE,
	        "cannot load plugin: No such file or directory");
}

static void no_symbol(void **state)
{
	(void)state;
	refused(broken_dir(), "broken_nosym", 0,
	        "not a regent plugin (no exported symbol \"regent_plugin_entry\")");
}

static void other_major(void **state)
{
	(void)state;
	refused(broken_dir(), "broken_major", 0, "built for plugin ABI 2.0, this regent supports ABI 1");
}

static void newer_minor(void **state)
{
	(void)state;
	char want[128];
	snprintf(want, sizeof(want), "needs plugin ABI 1.%d but this regent provides 1.%d",
	         REGENT_ABI_MINOR + 5, REGENT_ABI_MINOR);
	refused(broken_dir(), "broken_minor", 0, want);
}

static void small_descriptor(void **state)
{
	(void)state;
	refused(broken_dir(), "broken_size", 0, "descriptor is 16 bytes");
}

static void wrong_name(void **state)
{
	(void)state;
	refused(broken_dir(), "broken_name", 0,
	        "plugin calls itself \"someothername\", expected \"broken_name\"");
}

static void incomplete_ops(void **state)
{
	(void)state;
	refused(broken_dir(), "broken_ops", 0, "missing or incomplete sink ops table");
}

static void kind_mismatch(void **state)
{
	(void)state;
	refused(plugin_dir(), "testsink", REGENT_KIND_STORE, "is a sink plugin, not a store");
}

static void not_a_shared_object(void **state)
{
	(void)state;
	char dir[] = "/tmp/regent-loader-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[600];
	snprintf(path, sizeof(path), "%s/junk.so", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("not an ELF file\n", f);
	fclose(f);
	refused(dir, "junk", 0, "cannot load plugin:");
	unlink(path);
	rmdir(dir);
}

static void loads_and_caches(void **state)
{
	(void)state;
	char err[1024];
	regent_loaded_plugin *a = regent_plugin_load(plugin_dir(), "testsink", REGENT_KIND_SINK, err,
	                                             sizeof(err));
	assert_non_null(a);
	assert_string_equal(a->desc->name, "testsink");
	regent_loaded_plugin *b = regent_plugin_load(plugin_dir(), "testsink", 0, err, sizeof(err));
	assert_ptr_equal(a, b);
	assert_int_equal(a->refs, 2);
	regent_plugin_unref(a);
	regent_plugin_unref(b);
	regent_plugins_unload_unused();
}

/* The 1.0 fixture (a 1.0 descriptor: no header_minor, no key_size) and a
 * plugin built as against a newer header (longer descriptor and keys). */
static void older_and_newer_headers(void **state)
{
	(void)state;
	char err[1024] = "";
	regent_loaded_plugin *a = regent_plugin_load(plugin_dir(), "abi10sink", REGENT_KIND_SINK, err,
	                                             sizeof(err));
	if (!a)
		fail_msg("abi10sink refused: %s", err);
	assert_int_equal(a->desc->abi_minor, 0);
	assert_int_equal(a->desc->size, REGENT_PLUGIN_SIZE_1_0);
	assert_int_equal(a->header_minor, 0);
	assert_string_equal(a->config_keys[0].name, "file");
	assert_true(a->config_keys[0].required);
	assert_null(a->config_keys[1].name);
	assert_null(a->service_keys[0].name);
	assert_non_null(a->desc->sink_ops->apply);

	regent_loaded_plugin *f = regent_plugin_load(plugin_dir(), "futuresink", REGENT_KIND_SINK, err,
	                                             sizeof(err));
	if (!f)
		fail_msg("futuresink refused: %s", err);
	assert_int_equal(f->desc->abi_minor, 4);
	assert_true(f->desc->size > sizeof(regent_plugin));
	assert_int_equal(f->header_minor, REGENT_ABI_MINOR + 1);
	assert_true(f->desc->key_size > sizeof(regent_config_key));
	const char *want[] = {"file", "greeting", "count"};
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(f->config_keys[i].name, want[i]);
	assert_null(f->config_keys[3].name);
	assert_int_equal(f->config_keys[2].type, REGENT_CFG_INT);
	assert_int_equal(f->config_keys[2].max, 10);
	assert_string_equal(f->config_keys[1].default_value, "hello");
	assert_string_equal(f->service_keys[1].name, "weight");
	assert_int_equal(f->service_keys[1].max, 256);
	assert_null(f->service_keys[2].name);

	/* A plugin of the current header: header_minor and key_size filled. */
	regent_loaded_plugin *t = regent_plugin_load(plugin_dir(), "testsink", REGENT_KIND_SINK, err,
	                                             sizeof(err));
	assert_non_null(t);
	assert_int_equal(t->header_minor, REGENT_ABI_MINOR);
	assert_int_equal(t->desc->key_size, sizeof(regent_config_key));
	regent_plugin_unref(a);
	regent_plugin_unref(f);
	regent_plugin_unref(t);
	regent_plugins_unload_unused();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(missing_file),    cmocka_unit_test(no_symbol),
		cmocka_unit_test(other_major),     cmocka_unit_test(newer_minor),
		cmocka_unit_test(small_descriptor), cmocka_unit_test(wrong_name),
		cmocka_unit_test(incomplete_ops),  cmocka_unit_test(kind_mismatch),
		cmocka_unit_test(not_a_shared_object), cmocka_unit_test(loads_and_caches),
		cmocka_unit_test(older_and_newer_headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
