/* hx.h - declarations shared by the haproxy sink's files (not installed):
 * render.c (pure: validation, rendering, parsing haproxy's answers),
 * cli.c (async unix-socket requests), proc.c (the managed master process,
 * the checked candidate's rename), model.c (services, slots, ids: see model.h), svcconf.c
 * ([service] settings, the bind check), master.c (the managed haproxy);
 * the plugin itself is haproxy.c, settings.c, runtime.c, pipeline.c and
 * reload.c (see sink.h). */
#ifndef REGENT_HX_H
#define REGENT_HX_H

#include <regent/plugin.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#define HX_ADDR_MAX 46 /* INET6_ADDRSTRLEN */
#define HX_STATS_PROXY "regent-stats"

/* ---- render.c: a growable text buffer ----
 * The host's regent_buffer (plugin.h) with the host it grows through:
 * every append is host->buf_* (out of memory aborts, as the host says).
 * Set h before the first use: hx_buf b = {.h = host}.  data, len and cap
 * are the regent_buffer's own fields (rb is the same struct as a whole,
 * for the host's entries): read data and len, or shorten len, as plugin.h
 * allows. */

typedef struct hx_buf {
	union {
		regent_buffer rb;
		struct {
			char *data;
			size_t len, cap;
		};
	};
	const regent_host *h;
} hx_buf;

/* Appends: the host's entries themselves (b is evaluated more than once). */
#define hx_buf_add(b, s, n) ((b)->h->buf_add(&(b)->rb, (s), (n)))
#define hx_buf_puts(b, s) ((b)->h->buf_puts(&(b)->rb, (s)))
#define hx_buf_printf(b, ...) ((b)->h->buf_printf(&(b)->rb, __VA_ARGS__))
/* The text (never NULL, "" when empty); the buffer keeps ownership. */
const char *hx_buf_str(hx_buf *b);
/* Hands the text over (malloc'd, never NULL, no doubling slack: a text
 * that is kept is trimmed) and empties the buffer (h stays). */
char *hx_buf_take(hx_buf *b);
/* Releases the text (h stays: the buffer may be used again). */
void hx_buf_free(hx_buf *b);

/* ---- render.c: validation of everything that reaches the file ---- */

/* An IPv4/IPv6 literal, canonicalised into out (HX_ADDR_MAX; NULL: only
 * checked); *v6 set. */
bool hx_valid_ip(const char *in, char *out, bool *v6);
/* An IPv4 address as inet_ntop writes it (dotted decimal, at most 16
 * bytes with the NUL) without its sprintf: ~1,700 instructions a call,
 * twice per instance at a cold start.  Returns out. */
char *hx_ip4_str(const unsigned char b[4], char *out);
/* An HTTP check path: "/" then [A-Za-z0-9._~!&()*+,;=:@%/?-]{0,200}. */
bool hx_valid_check_path(const char *p);
/* An absolute file path safe to write into haproxy's config unquoted. */
bool hx_valid_file_path(const char *p);
/* An instance id safe in a trailing comment: [A-Za-z0-9._:/@-]{1,255}. */
bool hx_valid_comment_id(const char *id);
/* A bind address: "*" or an IP literal; writes "ADDR:PORT" or "[V6]:PORT". */
bool hx_format_bind(const char *addr, unsigned port, char *out, size_t outlen);
/* A decimal port 1..65535: digits only (no sign, blank or trailing byte). */
bool hx_parse_port(const char *s, uint16_t *port);
/* Balance algorithms the plugin accepts. */
bool hx_valid_balance(const char *b);

/* Parses the server_options list against the allow-list and renders it
 * (" opt arg opt ...") into out.  Each item is split on every whitespace
 * byte; a control byte anywhere is refused.  Returns 0, or -EINVAL with
 * why. */
int hx_server_options(const char *const *items, size_t n, hx_buf *out, char *why, size_t whylen);
/* The same, with what the sink needs to know of them (not searched in the
 * rendered text): the servers' weight (the last `weight N`, else 1) and
 * whether they speak TLS (`ssl`). */
