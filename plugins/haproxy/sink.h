/* sink.h - the haproxy sink's private state (the hx struct) and the
 * functions its files share, private to plugins/haproxy:
 * haproxy.c (plugin entry and lifecycle, health, the scheduler),
 * settings.c (configuration keys, validate, reading the settings),
 * runtime.c (the runtime-API fast path: admin socket, drain polling),
 * pipeline.c (rendering, file writes, write/check/install),
 * accepted.c (when a candidate skips haproxy -c; the managed cold start),
 * mirror.c (runtime changes written into the installed file),
 * reload.c (reload through the master CLI or a command, confirmation),
 * annot.c (each server's state published for the stats page, annot.h),
 * handover.c (a reload's new instance taking over from the running one).
 * The model is model.h, the helpers below it hx.h. */
#ifndef REGENT_HX_SINK_H
#define REGENT_HX_SINK_H

#include "annot.h"
#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef enum {
	P_IDLE = 0,
	P_WRITE_CAND,
	P_CHECK,
	P_FINAL,
	P_DUMP,
	P_WRITE_STATE,
	P_RENAME,
	P_RELOAD,
	P_CONFIRM,
} pstate;

/* Where a pipeline's wall time goes: uv_hrtime() when each step ended
 * (0: not reached), logged at debug level when it ends (hx_timing_log). */
typedef enum {
	T_START,     /* the pipeline started (the candidate is rendered next) */
	T_RENDERED,  /* the candidate's text */
	T_WRITTEN,   /* the candidate on disk */
	T_CHECKED,   /* haproxy -c answered */
	T_FINAL,     /* rendered again with the latest servers (and written) */
	T_DUMPED,    /* show servers state answered */
	T_STATE,     /* the server-state file written */
	T_RENAMED,   /* the candidate renamed over config_file */
	T_SENT,      /* reload sent on the master CLI (or the command done) */
	T_MASTER,    /* the master lists the new worker */
	T_WORKER,    /* the admin socket answers from the new worker */
	T_NSTEPS,
} tstep;

