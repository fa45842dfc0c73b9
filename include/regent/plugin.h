/*
 * regent/plugin.h - the regent plugin ABI, the one header a plugin
 * includes (the host table is in regent/plugin_host.h, included below).
 *
 * A plugin is a shared object exporting one symbol, REGENT_PLUGIN_ENTRY
 * ("regent_plugin_entry"), a const struct regent_plugin:
 *
 *     REGENT_PLUGIN_EXPORT const regent_plugin REGENT_PLUGIN_ENTRY = {
 *         REGENT_PLUGIN_HEADER("myplugin"), .kind = REGENT_KIND_SINK,
 *         .ops = &ops, .sink_ops = &sink_ops, ...
 *     };
 *  The core hands every
 * plugin instance a const struct regent_host: the function table through
 * which the plugin reaches the loop, logging, its configuration, the async
 * HTTP client, metrics and the callbacks it reports through.
 *
 * Compatibility rules (see docs/plugin-api.md):
 *  - The first four fields of struct regent_plugin (abi_major, abi_minor,
 *    size, name) are frozen for every ABI major version, so any regent can
 *    read them and refuse a plugin of another major with a clear message.
 *  - abi_minor is the oldest minor the plugin needs (since 1.4: define
 *    REGENT_PLUGIN_MIN_MINOR before including this header; default: the
 *    header's minor).  The core refuses a plugin whose abi_minor is newer
 *    than its own, and loads one that needs no more than it has, whatever
 *    header it was built with.  A plugin needing minor N calls an entry
 *    newer than N only after REGENT_HOST_HAS(host, entry).
 *  - Within one major, structs only grow by appending fields.  A struct
 *    that carries a `size` field is read up to that size and no further.
 *    The descriptor says which header it was built with (header_minor,
 *    since 1.4; abi_minor before), and the core reads the structs a plugin
 *    hands it with that header's layout (instances, key tables).  Which
 *    struct may grow, and how, is said on each one.
 *  - The host table is append-only: it carries its size, a plugin checks
 *    an entry with REGENT_HOST_HAS before calling it when the entry is
 *    newer than the minor the plugin declares it needs.
 *  - Errors are negative errno values (e.g. -EINVAL); 0 is success.
 *
 * Everything runs on the core's single libuv loop.  No host function may
 * be called from another thread.
 */
#ifndef REGENT_PLUGIN_H
#define REGENT_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REGENT_ABI_MAJOR 1
#define REGENT_ABI_MINOR 11

/* The oldest minor of REGENT_ABI_MAJOR this plugin needs (ABI 1.4): define
 * it before including this header to load into older cores too, e.g.
 *     #define REGENT_PLUGIN_MIN_MINOR 0   (only 1.0 host entries without a
 *                                          REGENT_HOST_HAS check)
 * REGENT_PLUGIN_HEADER puts it in the descriptor's abi_minor. */
#ifndef REGENT_PLUGIN_MIN_MINOR
#define REGENT_PLUGIN_MIN_MINOR REGENT_ABI_MINOR
#endif
#if REGENT_PLUGIN_MIN_MINOR > REGENT_ABI_MINOR || REGENT_PLUGIN_MIN_MINOR < 0
#error "REGENT_PLUGIN_MIN_MINOR must be between 0 and REGENT_ABI_MINOR of this header"
#endif

/* The one symbol a plugin exports (the same name for every ABI major, so
 * a regent can read the frozen header of any plugin and say why it refuses). */
#define REGENT_PLUGIN_ENTRY regent_plugin_entry
#define REGENT_PLUGIN_SYMBOL "regent_plugin_entry"

#if defined(__GNUC__)
#define REGENT_PLUGIN_EXPORT __attribute__((visibility("default")))
#define REGENT_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* The descriptor's anonymous union is C11 (and C++); this keeps
 * -std=c99 -pedantic builds of older plugins quiet. */
#define REGENT_ANON_UNION __extension__ union
#else
#define REGENT_PLUGIN_EXPORT
#define REGENT_PRINTF(f, a)
#define REGENT_ANON_UNION union
#endif

/* Returned by stop() when the plugin finishes stopping asynchronously. */
#define REGENT_PENDING 1

typedef enum regent_kind {
	REGENT_KIND_SOURCE = 1, /* reports this host's instances       */
	REGENT_KIND_STORE = 2,  /* registers them, reads the catalog   */
	REGENT_KIND_SINK = 3,   /* consumes catalog snapshots          */
} regent_kind;

