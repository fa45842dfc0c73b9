/* test_helpers.c - the ABI 1.4 host helpers, called through the host table
 * (core/helpers.c, core/filewrite.c, core/spawn.c, util.c's map and
 * buffer): the NULL rules of the strings, the buffer's JSON strings (always
 * valid JSON), the map's key-copy rule, URL escaping (UTF-8 bytes, nothing
 * cut), the HTTP-result describer, timers closed from their own callback,
 * the atomic write (content, mode, a stale temporary file, a symlink at
 * the temporary path refused, a missing directory, cancel), per-part
 * health and ADDRESS values handed over parsed (cfg_address: families,
 * socket address, the size rule).  spawn and process_start are in
 * test_helpers_spawn.c; the fixture both use is test_helpers.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "helpers.h"
#include "host.h"
#include "test_helpers.h"
#include "loader.h"
#include "log.h"
#include "model.h"
#include "report.h"
#include "util.h"

int helpers_setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	uv_loop_init(&f->loop);
	f->agent.loop = &f->loop;
	f->ctx.agent = &f->agent;
	f->ctx.who = "sink test";
	f->ctx.healthy = true;
	snprintf(f->dir, sizeof(f->dir), "/tmp/regent-helpers-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

int helpers_teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	regent_health_parts_free(&f->ctx);
	free(f->ctx.health_reason);
	free(f->ctx.health_note);
	free(f->ctx.last_warning);
	uv_run(&f->loop, UV_RUN_DEFAULT); /* closes what the test left closing */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (size_t i = 0; i < f->nkeep; i++) /* what those last callbacks may have written */
		free(f->keep[i]);
	free(f);
	return 0;
}

bool run_until(fixture *f, const bool *flag, uint64_t ms)
{
	uint64_t end = regent_now_ms() + ms;
	while (!*flag && regent_now_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		if (!*flag)
			usleep(2000);
	}
	return *flag;
}

void *fx_keep(fixture *f, size_t size)
{
	assert_true(f->nkeep < FX_KEEP_MAX);
	return f->keep[f->nkeep++] = calloc(1, size);
}

char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	if (!fp)
		return NULL;
	char *d = calloc(1, 4096);
	size_t n = fread(d, 1, 4095, fp);
	d[n] = '\0';
	fclose(fp);
	return d;
}

/* An older core's table, as a plugin sees it: it ends at LAST, so NEXT (the
 * first entry of the next minor) lies past it. */
#define ASSERT_TABLE_ENDS_AT(last, next)                                                     \
	do {                                                                                 \
		regent_host old_ = *H;                                                       \
		old_.size = offsetof(regent_host, last) + sizeof(old_.last);                 \
		assert_true(REGENT_HOST_HAS(&old_, last));                                   \
		assert_false(REGENT_HOST_HAS(&old_, next));                                  \
	} while (0)