typedef struct hx {
	regent_ctx *ctx;
	const regent_host *h;
	uv_loop_t *loop;
	bool started, stopping;

	/* configuration */
	char *config_file, *cand_path, *tmp_path, *state_file, *state_tmp;
	char *admin_socket, *master_socket, *reload_command, *haproxy_bin;
	const char *const *include;
	size_t ninclude;
	bool manage;
	bool strict_limits; /* false: `no strict-limits` in the global part */
	int64_t maxconn;    /* global maxconn (0: not written) */
	int64_t spread_ms;  /* global max-spread-checks (0: not written) */
	int64_t threads;    /* global nbthread (0: not written) */
	char stats_bind[80];
	bool stats_on;
	char bind_addr[HX_ADDR_MAX + 2];
	uint16_t stats_port;
	uint64_t reload_interval, drain_timeout, check_timeout, cmd_timeout, startup_grace;
	uint64_t start_wait; /* manage: the first start waits this long for the first read */
	uint64_t started_ms;
	size_t recovered;   /* services in the file of an earlier run */
	bool unknown_hold_logged; /* startup_hold: said why the earlier run's file is kept */
	int64_t slots_default, retries_default;
	uint64_t t_connect, t_client, t_server, t_check, inter;

	/* model (model.c) */
	hx_model m;
	const regent_catalog *cat;     /* the latest snapshot (referenced) */
	uv_timer_t *t_model;           /* empty grace ends, exclusions retried */
	unsigned mirror_gen;           /* m.gen the file was last rendered from */
	bool mirror_force;             /* render again even if m.gen did not move */
	unsigned excl_gen;             /* m.excl_gen reported */
	char *excl_note;               /* the excluded services, for /healthz */
	regent_metric *m_excluded;
	char *g_want, *g_cand, *g_run; /* global part (admin socket, stats) */
	/* The file an earlier run left, as read at start: compared with the
	 * first candidate (unchanged: no reload), dropped at the first install
	 * (the installed file's text is not kept after it: see mirror.c). */
	char *recovered_text;
	size_t file_len; /* the installed file's length, when the mirror or an install set it */
	char *last_rejected;           /* candidate haproxy -c refused (counted, hx_text_*) */
	bool rejected_wait;            /* ... and no snapshot since */
	bool installed_once;
	const regent_catalog *pending; /* applied() not yet reported */

	/* fast path */
	hx_conn *rt;      /* the persistent admin-socket connection (cli.c) */
	hx_cli *admin_req;
	unsigned batch_epoch; /* of the command batch in flight */
	size_t batch_slots;
	bool batch_readback; /* the batch reads its servers back (runtime.c) */
	bool admin_polling;
	/* a batch changed servers: the state poll is poked once the burst is
	 * sent (hx_send_cmds finds nothing left), not after every batch */
	bool annot_poke;
	bool learn_pending; /* read haproxy's server states before sending */
	unsigned epoch;
	uv_timer_t *t_poll;  /* drain polling */
	uv_timer_t *t_retry; /* admin backoff */
	regent_backoff admin_backoff;
	bool admin_blocked;
	char *admin_err;
	/* `disable frontend` for the services whose section goes (runtime.c):
	 * the names in the request in flight */
	char **drop_sent;
	size_t ndrop_sent;

	/* slow path */
	pstate ps;
	bool force_reload;
	/* haproxy came up on a file older than the installed one (one installed
	 * while it started, or an adopted master): the fast path waits for the
	 * forced reload, else it would send `set server` for backends only the
	 * newer file has ("No such backend"). */
	bool stale_run;
	uint64_t last_pipeline_ms;
	uv_timer_t *t_slow;
	regent_spawn *run; /* haproxy -c or the reload_command */
	regent_file_write *write; /* candidate or state file (host->file_write) */
	/* The skip path writes the candidate while the old worker's state is
	 * dumped and its file written (pipeline.c join_done): the rename waits
	 * for both.  join_left counts the sides still running. */
	regent_file_write *state_write;
	int join_left;
	bool join_failed;
	/* The master's `show proc` asked for beside those writes (reload.c
	 * hx_reload_prefetch): 1 in flight, 2 answered (s->before); the reload
	 * waits for it when it is still in flight. */
	int early_proc;
	bool reload_waits;
	hx_write *swap;           /* the candidate renamed over config_file */
	hx_cli *master_req;
	hx_proc_info before;
	long before_admin_pid;
	long want_worker;
	uint64_t confirm_deadline;
	hx_poll *confirm;
	char *cand_text;          /* counted (hx_text_*): the core holds one while writing it;
	                           * dropped once final (cand_final): then only its length */
	size_t cand_len;
	regent_backoff reload_backoff;
	char *reload_err, *reject_err;
	uint64_t tm[T_NSTEPS]; /* this pipeline's steps (uv_hrtime) */
	/* Service sections haproxy has accepted (haproxy -c or a reload),
	 * without their name, id and bind lines (pipeline.c shape_key): a
	 * candidate made only of such sections, under the same global part, is
	 * reloaded without a separate haproxy -c (the master's own parse checks
	 * it and keeps the old worker if it refuses). */
	char **ok_shapes;
	size_t n_ok;
	bool checking;     /* this pipeline runs haproxy -c */
	/* The managed cold start's first candidate with services went without
	 * a separate haproxy -c (pipeline.c can_skip_check): spent once; its
	 * sections are learnt as accepted when the reload succeeds. */
	bool cold_skip_spent, cold_skip_now;

	/* mirror */
	regent_file_write *mirror;
	unsigned file_gen; /* bumped by every install */
	bool dump_pending;
	/* The chunked `show servers state NAME` reads of a dump or a learn
	 * (statedump.c hx_state_next): the last service asked, whether it was
	 * the last one, and the dump's state-file text so far (st_hdr: its
	 * two header lines are in). */
	char *st_cursor;
	bool st_last, st_hdr, st_whole; /* st_whole: one request for every server */
	bool st_ok; /* the current answer had a state answer's line */
	void (*st_line)(struct hx *s, char *line, size_t len); /* the dump's or the learn's */
	hx_buf st_text;
	size_t learn_rows; /* the rows a learn read so far */
	unsigned st_reqs;  /* the requests (chunks) of this dump or learn */
	uint64_t retry_at;

	/* managed master (master.c) */
	hx_sup *sup;
	hx_output *out; /* output.c: haproxy's output file kept within output_max_size */
	bool master_ready, adopting, keep_running;
	char *master_err, *pid_file, *log_file, *fd_socket;
	unsigned spawn_gen;
	/* The managed cold start (accepted.c hx_first_start_waits): haproxy's
	 * first start waits (t_start, up to start_wait) for the registry's
	 * first complete read, then starts once with the complete file,
	 * written without a separate haproxy -c (cold_direct_now while its
	 * pipeline runs, cold_direct once installed until its worker
	 * answers).  spawned_once: this instance started (or adopted) one.
	 * cold_refused: that start exited before its worker answered; no
	 * start until a checked file is installed. */
	uv_timer_t *t_start;
	bool spawned_once, cold_direct_now, cold_direct, cold_refused;
	unsigned spawn_mgen; /* m.gen when this instance last started haproxy */

	/* make-before-break start: proven once a configuration passed
	 * haproxy -c and runs */
	bool proven, failed, checked_once, verify_only;

	/* failed writes of config_file: retried on a timer */
	char *write_err;
	uv_timer_t *t_wretry;

	/* The make-before-break hand-over (handover.c): ho_next links the
	 * live instances; ho_peer is, for the running instance, the new one
	 * taking over (yielding: it starts nothing more), for the new one the
	 * instance it takes over from.  ho_waiting: the new one waits for the
	 * running one's work in flight to end before it reads the file and
	 * adopts haproxy (ho_began once it did; ho_cat the latest snapshot
	 * meanwhile, applied then). */
	struct hx *ho_next, *ho_peer;
	bool yielding, ho_waiting, ho_began;
	const regent_catalog *ho_cat;

	/* server states for the rest of the agent (annot.c) */
	hx_annot *annot;

	/* metrics */
	regent_metric *m_runtime, *m_reloads, *m_rejected, *m_reload_fail, *m_restarts,
		*m_runtime_err, *m_admin_conns;
} hx;

