/* helpers.h - the ABI 1.4 host helpers (helpers.c, spawn.c, filewrite.c),
 * callable by the core and its unit tests without a plugin context where
 * they need only a loop.  The host table (host.c) binds them. */
#ifndef REGENT_CORE_HELPERS_H
#define REGENT_CORE_HELPERS_H

#include "util.h"

/* helpers.c */
char *regent_h_strdup(const char *s);           /* NULL -> NULL */
char *regent_h_strndup(const char *s, size_t n); /* NULL -> NULL */
void regent_h_buf_puts(regent_buf *b, const char *s);
void regent_buf_json(regent_buf *b, const char *s);
char *regent_url_escape(const char *s, size_t len);
const char *regent_http_describe(const regent_http_result *res, char *out, size_t outlen);
uv_timer_t *regent_timer_new(uv_loop_t *loop, void *data);
void regent_timer_close(uv_timer_t **t);
typedef struct regent_health_parts regent_health_parts;
void regent_health_part(regent_ctx *ctx, const char *part, bool healthy, const char *reason);
void regent_health_parts_free(regent_ctx *ctx);
/* "host:port" or "[v6]:port" into *a (whole struct; a->size set to its
 * sizeof); 0, or -EINVAL with why.  The host entry cfg_address uses it. */
int regent_address_parse(const char *s, regent_address *a, char *why, size_t whylen);
int regent_cfg_address(regent_ctx *ctx, const char *key, regent_address *out);

/* filewrite.c */
regent_file_write *regent_file_write_start(uv_loop_t *loop, const regent_file_write_opts *o,
                                           int *err);
/* host->file_write_take (ABI 1.8): o->data is held, not copied, and
 * released once (release NULL: free) */
regent_file_write *regent_file_write_take_start(uv_loop_t *loop, const regent_file_write_opts *o,
                                                void (*release)(void *arg), void *release_arg,
                                                int *err);
void regent_file_write_cancel(regent_file_write *w);
regent_file_write *regent_file_patch_start(uv_loop_t *loop, const regent_file_patch_opts *o,
                                           int *err);
/* The fdatasync calls patches made so far (tests). */
uint64_t regent_file_patch_syncs(void);
/* The open calls patches made so far: a patched file's descriptor is kept
 * for the next patch of the path (tests). */
uint64_t regent_file_patch_opens(void);
/* Closes the descriptors kept for patches (the agent's end). */
void regent_file_patch_forget_all(void);
/* The fsync calls whole-file writes made so far, the file's and the
 * directory's (tests). */
uint64_t regent_file_write_syncs(void);

/* spawn.c */
regent_spawn *regent_spawn_start(uv_loop_t *loop, const regent_spawn_opts *o, int *err);
void regent_spawn_cancel(regent_spawn *s);
int regent_process_start(const regent_spawn_opts *o, int out_fd, int *pid);
int regent_process_reap(int pid, bool wait, int *exit_status, int *term_signal);

#endif
