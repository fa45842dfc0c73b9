/*
 * regent/plugin_host.h - the host table (struct regent_host) and the types
 * of its entries: what the core offers every plugin instance.  Part of
 * <regent/plugin.h>, which includes it in its place: include that one, not
 * this file (it needs the types plugin.h declares before it).  The rules
 * (append-only, REGENT_HOST_HAS, errors as negative errno) are plugin.h's.
 */
#ifndef REGENT_PLUGIN_HOST_H
#define REGENT_PLUGIN_HOST_H
#ifndef REGENT_PLUGIN_H
#error "include <regent/plugin.h>, not <regent/plugin_host.h>"
#endif

/* ------------------------------------------------------------------ */
/* The host table                                                     */
/* ------------------------------------------------------------------ */

/* One per plugin instance, opaque. */
typedef struct regent_ctx regent_ctx;

typedef void (*regent_write_cb)(void *arg, const char *data, size_t len);

/* What one plugin says about one instance of the catalog, for another plugin
 * (or a person) to see (host->annotations_set, ABI 1.2): the haproxy sink's
 * view of each server, for example.  Keyed by service and instance id; the
 * instance may have left the catalog (a server still draining).  Grows at
 * the end (ABI rule): size is the producer's sizeof; the core reads no
 * field past it, and a reader of annotations_foreach reads a field only
 * when size covers it. */
typedef struct regent_annotation {
	size_t size;          /* sizeof(regent_annotation) of the producer */
	const char *service;
	const char *id;       /* instance id */
	const char *label;    /* the publisher's own name for it ("web/s3"), or NULL */
	const char *state;    /* one short word: "up", "down", "drain", "maint"... */
	const char *detail;   /* why, in a few words (a check result), or NULL; no
	                       * relative age (it would change every second):
	                       * that is since_wall_ns */
	/* ---- ABI 1.5 (appended; read only when size covers it) ---- */
	uint64_t since_wall_ns; /* when the state last changed (wall clock ns), 0:
	                         * unknown; a reader words the age itself when it
	                         * shows it ("changed 12 s ago") */
} regent_annotation;

/* One change of the catalog, instance by instance (host->changes_foreach,
 * ABI 1.2).  Grows at the end (ABI rule): size is the core's sizeof; read
 * a field only when size covers it. */
typedef struct regent_change {
	size_t size;          /* sizeof(regent_change) of the core */
	uint64_t wall_ns;     /* when the catalog changed (the snapshot was made) */
	uint64_t origin_ns;   /* when the change entered the agent */
	const char *service;
	const char *id;       /* "" for a line that sums up several changes */
	const char *what;     /* "added", "removed", "moved", "changed", "loaded", "more" */
	const char *detail;   /* "10.0.0.1:8080/tcp -> 10.0.0.1:8081/tcp", ... */
	size_t nsinks;        /* the sinks that ran when it happened */
	const char *const *sinks;
	const uint64_t *applied_ns; /* when each applied it (wall ns); 0: not yet */
} regent_change;

/* One interval of the agent's recent history (host->history_foreach, ABI
 * 1.2).  Grows at the end (ABI rule): size is the core's sizeof; read a
 * field only when size covers it. */
typedef struct regent_history_point {
	size_t size;          /* sizeof(regent_history_point) of the core */
	uint64_t wall_ns;     /* start of the interval */
	uint64_t interval_ms;
	uint32_t applies;     /* new snapshots applied by sinks in the interval */
	double latency_max;   /* propagation seconds over those applies (0: none) */
	double latency_mean;
	size_t services;      /* catalog size at the end of the interval */
	size_t instances;
} regent_history_point;

/* Why stop() is called (host->stop_reason, ABI 1.1). */
typedef enum regent_stop_reason {
	REGENT_STOP_EXIT = 0, /* the agent exits (SIGTERM, restart, upgrade), or a reload
	                       * starts this section afresh because its start had failed:
	                       * keep what outlives the agent (registrations, a managed
	                       * haproxy) for the next instance to take over (a source's
	                       * local instances: the core hands them to it) */
	REGENT_STOP_REPLACED, /* a reload's new instance of this section has proven
	                       * itself and took over */
	REGENT_STOP_REMOVED,  /* a reload removed the section: undo what it set up */
	REGENT_STOP_FAILED,   /* this instance failed to start or failed its trial: the
	                       * instance it was to replace still runs; touch nothing shared */
} regent_stop_reason;

/* True when the host table has `entry` (a core of an older minor has a
 * shorter table): check it before calling an entry newer than 1.0, e.g.
 * if (REGENT_HOST_HAS(h, annotations_set)) h->annotations_set(...). */
#define REGENT_HOST_HAS(host, entry) \
	((host)->size >= offsetof(struct regent_host, entry) + sizeof((host)->entry))

/* ---- Types of the ABI 1.4 host helpers (see the entries at the end of
 * struct regent_host). ---- */

/* A growable byte buffer (host->buf_*, ABI 1.4).  The plugin owns the
 * struct; start it zeroed ({0}).  data is NUL-terminated once anything was
 * added (NULL before); len excludes the NUL.  The plugin may read data and
 * len, may set len to 0 (or any smaller value, then data[len] = '\0') to
 * reuse the memory, and may take data over (then zero the struct); the
 * rest belongs to the buf_* entries.  Release it with host->buf_free (or
 * free(data) once taken over).  Frozen for major 1 (no size, never
 * grows): the plugin allocates it, and its three fields are the contract. */
typedef struct regent_buffer {
	char *data;
	size_t len, cap;
} regent_buffer;

/* A string-keyed hash map of void pointers (host->map_*, ABI 1.4), opaque. */
typedef struct regent_map regent_map;
/* Iteration state for host->map_next: start it zeroed; fields are the
 * host's.  Frozen for major 1 (no size, never grows): the plugin allocates
 * it. */