static inline bool streq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* haproxy runs: managed, its master has a worker; driven, assumed. */
static inline bool hx_running(const hx *s)
{
	return s->manage ? s->master_ready : true;
}

/* Whether a service's servers have an HTTP check (its `check` path, in
 * mode http or tcp): a joining server then waits for it (runtime.c) and a
 * reload carries each server's verdict (pipeline.c). */
static inline bool hx_shape_checked(const shape *p)
{
	return p->listen && p->checked;
}

/* The weight the file gives a service's servers (server_options weight N,
 * else haproxy's 1): from the parsed settings (model.c build_shape). */
static inline unsigned hx_shape_weight(const shape *p)
{
	return p->weight;
}

/* ---- settings.c ---- */

extern const regent_config_key hx_keys[];
extern const regent_config_key hx_service_keys[];
/* The plugin's validate (also --check-config). */
int hx_validate(regent_ctx *ctx, const regent_host *h);
/* Reads the [sink] settings into s (create; s->ctx and s->h are set). */
void hx_sink_configure(hx *s);

/* ---- haproxy.c: health, trial and scheduling ---- */

void hx_set_reason(hx *s, char **slotp, const char *reason);
void hx_update_health(hx *s);
void hx_report_exclusions(hx *s);
/* The start on trial failed: said once, nothing more is touched. */
void hx_trial_fail(hx *s, int err, const char *why);
/* Runs whatever is due now (every event ends with it). */
void hx_kick(hx *s);
/* The new instance reads the file an earlier run (or the instance it
 * replaces) left, adopts haproxy and applies the latest snapshot: it
 * drives both from here on. */
void hx_own_begin(hx *s);

/* ---- handover.c: a reload's new instance taking over ---- */

/* At start: s is listed, and the running instance of the same file or
 * haproxy, if any, yields to it.  True when s must wait for that one's
 * work in flight (hx_own_begin follows then), false when s begins now. */
bool hx_ho_start(hx *s);
/* A write of config_file, the state file or the candidate in flight
 * (handover.c): its callback (cb, or rcb for hx_rename) goes through
 * hx_job_file_done / hx_job_rename_done with the job as arg, so that its
 * end is seen even once its instance stopped.  hx_job_unstarted: the
 * write did not start (no callback).  hx_jobs_orphan (cancel_all): s's
 * writes land without it, and until they have, hx_ho_held is true: no
 * instance begins or starts anything (their callbacks are never cancelled
 * with file_write_cancel: the write would still land,
 * unseen). */
typedef struct hx_job hx_job;
hx_job *hx_job_new(hx *s, regent_file_write_cb cb, hx_write_cb rcb);
void hx_job_file_done(void *arg, int status, const char *why);
void hx_job_rename_done(void *arg, int status);
void hx_job_unstarted(hx_job *j);
void hx_jobs_orphan(hx *s);
bool hx_ho_held(const hx *s);
/* hx_own_begin, after the file was read: the services whose listen the
 * instance s takes over from had (routed, or in their empty grace) and
 * that have no instance here keep it for what is left of their empty
 * grace, counted from when they emptied there (model.h ho_listen): a
 * service removed just before the SIGHUP is not dropped at once. */
