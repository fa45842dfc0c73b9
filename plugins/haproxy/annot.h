/* annot.h - the haproxy sink's view of each server, published for the
 * rest of the agent (annot.c, host->annotations_update, ABI 1.5, or
 * annotations_set, ABI 1.2). */
#ifndef REGENT_HX_ANNOT_H
#define REGENT_HX_ANNOT_H

#include "model.h"

typedef struct hx_annot hx_annot;

/* NULL when interval_ms is 0 or the core lacks annotations (ABI < 1.2):
 * every other call then does nothing.  m must outlive it. */
hx_annot *hx_annot_new(regent_ctx *ctx, const regent_host *h, uv_loop_t *loop, hx_model *m,
                       const char *admin_socket, uint64_t interval_ms, uint64_t cmd_timeout_ms);
/* The sink's persistent admin-socket connection (NULL: none): the few
 * servers the sink just changed are asked on it; whole polls stay
 * one-shot (their big answers would hold the fast path up). */
void hx_annot_set_conn(hx_annot *a, hx_conn *conn);
/* The sink changed this server (slot of service): asked alone soon. */
void hx_annot_touch(hx_annot *a, const char *service, size_t sn);
/* Ask haproxy again soon (the sink just changed servers). */
void hx_annot_poke(hx_annot *a);
/* Whether rows read now would stand: no poll in flight, asked before,
 * whose answer may come after and say what was before (false for NULL). */
bool hx_annot_can_take(const hx_annot *a);
/* `show stat PROXY 4 SID` rows the sink read with its own commands (the
 * read-back of the servers a batch changed, in the batch's exchange:
 * runtime.c), taken as the answer of a poll of those servers would be
 * (read in place, len bytes, NUL-terminated) and what changed published. */
void hx_annot_rows(hx_annot *a, char *answer, size_t len);
/* What a poll asks (hx_annot_plan): every server (`show stat -1 4 -1`),
 * a chunk of services of a polling cycle, the few servers the sink
 * changed, or the services of more of them. */
enum { HX_ASK_TOUCHED, HX_ASK_ALL, HX_ASK_CHUNK, HX_ASK_SERVICES };
/* For the unit test (the timer's own steps): the next poll's command in
 * cmd (empty: nothing to ask yet) and its kind, at now (ms); then its
 * answer (status 0 or a negative errno, the text read in place), which
 * also sets the timer for the next poll. */
int hx_annot_plan(hx_annot *a, uint64_t now, hx_buf *cmd);
void hx_annot_answer(hx_annot *a, int status, const char *out, size_t len);
/* Stops asking and withdraws what it published. */
void hx_annot_free(hx_annot *a);

/* For the unit test: one answer of haproxy (NUL-terminated, read in
 * place) as if asked for every server (full: the rows it lacks go) or for
 * some (the rows it has are updated), and what changed published.
 * Returns 0 or the error that the publish or the parse met. */
int hx_annot_feed(hx_annot *a, char *answer, bool full);
/* Distinct detail texts the rows hold (each held once; tests). */
size_t hx_annot_details(const hx_annot *a);
/* Distinct service names the rows and the keys to withdraw hold (each
 * held once; tests). */
size_t hx_annot_names(const hx_annot *a);

/* Pure, for the unit test: one row of "show stat" as a state word
 * ("up", "down", "drain", "maint", "nolb"...) and a detail ("L4CON
 * Connection refused"): no age (the row's since_wall_ns carries when it
 * changed, and the reader words the age). */
void hx_annot_describe(const char *status, const char *check_status, const char *check_desc,
                       const char *last_chk, char *state, size_t statelen, char *detail,
                       size_t detaillen);

/* annot_text.c: v in decimal in out (cap > 21), returns its length. */
size_t hx_num_str(char *out, size_t cap, long v);
/* annot_text.c: one CSV line of haproxy's split in place into at most max
 * fields (a quoted field unquoted); the number of fields, *rest (if not
 * NULL) where the next field starts, NULL when the line ended. */
size_t hx_csv_split(char *line, char **f, size_t max, char **rest);
/* The index of the header field name, or -1. */
int hx_csv_col(char **hdr, size_t nh, const char *name);

/* For the unit test: the next chunk of a polling cycle (annot.c): the
 * services after `after` that haproxy runs, as `show stat NAME 4 -1`
 * commands (states: `show servers state NAME`) in cmd, within max_servers slots and max_bytes; returns the
 * last one's name or NULL, *last when none follows, *nservers (if not
 * NULL) their slots. */
const char *hx_annot_chunk(hx_model *m, const char *after, size_t max_servers, size_t max_bytes,
                           bool states, hx_buf *cmd, bool *last, size_t *nservers);

/* annot_text.c: one row of `show servers state` (version 1) in
 * [line, end), the names NUL-terminated in place; false if the line is
 * not one.  fp: the fields that make the server's status and check
 * status (never 0); since_s: seconds since its state last changed. */
typedef struct hx_srv_state {
	const char *px, *sv;
	uint64_t since_s, fp;
} hx_srv_state;
bool hx_state_line(char *line, const char *end, hx_srv_state *out);

#endif