typedef enum regent_log_level {
	REGENT_LOG_ERROR = 0,
	REGENT_LOG_WARN = 1,
	REGENT_LOG_INFO = 2,
	REGENT_LOG_DEBUG = 3,
} regent_log_level;

typedef enum regent_proto {
	REGENT_PROTO_TCP = 0,
	REGENT_PROTO_UDP = 1,
} regent_proto;

/* ------------------------------------------------------------------ */
/* The model                                                          */
/* ------------------------------------------------------------------ */

/* Frozen for major 1 (no size, never grows): meta is handed both ways as
 * an array of these, and a plugin built against an older header walks it
 * with its own stride.  Data per pair would come as a new array appended
 * to regent_instance. */
typedef struct regent_kv {
	const char *key;
	const char *value;
} regent_kv;

/*
 * One reachable endpoint of a service.  When a plugin hands one to the
 * host, every pointer is borrowed for the duration of the call: the core
 * copies what it keeps.  When the host hands one to a plugin, it stays
 * valid until the call returns (or, inside a catalog snapshot, as long as
 * the snapshot is referenced).
 *
 * It has no size field (1.0 plugins fill it from its first field) and may
 * grow only at the end: it is always passed by pointer (alone or in an
 * array of pointers, never in an array of structs), the core reads one a
 * plugin hands it only up to the fields of the plugin's header_minor, and a
 * plugin reads one the core hands it only up to the fields it knows.
 */
typedef struct regent_instance {
	const char *service;   /* validated name, see host->valid_service */
	const char *id;        /* unique cluster-wide, stable across restarts */
	const char *address;   /* IPv4/IPv6 literal or host name */
	uint16_t port;         /* where clients connect */
	regent_proto proto;
	uint16_t service_port; /* the private port inside the container */
	const char *const *tags;
	size_t ntags;
	const regent_kv *meta;
	size_t nmeta;
	/* The agent that owns it.  Handed to the host by a source: NULL (or
	 * "") means this agent.  Handed to a plugin by the host (catalog
	 * snapshots, local_foreach): never NULL; "" when the registry entry
	 * names no owner (e.g. entries in the seed's format). */
	const char *node;
} regent_instance;

/* Meta keys with a meaning shared between plugins.  REGENT_META_PORT: the
 * service's listen port as the registry declares it (decimal text), set by
 * the etcd store from a service's `<prefix>/<service>/port` key (the seed's
 * layout); the haproxy sink listens there when [service NAME] sets no
 * port. */
#define REGENT_META_PORT "port"

/* An immutable, reference-counted catalog snapshot (see host table). */
typedef struct regent_catalog regent_catalog;

/* ------------------------------------------------------------------ */
/* Configuration keys, declared once by their owner                   */
/* ------------------------------------------------------------------ */

typedef enum regent_cfg_type {
	REGENT_CFG_STRING = 1,
	REGENT_CFG_INT = 2,      /* int64, checked against min/max */
	REGENT_CFG_BOOL = 3,     /* true/false/yes/no/on/off/1/0 */
	REGENT_CFG_DURATION = 4, /* "50ms", "15s", "1m", "2h"; bare number = seconds; min/max in ms */
	REGENT_CFG_LIST = 5,     /* comma-separated strings, blanks trimmed */
	REGENT_CFG_ADDRESS = 6,  /* host:port or [v6]:port; port required */
} regent_cfg_type;

/*
 * One key of a plugin's config_keys or service_keys table (an array: its
 * stride matters, and a size in each entry would be a field 1.0 tables
 * lack).  Its size is given once, for both tables, by the descriptor's
 * key_size (ABI 1.4, filled by REGENT_PLUGIN_HEADER; absent: 1.0's size),
 * so it may grow at the end: the core walks a plugin's tables with the
 * plugin's stride and reads each entry up to the fields both know.  Keys
 * only go from plugin to core, never back as an array.  Cores before 1.4
 * ignore key_size: the header that first makes this struct longer must
 * refuse REGENT_PLUGIN_MIN_MINOR < 4 (#error), so such a plugin is never
 * walked with 1.0's stride.
 */
typedef struct regent_config_key {
	const char *name;
	regent_cfg_type type;
	const char *default_value; /* NULL: no default */
	bool required;
	int64_t min, max;          /* for INT/DURATION; both 0: unbounded */
	const char *description;
} regent_config_key;
/* Tables end with an entry whose name is NULL. */

/* ------------------------------------------------------------------ */
/* Async HTTP client (libcurl multi on the core's loop)               */
/* ------------------------------------------------------------------ */