void hx_ho_carry(hx *s);
/* hx_kick of a yielding instance: only the reload under way goes on;
 * once nothing is in flight, the new instance begins. */
void hx_ho_kick(hx *s);
/* stop(): the hand-over s is part of ends (the running one drives again
 * if s was the new one that did not take over).  hx_ho_forget (destroy)
 * also unlists s. */
void hx_ho_leave(hx *s);
void hx_ho_forget(hx *s);
/* The next empty grace end or exclusion retry (0: none). */
void hx_arm_model_timer(hx *s, uint64_t at);

/* ---- runtime.c: the fast path ---- */

void hx_ap_from_file(hx *s);
/* The persistent connection reached another worker, not after a reload or
 * restart regent saw: its server states are read again (hx_conn_new). */
void hx_on_worker(void *arg, long was, long pid);
/* haproxy's state is unknown (adopted, restarted, a failed reload):
 * learnt with `show servers state` (per chunk of services) before anything
 * is sent. */
void hx_ap_unknown(hx *s);
bool hx_learn(hx *s);
bool hx_admin_usable(hx *s);
bool hx_send_cmds(hx *s);
/* Closes the listeners of the services whose section the next reload
 * drops (`disable frontend`: new connections refused at once, those in
 * flight finish); true if a request went out. */
bool hx_send_drops(hx *s);
/* haproxy read the installed file again (a reload, a restart): closed
 * listeners it runs again are queued again. */
void hx_drops_reread(hx *s);
bool hx_any_draining(hx *s);
/* Every slot haproxy can reach has its state and address (weights
 * aside): a snapshot is applied. */
bool hx_runtime_settled(hx *s);
void hx_on_drain_poll(uv_timer_t *t);

/* ---- pipeline.c: the file and the slow path ---- */

/* Server lines padded to a fixed width per slot (mirror.c writes a
 * changed one over its old line): the width of slot i's line. */
size_t hx_line_width(size_t i, const char *srvopts);
/* Slot i's line with its newline appended to b, padded to width (its
 * pend view set to what it says). */
void hx_render_line(hx_buf *b, size_t i, slot *sl, const char *srvopts, size_t width);
void hx_file_header(hx *s, hx_buf *b, const char *g);
/* The written file is on disk: the slots' pend views are what it says
 * (run: after a mirror write, only its services; else the candidate's). */
void hx_pend_to_file(hx *s, bool run);
/* A failed write of path: unhealthy with the cause, retried every second;
 * hx_write_ok clears it. */
void hx_write_failed(hx *s, const char *path, int err, const char *why);
void hx_write_ok(hx *s);
/* Writes text (malloc'd, or counted: hx_text_new) atomically; the text is
 * the write's from the call on (never freed by the caller): a plain one is
 * freed, a counted one loses the reference given. */
regent_file_write *hx_write_file(hx *s, const char *path, const char *tmp, char *text,
                                 bool counted, regent_file_write_cb cb, int *err);
/* A text kept while the core writes it (the configuration): the buffer's
 * bytes in a counted block, no copy (hx_text_put the reference, NULL:
 * nothing; hx_text_ref another). */
char *hx_text_new(hx_buf *b);
char *hx_text_ref(char *t);
void hx_text_put(char *t);
bool hx_slow_needed(hx *s);
void hx_schedule_slow(hx *s);
void hx_pipeline_done(hx *s);
void hx_drop_pending(hx *s);
/* pipeline.c: the state file's text written (or given up, servers
 * starting from the config), then the rename; hx_state_side_done: the
 * state side is over. */
void hx_write_state(hx *s, char *text); /* takes text (malloc'd) */
void hx_state_side_done(hx *s);
/* ---- statedump.c: the server-state file before a reload ---- */
void hx_start_dump(hx *s);
/* The next chunk of `show servers state NAME` commands for the services
 * haproxy runs after s->st_cursor (NULL: from the first), sent as one
 * request on the admin socket (s->admin_req) answered to cb, each line of
 * its answer handed to line(s, text, len) as it is read (writable,
 * NUL-terminated: cli.c hx_cli_request_lines; the answer is never held
 * whole); false when no service is left or the request could not go out
 * (*err). */