static void test_abi(void **state)
{
	(void)state;
	assert_int_equal(H->abi_minor, 11);
	assert_true(REGENT_HOST_HAS(H, failure_text));
	assert_non_null(H->failure_text);
	ASSERT_TABLE_ENDS_AT(failure_note, failure_text); /* 1.10 */
	assert_true(REGENT_HOST_HAS(H, failure_note));
	assert_non_null(H->failure_note);
	ASSERT_TABLE_ENDS_AT(catalog_want_unknown, failure_note); /* 1.9 */
	assert_true(REGENT_HOST_HAS(H, catalog_want_unknown));
	assert_non_null(H->catalog_set_unknown);
	assert_non_null(H->catalog_unknown);
	assert_non_null(H->catalog_want_unknown);
	/* A 1.8 core's table ends at annotations_source: the 1.9 entries lie past it. */
	size_t end18 = offsetof(regent_host, annotations_source) + sizeof(H->annotations_source);
	assert_true(offsetof(regent_host, catalog_set_unknown) >= end18);
	assert_true(REGENT_HOST_HAS(H, annotations_source));
	assert_non_null(H->file_write_take);
	assert_non_null(H->annotations_source);
	/* A 1.7 core's table ends at process_reap: the 1.8 entries lie past it. */
	size_t end17 = offsetof(regent_host, process_reap) + sizeof(H->process_reap);
	assert_true(offsetof(regent_host, file_write_take) >= end17);
	assert_true(offsetof(regent_host, annotations_source) > end17);
	assert_true(REGENT_HOST_HAS(H, process_reap));
	assert_non_null(H->process_start);
	assert_non_null(H->process_reap);
	assert_true(REGENT_HOST_HAS(H, health_part));
	assert_true(REGENT_HOST_HAS(H, xstrdup));
	assert_true(REGENT_HOST_HAS(H, annotations_update));
	assert_non_null(H->annotations_update);
	assert_true(REGENT_HOST_HAS(H, catalog_instance_set_decoded));
	assert_non_null(H->catalog_set_decoded);
	assert_non_null(H->catalog_instance_set_decoded);
	assert_true(REGENT_HOST_HAS(H, file_patch));
	assert_non_null(H->file_patch);
	assert_true(REGENT_HOST_HAS(H, validate_purpose));
	assert_non_null(H->validate_purpose);
	/* A 1.6 core's table ends at validate_purpose. */
	regent_host v16 = *H;
	v16.size = offsetof(regent_host, validate_purpose) + sizeof(v16.validate_purpose);
	assert_true(REGENT_HOST_HAS(&v16, validate_purpose));
	assert_false(REGENT_HOST_HAS(&v16, process_start));
	assert_false(REGENT_HOST_HAS(&v16, process_reap));
	/* A 1.5 core's table ends at annotations_update. */
	regent_host v15 = *H;
	v15.size = offsetof(regent_host, annotations_update) + sizeof(v15.annotations_update);
	assert_true(REGENT_HOST_HAS(&v15, annotations_update));
	assert_false(REGENT_HOST_HAS(&v15, catalog_set_decoded));
	assert_false(REGENT_HOST_HAS(&v15, file_patch));
	assert_false(REGENT_HOST_HAS(&v15, validate_purpose));
	/* A 1.4 core's table ends at cfg_address. */
	regent_host v14 = *H;
	v14.size = offsetof(regent_host, cfg_address) + sizeof(v14.cfg_address);
	assert_true(REGENT_HOST_HAS(&v14, cfg_address));
	assert_false(REGENT_HOST_HAS(&v14, annotations_update));
	/* A 1.3 core's table ends at catalog_instance_remove. */
	regent_host old = *H;
	old.size = offsetof(regent_host, catalog_instance_remove) + sizeof(old.catalog_instance_remove);
	assert_true(REGENT_HOST_HAS(&old, catalog_instance_remove));
	assert_false(REGENT_HOST_HAS(&old, xmalloc));
	assert_false(REGENT_HOST_HAS(&old, health_part));
}

/* A sink built against the ABI 1.3 header loads and runs on this core; a
 * plugin declaring a newer minor than the core's is still refused. */
static void test_older_plugin(void **state)
{
	fixture *f = *state;
	const char *dir = getenv("REGENT_BROKEN_DIR");
	assert_non_null(dir);
	char err[1024] = "";
	regent_loaded_plugin *lp = regent_plugin_load(dir, "abi13sink", REGENT_KIND_SINK, err,
	                                              sizeof(err));
	if (!lp)
		fail_msg("abi13sink refused: %s", err);
	assert_int_equal(lp->desc->abi_minor, 3);
	void *self = NULL;
	assert_int_equal(lp->desc->ops->create(&f->ctx, H, &self), 0); /* -ENOTSUP: table too short */
	assert_non_null(self);
	assert_int_equal(lp->desc->ops->start(self), 0);
	assert_int_equal(lp->desc->ops->stop(self), 0);
	lp->desc->ops->destroy(self);
	regent_plugin_unref(lp);
	regent_plugins_unload_unused();
	lp = regent_plugin_load(dir, "broken_minor", 0, err, sizeof(err));
	assert_null(lp);
	char want[96];
	snprintf(want, sizeof(want), "needs plugin ABI 1.%d but this regent provides 1.%d",
	         REGENT_ABI_MINOR + 5, REGENT_ABI_MINOR);
	if (!strstr(err, want))
		fail_msg("\"%s\" lacks \"%s\"", err, want);
}