typedef struct regent_map_iter {
	size_t bucket;
	void *entry;
} regent_map_iter;

/* Atomic file write (host->file_write, ABI 1.4). */
typedef struct regent_file_write regent_file_write;
/* status 0, or a negative errno with why ("cannot create the temporary
 * file /etc/x.tmp: File exists (not a regular file of this user: left
 * alone)"); why is valid during the call. */
typedef void (*regent_file_write_cb)(void *arg, int status, const char *why);
/* Grows at the end (ABI rule): size is the plugin's sizeof; the core reads
 * no field past it. */
typedef struct regent_file_write_opts {
	size_t size;              /* sizeof(regent_file_write_opts) of the plugin */
	const char *path;         /* absolute path of the file to replace */
	const char *tmp_path;     /* NULL: path + ".tmp" (same directory: rename is atomic) */
	const void *data;         /* copied by the core (file_write_take, ABI 1.8: held) */
	size_t len;
	unsigned mode;            /* permissions of the new file (umask not applied); 0 = 0644 */
	regent_file_write_cb on_done;
	void *arg;
	/* REGENT_FILE_WRITE_* (read only when size covers it: a core that
	 * does not know a flag, or a plugin built before it, syncs as before;
	 * no ABI bump) */
	unsigned flags;
} regent_file_write_opts;
/* No fsync of the new file and none of its directory: still created with
 * O_EXCL|O_NOFOLLOW, written and renamed over the file, so every reader
 * sees the old file or the new one whole, but the new text reaches the
 * disk with the kernel's writeback (~30 s at most), not before on_done;
 * a power loss before then can leave the old file, the new one, or (the
 * rename on disk before the data) a file that is empty or has zeroed
 * blocks, or no file where there was none.  Only for a file nothing
 * reads after a power loss before the plugin has read it back, compared
 * it with the text it wants and rewritten it when they differ (or
 * removed it): the haproxy sink's config_file and server-state file when
 * regent starts that haproxy itself (no haproxy outlives a power loss;
 * the sink's start reads the file back and writes it before haproxy
 * starts, and each start removes the state file first).  A write error
 * the sync would have reported (EIO at writeback) goes unreported. */
#define REGENT_FILE_WRITE_NO_SYNC 1u

/* In-place patch of a file (host->file_patch, ABI 1.6): ranges of bytes
 * written over a file of a known length, which keeps its length. */
typedef struct regent_file_range {
	uint64_t off;     /* where the bytes go; off + len <= the file's length */
	const void *data; /* copied by the core */
	size_t len;
} regent_file_range;
/* Grows at the end (ABI rule): size is the plugin's sizeof; the core reads
 * no field past it. */
typedef struct regent_file_patch_opts {
	size_t size;                     /* sizeof(regent_file_patch_opts) of the plugin */
	const char *path;                /* absolute path of a regular file */
	uint64_t expect_len;             /* its length now; any other: refused, -ESTALE */
	const regent_file_range *ranges; /* in any order, not overlapping */
	size_t nranges;
	regent_file_write_cb on_done;
	void *arg;
	/* REGENT_FILE_PATCH_* (read only when size covers it: a core that
	 * does not know a flag, or a plugin built before it, syncs as before) */
	unsigned flags;
} regent_file_patch_opts;
/* No fdatasync after the ranges: they are in the page cache (every reader
 * sees them at once) and reach the disk with the kernel's writeback (~30 s
 * at most), not before on_done.  Only for a file nothing reads after a
 * power loss before the plugin has compared it with the text it wants
 * and rewritten it whole (file_write) when it differs: the haproxy sink's
 * config_file when regent starts that haproxy itself (its start renders
 * the file, compares, and writes it before haproxy is started).  With the
 * sync, too, a power loss between the write and the sync's end can leave
 * a range that crosses a page half old, half new. */
#define REGENT_FILE_PATCH_NO_SYNC 1u

/* Spawning a command (host->spawn, ABI 1.4). */
typedef struct regent_spawn regent_spawn;
/* Grows at the end (ABI rule): size is the core's sizeof; read a field
 * only when size covers it. */
typedef struct regent_spawn_result {
	size_t size;           /* sizeof(regent_spawn_result) of the core */
	int error;             /* 0 (it ran and exited), -ETIMEDOUT (killed at the timeout) */
	int exit_status;       /* exit code; -1 when a signal ended it */
	int term_signal;       /* the signal that ended it (SIGKILL after a timeout), or 0 */
	const char *output;    /* stdout and stderr as they came, NUL-terminated */
	size_t output_len;
	size_t output_dropped; /* bytes past max_output not kept (0: output is whole) */
	uint64_t elapsed_ms;
} regent_spawn_result;
typedef void (*regent_spawn_cb)(void *arg, const regent_spawn_result *res);
/* Grows at the end (ABI rule): size is the plugin's sizeof; the core reads
 * no field past it. */
typedef struct regent_spawn_opts {
	size_t size;              /* sizeof(regent_spawn_opts) of the plugin */
	const char *const *argv;  /* NULL-terminated; argv[0] is looked up in the agent's PATH */
	const char *const *env;   /* NULL-terminated "K=V", or NULL: the agent's environment */
	const char *cwd;          /* NULL: the agent's */
	uint64_t timeout_ms;      /* 0: none; else the command's process group is killed then */
	size_t max_output;        /* bytes of output kept, 0 = 64 KiB; the rest is counted */
	regent_spawn_cb on_done;
	void *arg;
} regent_spawn_opts;

/* An ADDRESS key's value, parsed (host->cfg_address, ABI 1.4).  The
 * plugin sets size to sizeof(regent_address) of its header; the core
 * writes no byte past it, so the struct may grow at its end. */