typedef struct hx_srvopt_info {
	unsigned weight;
	bool ssl;
} hx_srvopt_info;
int hx_server_options_info(const char *const *items, size_t n, hx_buf *out, hx_srvopt_info *info,
                           char *why, size_t whylen);

/* ---- render.c: the file ---- */

/* Proxy IDs: forced, so that server-state lines keep matching their proxy
 * when services come and go (haproxy matches them by ID first). */
#define HX_STATS_ID 10000
#define HX_FIRST_ID 10001

typedef struct hx_svc_cfg {
	const char *name;
	unsigned id;             /* forced proxy id */
	const char *bind;        /* "ADDR:PORT" */
	bool http;               /* mode http (else tcp) */
	const char *check_path;  /* NULL: TCP connect check */
	const char *balance;
	int64_t maxconn;         /* 0: not written */
	int64_t retries;
	uint64_t t_connect, t_client, t_server, t_check, inter; /* ms */
	bool state_global;       /* load-server-state-from-file global (manage mode) */
	const char *state_file;  /* else: local, server-state-file-name (drive mode) */
	/* The options every server of the section shares (" check inter 2s
	 * ..."), written once as the block's last line, `default-server`
	 * (haproxy copies it into each server declared after it, as if on its
	 * line: every server keyword but `id` is a default-server keyword);
	 * NULL or "": no such line. */
	const char *server_defaults;
} hx_svc_cfg;

/* The listen block without its server lines (malloc'd). */
char *hx_render_listen(const regent_host *h, const hx_svc_cfg *c);

typedef struct hx_server_line {
	bool enabled;            /* else "disabled" with 0.0.0.0:0 */
	const char *addr;        /* canonical IP literal */
	uint16_t port;
	const char *id;          /* instance id for the comment, or NULL */
} hx_server_line;

void hx_render_server(hx_buf *b, size_t slot, const hx_server_line *l, const char *srvopts);

/* What the global part holds (hx_render_global). */
typedef struct hx_global_opts {
	const char *admin_socket; /* manage mode, else NULL */
	const char *state_file;   /* declared once here: haproxy reads it once, not per proxy */
	const char *stats_bind;   /* the stats listener (NULL: none) */
	bool strict_limits;       /* false: `no strict-limits` */
	int64_t maxconn;          /* > 0: `maxconn` */
	int64_t spread_ms;        /* > 0: `max-spread-checks` */
	int64_t threads;          /* > 0: `nbthread` */
	bool no_hc_ca;            /* `httpclient.ssl.verify none`: haproxy 2.6 then does not load
	                           * the system CA store for its Lua-only httpclient at every
	                           * start, reload and -c (only where no include can hold Lua) */
} hx_global_opts;

/* The global part (with a `global` section only when something is in it),
 * then the stats listener. */
char *hx_render_global(const regent_host *h, const hx_global_opts *o);

/* Renders a duration in ms as haproxy text ("1500ms", "2s"). */
void hx_fmt_ms(char *out, size_t n, uint64_t ms);

/* ---- render.c: reading back what regent wrote before ---- */

/* Calls fn for every "server sN ADDR:PORT ... # ID" line of every listen
 * block of a file this plugin wrote (ID NULL when absent, addr NULL for a
 * disabled slot), and idfn (if not NULL) for every listen's "id N". */
void hx_parse_file(const char *text,
                   void (*fn)(void *arg, const char *proxy, size_t slot, const char *addr,
                              unsigned port, const char *id),
                   void (*idfn)(void *arg, const char *proxy, unsigned id), void *arg);

/* ---- render.c: haproxy's answers ---- */

typedef struct hx_proc_info {
	long master_pid;
	long reloads;            /* the master's reload counter */
	long failed;             /* failed reloads ("[failed: N]"), 0 if absent */
	long worker_pid;         /* the current worker (reloads 0), 0 if none */
	size_t nworkers;
} hx_proc_info;

/* Parses the master CLI's "show proc".  Returns 0 or -EINVAL. */
int hx_parse_show_proc(const char *out, hx_proc_info *pi);
/* "Pid: N" of "show info", or 0. */
long hx_parse_info_pid(const char *out);
/* Calls fn for every server row of "show stat" CSV (pxname, svname, scur). */
void hx_parse_show_stat(const char *out,
                        void (*fn)(void *arg, const char *px, const char *sv, long scur),
                        void *arg);

