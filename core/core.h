/* core.h - declarations shared by the core's modules (not installed). */
#ifndef REGENT_CORE_H
#define REGENT_CORE_H

#include <regent/plugin.h>
#include <stdio.h>

#define REGENT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- log.c ---- */
extern regent_log_level regent_log_threshold;
void regent_log(regent_log_level level, const char *who, const char *fmt, ...) REGENT_PRINTF(3, 4);
void regent_vlogf(regent_log_level level, const char *who, const char *fmt, va_list ap);
int regent_log_level_parse(const char *s, regent_log_level *out);
const char *regent_log_level_name(regent_log_level level);
/* True when stderr is the journal's stream: JOURNAL_STREAM ("DEV:INODE",
 * set by systemd) matches fstat(2) of stderr. */
bool regent_log_stderr_is_journal(void);
/* Decides, once, between "<N>" priority prefixes (stderr is the journal)
 * and timestamps; called again after stderr or JOURNAL_STREAM changed. */
void regent_log_init(void);

/* ---- util.c ---- */
void *regent_xmalloc(size_t n);
void *regent_xcalloc(size_t n, size_t size);
void *regent_xrealloc(void *p, size_t n);
char *regent_xstrdup(const char *s);
char *regent_xasprintf(const char *fmt, ...) REGENT_PRINTF(1, 2);
char *regent_xvasprintf(const char *fmt, va_list ap);
char *regent_trim(char *s);
uint64_t regent_now_ms(void);
uint64_t regent_wall_ns(void);
uint64_t regent_backoff_next(regent_backoff *b);
void regent_backoff_reset(regent_backoff *b);
char *regent_base64_encode(const void *data, size_t len);
void *regent_base64_decode(const char *text, size_t *len);
/* Strict numbers (no sign, blank, base prefix, exponent or trailing byte):
 * 1 to 19 ASCII digits; -EINVAL when not such a number, -ERANGE when over
 * max.  len is the text's length (the text need not be NUL-terminated). */
int regent_parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out);
/* A port: a strict number from 1 to 65535.  0 or -EINVAL. */
int regent_parse_port(const char *s, size_t len, uint16_t *out);
/* A duration: digits then an optional unit ms, s, m or h (bare = seconds).
 * *ms gets the value, *unit_ms (if not NULL) the unit written (1, 1000,
 * 60000, 3600000).  0, -EINVAL or -ERANGE. */
int regent_parse_duration(const char *s, int64_t *ms, int64_t *unit_ms);
/* ms as text in the largest unit it is a whole number of ("2s", "1h",
 * "1500ms"); 0 is written in unit_ms's unit ("0s" for 1000). */
void regent_format_duration(int64_t ms, int64_t unit_ms, char *buf, size_t len);
/* Untrusted text made safe for one log line: control bytes (and DEL) as
 * \xNN, bytes that are not valid UTF-8 as \xNN, everything else (quotes,
 * backslashes, UTF-8) kept.  Writes at most outlen-1 bytes (cut with "...")
 * and returns the length written. */
size_t regent_log_escape(const char *in, size_t inlen, char *out, size_t outlen);

/* A string-keyed hash map of void pointers (keys copied); regent_map and
 * regent_map_iter are declared in plugin.h (host->map_*, ABI 1.4). */
regent_map *regent_map_new(void);
void regent_map_free(regent_map *m, void (*free_value)(void *));
void *regent_map_get(const regent_map *m, const char *key);
/* Returns the previous value (or NULL). */
void *regent_map_put(regent_map *m, const char *key, void *value);
void *regent_map_del(regent_map *m, const char *key);
size_t regent_map_size(const regent_map *m);
/* Iteration: safe against deleting the current entry. */
bool regent_map_next(const regent_map *m, regent_map_iter *it, const char **key, void **value);
/* Keys sorted (malloc'd array of borrowed pointers). */
const char **regent_map_sorted_keys(const regent_map *m, size_t *n);

/* A growable byte buffer: plugin.h's regent_buffer (host->buf_*, ABI 1.4). */
typedef regent_buffer regent_buf;
void regent_buf_add(regent_buf *b, const void *data, size_t len);
void regent_buf_printf(regent_buf *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
void regent_buf_vprintf(regent_buf *b, const char *fmt, va_list ap);
void regent_buf_free(regent_buf *b);
/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
size_t regent_utf8_len(const unsigned char *p, size_t n);

/* ---- model.c ---- */
/* The core's own immutable, reference-counted copy of an instance. */
typedef struct regent_inst {
	regent_instance pub; /* every pointer points into this allocation */
	unsigned refs;
} regent_inst;

/* Hard limits on one instance (from any source or registry): an instance
 * over one is refused as a whole (one warning naming it), so no single
 * registry entry can make the agent's work grow without bound.  Consul's
 * own limits are 64 meta pairs, keys of 128 and values of 512 bytes. */
#define REGENT_MAX_META 64          /* meta pairs per instance */
#define REGENT_MAX_TAGS 64          /* tags per instance (128 bytes each) */
#define REGENT_MAX_VALUE (64 * 1024) /* bytes of an encoded instance value */

bool regent_valid_service(const char *name);
bool regent_valid_address(const char *addr);
/* Validates and deep-copies; on failure returns NULL and writes why. */
regent_inst *regent_inst_copy(const regent_instance *src, const char *default_node, char *why,
                              size_t whylen);
regent_inst *regent_inst_ref(regent_inst *i);
void regent_inst_unref(regent_inst *i);
bool regent_instance_equal(const regent_instance *a, const regent_instance *b);
char *regent_instance_encode(const regent_instance *inst);
int regent_instance_decode(const char *json, size_t len, const char *service, const char *id,
                           regent_instance **out);
void regent_instance_free(regent_instance *inst);
const char *regent_proto_name(regent_proto p);

/* ---- config.c ---- */
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
	const char **service_names;   /* [service X] names, in file order */
	size_t nservice_names;
	regent_config_key *service_keys; /* merged declarations */
	const regent_cfg_section **service_key_owners; /* the section that declared each
	                                                * (NULL: the core's) */
	size_t nservice_keys;
	char **errors;                /* in the order of their lines once loaded */
	int *error_lines;             /* 0: the file as a whole */
	size_t nerrors;
} regent_config;

/* Parses and validates FILE, loading the plugins it names from
 * plugin_dir_override (or [agent] plugin_dir, or the default).  Returns
 * the config; check ->nerrors (every error, formatted FILE:LINE: ...). */
regent_config *regent_config_load(const char *path, const char *plugin_dir_override);
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
extern const regent_config_key regent_core_service_keys[];

/* ---- loader.c ---- */
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

/* ---- metrics.c ---- */
typedef struct regent_metrics regent_metrics;
regent_metrics *regent_metrics_new(void);
void regent_metrics_free(regent_metrics *m);
regent_metric *regent_metrics_get(regent_metrics *m, regent_metric_type type, const char *name,
                                  const char *help, const char *labels);
void regent_metric_add(regent_metric *m, double v);
void regent_metric_set(regent_metric *m, double v);
void regent_metric_observe(regent_metric *m, double seconds);
double regent_metric_value(const regent_metric *m);
void regent_metrics_write(regent_metrics *m, regent_buf *out);

#endif