typedef struct regent_http_req regent_http_req;

/* The result of one request.  Grows at the end (ABI rule): size is the
 * core's sizeof; read a field only when size covers it. */
typedef struct regent_http_result {
	size_t size;           /* sizeof(regent_http_result) of the core */
	int error;             /* 0, or negative errno: -ETIMEDOUT, -ECONNREFUSED, -ECANCELED, -EIO... */
	const char *error_msg; /* human text for error, "" when none */
	long status;           /* HTTP status, 0 when no response */
	const char *body;      /* buffered body (NUL-terminated), NULL when streamed */
	size_t body_len;
} regent_http_result;

/* Streaming: called per chunk, or per complete line with REGENT_HTTP_LINES
 * (without the trailing newline; a final unterminated line is delivered at
 * the end).  Return 0 to continue, non-zero to abort the transfer (on_done
 * then reports -ECANCELED). */
typedef int (*regent_http_data_cb)(void *arg, const char *data, size_t len);
/* Called exactly once per request unless it was cancelled with
 * http_cancel().  The request handle is freed right after it returns. */
typedef void (*regent_http_done_cb)(void *arg, const regent_http_result *res);

#define REGENT_HTTP_LINES 0x1u /* on_data gets whole lines */

/* One request (host->http_request).  Grows at the end (ABI rule): size is
 * the plugin's sizeof; the core reads no field past it. */
typedef struct regent_http_opts {
	size_t size;               /* sizeof(regent_http_opts) of the plugin */
	const char *method;        /* NULL = GET, or with body POST */
	const char *url;
	const char *unix_socket;   /* connect to this socket instead of TCP */
	const char *const *headers;/* "Name: value" */
	size_t nheaders;
	const void *body;          /* copied by the core */
	size_t body_len;
	uint64_t timeout_ms;       /* whole request, 0 = none (streams) */
	uint64_t connect_timeout_ms; /* 0 = 5000 */
	uint64_t idle_timeout_ms;  /* abort if no byte arrives for this long; 0 = off */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	unsigned flags;            /* REGENT_HTTP_* */
	regent_http_data_cb on_data; /* NULL = buffer the body */
	regent_http_done_cb on_done;
	void *arg;
	size_t max_body;           /* buffered mode limit, 0 = 16 MiB */
} regent_http_opts;

/* ------------------------------------------------------------------ */
/* Metrics                                                            */
/* ------------------------------------------------------------------ */

typedef struct regent_metric regent_metric;

typedef enum regent_metric_type {
	REGENT_METRIC_COUNTER = 1,
	REGENT_METRIC_GAUGE = 2,
	REGENT_METRIC_HISTOGRAM = 3, /* seconds, fixed latency buckets */
} regent_metric_type;

/* Capped exponential backoff with jitter; fields are the plugin's.  Frozen
 * for major 1 (no size, never grows): the plugin allocates it and
 * backoff_next reads and writes all three fields. */
typedef struct regent_backoff {
	uint64_t initial_ms; /* first delay (default 100 when 0) */
	uint64_t max_ms;     /* cap (default 30000 when 0) */
	uint64_t current_ms; /* state: 0 = next delay is initial_ms */
} regent_backoff;

/* A part of a plugin that keeps failing (a daemon away, retried), as
 * host->failure_note (ABI 1.10) logs it; the plugin owns it, zeroed to
 * start.  Frozen for major 1, like regent_backoff. */
typedef struct regent_failure {
	uint64_t since; /* its first failure (host->now_ms) */
	uint64_t said;  /* when it was last logged at its level */
	regent_log_level level; /* that level */
	unsigned count; /* failures since `since`, the first included */
} regent_failure;

/* The host table and the types of its entries: regent/plugin_host.h. */
#include <regent/plugin_host.h>

/* ------------------------------------------------------------------ */
/* The plugin descriptor and its ops tables                            */
/* ------------------------------------------------------------------ */

/*
 * Lifecycle:  validate (check-config and reload), create, start, ...,
 * stop, destroy.  `self` is what create() stored.
 *
 * This table and the kind ops tables below grow at the end (ABI rule):
 * size is the plugin's sizeof; the core calls no entry past it.
 */