/* Filters a "show servers state" dump for the state file: lines of proxies
 * for which keep() returns false are dropped, so that haproxy takes those
 * servers from the configuration.  keep() gets the server name, address,
 * port, operational state (2: up) and admin state.  Returns malloc'd text
 * (the "1" and "#" header lines are kept). */
char *hx_filter_state(const regent_host *h, const char *dump,
                      bool (*keep)(void *arg, const char *px, const char *sv, const char *addr,
                                   unsigned port, unsigned op, unsigned admin),
                      void *arg);
/* The same for one line (len bytes at p, no newline): whether it stays. */
bool hx_filter_state_line(const char *p, size_t len,
                          bool (*keep)(void *arg, const char *px, const char *sv, const char *addr,
                                       unsigned port, unsigned op, unsigned admin),
                          void *arg);

/* Splits a `show servers state` row in place into at most max fields (runs
 * of spaces between them, as strtok_r(" ") would); returns how many. */
size_t hx_state_fields(char *line, char **f, size_t max);

/* Appends to a server-state file (haproxy 2.6's 25 fields) the line of a
 * server that has not passed its check yet: stopped, health 0, so that the
 * worker that loads it waits for `rise` passing checks before the first
 * request.  pxid 0: the proxy's id is not forced. */
void hx_state_pending_line(hx_buf *b, unsigned pxid, const char *px, size_t slot,
                           const char *addr, unsigned port, unsigned weight, bool ssl);

/* Errors in a runtime API answer ("No such server.", ...): the first bad
 * line, or NULL when the answer looks fine. */
const char *hx_cli_error(const char *out, size_t *len);

/* ---- cli.c: one request on a unix stream socket ---- */

typedef struct hx_cli hx_cli;
/* status 0 and the whole answer (NUL-terminated), or a negative errno.
 * The answer is the request's own buffer, freed after the callback: the
 * callback may modify it in place (len > 0). */
typedef void (*hx_cli_cb)(void *arg, int status, const char *out, size_t len);

/* Connects to path, writes cmd + "\n", shuts the write side, reads to EOF.
 * The callback runs exactly once unless hx_cli_cancel() was called.  Returns
 * NULL with *err on a setup failure. */
hx_cli *hx_cli_request(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t timeout_ms, hx_cli_cb cb, void *arg, int *err);
/* The same, but the answer is read from late_ms after the command was
 * written (then within timeout_ms): a background poll's answer of many
 * commands, which haproxy writes one command at a time, is read in one or
 * a few reads from the socket's buffer instead of a wakeup per command.
 * For answers that fit the socket's buffer (~200 KB) and can wait. */
hx_cli *hx_cli_request_late(const regent_host *h, uv_loop_t *loop, const char *path,
                            const char *cmd, uint64_t timeout_ms, uint64_t late_ms, hx_cli_cb cb,
                            void *arg, int *err);
/* Each line of the answer handed over as it is read (NUL-terminated in
 * place of its newline, writable until the callback returns; the last one
 * also without a newline), then cb once with status and an empty text
 * (len: the answer's bytes): memory for one line, not the answer.  The
 * answer limit (hx_cli_answer_max, E2BIG) counts the whole answer; a line
 * over 64 KB fails with E2BIG. */
typedef void (*hx_cli_line_cb)(void *arg, char *line, size_t len);
hx_cli *hx_cli_request_lines(const regent_host *h, uv_loop_t *loop, const char *path,
                             const char *cmd, uint64_t timeout_ms, hx_cli_line_cb line,
                             hx_cli_cb cb, void *arg, int *err);
/* Also cancels a request made with hx_conn_request. */
void hx_cli_cancel(hx_cli *c);
/* A one-shot request adds the loop thread's CPU time of its callbacks (the
 * connect, write, reads: what the loop spends on it) to *cpu_ns, up to the
 * answer's callback (excluded: it counts its own), not after a cancel;
 * *cpu_ns must outlive the request or its cancel.  Not for hx_conn
 * requests (their link's callbacks serve several). */