static void test_strings(void **state)
{
	(void)state;
	assert_null(H->xstrdup(NULL));
	assert_null(H->xstrndup(NULL, 3));
	char *s = H->xstrdup("");
	assert_string_equal(s, "");
	free(s);
	s = H->xstrndup("abcdef", 3);
	assert_string_equal(s, "abc");
	free(s);
	s = H->xstrndup("ab", 10);
	assert_string_equal(s, "ab");
	free(s);
	s = H->xasprintf("%s/%d", "web", 42);
	assert_string_equal(s, "web/42");
	free(s);
	void *p = H->xmalloc(0); /* a unique pointer, not NULL */
	assert_non_null(p);
	p = H->xrealloc(p, 100);
	memset(p, 1, 100);
	free(p);
	int *z = H->xcalloc(4, sizeof(int));
	assert_int_equal(z[0] | z[1] | z[2] | z[3], 0);
	free(z);
}

static void test_buffer(void **state)
{
	(void)state;
	regent_buffer b = {0};
	H->buf_puts(&b, NULL);
	assert_null(b.data);
	H->buf_add(&b, "ab\0c", 4);
	assert_int_equal(b.len, 4);
	assert_int_equal(b.data[4], '\0');
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	H->buf_printf(&b, "[%s]%d", big, 7); /* past the small-format path */
	assert_int_equal(b.len, 4 + 1 + 999 + 1 + 1);
	assert_string_equal(b.data + 4 + 1 + 999, "]7");
	b.len = 0;
	b.data[0] = '\0';
	H->buf_json(&b, "q\"b\\s\n\x01 \xc3\xa9 \xff end");
	H->buf_puts(&b, ",");
	H->buf_json(&b, NULL);
	/* Valid JSON, the invalid byte replaced, nothing after it lost. */
	char *doc = H->xasprintf("[%s]", b.data);
	json_error_t err;
	json_t *j = json_loads(doc, 0, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_array_get(j, 0)),
	                    "q\"b\\s\n\x01 \xc3\xa9 \xef\xbf\xbd end");
	assert_true(json_is_null(json_array_get(j, 1)));
	assert_non_null(strstr(b.data, "\\u0001"));
	json_decref(j);
	free(doc);
	H->buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	H->buf_free(&b); /* twice: fine */
}

static void test_map(void **state)
{
	(void)state;
	regent_map *m = H->map_new();
	char *key = H->xstrdup("web");
	int one = 1, two = 2, three = 3;
	assert_null(H->map_put(m, key, &one));
	free(key); /* copied on insert */
	assert_ptr_equal(H->map_get(m, "web"), &one);
	assert_ptr_equal(H->map_put(m, "web", &two), &one); /* replaced: the old value back */
	assert_null(H->map_put(m, "api", &three));
	char name[16];
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "s%03d", i);
		H->map_put(m, name, H->xstrdup(name));
	}
	assert_int_equal(H->map_size(m), 102);
	size_t n;
	const char **keys = H->map_sorted_keys(m, &n);
	assert_int_equal(n, 102);
	assert_string_equal(keys[0], "api");
	assert_string_equal(keys[1], "s000");
	assert_string_equal(keys[101], "web");
	free(keys);
	/* Deleting the entry just returned is safe. */
	regent_map_iter it = {0};
	const char *k;
	void *v;
	size_t seen = 0;
	while (H->map_next(m, &it, &k, &v)) {
		seen++;
		if (k[0] == 's')
			free(H->map_del(m, k));
	}
	assert_int_equal(seen, 102);
	assert_int_equal(H->map_size(m), 2);
	assert_ptr_equal(H->map_del(m, "api"), &three);
	assert_null(H->map_del(m, "api"));
	H->map_free(m, NULL);
	m = H->map_new();
	H->map_put(m, "a", H->xstrdup("x"));
	H->map_free(m, free); /* free_value on what is left (ASan: no leak) */
}

static void test_url_escape(void **state)
{
	(void)state;
	char *e = H->url_escape("backend-1/abc def", 0);
	assert_string_equal(e, "backend-1%2Fabc%20def");
	free(e);
	e = H->url_escape("\xc3\xa9\xff~._-", 0); /* bytes >= 0x80 one by one */
	assert_string_equal(e, "%C3%A9%FF~._-");
	free(e);
	e = H->url_escape("a\0b", 3); /* an explicit length: the NUL too */
	assert_string_equal(e, "a%00b");
	free(e);
	char longs[3001];
	memset(longs, '/', 3000);
	longs[3000] = '\0';
	e = H->url_escape(longs, 0); /* never cut: 3x as long */
	assert_int_equal(strlen(e), 9000);
	assert_string_equal(e + 8997, "%2F");
	free(e);
	e = H->url_escape("", 0);
	assert_string_equal(e, "");
	free(e);
	assert_null(H->url_escape(NULL, 0));
}

