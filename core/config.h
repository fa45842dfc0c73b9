/* config.h - the parsed configuration (config.c) and its binding to
 * plugins (config_setup.c): sections, typed values, FILE:LINE errors. */
#ifndef REGENT_CORE_CONFIG_H
#define REGENT_CORE_CONFIG_H

#include <regent/plugin.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum regent_section_kind {
	REGENT_SECTION_AGENT = 0,
	REGENT_SECTION_SOURCE = REGENT_KIND_SOURCE,
	REGENT_SECTION_STORE = REGENT_KIND_STORE,
	REGENT_SECTION_SINK = REGENT_KIND_SINK,
	REGENT_SECTION_SERVICE = 10,
} regent_section_kind;

typedef struct regent_cfg_value {
	const regent_config_key *key; /* declaration */
	bool set;                     /* given in the file (else default) */
	bool bad;                     /* given, but failed validation */
	int line;                     /* where it was set */
	char *raw;                    /* text as written, or the default */
	int64_t i;                    /* INT, BOOL (0/1), DURATION (ms) */
	char **list;                  /* LIST items */
	size_t nlist;
} regent_cfg_value;

typedef struct regent_cfg_entry {
	char *key, *value;
	int line;
} regent_cfg_entry;

struct regent_loaded_plugin;

typedef struct regent_cfg_section {
	char *header;                 /* as written between [] (normalised spaces) */
	regent_section_kind kind;
	char *plugin;                 /* plugin name, or service name */
	char *name;                   /* instance name: "etcd", "haproxy edge" */
	int line;
	regent_cfg_entry *entries;
	size_t nentries;
	regent_cfg_value *values;     /* one per declared key */
	size_t nvalues;
	struct regent_loaded_plugin *lp; /* plugin sections */
	bool blocked;                 /* a value unreadable or a required key missing */
} regent_cfg_section;

typedef struct regent_config {
	char *path;
	unsigned refs;
	regent_cfg_section **sections;
	size_t nsections;
	regent_cfg_section *agent;    /* always present (defaults when absent) */
	int validate_purpose;         /* REGENT_VALIDATE_*: why it is validated */
	const char **service_names;   /* [service X] names, in file order */
	size_t nservice_names;
	regent_config_key *service_keys; /* merged declarations */
	const regent_cfg_section **service_key_owners; /* the section that declared each
	                                                * (NULL: the core's) */
	size_t nservice_keys;
	char **errors;                /* in the order of their lines once loaded */
	int *error_lines;             /* 0: the file as a whole */
	size_t nerrors;
	/* Set by regent_config_bind: drops what binding took (the plugins'
	 * references) when the config is freed.  NULL: not bound. */
	void (*unbind)(struct regent_config *c);
} regent_config;

/* Parses FILE and validates [agent] (config.c): sections and their
 * key = value entries, no plugin loaded.  Never NULL; check ->nerrors
 * (each formatted FILE:LINE: ...). */
regent_config *regent_config_parse(const char *path);
/* Binds a parsed config to its plugins (config_setup.c): loads the plugin
 * of every plugin section from plugin_dir_override (or [agent]
 * plugin_dir, or the default), validates the sections against the keys
 * the plugins declare, the [service] sections against the merged service
 * keys, then runs each plugin's validate().  Errors join c->errors, in
 * the file's order.  Does nothing if the file could not be read. */
void regent_config_bind(regent_config *c, const char *plugin_dir_override);
/* Both: what the agent runs from. */
regent_config *regent_config_load(const char *path, const char *plugin_dir_override);
/* The same, saying why it is loaded (REGENT_VALIDATE_*, host->validate_purpose
 * in the plugins' validate()); regent_config_load checks (CHECK). */
regent_config *regent_config_load_for(const char *path, const char *plugin_dir_override,
                                      int purpose);
regent_config *regent_config_ref(regent_config *c);
void regent_config_unref(regent_config *c);
void regent_config_add_error(regent_config *c, int line, const char *fmt, ...) REGENT_PRINTF(3, 4);
const regent_cfg_value *regent_cfg_find(const regent_cfg_section *s, const char *key);
/* A boolean as the config parser reads it (true/yes/on/1, false/no/off/0,
 * any case) into *out as 1 or 0; -1 for anything else. */
int regent_config_parse_bool(const char *s, int64_t *out);
const regent_cfg_section *regent_config_service(const regent_config *c, const char *name);
/* Same header and the same key=value entries (order and lines ignored). */
bool regent_section_equal(const regent_cfg_section *a, const regent_cfg_section *b);
const char *regent_kind_name(int kind);
extern const regent_config_key regent_agent_keys[];

/* For config_setup.c: the parser's own steps. */
bool regent_config_has_plugin_section(const regent_config *c);
/* Validates a section's entries against keys (unloaded: the plugin
 * sections not loaded, named when a key is unknown), filling s->values. */
void regent_config_validate_section(regent_config *c, regent_cfg_section *s,
                                    const regent_config_key *keys, size_t nkeys,
                                    const char *unloaded);
size_t regent_config_keys_count(const regent_config_key *keys);
const regent_config_key *regent_config_key_find(const regent_config_key *keys, size_t n,
                                                const char *name);
bool regent_plugin_name_valid(const char *s);
/* Orders the errors by line (those of the whole file last). */
void regent_config_sort_errors(regent_config *c);
extern const regent_config_key regent_core_service_keys[];

#endif