void hx_cli_meter(hx_cli *c, uint64_t *cpu_ns);
/* The calling thread's CPU time, ns (CLOCK_THREAD_CPUTIME_ID; 0 if none). */
uint64_t hx_thread_cpu_ns(void);
/* The capacity of the answer buffer kept for the next request (tests). */
size_t hx_cli_spare_cap(void);
/* The longest answer a request reads (8 MiB; a test may lower it). */
size_t hx_cli_answer_max(void);

/* ---- cli.c: a persistent connection to the admin socket ----
 * One connection in haproxy's prompt mode, requests pipelined on it (the
 * fast path's small requests; big answers stay one-shot).  A request is
 * answered like hx_cli_request's (the same text, status, callback once
 * unless cancelled), never before hx_conn_request returns.  It follows
 * haproxy's worker: hx_conn_reset when a new worker answers (a reload, a
 * restart), closed when idle or old, a backoff after an error (NULL with
 * *err meanwhile).  opened (may be NULL) counts the connections.
 * on_worker (may be NULL) is called when a new connection reaches another
 * worker than the last one without a reset in between (a reload regent did
 * not make), with both pids. */
typedef struct hx_conn hx_conn;
typedef void (*hx_conn_worker_cb)(void *arg, long was, long pid);
hx_conn *hx_conn_new(const regent_host *h, regent_ctx *ctx, uv_loop_t *loop, const char *path,
                     regent_metric *opened, hx_conn_worker_cb on_worker, void *arg);
hx_cli *hx_conn_request(hx_conn *c, const char *cmd, uint64_t timeout_ms, hx_cli_cb cb, void *arg,
                        int *err);
/* pid (0: any): the new worker's, when known; the next connection checks
 * it reached that one before it carries a request. */
void hx_conn_reset(hx_conn *c, long pid);
unsigned long hx_conn_opened(const hx_conn *c);
/* Closes it; requests still on it are dropped without their callbacks. */
void hx_conn_free(hx_conn *c);

/* ---- proc.c: the checked candidate renamed over the file ---- */

typedef struct hx_write hx_write;
typedef void (*hx_write_cb)(void *arg, int status);
/* Renames from over to, then (sync) fsyncs to's directory, on the
 * threadpool (the files themselves are written with host->file_write;
 * no sync: as REGENT_FILE_WRITE_NO_SYNC, for a managed haproxy's file).
 * The callback runs once (the write is never cancelled: handover.c
 * sees its end even after its instance stopped); NULL with *err when it
 * cannot start. */
hx_write *hx_rename(uv_loop_t *loop, const char *from, const char *to, bool sync, hx_write_cb cb,
                    void *arg, int *err);
/* Tests only: REGENT_HX_TEST_RENAME_DELAY_MS (read once; 0 when unset)
 * holds every hx_rename that long on the loop before it goes to the
 * threadpool: a rename still in flight when its instance stops. */
uint64_t hx_rename_test_delay(void);

/* ---- proc.c: the managed haproxy master process ---- */

typedef struct hx_master hx_master;
typedef void (*hx_exit_cb)(void *arg, int64_t status, int term_signal);
/* Starts argv with host->process_start (posix_spawn: a new session,
 * stdin /dev/null, stdout and stderr on out_fd (-1: /dev/null), signals at
 * their default), the environment envp (NULL: the agent's).  Returns 0
 * with *pid, or -errno (an exec failure too). */
int hx_process_start(const regent_host *h, char *const *argv, char *const *envp, int out_fd,
                     int *pid);
/* Starts argv (hx_process_start, with hx_haproxy_env's environment) so that
 * it outlives regent; its exit is reaped on SIGCHLD (waitpid of its own
 * pid) and reported to on_exit. */
hx_master *hx_master_spawn(const regent_host *h, uv_loop_t *loop, char *const *argv, int out_fd,
                           hx_exit_cb on_exit, void *arg, int *err);
/* The environment haproxy runs with (the master and haproxy -c): the
 * agent's, with glibc's malloc asking for transparent huge pages
 * (GLIBC_TUNABLES glibc.malloc.hugetlb=1) unless it says otherwise.
 * NULL-terminated; hx_env_free() frees it. */