typedef struct regent_address {
	size_t size;
	/* AF_INET or AF_INET6: the host is an IP literal, and sa/salen hold
	 * it with the port, ready for bind() or connect().  AF_UNSPEC: the
	 * host is a DNS name ("localhost" included), sa is zeroed and salen 0:
	 * resolve it off the loop (uv_getaddrinfo), or refuse it. */
	int family;
	uint16_t port;   /* 1-65535 */
	char host[256];  /* as written, without the brackets of "[v6]:port" */
	struct sockaddr_storage sa;
	socklen_t salen;
} regent_address;
/* The size of 1.4's regent_address: cfg_address refuses a smaller one. */
#define REGENT_ADDRESS_SIZE_1_4 (offsetof(regent_address, salen) + sizeof(socklen_t))

/* The host table.  Grows at the end only (append-only, ABI rule): size is
 * the core's sizeof; an entry newer than the minor the plugin declares it
 * needs is called only after REGENT_HOST_HAS(host, entry). */
typedef struct regent_host {
	uint32_t abi_major;
	uint32_t abi_minor;
	size_t size; /* sizeof(struct regent_host) of the core */

	/* --- minor 0 ---------------------------------------------------- */
	uv_loop_t *(*loop)(regent_ctx *ctx);
	/* Logs one line, prefixed with the level and "kind name: ". */
	void (*log)(regent_ctx *ctx, regent_log_level level, const char *fmt, ...) REGENT_PRINTF(3, 4);
	void (*vlog)(regent_ctx *ctx, regent_log_level level, const char *fmt, va_list ap);
	bool (*log_enabled)(regent_ctx *ctx, regent_log_level level);

	/* Identity: "etcd" or "haproxy edge"; the agent's node and host_ip
	 * (NULL when unset). */
	const char *(*instance_name)(regent_ctx *ctx);
	const char *(*node)(regent_ctx *ctx);
	const char *(*host_ip)(regent_ctx *ctx);

	/* Typed lookup in the plugin instance's own section; the value is
	 * already validated against the declared key (or is its default).
	 * Asking for an undeclared key or the wrong type is a plugin bug:
	 * logged, returns NULL/0/false. */
	const char *(*cfg_string)(regent_ctx *ctx, const char *key);
	int64_t (*cfg_int)(regent_ctx *ctx, const char *key);
	bool (*cfg_bool)(regent_ctx *ctx, const char *key);
	uint64_t (*cfg_duration_ms)(regent_ctx *ctx, const char *key);
	/* Items valid until the plugin instance is destroyed. */
	size_t (*cfg_list)(regent_ctx *ctx, const char *key, const char *const **items);
	bool (*cfg_is_set)(regent_ctx *ctx, const char *key);
	/* From validate(): report a semantic error for a key of the section
	 * (key NULL = the section header), printed as FILE:LINE: sec.key: msg. */
	void (*cfg_error)(regent_ctx *ctx, const char *key, const char *fmt, ...) REGENT_PRINTF(3, 4);

	/* [service NAME] sections (keys declared by plugins' service_keys
	 * and the core's own "port").  A key not set there (or a service
	 * with no section) reads as its declared default, parsed as the
	 * parser reads values (every type alike); no default: NULL/0/false. */
	size_t (*services)(regent_ctx *ctx, const char *const **names);
	const char *(*service_string)(regent_ctx *ctx, const char *service, const char *key);
	int64_t (*service_int)(regent_ctx *ctx, const char *service, const char *key);
	bool (*service_bool)(regent_ctx *ctx, const char *service, const char *key);
	uint64_t (*service_duration_ms)(regent_ctx *ctx, const char *service, const char *key);
	bool (*service_is_set)(regent_ctx *ctx, const char *service, const char *key);

	/* Validation helpers shared by all plugins. */
	bool (*valid_service)(const char *name);
	bool (*valid_address)(const char *addr); /* IP literal or DNS name, no spaces or control chars */

	/* Async HTTP.  Returns NULL with *err set (negative errno) on a
	 * setup failure; no callback fires then. */
	regent_http_req *(*http_request)(regent_ctx *ctx, const regent_http_opts *opts, int *err);
	/* Cancel: no callback fires afterwards.  Safe from inside on_data. */
	void (*http_cancel)(regent_http_req *req);
	/* Response header lookup (case-insensitive), valid inside on_done and
	 * on_data of that request. */
	const char *(*http_header)(regent_http_req *req, const char *name);

	/* Sources: report this host's instances.  resync_begin/end bracket a
	 * full listing: whatever this source reported before and did not
	 * report again between them is taken down (and what it inherited from
	 * a failed predecessor: docs/plugin-api.md, Lifecycle). */
	int (*local_up)(regent_ctx *ctx, const regent_instance *inst);
	int (*local_down)(regent_ctx *ctx, const char *id);
	void (*local_resync_begin)(regent_ctx *ctx);
	void (*local_resync_end)(regent_ctx *ctx);

	/* Stores: report what the registry holds.  catalog_set replaces this
	 * store's view of one service (n may be 0: known, empty).  sync
	 * begin/end bracket a full read: services not set between them are
	 * removed from this store's view. */
	int (*catalog_set)(regent_ctx *ctx, const char *service,
	                   const regent_instance *const *insts, size_t n);
	void (*catalog_remove)(regent_ctx *ctx, const char *service);
	void (*catalog_sync_begin)(regent_ctx *ctx);
	void (*catalog_sync_end)(regent_ctx *ctx);
	/* True when this host has a sink, i.e. the store should watch. */
	bool (*want_catalog)(regent_ctx *ctx);
	/* The local set right now (stores re-register everything after a lost
	 * lease or a restarted registry agent). */
	void (*local_foreach)(regent_ctx *ctx,
	                      void (*fn)(void *arg, const regent_instance *inst), void *arg);

	/* Catalog snapshots (sinks).  Services sorted by name, instances by id. */
	size_t (*catalog_services)(const regent_catalog *cat, const char *const **names);
	size_t (*catalog_instances)(const regent_catalog *cat, const char *service,
	                            const regent_instance *const **insts);
	const regent_catalog *(*catalog_ref)(const regent_catalog *cat);
	void (*catalog_unref)(const regent_catalog *cat);
	/* The newest snapshot (referenced: unref it). */
	const regent_catalog *(*catalog_current)(regent_ctx *ctx);

	/* Stop: the plugin calls this after returning REGENT_PENDING from stop(). */
	void (*stopped)(regent_ctx *ctx);

	/* Health, shown by /healthz: reason is copied.  A reason given with
	 * healthy = true is shown as a note (something worth saying that is
	 * not a failure, e.g. an empty registry prefix); NULL clears it. */
	void (*set_health)(regent_ctx *ctx, bool healthy, const char *reason);

	/* Metrics, kept by the core.  The core adds the label
	 * plugin="<instance name>".  labels: extra "k=\"v\",..." or NULL.
	 * Same name+labels -> same metric. */
	regent_metric *(*metric)(regent_ctx *ctx, regent_metric_type type, const char *name,
	                         const char *help, const char *labels);
	void (*metric_add)(regent_metric *m, double v);  /* counter, gauge */
	void (*metric_set)(regent_metric *m, double v);  /* gauge */
	void (*metric_observe)(regent_metric *m, double seconds); /* histogram */
	/* Prometheus text exposition of every metric and the catalog gauges. */
	void (*metrics_write)(regent_ctx *ctx, regent_write_cb out, void *arg);
	/* Health of every plugin instance as JSON {"ok":bool,"plugins":{...}}
	 * (malloc'd, free() it). */
	char *(*health_json)(regent_ctx *ctx);

	/* JSON helpers: an instance as the JSON value stores keep, and back.
	 * encode returns malloc'd text.  decode fills *out with pointers into
	 * a block that instance_free() releases.  Since 1.6 that block is
	 * immutable and reference-counted: never write into it, and hand it
	 * to catalog_set_decoded / catalog_instance_set_decoded to have the
	 * catalog share it instead of copying it. */
	char *(*instance_encode)(const regent_instance *inst);
	int (*instance_decode)(const char *json, size_t len, const char *service,
	                       const char *id, regent_instance **out);
	void (*instance_free)(regent_instance *inst);

	/* Backoff: next delay in ms (with +-20% jitter), reset on success. */
	uint64_t (*backoff_next)(regent_backoff *b);
	void (*backoff_reset)(regent_backoff *b);

	/* Monotonic milliseconds and wall-clock nanoseconds. */
	uint64_t (*now_ms)(void);
	uint64_t (*wall_ns)(void);
	/* Marks when a change entered the agent (source event or registry
	 * change, wall ns): sinks' apply latency is measured from it. */
	void (*mark_change)(regent_ctx *ctx, uint64_t origin_wall_ns);
	/* Sinks: report that a snapshot was applied (records the latency
	 * histogram regent_propagation_seconds and the change history).  Any
	 * snapshot the sink was given may be reported, also one a newer
	 * snapshot has superseded meanwhile (the sink applied it late): each
	 * call records that snapshot's own latency.  Report each at most
	 * once; a sink that skips a superseded snapshot just never reports
	 * it. */
	void (*applied)(regent_ctx *ctx, const regent_catalog *cat);

	/* Base64 helpers (etcd keys), malloc'd, NUL-terminated. */
	char *(*base64_encode)(const void *data, size_t len);
	void *(*base64_decode)(const char *text, size_t *len);

	/* ---- ABI 1.1 (appended; a 1.0 plugin never calls these) ---- */

	/* Start, make-before-break: a plugin whose start() returned
	 * REGENT_PENDING calls this exactly once, when it has proven itself
	 * (status 0: its registry answered, its new configuration passed its
	 * check and runs...) or failed (a negative errno; reason is copied and
	 * shown by the log and /healthz).  While a reload's new instance is on
	 * trial, the instance it replaces keeps working; it is retired only
	 * after started(ctx, 0, NULL).  On failure the core stops the new one
	 * (stop_reason() == REGENT_STOP_FAILED) and the old one stays.  A
	 * start() that returns 0 has proven itself at once. */
	void (*started)(regent_ctx *ctx, int status, const char *reason);
	/* Why the instance is being stopped: valid from stop() on. */
	regent_stop_reason (*stop_reason)(regent_ctx *ctx);
	/* The agent's state directory ([agent] state_dir, default
	 * /var/lib/regent), created on first use with mode 0750 and checked
	 * to be writable by nobody else; NULL (and an error logged) when it
	 * cannot be used.  Plugins keep files there named after themselves. */
	const char *(*state_dir)(regent_ctx *ctx);

	/* ---- ABI 1.2 (appended; check host->size before calling) ---- */

	/* Replaces everything this plugin instance published with these n
	 * annotations (copied; n = 0 clears).  Call it when something changed,
	 * not per request.  Refused (-EINVAL, logged) when a service name is
	 * invalid, an id is empty or a text is over 256 bytes; -E2BIG over
	 * 1,000,000 items.  The core drops them when the instance stops.  A
	 * key (service, id) given twice keeps the last.  O(n) on average;
	 * publishing a few changes among many: annotations_update (1.5). */
	int (*annotations_set)(regent_ctx *ctx, const regent_annotation *const *items, size_t n);
	/* Every running plugin instance's annotations: fn gets the publisher's
	 * instance name ("haproxy", "haproxy edge"); per publisher sorted by
	 * service then id.  Pointers are valid until control returns to the
	 * loop. */
	void (*annotations_foreach)(regent_ctx *ctx,
	                            void (*fn)(void *arg, const char *publisher,
	                                       const regent_annotation *a),
	                            void *arg);
	/* The last catalog changes (at most 50), newest first, with each
	 * sink's apply time.  Pointers valid during the call. */
	void (*changes_foreach)(regent_ctx *ctx, void (*fn)(void *arg, const regent_change *c),
	                        void *arg);
	/* The last hour in fixed intervals (10 s), oldest first, the current
	 * one last; intervals before the agent started are left out. */
	void (*history_foreach)(regent_ctx *ctx,
	                        void (*fn)(void *arg, const regent_history_point *p), void *arg);

	/* From validate(): report a semantic error in a [service NAME]
	 * section, for a service key this plugin declares (key NULL = the
	 * section itself).  Printed as FILE:LINE: service NAME.key: msg at the
	 * key's own line (the section's header line when the key is not set
	 * there, this plugin's header line when there is no such section). */
	void (*cfg_service_error)(regent_ctx *ctx, const char *service, const char *key,
	                          const char *fmt, ...) REGENT_PRINTF(4, 5);

	/* ---- ABI 1.3 (appended; check host->size before calling) ---- */

	/* Stores: one change to this store's view, costing the core O(log n)
	 * in the service's size instead of catalog_set's O(n) (a store that
	 * hears of changes key by key, as etcd's watch does, reports them
	 * with these).
	 *
	 * catalog_instance_set adds inst to its service (inst->service, which
	 * becomes known if it was not) or replaces the instance of the same
	 * id there; an instance equal to the one held changes nothing.  The
	 * instance is checked and copied like catalog_set's (pointers are
	 * borrowed for the call).  Returns 0, -EINVAL (logged: an invalid
	 * service name or field; the view is unchanged), -EPERM (not a store).
	 *
	 * catalog_instance_remove removes the instance of that id from the
	 * service; the service stays known, even when left empty (use
	 * catalog_remove when the service itself is gone).  An unknown
	 * service or id changes nothing.  Returns 0, -EINVAL (invalid name or
	 * empty id), -EPERM.
	 *
	 * Both may be mixed with catalog_set and catalog_remove; between
	 * catalog_sync_begin and _end they count as reporting the service.
	 * Changes are batched into snapshots exactly like catalog_set's. */
	int (*catalog_instance_set)(regent_ctx *ctx, const regent_instance *inst);
	int (*catalog_instance_remove)(regent_ctx *ctx, const char *service, const char *id);

	/* ---- ABI 1.4 (appended; check REGENT_HOST_HAS before calling) ----
	 * The helpers every plugin used to write again, once.  Out of memory:
	 * every entry below that allocates writes "regent: out of memory" to
	 * stderr and aborts the agent, as the core itself does (a registry
	 * agent that cannot allocate cannot keep its promises; a plugin never
	 * checks for NULL after these).  Strings handed in are only read during
	 * the call unless an entry says otherwise. */

	/* Memory: malloc/calloc/realloc that never return NULL (size 0 gives a
	 * unique pointer).  free() releases. */
	void *(*xmalloc)(size_t n);
	void *(*xcalloc)(size_t n, size_t size);
	void *(*xrealloc)(void *p, size_t n);
	/* Strings, malloc'd (free() them).  xstrdup(NULL) and xstrndup(NULL, n)
	 * return NULL (an unset value stays unset), never "".  xstrndup copies
	 * at most n bytes and always terminates.  xasprintf/xvasprintf: the
	 * formatted text (never NULL: a format error aborts like OOM). */
	char *(*xstrdup)(const char *s);
	char *(*xstrndup)(const char *s, size_t n);
	char *(*xasprintf)(const char *fmt, ...) REGENT_PRINTF(1, 2);
	char *(*xvasprintf)(const char *fmt, va_list ap);

	/* Growable buffer (struct regent_buffer above).  buf_add appends len
	 * bytes (which may hold NULs), buf_puts a string (NULL appends
	 * nothing), buf_printf/buf_vprintf formatted text.  buf_json appends s as one JSON
	 * string literal, quotes included, encoded by jansson: quotes,
	 * backslashes and control characters escaped, bytes that are not
	 * UTF-8 replaced by U+FFFD (so the result is always valid JSON and
	 * never loses the rest of the string); NULL appends null.  buf_free
	 * releases data and zeroes the struct (NULL or an unused buffer is
	 * fine). */
	void (*buf_add)(regent_buffer *b, const void *data, size_t len);
	void (*buf_puts)(regent_buffer *b, const char *s);
	void (*buf_printf)(regent_buffer *b, const char *fmt, ...) REGENT_PRINTF(2, 3);
	void (*buf_vprintf)(regent_buffer *b, const char *fmt, va_list ap);
	void (*buf_json)(regent_buffer *b, const char *s);
	void (*buf_free)(regent_buffer *b);

	/* String map (the core's own, O(1) average per operation).  Keys are
	 * copied on insert (the caller's key may be freed right after);
	 * replacing a key's value keeps the first copy.  The key pointers that
	 * map_next and map_sorted_keys give are the map's: valid until that
	 * entry is deleted or the map freed.  Values are the caller's:
	 * map_put returns the value it replaced (or NULL), map_del the value
	 * it removed (or NULL), and map_free calls free_value (may be NULL)
	 * on each value left.  map_next visits every entry once in no
	 * particular order; deleting the entry it just returned is safe,
	 * inserting during an iteration is not.  map_sorted_keys returns a
	 * malloc'd array of the n keys in strcmp order (free() the array, not
	 * the keys).  NULL keys are a plugin bug (crash). */
	regent_map *(*map_new)(void);
	void (*map_free)(regent_map *m, void (*free_value)(void *));
	void *(*map_get)(const regent_map *m, const char *key);
	void *(*map_put)(regent_map *m, const char *key, void *value);
	void *(*map_del)(regent_map *m, const char *key);
	size_t (*map_size)(const regent_map *m);
	bool (*map_next)(const regent_map *m, regent_map_iter *it, const char **key, void **value);
	const char **(*map_sorted_keys)(const regent_map *m, size_t *n);

	/* URL escaping by libcurl (curl_easy_escape): every byte but
	 * [A-Za-z0-9._~-] becomes %XX (so '/' in an id is %2F, UTF-8 bytes are
	 * escaped one by one).  len 0 means strlen(s).  Returns the whole
	 * escaped text, malloc'd (free() it), never cut short; NULL only when
	 * s is NULL or longer than libcurl takes (INT_MAX bytes). */
	char *(*url_escape)(const char *s, size_t len);

	/* One line about the result of a host->http_request, for logs and
	 * health reasons, written into out (always terminated; returns out):
	 *  - a transport error: "timeout" (-ETIMEDOUT), "connection refused"
	 *    (-ECONNREFUSED) or strerror's text, then the transport's own
	 *    error_msg in parentheses when there is one, e.g. "timeout
	 *    (Operation timed out after 5001 milliseconds with 0 bytes
	 *    received)";
	 *  - an answer: "HTTP 503", then ": " and the body's message (the
	 *    "message" or "error" string of a JSON object body, else the body),
	 *    control characters and invalid UTF-8 as '?', blanks folded, at
	 *    most 200 bytes; a longer message ends with "..." (never cut
	 *    silently).
	 * outlen 256 is always enough for an answer's line (a transport
	 * error_msg longer than that is cut by outlen). */
	const char *(*http_describe)(const regent_http_result *res, char *out, size_t outlen);

	/* Timers that close themselves.  timer_new returns an initialised
	 * uv_timer_t on the instance's loop with ->data = data (never NULL);
	 * start and stop it with uv_timer_start / uv_timer_stop.  timer_close
	 * stops *t, closes it, sets *t = NULL (NULL or *t NULL: nothing) and
	 * frees it once libuv is done with it; its callback never runs again.
	 * The close callback is the core's, so it is safe from destroy().
	 * From create() on (validate() has no loop). */
	uv_timer_t *(*timer_new)(regent_ctx *ctx, void *data);
	void (*timer_close)(uv_timer_t **t);

	/* Atomic file replacement, on libuv's threadpool (the loop never
	 * waits on the disk): writes opts->data to the temporary path, created
	 * with O_CREAT|O_EXCL|O_NOFOLLOW and opts->mode, fsyncs it, renames it
	 * over opts->path and fsyncs the directory (neither fsync with
	 * REGENT_FILE_WRITE_NO_SYNC: see there).  A temporary file left by
	 * a crash is removed first only when it is a regular file of this
	 * user; anything else there (a symlink, another user's file) is left
	 * alone and the write fails with -EEXIST.  On any failure the
	 * temporary file it created is removed and the old file is untouched.
	 * on_done is called once, on the loop, unless file_write_cancel was
	 * called (a write already under way still completes or fails
	 * cleanly; file_write_cancel(NULL) does nothing).  Returns NULL with *err (-EINVAL: no path, relative path,
	 * no on_done) when it cannot start; no callback then. */
	regent_file_write *(*file_write)(regent_ctx *ctx, const regent_file_write_opts *opts,
	                                 int *err);
	void (*file_write_cancel)(regent_file_write *w);

	/* Runs a command on the loop (posix_spawn, never a fork of the
	 * agent's heap; in its own process group, stdin /dev/null, signals at
	 * their default; reaped on SIGCHLD by its own pid) and captures stdout and stderr into one text, the
	 * first max_output bytes kept and the rest counted.  on_done is called
	 * once, when the command has exited and its output is read (or, after
	 * an exit, when the timeout passes while a descendant still holds the
	 * output open), unless spawn_cancel was called: that kills the process
	 * group (SIGKILL) and no callback follows (spawn_cancel(NULL) does
	 * nothing).  At the timeout (timeout_ms after this call, however late
	 * in the loop's turn it is made) the process group is killed with
	 * SIGKILL and error is -ETIMEDOUT.  Returns NULL with *err when it
	 * cannot start (-ENOENT: no such command in PATH, -EACCES: none that
	 * can be run, both found before anything starts; -EINVAL: no argv or
	 * on_done); no callback then. */
	regent_spawn *(*spawn)(regent_ctx *ctx, const regent_spawn_opts *opts, int *err);
	void (*spawn_cancel)(regent_spawn *s);

	/* Health of a plugin made of several parts (a store's registration
	 * and discovery, say).  Records the part's state (reason copied; with
	 * healthy = true a reason is a note, NULL none) and sets the
	 * instance's health (set_health) from all parts reported so far:
	 * healthy when every part is, else unhealthy with "<part>: <reason>"
	 * of each failing part, joined by "; ", in the order the parts were
	 * first reported; when healthy, the parts' notes the same way (shown
	 * as the note).  Parts are named by the plugin ("registration",
	 * "discovery"); a plugin uses either this or set_health, not both. */
	void (*health_part)(regent_ctx *ctx, const char *part, bool healthy, const char *reason);

	/* An ADDRESS key of the instance's own section, parsed: "host:port" or
	 * "[v6]:port" (the core checked the text when it read the file, so
	 * the plugin never splits it again; cfg_string still gives the text).
	 * Fills *out up to out->size (set it first; see regent_address): the
	 * value given, else the key's default.  Returns 0; -ENOENT when the
	 * key has no value (optional, no default, not set; *out untouched);
	 * -EINVAL when key is not declared as REGENT_CFG_ADDRESS (logged as a
	 * plugin bug) or out->size is smaller than 1.4's struct.  From
	 * validate() on. */
	int (*cfg_address)(regent_ctx *ctx, const char *key, regent_address *out);

	/* ---- ABI 1.5 ---- (appended; check REGENT_HOST_HAS before calling) */

	/* Annotations, incrementally: changes only some of what this plugin
	 * instance published, where annotations_set replaces all of it.
	 *
	 * put, nput: the annotations to publish, checked and copied like
	 * annotations_set's items (pointers borrowed for the call): each adds
	 * its key (service, id) or replaces the annotation held under it; one
	 * equal to the one held keeps the core's copy.
	 * del, ndel: the annotations to withdraw, by key: only size, service
	 * and id of each are read (the other fields may be anything: an
	 * annotation put earlier will do).  A key this instance does not hold
	 * changes nothing.
	 * Deletions are applied first, then puts in order: a key in both ends
	 * up put, a key put twice ends with the last.  Either array may be
	 * NULL when its count is 0; both 0 changes nothing.
	 *
	 * Returns 0, or, with nothing changed:
	 *   -EINVAL  an item is NULL, has an invalid service name or an empty
	 *            id, a put has an empty state, or a text is over 256 bytes
	 *            (logged, naming the item);
	 *   -E2BIG   nput or ndel over 1,000,000, or the instance would then
	 *            hold more than 1,000,000 annotations (logged);
	 *   -EPERM   called from validate() (no agent).
	 * Cost: O(k) on average for k = nput + ndel items (a hash table by
	 * key), whatever the instance holds: publish what changed, not
	 * everything.  annotations_foreach sorts again, O(n log n), the first
	 * time it runs after a change.  May be mixed with annotations_set
	 * (which still replaces the whole set, O(n + held)); the core drops
	 * everything when the instance stops. */
	int (*annotations_update)(regent_ctx *ctx, const regent_annotation *const *put, size_t nput,
	                          const regent_annotation *const *del, size_t ndel);

	/* ---- ABI 1.6 ---- (appended; check REGENT_HOST_HAS before calling) */

	/* Stores: catalog_set and catalog_instance_set for instances exactly as
	 * instance_decode gave them to this plugin (the pointer *out, not a
	 * copy of the struct; not freed yet): instead of copying each, the
	 * catalog takes a reference to its block, so an instance the store
	 * keeps decoded is held once.  The plugin keeps its own reference (it
	 * still calls instance_free when it drops the instance) and never
	 * writes into the block; the block is freed when both have let go.
	 * The instance's service is the one given to instance_decode; for
	 * catalog_set_decoded it is expected to equal `service` (an instance
	 * of another service is copied with `service`, as catalog_set does).
	 * A pointer that is not such a block is a plugin bug: the core logs it
	 * and copies what it can.  Returns as catalog_set and
	 * catalog_instance_set. */
	int (*catalog_set_decoded)(regent_ctx *ctx, const char *service,
	                           const regent_instance *const *decoded, size_t n);
	int (*catalog_instance_set_decoded)(regent_ctx *ctx, const regent_instance *decoded);
	/* Writes ranges of bytes over a file in place, on the threadpool:
	 * open (O_WRONLY|O_NOFOLLOW, never created), the file must be a
	 * regular file of expect_len bytes (else -ESTALE: replaced or changed
	 * behind the plugin's back; -EINVAL: a range past its end), each
	 * range with one pwrite, fdatasync (none with
	 * REGENT_FILE_PATCH_NO_SYNC: see there), close.  Costs O(bytes in the
	 * ranges), not O(file): for a file of fixed-width records (the haproxy
	 * sink's padded server lines) whose change would otherwise rewrite
	 * megabytes.  Not atomic as a whole: a reader (or a crash) between two
	 * ranges sees some new and some old; each range is written by one
	 * system call, so a process that reads the file whole sees each range
	 * old or new (a power loss during the write can tear a range that
	 * crosses a disk sector).  Use file_write when the file must change as
	 * one.  Returns a handle (cancelled with file_write_cancel, same
	 * rules) or NULL with *err (-EINVAL: no path, a relative path, no
	 * on_done, no ranges, a range without data); on_done as file_write's. */
	regent_file_write *(*file_patch)(regent_ctx *ctx, const regent_file_patch_opts *opts,
	                                 int *err);
	/* Why validate() runs (REGENT_VALIDATE_*): CHECK for --check-config
	 * (and whatever else only checks a file), START for the daemon's
	 * first start (the instance is created and started right after, and
	 * nothing older runs to be protected: a costly check the start makes
	 * anyway, such as running an external binary on the configuration,
	 * may be left to the start, which then fails the instance's start
	 * with the cause), RELOAD for a SIGHUP's new configuration (checked
	 * before anything running is replaced).  REGENT_VALIDATE_NONE outside
	 * validate(). */
	int (*validate_purpose)(regent_ctx *ctx);

	/* ---- ABI 1.7 ---- */

	/* A process the plugin owns (one that may outlive the agent, or
	 * waited for in validate()): started as spawn starts its child (argv,
	 * env, cwd of opts; nothing else read), stdout and stderr on out_fd
	 * (< 0: /dev/null), and nothing watches it.  0 with *pid, or -errno. */
	int (*process_start)(const regent_spawn_opts *opts, int out_fd, int *pid);
	/* waitpid of pid alone (wait: blocks, never on the loop): 1 with
	 * *exit_status (-1 after a signal) and *term_signal, 0 while it runs,
	 * -ECHILD (reaped elsewhere; both set as for a signal) or -errno. */
	int (*process_reap)(int pid, bool wait, int *exit_status, int *term_signal);

	/* ---- ABI 1.8 ---- */

	/* file_write without the copy: the core writes opts->data where it
	 * lies, for a text of megabytes that would otherwise be held twice
	 * while it is written (the haproxy sink's configuration).  The
	 * buffer is the core's to release from the call on, whatever
	 * happens: release(release_arg) is called exactly once, on the loop,
	 * when the core no longer reads it: after on_done returned, after a
	 * cancelled write ended, or before file_write_take returns NULL (the
	 * caller then never frees it itself).  release NULL: the core calls
	 * free(opts->data) (a buffer of malloc, host->xmalloc or a
	 * regent_buffer taken over).  Until released, the plugin may read the
	 * bytes but never change or free them (a counted text: release drops
	 * the core's reference).  Otherwise as file_write: same opts, errors,
	 * on_done, file_write_cancel. */
	regent_file_write *(*file_write_take)(regent_ctx *ctx, const regent_file_write_opts *opts,
	                                      void (*release)(void *arg), void *release_arg,
	                                      int *err);

	/* Annotations the core reads from the plugin when asked instead of
	 * holding copies: for a plugin that keeps the state of each item
	 * anyway (the haproxy sink's server rows), whose annotations would
	 * otherwise be held twice.  Replaces whatever this instance published
	 * (annotations_set or _update, which in turn replace the source when
	 * called later).  Each annotations_foreach then calls
	 * source(self, emit, emit_arg) on the loop; the source calls
	 * emit(emit_arg, a) once for each annotation it publishes now, in any
	 * order, each key (service, id) once.  a and its texts are read
	 * during that emit call only: the core copies what its reader gets
	 * (sorted as annotations_foreach promises, freed once control returns
	 * to the loop), and skips an item annotations_set would refuse
	 * (logged once per foreach).  The source must not call the host's
	 * annotation entries.  source NULL publishes nothing (as
	 * annotations_set with n = 0).  self must stay valid until this
	 * instance calls annotations_source, _set or _update again or stops:
	 * clear it (NULL) before freeing self outside of destroy().  The core
	 * drops the source when the instance stops.  Cost: nothing held per
	 * annotation; O(n log n) per foreach (a status page request), none
	 * per change.  Returns 0, or -EPERM from validate(). */
	int (*annotations_source)(regent_ctx *ctx,
	                          void (*source)(void *self,
	                                         void (*emit)(void *emit_arg,
	                                                      const regent_annotation *a),
	                                         void *emit_arg),
	                          void *self);

	/* ---- ABI 1.9 ---- */

	/* Stores: the registry lists this service but its instances could not
	 * be read yet (its first read keeps failing: an answer over the size
	 * limit, a token that may not read its nodes).  Between
	 * catalog_sync_begin and _end it counts as reported, so a first full
	 * read can end without it; catalog_set (or instance_set) makes it
	 * known, catalog_remove forgets it.  A service this store's view
	 * holds already is left as it is (its last instances stay: that is
	 * what a later failed read should keep).  When a reload's new store
	 * instance takes over, a service it reports unknown keeps the
	 * instances the old instance had. */
	void (*catalog_set_unknown)(regent_ctx *ctx, const char *service);
	/* Sinks: the services of the snapshot that are unknown (listed by the
	 * registry, never read by this agent), sorted by name; absent from
	 * catalog_services.  A sink that serves such a service from before
	 * (an earlier run's file) should keep it as it is.  The array and
	 * its strings live as long as the snapshot. */
	size_t (*catalog_unknown)(const regent_catalog *cat, const char *const **names);
	/* Sinks, from create() or start(): this sink takes snapshots that have
	 * unknown services.  By default a sink gets none until its first
	 * snapshot without any (what every sink got before 1.9: a first
	 * catalog waits for every service), then every snapshot. */
	void (*catalog_want_unknown)(regent_ctx *ctx);

	/* ---- ABI 1.10 ---- */

	/* One warning for an outage, not one per retry.  Call it at each
	 * failure of a part of the plugin, before logging it: ongoing says the
	 * part had failed already and not worked since, same_text that this
	 * failure reads as the last one.  Returns the level to log this one at
	 * and counts it in *f:
	 *  - a first failure (ongoing false): level, *f started anew at now_ms;
	 *  - a quiet repeat (the same text, or a warning after a warning: the
	 *    same daemon away, through another address): REGENT_LOG_DEBUG, but
	 *    once a minute since it was last said the level it was said at,
	 *    with *remind set (add how long and how many: f->since, f->count);
	 *  - anything else (another text at error level, any after an error):
	 *    level.
	 * When the part works again, f->since and f->count say how long it
	 * failed and how often ("... works again after 8.9 s and 17
	 * failures"). */
	regent_log_level (*failure_note)(regent_failure *f, bool ongoing, regent_log_level level,
	                                 bool same_text, uint64_t now_ms, bool *remind);

	/* ---- ABI 1.11 ---- */

	/* How long the failure *f has lasted at now_ms and how often, in the
	 * words every plugin uses: "8.9 s and 17 failures" ("1 failure"),
	 * tenths of a second, for a reminder ("... (still failing after %s)")
	 * and for the part's end ("... works again after %s").  Writes at
	 * most size bytes into buf, NUL included (cut short when it does not
	 * fit; 48 bytes always do), and returns buf. */
	const char *(*failure_text)(const regent_failure *f, uint64_t now_ms, char *buf, size_t size);
} regent_host;

/* host->validate_purpose (ABI 1.6). */
enum {
	REGENT_VALIDATE_NONE = 0,
	REGENT_VALIDATE_CHECK = 1,
	REGENT_VALIDATE_START = 2,
	REGENT_VALIDATE_RELOAD = 3,
};

#endif /* REGENT_PLUGIN_HOST_H */