bool hx_state_next(hx *s, hx_cli_cb cb, void (*line)(hx *s, char *text, size_t len), int *err);
/* The end of one answer of such a read (the dump's on_dump, the learn's
 * on_learn, answered to cb): a whole answer past the limit is asked again
 * per chunk (restart(s) first, unless NULL: the lines read so far are
 * read again), else the next chunk is asked.  True while the read goes on
 * (a request went out); false at its end, *ok false when this answer was
 * not one to `show servers state`, *err < 0 when the next request could
 * not go out. */
bool hx_state_step(hx *s, int status, hx_cli_cb cb, void (*restart)(hx *s), bool *ok, int *err);

/* ---- mirror.c: runtime changes written into the installed file ---- */

void hx_maybe_mirror(hx *s);
/* Where the services' parts lie in the file is not known (a new text). */
void hx_mirror_invalidate(hx *s);
/* The file on disk is not known any more: the next mirror renders and
 * writes it whole. */
void hx_mirror_unknown(hx *s);
void hx_mirror_from_cand(hx *s);
/* Whether the candidate just rendered (text; the shapes v->cand) is the
 * installed file byte for byte; false when not sure. */
bool hx_mirror_same(hx *s, const char *text);
void hx_log_output(hx *s, regent_log_level lvl, const char *out);
/* Runs argv with host->spawn into s->run (check_timeout, output up to
 * 256 KiB kept); a command that cannot start calls cb at once with
 * res->error set. */
void hx_spawn(hx *s, const char *const *argv, const char *const *env, regent_spawn_cb cb);
/* Why a command did not succeed, for logs and reasons: "exit 1", "killed
 * by signal 9 (Killed)", "timed out after 5000 ms (killed)" or the
 * error's text.  Returns out. */
const char *hx_spawn_cause(const regent_spawn_result *r, char *out, size_t n);
/* The end of a step of the pipeline (s->tm), and the debug line that
 * says where its time went ("render 12 ms, write 3 ms, haproxy -c 410 ms,
 * ..."), once, when it ends (how: "reloaded", "no reload", ...). */
void hx_tstep(hx *s, tstep t);
void hx_timing_log(hx *s, const char *how);
/* The cold start's unchecked candidate was refused at its reload (or its
 * first start): haproxy runs no service section (pipeline.c). */
void hx_cold_skip_refused(hx *s);
/* Removes the temporary files of runs that are gone (start, haproxy.c). */
void hx_clean_temps(hx *s);

/* ---- accepted.c: when a candidate goes without a separate haproxy -c ---- */

/* The candidate may skip it (and is then the final one): every section is
 * one haproxy accepted, or it is the cold start's first file with
 * services (its own start or reload parses it).  Sets cold_skip_now (and
 * cold_direct_now when haproxy's first start takes it). */
bool hx_can_skip_check(hx *s);
/* The cold start's first haproxy is starting with a file with no
 * service: the first candidate with services waits for it. */
bool hx_cold_start_waits(const hx *s);
/* The next candidate is the file haproxy's first start takes: no reload
 * to rate-limit (reload_interval does not apply). */
bool hx_cold_direct_due(const hx *s);
/* The next candidate is the cold start's first: a file with no service
 * (the binary and the includes checked), the services come after it. */
bool hx_cold_bare(const hx *s);
/* Learns the candidate's sections as accepted (haproxy -c passed, or the
 * reload of the cold start's unchecked candidate succeeded); _run: the
 * sections haproxy runs (the cold start's unchecked first file, once its
 * worker answers). */
void hx_ok_shapes_learn(hx *s);
void hx_ok_shapes_learn_run(hx *s);
/* Forgets the sections haproxy accepted (a reload failed: the next
 * candidate is checked with haproxy -c again); frees them. */
void hx_ok_shapes_clear(hx *s);
/* The managed first start waits (hx_kick asks before it spawns): for the
 * registry's first complete read, up to start_wait (t_start kicks when it
 * ends), then for the pipeline that writes the complete file; after a
 * refused first start, for a checked file. */
bool hx_first_start_waits(hx *s);
/* The cold start's unchecked first file: haproxy exited before its first
 * worker answered.  The next candidate is checked, and haproxy started
 * with it. */
void hx_cold_direct_refused(hx *s);

/* ---- reload.c ---- */

/* The file is installed: reload haproxy and confirm the new worker. */
void hx_reload_start(hx *s);
/* A replacement (hx_sup_replace) ended: the new worker, or 0 and why. */
void hx_reload_replaced(hx *s, long worker, const char *why);
void hx_reload_prefetch(hx *s);
void hx_reload_prefetch_drop(hx *s);

#endif