char **hx_haproxy_env(const regent_host *h);
void hx_env_free(char **env);
int hx_master_pid(const hx_master *m);
void hx_master_kill(hx_master *m, int sig);
/* Forgets the callback and closes the handle; a running process keeps
 * running (an adopter reaps it through a pidfd).  killed: it was just sent
 * SIGKILL and nobody adopts it: the handle stays until its exit is reaped
 * (no zombie), then closes. */
void hx_master_release(hx_master *m, bool killed);
/* waitid()'s P_PIDFD (Linux 5.4): glibc declares it as an enumerator only
 * (no macro to test with #ifdef); an older kernel answers EINVAL. */
#define HX_P_PIDFD ((idtype_t)3)
/* waitid(P_PIDFD, WNOHANG): true when the child behind pidfd was reaped
 * (its exit status, or the signal that ended it); false while it runs, or
 * when it is not this process's child (ECHILD). */
bool hx_pidfd_reaped(int pidfd, int64_t *status, int *sig);
/* Reaps the process behind pidfd (a child of this process, adopted through
 * it, just sent SIGKILL) once it exits, and closes pidfd (taken over). */
void hx_pidfd_reap(uv_loop_t *loop, int pidfd);

/* ---- cli.c: poll a CLI socket until an answer says so ---- */

typedef struct hx_poll hx_poll;
/* Called with each answer (status 0) or failure (negative errno; one
 * request's own command timeout is -ETIMEDOUT, a failure like another):
 * return 0 to ask again after the interval, anything else to finish with
 * it.  At the deadline it is called once more with HX_POLL_EXPIRED (result
 * ignored), a status no request gives. */
typedef int (*hx_poll_fn)(void *arg, int status, const char *out);
#define HX_POLL_EXPIRED (-ETIME)
hx_poll *hx_poll_start(const regent_host *h, uv_loop_t *loop, const char *path, const char *cmd,
                       uint64_t first_ms, uint64_t interval_ms, uint64_t timeout_ms,
                       uint64_t cmd_timeout_ms, hx_poll_fn fn, void *arg);
void hx_poll_cancel(hx_poll *p);

/* ---- output.c: a managed haproxy's output file kept bounded ---- */

typedef struct hx_output hx_output;
/* Every minute (and a second after this call), past max bytes, path is
 * copied to path.1 and truncated on libuv's threadpool (logged).  NULL
 * (nothing done) when path is NULL or max is 0. */
hx_output *hx_output_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop, const char *path,
                         uint64_t max);
/* Stops the checks; a job in flight frees it when it ends.  NULL: nothing. */
void hx_output_free(hx_output *o);

/* ---- master.c: the managed haproxy (spawn, adopt, restart, stop) ---- */

typedef struct hx_sup hx_sup;
typedef struct hx_sup_cfg {
	regent_ctx *ctx;
	const regent_host *h;
	uv_loop_t *loop;
	const char *bin, *config_file, *master_socket, *pid_file, *log_file;
	const char *state_file, *state_tmp;
	/* fdkeep.c: the worker's admin socket (`expose-fd listeners`) and where
	 * regent hands the copies of its listeners to a restarted master (NULL:
	 * no copies kept). */
	const char *admin_socket, *fd_socket;
	const char *const *include;
	size_t ninclude;
	uint64_t cmd_timeout;
	uint64_t crash_window; /* a crash this soon after a start waits a backoff */
} hx_sup_cfg;

typedef enum {
	HX_SUP_READY,    /* master and worker answer (spawned or adopted) */
	HX_SUP_DOWN,     /* it died; a restart is scheduled (why says when) */
	HX_SUP_FAILED,   /* cannot start it (err); retried (why says when) */
	HX_SUP_STOPPED,  /* stopped on request (hx_sup_stop with kill) */
	HX_SUP_REPLACED, /* hx_sup_replace: the new master has a worker */
	HX_SUP_REPLACE_FAILED, /* hx_sup_replace: it had none (err, why); the old one serves */
	HX_SUP_EXE_REPLACED,   /* the master's binary was replaced on disk (why names it) */
} hx_sup_event;
typedef void (*hx_sup_cb)(void *arg, hx_sup_event ev, int err, const char *why);