static void test_http_describe(void **state)
{
	(void)state;
	char out[256];
	regent_http_result r = {.size = sizeof(r), .error = -ETIMEDOUT,
	                        .error_msg = "Operation timed out after 5001 milliseconds"};
	assert_string_equal(H->http_describe(&r, out, sizeof(out)),
	                    "timeout (Operation timed out after 5001 milliseconds)");
	r.error = -ECONNREFUSED;
	r.error_msg = "";
	assert_string_equal(H->http_describe(&r, out, sizeof(out)), "connection refused");
	r.error = -EIO;
	r.error_msg = NULL;
	assert_string_equal(H->http_describe(&r, out, sizeof(out)), strerror(EIO));
	regent_http_result a = {.size = sizeof(a), .status = 503, .error_msg = "",
	                        .body = "  no\r\nleader\x01 \xff!\n"};
	a.body_len = strlen(a.body);
	assert_string_equal(H->http_describe(&a, out, sizeof(out)), "HTTP 503: no leader? ?!");
	a.body = "{\"message\":\"No such container: x\"}";
	a.body_len = strlen(a.body);
	a.status = 404;
	assert_string_equal(H->http_describe(&a, out, sizeof(out)), "HTTP 404: No such container: x");
	a.body = "{\"error\":\"etcdserver: no leader\",\"code\":14}";
	a.body_len = strlen(a.body);
	assert_string_equal(H->http_describe(&a, out, sizeof(out)), "HTTP 404: etcdserver: no leader");
	a.body = NULL;
	a.body_len = 0;
	a.status = 204;
	assert_string_equal(H->http_describe(&a, out, sizeof(out)), "HTTP 204");
	char body[1000];
	memset(body, 'e', sizeof(body));
	a.body = body;
	a.body_len = sizeof(body);
	a.status = 500;
	H->http_describe(&a, out, sizeof(out)); /* a long body: cut, and it says so */
	assert_int_equal(strlen(out), strlen("HTTP 500: ") + 200 + 3);
	assert_string_equal(out + strlen(out) - 4, "e...");
	char small[8];
	assert_string_equal(H->http_describe(&a, small, sizeof(small)), "HTTP 50");
}

typedef struct tstate {
	int fired;
	uv_timer_t *t;
	bool done;
} tstate;

static void on_tick(uv_timer_t *t)
{
	tstate *s = t->data;
	if (++s->fired == 3) {
		H->timer_close(&s->t); /* from its own callback */
		assert_null(s->t);
		s->done = true;
	}
}

static void on_never(uv_timer_t *t)
{
	tstate *s = t->data;
	s->fired = -100;
}

