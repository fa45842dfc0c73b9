/* host.h - plugin instances (regent_ctx), the host table, and the agent
 * that owns them: loop, config, local set, catalog, HTTP client, metrics. */
#ifndef REGENT_CORE_HOST_H
#define REGENT_CORE_HOST_H

#include "catalog.h"
#include "config.h"
#include "metrics.h"
#include "history.h"
#include "http.h"
#include "localset.h"

typedef struct regent_agent regent_agent;

typedef enum ctx_state {
	CTX_NEW = 0,
	CTX_CREATED,
	CTX_PENDING,                  /* start() returned REGENT_PENDING: awaiting started() */
	CTX_STARTED,
	CTX_STOPPING,
	CTX_STOPPED,
} ctx_state;

struct regent_ctx {
	regent_agent *agent;          /* NULL while validating */
	int validate_purpose;         /* while validating: REGENT_VALIDATE_*, else 0 */
	regent_config *cfg;           /* the config it was created from (ref) */
	const regent_cfg_section *sec;
	const regent_plugin *desc;
	regent_kind kind;
	char *who;                    /* "store etcd": log prefix */
	void *self;
	ctx_state state;
	bool failed_start;
	regent_stop_reason stop_reason; /* set before stop() */
	bool proven;                  /* started(ctx, 0) called, or start() returned 0 */
	char *state_dir;              /* resolved and created on first use */
	/* make-before-break (agent.c) */
	regent_ctx *replaces;         /* on trial: the running instance it is to replace */
	regent_ctx *candidate;        /* the new instance on trial to replace this one */
	uv_timer_t *trial_timer;      /* start_timeout; started() is handled from it */
	bool started_called;          /* host->started() was called (once) */
	int started_status;
	char *started_reason;
	char *start_error;            /* why the start failed: unhealthy with it */
	char *note;                   /* shown beside the health: a refused reload */
	unsigned generation;          /* the reload that created it */
	uv_timer_t *inherit_timer;    /* a source that inherited claims: their bound (agent.c,
	                               * drop_inherited) */
	bool listed;                  /* a source: ended a full listing (local_resync_end) */
	/* sinks (agent.c apply_sink) */
	bool want_unknown;            /* host->catalog_want_unknown: takes partial snapshots */
	bool applied;                 /* got a snapshot */
	bool held_first;              /* a snapshot with unknown services was held back */
	/* stores */
	regent_catview *view;
	/* health */
	bool healthy;
	char *health_reason;
	char *health_note;            /* set_health(ctx, true, note) */
	struct regent_health_parts *health_parts; /* host->health_part (helpers.c) */
	/* annotations.c: what it published (host->annotations_set, _update) */
	struct regent_annots *annots;
	char *last_warning;           /* the last line it logged at warn or error */
	/* stop */
	uv_timer_t *stop_timer;
	void (*on_stopped)(regent_ctx *ctx);
	regent_ctx *next;
};

struct regent_agent {
	uv_loop_t *loop;
	regent_config *cfg;           /* the running config */
	char *plugin_dir_override;
	regent_http *http;
	regent_metrics *metrics;
	regent_localset *local;
	regent_cat *cat;
	regent_history *history;      /* recent changes and the last hour (status page) */
	/* /metrics: the per-service and per-node instance counts of one catalog
	 * snapshot (held), rendered once: a scrape costs O(services), not
	 * O(instances) */
	const regent_catalog *counts_of;
	char *counts_text;
	bool counts_per;              /* counts_text has the per-service/per-node series */
	regent_ctx *ctxs;             /* running, in start order */
	regent_ctx *dying;            /* stopping after a reload */
	unsigned generation;          /* reloads applied so far */
	char *reload_note;            /* why the last reload's file was refused, or NULL */
	uv_signal_t sig[3];
	bool stopping, finished;
	size_t pending;               /* contexts still stopping at shutdown */
	int exit_code;
	uint64_t start_wall_ns;
	regent_metric *m_reloads, *m_reload_errors, *m_sink_applies_total;
	regent_metric *m_reload_ok, *m_reload_ts; /* regent_config_last_reload_* */
	void (*on_exit)(regent_agent *a);
	bool drained;                 /* `regent ctl drain`: local instances kept out of the stores */
	uv_timer_t *trim_timer;       /* agent.c: free heap pages back to the system once quiet */
	bool trim_late;               /* the first trim of this quiet period is done */
	uint64_t trim_end_ns, trim_cost_ns; /* the last trim: when it ended, what it took */
	/* agent.c: a trim after a big free outside any apply: the look at the
	 * heap after a loop turn, the timer for it once the loop is quiet,
	 * when it last looked (loop ms), the free bytes after the last trim */
	uv_check_t *heap_turn;
	uv_timer_t *heap_check;
	uint64_t heap_checked_ms;
	size_t heap_free_after;
	/* annotations.c: the copies foreach gave of sources' annotations (ABI
	 * 1.8), freed once control is back on the loop (the timer) */
	struct regent_annot_scratch *annot_scratch;
	uv_timer_t *annot_timer;
};