hx_sup *hx_sup_new(const hx_sup_cfg *cfg, hx_sup_cb cb, void *arg);
/* Looks for the haproxy an earlier run (or the instance this one replaces)
 * left on the master socket.  done(arg, 1) adopted (READY follows),
 * done(arg, 0) none, done(arg, -EEXIST) an haproxy that is not ours
 * answers there (why says which): it is left alone. */
void hx_sup_adopt(hx_sup *s, void (*done)(void *arg, int result, const char *why), void *arg);
/* Starts one (the config file is in place). */
void hx_sup_spawn(hx_sup *s);
/* The restart a death scheduled (HX_SUP_DOWN) does not happen: the
 * caller starts haproxy again itself (hx_sup_spawn), once its file is
 * worth starting. */
void hx_sup_hold_restart(hx_sup *s);
/* A master exists, is starting or restarting (no spawn needed). */
bool hx_sup_busy(const hx_sup *s);
bool hx_sup_ready(const hx_sup *s);
long hx_sup_pid(const hx_sup *s);
/* The adopted master runs another binary or other includes than this
 * instance would start it with: what differs (NULL: the same, or started
 * by this instance). */
const char *hx_sup_stale(const hx_sup *s);
/* Make before break, for a stale adopted master: a new master with this
 * instance's command line starts beside it on the copies of the listening
 * sockets (-x); once it has a worker the old one gets SIGUSR1 and
 * HX_SUP_REPLACED follows, else the new one is stopped (SIGUSR1) and
 * HX_SUP_REPLACE_FAILED.  0: started; -EINVAL: not stale; -EAGAIN: not
 * now; -ENOTCONN: no copies of the listeners; other -errno: no pidfd. */
int hx_sup_replace(hx_sup *s);
/* The worker the master's `show proc` named when it was last found ready. */
long hx_sup_worker(const hx_sup *s);
/* A new instance drives haproxy (handover.c): a master that exits
 * meanwhile (one it replaced) gives HX_SUP_DOWN with no reason and is not
 * restarted; false: this one drives again. */
void hx_sup_yield(hx_sup *s, bool yielding);
/* kill: SIGTERM (SIGKILL after 3 s), HX_SUP_STOPPED once gone; returns
 * true when that is pending.  !kill: leaves haproxy running. */
bool hx_sup_stop(hx_sup *s, bool kill);
/* Frees (a running haproxy is left running). */
void hx_sup_free(hx_sup *s);
/* A new worker answers (a reload went through): copy its listeners anew. */
void hx_sup_listeners_changed(hx_sup *s);

/* ---- fdkeep.c: copies of the listening sockets across a master crash ---- */

typedef struct hx_fdkeep hx_fdkeep;
hx_fdkeep *hx_fdkeep_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop,
                         const char *admin_socket, const char *serve_path);
/* Replaces the copies with the running worker's (`_getsocks` on the admin
 * socket, on the threadpool). */
void hx_fdkeep_fetch(hx_fdkeep *k);
size_t hx_fdkeep_count(const hx_fdkeep *k);
const char *hx_fdkeep_path(const hx_fdkeep *k);
/* Closes the copies (a fetch in flight is discarded). */
void hx_fdkeep_drop(hx_fdkeep *k);
/* Answers `_getsocks` on the serve path with the copies (0, or -errno);
 * unserve stops and removes the socket. */
int hx_fdkeep_serve(hx_fdkeep *k);
void hx_fdkeep_unserve(hx_fdkeep *k);
void hx_fdkeep_free(hx_fdkeep *k);

/* ---- master.c: --check-config ---- */

/* Blocking (validate runs outside the loop): `bin -c -f <inc>... -f
 * <a temporary file holding global>` with a time limit.  Returns 0, or a
 * negative errno with haproxy's first message (or why it cannot run). */
int hx_check_binary(const regent_host *h, const char *bin, const char *const *inc, size_t ninc,
                    const char *global, uint64_t timeout_ms, char *why, size_t whylen);

#endif