static void test_timers(void **state)
{
	fixture *f = *state;
	tstate s = {0};
	s.t = H->timer_new(&f->ctx, &s);
	assert_ptr_equal(s.t->data, &s);
	uv_timer_start(s.t, on_tick, 1, 1);
	assert_true(run_until(f, &s.done, 5000));
	assert_int_equal(s.fired, 3);
	tstate n = {0};
	n.t = H->timer_new(&f->ctx, &n);
	uv_timer_start(n.t, on_never, 1, 0);
	H->timer_close(&n.t); /* before it fires: its callback never runs */
	H->timer_close(&n.t); /* NULL now: nothing */
	H->timer_close(NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(n.fired, 0);
}

typedef struct wstate {
	bool done;
	int status;
	char why[512];
} wstate;

static void on_written(void *arg, int status, const char *why)
{
	wstate *w = arg;
	w->done = true;
	w->status = status;
	snprintf(w->why, sizeof(w->why), "%s", why);
}

/* file_write_take (ABI 1.8): the buffer written where it lies and
 * released once, after on_done; a refused call releases it at once. */
typedef struct taken {
	wstate *w;
	int released;
	bool done_before; /* on_done had run when it was released */
} taken;

static void on_release(void *arg)
{
	taken *t = arg;
	t->released++;
	t->done_before = t->w->done;
}

static void test_file_write_take(void **state)
{
	fixture *f = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/taken.cfg", f->dir);
	wstate *w = fx_keep(f, sizeof(*w)); /* a late on_done writes here */
	taken *t = fx_keep(f, sizeof(*t));
	t->w = w;
	char *text = strdup("global\n  maxconn 10\n");
	regent_file_write_opts o = {.size = sizeof(o), .path = path, .data = text,
	                            .len = strlen(text), .on_done = on_written, .arg = w};
	int err = 1;
	assert_non_null(H->file_write_take(&f->ctx, &o, on_release, t, &err));
	assert_int_equal(err, 0);
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, 0);
	assert_int_equal(t->released, 1);
	assert_true(t->done_before);
	char *got = slurp(path);
	assert_string_equal(got, text);
	free(got);
	free(text); /* released: the test's again */
	/* release NULL: the core frees it (valgrind and ASan see it freed once) */
	memset(w, 0, sizeof(*w));
	o.data = strdup("second\n");
	o.len = 7;
	assert_non_null(H->file_write_take(&f->ctx, &o, NULL, NULL, &err));
	assert_true(run_until(f, &w->done, 10000));
	got = slurp(path);
	assert_string_equal(got, "second\n");
	free(got);
	/* refused (a relative path): released before the call returns */
	t->released = 0;
	o.path = "relative.cfg";
	o.data = "x";
	o.len = 1;
	assert_null(H->file_write_take(&f->ctx, &o, on_release, t, &err));
	assert_int_equal(err, -EINVAL);
	assert_int_equal(t->released, 1);
	o.data = strdup("y");
	assert_null(H->file_write_take(&f->ctx, &o, NULL, NULL, &err)); /* freed by the core */
	/* cancelled: no on_done, released once the write ended */
	memset(w, 0, sizeof(*w));
	t->released = 0;
	o.path = path;
	o.data = "third\n";
	o.len = 6;
	H->file_write_cancel(H->file_write_take(&f->ctx, &o, on_release, t, &err));
	bool released = false;
	for (uint64_t end = regent_now_ms() + 10000; !released && regent_now_ms() < end;) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		released = t->released == 1;
		if (!released)
			usleep(2000);
	}
	assert_true(released);
	assert_false(w->done);
}

static void test_file_write(void **state)
{
	fixture *f = *state;
	char path[128], tmp[140], target[140];
	snprintf(path, sizeof(path), "%s/out.json", f->dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	wstate *w = fx_keep(f, sizeof(*w)); /* a late on_done writes here */
	regent_file_write_opts o = {.size = sizeof(o), .path = path, .data = "{\"a\":1}\n", .len = 8,
	                            .mode = 0640, .on_done = on_written, .arg = w};
	int err = 1;
	assert_non_null(H->file_write(&f->ctx, &o, &err));
	assert_int_equal(err, 0);
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, 0);
	char *got = slurp(path);
	assert_string_equal(got, "{\"a\":1}\n");
	free(got);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_not_equal(access(tmp, F_OK), 0); /* no temporary file left */

	/* A stale temporary file of ours (a crash) is replaced. */
	FILE *fp = fopen(tmp, "w");
	fputs("stale", fp);
	fclose(fp);
	memset(w, 0, sizeof(*w));
	o.data = "second";
	o.len = 6;
	o.mode = 0600;
	assert_non_null(H->file_write(&f->ctx, &o, &err));
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, 0);
	got = slurp(path);
	assert_string_equal(got, "second");
	free(got);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	/* A symlink at the temporary path is refused and its target untouched. */
	snprintf(target, sizeof(target), "%s/target", f->dir);
	fp = fopen(target, "w");
	fputs("precious", fp);
	fclose(fp);
	assert_int_equal(symlink(target, tmp), 0);
	memset(w, 0, sizeof(*w));
	o.data = "evil";
	o.len = 4;
	assert_non_null(H->file_write(&f->ctx, &o, &err));
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, -EEXIST);
	assert_non_null(strstr(w->why, "a symbolic link"));
	assert_non_null(strstr(w->why, tmp));
	got = slurp(target);
	assert_string_equal(got, "precious");
	free(got);
	got = slurp(path);
	assert_string_equal(got, "second"); /* the old file stays */
	free(got);
	assert_int_equal(lstat(tmp, &st), 0);
	assert_true(S_ISLNK(st.st_mode)); /* left alone */
	unlink(tmp);

	/* A missing directory: the error names the file, nothing is left. */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nodir/out.json", f->dir);
	memset(w, 0, sizeof(*w));
	o.path = missing;
	assert_non_null(H->file_write(&f->ctx, &o, &err));
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, -ENOENT);
	assert_non_null(strstr(w->why, "nodir/out.json.tmp"));

	/* Cancelled: no callback, the write itself still completes cleanly. */
	memset(w, 0, sizeof(*w));
	o.path = path;
	o.data = "third";
	o.len = 5;
	regent_file_write *fw = H->file_write(&f->ctx, &o, &err);
	assert_non_null(fw);
	H->file_write_cancel(fw);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_false(w->done);
	assert_int_not_equal(access(tmp, F_OK), 0);

	/* mode 0: 0644, not an unreadable file. */
	memset(w, 0, sizeof(*w));
	o.mode = 0;
	assert_non_null(H->file_write(&f->ctx, &o, &err));
	assert_true(run_until(f, &w->done, 10000));
	assert_int_equal(w->status, 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);

	/* Refused up front. */
	o.path = "relative/out.json";
	assert_null(H->file_write(&f->ctx, &o, &err));
	assert_int_equal(err, -EINVAL);
	o.path = path;
	o.on_done = NULL;
	assert_null(H->file_write(&f->ctx, &o, &err));
	assert_int_equal(err, -EINVAL);
}

