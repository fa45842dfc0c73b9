/* loader.h - plugin shared objects (loader.c): found, opened, checked,
 * cached and reference-counted; key tables copied into this core's layout. */
#ifndef REGENT_CORE_LOADER_H
#define REGENT_CORE_LOADER_H

#include <regent/plugin.h>
#include <stdint.h>
#include <stdio.h>

typedef struct regent_loaded_plugin {
	char *path;
	void *dl;
	/* The plugin's descriptor: read no field past desc->size (header_minor
	 * and key_size are absent from 1.0-1.3 plugins); use the copies below. */
	const regent_plugin *desc;
	uint32_t header_minor;        /* the minor of the header it was built with */
	/* Its key tables in this core's layout (walked with the plugin's
	 * key_size), NULL-name terminated, never NULL. */
	regent_config_key *config_keys;
	regent_config_key *service_keys;
	unsigned refs;
	struct regent_loaded_plugin *next;
} regent_loaded_plugin;

/* Loads dir/name.so (cached).  expected_kind 0 = any.  On failure returns
 * NULL and writes the reason (naming the file) into err. */
regent_loaded_plugin *regent_plugin_load(const char *dir, const char *name, int expected_kind,
                                         char *err, size_t errlen);
/* Loads an explicit path. */
regent_loaded_plugin *regent_plugin_load_path(const char *path, const char *expect_name,
                                              int expected_kind, char *err, size_t errlen);
void regent_plugin_unref(regent_loaded_plugin *lp);
/* dlcloses every plugin no longer referenced (call with the loop drained). */
void regent_plugins_unload_unused(void);
const char *regent_default_plugin_dir(void);
/* Prints name, kind, version, path for every .so in dir; returns 0 or 1. */
int regent_list_plugins(const char *dir, FILE *out);

#endif