typedef struct regent_plugin_ops {
	size_t size;
	/* Optional: semantic checks of the section beyond the key table;
	 * report each problem with host->cfg_error.  Must not touch the
	 * network or files it would own.  Returns 0 or a negative errno. */
	int (*validate)(regent_ctx *ctx, const regent_host *host);
	/* Allocates the instance's state; keep ctx and host in it. */
	int (*create)(regent_ctx *ctx, const regent_host *host, void **self);
	int (*start)(void *self);
	/* Returns 0 when stopped, REGENT_PENDING when it will call
	 * host->stopped() later (the core waits a bounded time). */
	int (*stop)(void *self);
	/* Releases everything; handles closed here may still run their close
	 * callbacks on the loop afterwards (the plugin stays loaded). */
	void (*destroy)(void *self);
} regent_plugin_ops;

typedef struct regent_source_ops {
	size_t size;
	/* Optional: re-list everything now (the core calls it on demand). */
	void (*resync)(void *self);
} regent_source_ops;

typedef struct regent_store_ops {
	size_t size;
	/* Register or deregister one local instance.  The store keeps
	 * retrying on its own; the pointer is valid only during the call. */
	void (*register_instance)(void *self, const regent_instance *inst);
	void (*deregister_instance)(void *self, const regent_instance *inst);
} regent_store_ops;

typedef struct regent_sink_ops {
	size_t size;
	/* A new consistent snapshot; `changed` lists the services that differ
	 * from the previous apply (all of them on the first), sorted by name,
	 * including services that were removed (they are absent from cat).
	 * The `changed` array and its strings are valid only during the call
	 * (the core frees them right after): copy what you keep.  Take a ref
	 * (catalog_ref) to keep the snapshot past the call. */
	void (*apply)(void *self, const regent_catalog *cat, const char *const *changed,
	              size_t nchanged);
} regent_sink_ops;

/* The descriptor.  Its first four fields are frozen for every major; the
 * rest grows at the end (ABI rule): size is the plugin's sizeof, and the
 * core reads no field past it (header_minor and key_size, of 1.4, are
 * read only when size covers them). */
typedef struct regent_plugin {
	/* Frozen for every ABI major: */
	uint32_t abi_major;  /* REGENT_ABI_MAJOR */
	uint32_t abi_minor;  /* the oldest minor the plugin needs (REGENT_PLUGIN_MIN_MINOR;
	                      * before 1.4: the minor of its header) */
	size_t size;         /* sizeof(struct regent_plugin) of the plugin's header: the
	                      * core reads no field past it (1.0-1.3: up to kind_ops) */
	const char *name;    /* must equal the .so's base name */
	/* Major 1: */
	regent_kind kind;
	const char *version;
	const char *description;
	const regent_config_key *config_keys;  /* its own section, NULL-name terminated */
	/* Keys it reads from [service X], or NULL.  One plugin's service keys
	 * are its own: a key that another loaded plugin (or the core: "port")
	 * declares too is refused at load, FILE:LINE naming both plugins. */
	const regent_config_key *service_keys;
	const regent_plugin_ops *ops;
	/* The kind's ops table, typed (ABI 1.4; the same pointer as 1.0's
	 * `const void *kind_ops`, which stays as the untyped spelling): set
	 * the one of your kind, e.g. .sink_ops = &my_sink_ops. */
	REGENT_ANON_UNION {
		const void *kind_ops;
		const regent_source_ops *source_ops;
		const regent_store_ops *store_ops;
		const regent_sink_ops *sink_ops;
	};
	/* --- 1.4 (read only when size covers it) --- */
	/* REGENT_ABI_MINOR of the header the plugin was built with: the layout
	 * of the structs it hands the core.  Absent (a descriptor of 1.0-1.3):
	 * abi_minor, which then was that header's minor. */
	uint32_t header_minor;
	/* sizeof(regent_config_key) of that header: the stride the core walks
	 * config_keys and service_keys with.  Absent: 1.0's. */
	size_t key_size;
} regent_plugin;

/* The size of the descriptor of ABI 1.0 to 1.3 (every field up to kind_ops). */
#define REGENT_PLUGIN_SIZE_1_0 (offsetof(regent_plugin, kind_ops) + sizeof(const void *))

/* Fills the frozen header fields, header_minor and key_size. */
#define REGENT_PLUGIN_HEADER(plugin_name) \
	.abi_major = REGENT_ABI_MAJOR, .abi_minor = REGENT_PLUGIN_MIN_MINOR, \
	.size = sizeof(regent_plugin), .name = (plugin_name), .header_minor = REGENT_ABI_MINOR, \
	.key_size = sizeof(regent_config_key)

#ifdef __cplusplus
}
#endif
#endif /* REGENT_PLUGIN_H */