extern const regent_host regent_host_table;

/* agent.c */
regent_agent *regent_agent_new(uv_loop_t *loop, regent_config *cfg, const char *plugin_dir_override);
int regent_agent_start(regent_agent *a);
/* Re-reads the config file: returns 0 when applied, -EINVAL when refused. */
int regent_agent_reload(regent_agent *a);
/* host->started(): a plugin instance proved itself (status 0) or failed. */
void regent_agent_started(regent_agent *a, regent_ctx *c, int status, const char *reason);
/* host->applied(): a sink applied a snapshot whose change entered the
 * agent at origin_wall_ns; heap pages its work freed go back to the system
 * (at once after a slow apply, else once quiet). */
void regent_agent_applied(regent_agent *a, uint64_t origin_wall_ns, uint64_t now_wall_ns);
/* agent_mem.c: the trim timer and the heap look, set up and closed with
 * the agent; a trim once the agent has been quiet for a second. */
void regent_agent_mem_init(regent_agent *a);
void regent_agent_mem_close(regent_agent *a);
void regent_agent_trim_when_quiet(regent_agent *a);
/* Creates dir (mode 0750) if missing and checks it is a real directory
 * owned by this user and writable by nobody else.  Logs why not as who. */
int regent_state_dir_prepare(const char *dir, const char *who);
/* Stops every plugin (stores deregister), then closes all handles. */
void regent_agent_shutdown(regent_agent *a);
/* After the loop has drained. */
void regent_agent_free(regent_agent *a);
/* Installs SIGTERM/SIGINT (shutdown) and SIGHUP (reload) handlers. */
void regent_agent_handle_signals(regent_agent *a);
void regent_notify(const char *fmt, ...) REGENT_PRINTF(1, 2);

/* annotations.c */
int regent_annotations_set(regent_ctx *ctx, const regent_annotation *const *items, size_t n);
int regent_annotations_update(regent_ctx *ctx, const regent_annotation *const *put, size_t nput,
                              const regent_annotation *const *del, size_t ndel);
/* Drops everything the instance published (regent_ctx_free). */
void regent_annotations_clear(regent_ctx *ctx);
/* How many annotations the instance holds. */
size_t regent_annotations_count(const regent_ctx *ctx);
/* host->annotations_source (ABI 1.8): the instance's annotations read
 * from the plugin at each foreach; source NULL: none. */
int regent_annotations_source(regent_ctx *ctx,
                              void (*source)(void *self,
                                             void (*emit)(void *emit_arg,
                                                          const regent_annotation *a),
                                             void *emit_arg),
                              void *self);
/* Frees the copies foreach made of sources' annotations (its timer does
 * it on the loop; regent_agent_free and a unit test without a loop). */
void regent_annotations_scratch_free(regent_agent *a);
/* For the unit test: the limit (0: the real one, 1,000,000). */
void regent_annotations_set_max(size_t max);
void regent_annotations_foreach(regent_agent *a,
                                void (*fn)(void *arg, const char *publisher,
                                           const regent_annotation *an),
                                void *arg);

/* host.c */
regent_ctx *regent_ctx_new(regent_agent *a, regent_config *cfg, const regent_cfg_section *sec);
void regent_ctx_free(regent_ctx *ctx);

#endif