static void addr_ok(const char *text, int family, const char *host, unsigned port)
{
	regent_address a;
	char why[320] = "";
	assert_int_equal(regent_address_parse(text, &a, why, sizeof(why)), 0);
	assert_int_equal(a.family, family);
	assert_string_equal(a.host, host);
	assert_int_equal(a.port, port);
	if (family == AF_UNSPEC) {
		assert_int_equal(a.salen, 0);
		return;
	}
	char back[64];
	const void *ip = family == AF_INET ? (const void *)&((struct sockaddr_in *)&a.sa)->sin_addr
	                                   : (const void *)&((struct sockaddr_in6 *)&a.sa)->sin6_addr;
	assert_non_null(inet_ntop(family, ip, back, sizeof(back)));
	assert_string_equal(back, host);
	assert_int_equal(a.sa.ss_family, family);
	assert_int_equal(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), port); /* same offset in v6 */
	assert_int_equal(a.salen, family == AF_INET ? sizeof(struct sockaddr_in)
	                                            : sizeof(struct sockaddr_in6));
}

static void test_address(void **state)
{
	(void)state;
	addr_ok("127.0.0.1:9150", AF_INET, "127.0.0.1", 9150);
	addr_ok("[::1]:80", AF_INET6, "::1", 80);
	addr_ok("[fd00::2]:65535", AF_INET6, "fd00::2", 65535);
	addr_ok("localhost:1", AF_UNSPEC, "localhost", 1);
	addr_ok("etcd-1.example.com:2379", AF_UNSPEC, "etcd-1.example.com", 2379);
	const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
	                     "127.0.0.1:12x", ":9150", "::1:9150", "[::1:9150", "[]:9150",
	                     "[127.0.0.1]:9150", "bad host:80", "", NULL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		regent_address a;
		char why[320] = "";
		assert_int_equal(regent_address_parse(bad[i], &a, why, sizeof(why)), -EINVAL);
		assert_true(why[0] != '\0');
	}
}

/* The host entry: the section's value or default, ENOENT when unset, a
 * key of another type refused, and no byte written past out->size. */
static void test_cfg_address(void **state)
{
	fixture *f = *state;
	regent_config_key keys[] = {
		{"listen", REGENT_CFG_ADDRESS, "127.0.0.1:9150", false, 0, 0, "x"},
		{"peer", REGENT_CFG_ADDRESS, NULL, false, 0, 0, "x"},
		{"name", REGENT_CFG_STRING, "x:1", false, 0, 0, "x"},
	};
	regent_cfg_value vals[] = {
		{.key = &keys[0], .raw = (char *)"[::1]:9150", .set = true},
		{.key = &keys[1], .raw = NULL},
		{.key = &keys[2], .raw = (char *)"x:1"},
	};
	regent_cfg_section sec = {.values = vals, .nvalues = 3};
	f->ctx.sec = &sec;
	struct {
		regent_address a;
		unsigned char guard[16];
	} big;
	memset(&big, 0xa5, sizeof(big));
	big.a.size = sizeof(big.a);
	assert_int_equal(H->cfg_address(&f->ctx, "listen", &big.a), 0);
	assert_int_equal(big.a.family, AF_INET6);
	assert_int_equal(big.a.port, 9150);
	assert_string_equal(big.a.host, "::1");
	assert_int_equal(big.a.size, sizeof(regent_address));
	for (size_t i = 0; i < sizeof(big.guard); i++)
		assert_int_equal(big.guard[i], 0xa5);
	regent_address a = {.size = sizeof(a), .port = 7};
	assert_int_equal(H->cfg_address(&f->ctx, "peer", &a), -ENOENT);
	assert_int_equal(a.port, 7); /* untouched */
	assert_int_equal(H->cfg_address(&f->ctx, "name", &a), -EINVAL); /* a STRING key */
	assert_int_equal(H->cfg_address(&f->ctx, "nope", &a), -EINVAL);
	a.size = sizeof(size_t); /* smaller than 1.4's struct */
	assert_int_equal(H->cfg_address(&f->ctx, "listen", &a), -EINVAL);
	f->ctx.sec = NULL;
}

static void test_health_parts(void **state)
{
	fixture *f = *state;
	regent_ctx *c = &f->ctx;
	H->health_part(c, "registration", true, NULL);
	assert_true(c->healthy);
	H->health_part(c, "discovery", false, "HTTP 500: boom");
	assert_false(c->healthy);
	assert_string_equal(c->health_reason, "discovery: HTTP 500: boom");
	H->health_part(c, "registration", false, "connection refused");
	assert_string_equal(c->health_reason,
	                    "registration: connection refused; discovery: HTTP 500: boom");
	H->health_part(c, "discovery", true, NULL);
	assert_false(c->healthy); /* ok only when every part is */
	assert_string_equal(c->health_reason, "registration: connection refused");
	H->health_part(c, "registration", true, NULL);
	assert_true(c->healthy);
	assert_null(c->health_reason);
	assert_null(c->health_note);
	/* A healthy part's reason is a note, shown only while all are healthy. */
	H->health_part(c, "discovery", true, "the prefix is empty");
	assert_true(c->healthy);
	assert_string_equal(c->health_note, "discovery: the prefix is empty");
	H->health_part(c, "registration", false, "HTTP 503");
	assert_false(c->healthy);
	assert_string_equal(c->health_reason, "registration: HTTP 503");
	H->health_part(c, "registration", true, NULL);
	assert_string_equal(c->health_note, "discovery: the prefix is empty");
	H->health_part(c, "discovery", true, NULL);
	assert_null(c->health_note);
}

/* host->failure_note (ABI 1.10): a daemon away is one warning, the retries
 * (each worded anew) at debug, a reminder a minute; an error is logged when
 * it comes, as is another error. */
static void test_failure_note(void **state)
{
	(void)state;
	regent_failure f = {0};
	bool remind = true;
	assert_int_equal(H->failure_note(&f, false, REGENT_LOG_WARN, false, 1000, &remind), REGENT_LOG_WARN);
	assert_false(remind);
	assert_int_equal(f.since, 1000);
	assert_int_equal(f.count, 1);
	/* other texts at warning level, then the same text: quiet */
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, 2000, &remind), REGENT_LOG_DEBUG);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, true, 3000, &remind), REGENT_LOG_DEBUG);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, 1000 + REGENT_FAILURE_REMIND_MS - 1, &remind),
	                 REGENT_LOG_DEBUG);
	assert_false(remind);
	/* a minute after it was said: the reminder, at its level; then quiet again */
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, 1000 + REGENT_FAILURE_REMIND_MS, &remind),
	                 REGENT_LOG_WARN);
	assert_true(remind);
	assert_int_equal(f.count, 5);
	assert_int_equal(f.since, 1000);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, 2000 + REGENT_FAILURE_REMIND_MS, &remind),
	                 REGENT_LOG_DEBUG);
	assert_false(remind);
	/* an error is a new cause: logged, and so is another error after it */
	uint64_t t = 3000 + REGENT_FAILURE_REMIND_MS;
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_ERROR, false, t, &remind), REGENT_LOG_ERROR);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_ERROR, false, t + 1, &remind), REGENT_LOG_ERROR);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_ERROR, true, t + 2, &remind), REGENT_LOG_DEBUG);
	/* a warning after the error is logged (the part's cause changed) */
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, t + 3, &remind), REGENT_LOG_WARN);
	assert_int_equal(H->failure_note(&f, true, REGENT_LOG_WARN, false, t + 4, &remind), REGENT_LOG_DEBUG);
	/* the part worked again: the next failure is a new one */
	assert_int_equal(H->failure_note(&f, false, REGENT_LOG_WARN, false, t + 10, &remind),
	                 REGENT_LOG_WARN);
	assert_int_equal(f.count, 1);
	assert_int_equal(f.since, t + 10);
}

/* host->failure_text (ABI 1.11): how long and how often, tenths of a
 * second, "failure" once; cut short (NUL-terminated) in a small buffer. */
static void test_failure_text(void **state)
{
	(void)state;
	char buf[48];
	regent_failure f = {.since = 1000, .count = 1};
	assert_ptr_equal(H->failure_text(&f, 1000, buf, sizeof buf), buf);
	assert_string_equal(buf, "0.0 s and 1 failure");
	f.count = 17;
	assert_string_equal(H->failure_text(&f, 9999, buf, sizeof buf), "8.9 s and 17 failures");
	f.count = 4294967295u;
	f.since = 0;
	H->failure_text(&f, UINT64_MAX, buf, sizeof buf);
	assert_string_equal(buf, "18446744073709551.6 s and 4294967295 failures");
	/* a clock read before since (never by the host's now_ms): 0 s, not a wrap */
	f = (regent_failure){.since = 5000, .count = 2};
	assert_string_equal(H->failure_text(&f, 4000, buf, sizeof buf), "0.0 s and 2 failures");
	char small[8];
	assert_string_equal(H->failure_text(&f, 7000, small, sizeof small), "2.0 s a");
	assert_ptr_equal(H->failure_text(&f, 7000, small, 0), small);
}

/* /healthz (report.c, jansson): one entry per section, reasons and notes
 * escaped as JSON, text that is not UTF-8 written \xNN, "ok" false when
 * one plugin is unhealthy, the refused reload's note at the top. */
static void test_health_report(void **state)
{
	(void)state;
	char *empty = regent_report_health(NULL);
	assert_string_equal(empty, "{\"plugins\":{},\"ok\":true}");
	free(empty);
	regent_cfg_section s1 = {.name = "etcd"}, s2 = {.name = "stats"}, s3 = {.name = "stats"};
	regent_ctx trial = {.sec = &s3, .kind = REGENT_KIND_SINK, .replaces = NULL};
	regent_ctx c2 = {.sec = &s2, .kind = REGENT_KIND_SINK, .healthy = true,
	                 .state = CTX_PENDING, .next = &trial};
	regent_ctx c1 = {.sec = &s1, .kind = REGENT_KIND_STORE, .healthy = false,
	                 .health_reason = "no \"leader\"\n", .next = &c2};
	trial.replaces = &c2; /* on trial: not listed */
	regent_agent a = {.ctxs = &c1, .reload_note = "bad \xff byte"};
	char *h = regent_report_health(&a);
	assert_string_equal(h, "{\"plugins\":{\"store etcd\":{\"healthy\":false,\"reason\":"
	                       "\"no \\\"leader\\\"\\n\"},\"sink stats\":{\"healthy\":true,"
	                       "\"note\":\"starting: not confirmed yet\"}},\"ok\":false,"
	                       "\"note\":\"bad \\\\xff byte\"}");
	free(h);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi),
		cmocka_unit_test_setup_teardown(test_older_plugin, helpers_setup, helpers_teardown),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_buffer),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_url_escape),
		cmocka_unit_test(test_http_describe),
		cmocka_unit_test_setup_teardown(test_timers, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_file_write, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_file_write_take, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_spawn, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_deadline, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_spawn_child_state, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_process, helpers_setup, helpers_teardown),
		cmocka_unit_test_setup_teardown(test_health_parts, helpers_setup, helpers_teardown),
		cmocka_unit_test(test_address),
		cmocka_unit_test_setup_teardown(test_cfg_address, helpers_setup, helpers_teardown),
		cmocka_unit_test(test_health_report),
		cmocka_unit_test(test_failure_note),
		cmocka_unit_test(test_failure_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
