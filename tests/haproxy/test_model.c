/* test_model.c - unit tests of the haproxy sink's model (plugins/haproxy/
 * model.c) with a fake host and a fake catalog: bounded work (100,000
 * instances in one service, the per-service limit), slot growth in one step,
 * proxy ids, port conflicts, the empty grace and the port-clash exclusion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core.h"    /* regent_xcalloc */
#include "helpers.h" /* regent_h_strdup */
#include "model.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a fake catalog: services sorted by name, instances by id ---- */

#include "model_fixture.h"

static struct regent_catalog cat;
/* The catalog of the previous update (the model reads its instances, as
 * the plugin keeps its previous snapshot referenced): a shallow copy, whose
 * arrays cat_set/cat_drop keep alive (the graveyard) until the next update
 * is done. */
static struct regent_catalog prevcat;
static void **grave;
static size_t ngrave, gravecap;

void bury(void *p)
{
	if (ngrave == gravecap) {
		gravecap = gravecap ? 2 * gravecap : 1024;
		grave = realloc(grave, gravecap * sizeof(*grave));
		if (!grave)
			abort();
	}
	grave[ngrave++] = p;
}
static uint64_t clock_ms = 1000;
int nwarn; /* warnings logged (model_fixture.h) */
static char last_warn[600];
char all_warn[4096]; /* their texts, one a line */

static uint64_t f_now(void)
{
	return clock_ms;
}

static void f_log(regent_ctx *ctx, regent_log_level lvl, const char *fmt, ...)
{
	(void)ctx;
	va_list ap;
	va_start(ap, fmt);
	if (lvl == REGENT_LOG_WARN) {
		nwarn++;
		vsnprintf(last_warn, sizeof(last_warn), fmt, ap);
		size_t l = strlen(all_warn);
		snprintf(all_warn + l, sizeof(all_warn) - l, "%s\n", last_warn);
	}
	va_end(ap);
}

fsvc *fs(const char *name)
{
	for (size_t i = 0; i < cat.n; i++)
		if (strcmp(cat.svcs[i].name, name) == 0)
			return &cat.svcs[i];
	return NULL;
}

static bool f_is_set(regent_ctx *ctx, const char *sname, const char *key)
{
	(void)ctx;
	fsvc *f = fs(sname);
	if (!f)
		return false;
	if (strcmp(key, "port") == 0)
		return f->port != 0;
	if (strcmp(key, "slots") == 0)
		return f->slots != 0;
	if (strcmp(key, "empty_grace") == 0)
		return f->grace != 0;
	return false;
}

static int64_t f_int(regent_ctx *ctx, const char *sname, const char *key)
{
	(void)ctx;
	fsvc *f = fs(sname);
	if (!f)
		return 0;
	return strcmp(key, "port") == 0 ? f->port : strcmp(key, "slots") == 0 ? f->slots : 0;
}

static uint64_t f_dur(regent_ctx *ctx, const char *sname, const char *key)
{
	(void)ctx;
	fsvc *f = fs(sname);
	return f && strcmp(key, "empty_grace") == 0 ? f->grace : 0;
}

static const char *f_str(regent_ctx *ctx, const char *sname, const char *key)
{
	(void)ctx;
	(void)sname;
	(void)key;
	return NULL;
}

static bool f_valid(const char *name)
{
	return name && name[0];
}

static size_t f_services(const regent_catalog *c, const char *const **names)
{
	*names = c->names;
	return c->n;
}

static size_t f_instances(const regent_catalog *c, const char *name,
                          const regent_instance *const **insts)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->svcs[i].name, name) == 0) {
			*insts = c->svcs[i].ptrs;
			return c->svcs[i].n;
		}
	*insts = NULL;
	return 0;
}

static regent_host host;

static void setup_host(void)
{
	memset(&host, 0, sizeof(host));
	host.log = f_log;
	host.now_ms = f_now;
	host.service_is_set = f_is_set;
	host.service_int = f_int;
	host.service_duration_ms = f_dur;
	host.service_string = f_str;
	host.valid_service = f_valid;
	host.catalog_services = f_services;
	host.catalog_instances = f_instances;
	host.xcalloc = regent_xcalloc; /* the core's ABI 1.4 helpers (regent_core) */
	host.xrealloc = regent_xrealloc;
	host.xstrdup = regent_h_strdup;
	host.xasprintf = regent_xasprintf;
	host.buf_add = regent_buf_add; /* hx_buf: the host's buffer */
	host.buf_puts = regent_h_buf_puts;
	host.buf_printf = regent_buf_printf;
	host.buf_vprintf = regent_buf_vprintf;
	host.buf_free = regent_buf_free;
}

static void bury_svc(fsvc *f)
{
	for (size_t k = 0; k < f->n; k++) {
		bury((char *)f->ptrs[k]->id);
		if (!f->insts) /* allocated one by one (cat_indiv) */
			bury((void *)f->ptrs[k]);
	}
	bury(f->insts);
	bury(f->ptrs);
}

static void grave_empty(void)
{
	for (size_t i = 0; i < ngrave; i++)
		free(grave[i]);
	ngrave = 0;
	free(grave);
	grave = NULL;
	gravecap = 0;
}

/* After an update: cat becomes the previous catalog. */
static void cat_commit(void)
{
	grave_empty();
	prevcat = cat;
	for (size_t i = 0; i < prevcat.n; i++)
		prevcat.names[i] = prevcat.svcs[i].name;
}

void cat_clear(void)
{
	for (size_t i = 0; i < cat.n; i++)
		bury_svc(&cat.svcs[i]);
	grave_empty();
	memset(&cat, 0, sizeof(cat));
	memset(&prevcat, 0, sizeof(prevcat));
}

void model_update(hx_model *m, const char *const *names, size_t n, bool all)
{
	hx_model_update(m, &prevcat, &cat, names, n, all);
	cat_commit();
}

static int fsvc_cmp(const void *a, const void *b)
{
	return strcmp(((const fsvc *)a)->name, ((const fsvc *)b)->name);
}

/* Sets service NAME to n instances "NAME-%07zu" (ids sorted), the k-th on
 * 10.x.y.z:(1000 + k % 50000) with service_port sp(k). */
void cat_set(const char *name, size_t n, long port, uint16_t (*sp)(size_t))
{
	fsvc *f = fs(name);
	if (!f) {
		f = &cat.svcs[cat.n++];
		snprintf(f->name, sizeof(f->name), "%s", name);
	} else {
		bury_svc(f);
	}
	f->port = port;
	f->n = n;
	f->insts = calloc(n + 1, sizeof(*f->insts));
	f->ptrs = calloc(n + 1, sizeof(*f->ptrs));
	static char addrs[256][16];
	for (size_t i = 0; i < 256; i++)
		snprintf(addrs[i], sizeof(addrs[i]), "10.0.0.%zu", i % 250 + 1);
	for (size_t k = 0; k < n; k++) {
		char id[80];
		snprintf(id, sizeof(id), "%s-%07zu", name, k);
		f->insts[k].id = strdup(id);
		f->insts[k].service = f->name;
		f->insts[k].address = addrs[k % 256];
		f->insts[k].port = (uint16_t)(1000 + k % 50000);
		f->insts[k].proto = REGENT_PROTO_TCP;
		f->insts[k].service_port = sp ? sp(k) : 0;
		f->ptrs[k] = &f->insts[k];
	}
	/* keep sorted, names pointing at the (moved) entries */
	qsort(cat.svcs, cat.n, sizeof(cat.svcs[0]), fsvc_cmp);
	for (size_t i = 0; i < cat.n; i++) {
		cat.names[i] = cat.svcs[i].name;
		for (size_t k = 0; k < cat.svcs[i].n && cat.svcs[i].insts; k++) {
			cat.svcs[i].insts[k].service = cat.svcs[i].name;
			cat.svcs[i].ptrs[k] = &cat.svcs[i].insts[k];
		}
	}
}

void cat_drop(const char *name)
{
	fsvc *f = fs(name);
	if (!f)
		return;
	bury_svc(f);
	size_t i = (size_t)(f - cat.svcs);
	memmove(&cat.svcs[i], &cat.svcs[i + 1], (cat.n - i - 1) * sizeof(cat.svcs[0]));
	cat.n--;
	for (size_t j = 0; j < cat.n; j++) {
		cat.names[j] = cat.svcs[j].name;
		for (size_t k = 0; k < cat.svcs[j].n && cat.svcs[j].insts; k++) {
			cat.svcs[j].insts[k].service = cat.svcs[j].name;
			cat.svcs[j].ptrs[k] = &cat.svcs[j].insts[k];
		}
	}
}

/* Service NAME's instances allocated one by one, so that single changes
 * keep every other instance's pointer (as the core's snapshots do). */
void cat_indiv(const char *name)
{
	fsvc *f = fs(name);
	const regent_instance **ptrs = calloc(f->n + 1, sizeof(*ptrs));
	for (size_t k = 0; k < f->n; k++) {
		regent_instance *in = malloc(sizeof(*in));
		*in = *f->ptrs[k];
		in->id = strdup(in->id);
		ptrs[k] = in;
	}
	for (size_t k = 0; k < f->n; k++)
		bury((char *)f->insts[k].id);
	bury(f->insts);
	bury(f->ptrs);
	f->insts = NULL;
	f->ptrs = ptrs;
}

/* Puts one instance (new or replacing the one with its id) into a
 * cat_indiv service; the others keep their pointers. */
void cat_put1(const char *name, const char *id, const char *addr, uint16_t port,
              uint16_t sport)
{
	fsvc *f = fs(name);
	regent_instance *in = calloc(1, sizeof(*in));
	in->id = strdup(id);
	in->service = f->name;
	in->address = addr;
	in->port = port;
	in->proto = REGENT_PROTO_TCP;
	in->service_port = sport;
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(f->ptrs[mid]->id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	bool same = lo < f->n && strcmp(f->ptrs[lo]->id, id) == 0;
	const regent_instance **ptrs = calloc(f->n + 2, sizeof(*ptrs));
	memcpy(ptrs, f->ptrs, lo * sizeof(*ptrs));
	ptrs[lo] = in;
	size_t rest = f->n - lo - same;
	memcpy(ptrs + lo + 1, f->ptrs + lo + same, rest * sizeof(*ptrs));
	if (same) {
		bury((char *)f->ptrs[lo]->id);
		bury((void *)f->ptrs[lo]);
	}
	bury(f->ptrs);
	f->ptrs = ptrs;
	f->n += !same;
}

void cat_del1(const char *name, const char *id)
{
	fsvc *f = fs(name);
	size_t k = 0;
	while (k < f->n && strcmp(f->ptrs[k]->id, id) != 0)
		k++;
	assert_true(k < f->n);
	const regent_instance **ptrs = calloc(f->n + 1, sizeof(*ptrs));
	memcpy(ptrs, f->ptrs, k * sizeof(*ptrs));
	memcpy(ptrs + k, f->ptrs + k + 1, (f->n - k - 1) * sizeof(*ptrs));
	bury((char *)f->ptrs[k]->id);
	bury((void *)f->ptrs[k]);
	bury(f->ptrs);
	f->ptrs = ptrs;
	f->n--;
}

void model_new(hx_model *m)
{
	setup_host();
	hx_model_init(m, NULL, &host);
	m->slots_default = 8;
	m->retries_default = 3;
	m->t_connect = m->t_client = m->t_server = 5000;
	m->inter = 2000;
	m->empty_grace = 60000;
	m->bind_check = false;
	m->grace_over = true;
	m->fd_limit = 0; /* not this machine's: test_fd_cap sets a small one */
	snprintf(m->bind_addr, sizeof(m->bind_addr), "127.0.0.1");
}

void update(hx_model *m, const char *name)
{
	const char *names[] = {name};
	model_update(m, names, 1, false);
}

/* The service's wanted shape runs (its texts shared, as the pipeline
 * does); false when it has none. */
bool run_wanted(svc *v)
{
	hx_cstr_put(v->run.listen);
	hx_cstr_put(v->run.srvopts);
	v->run = (shape){0};
	if (!v->want.listen)
		return false;
	v->run.listen = hx_cstr_ref(v->want.listen);
	v->run.srvopts = hx_cstr_ref(v->want.srvopts);
	v->run.nslots = v->want.nslots;
	v->run.port = v->want.port;
	return true;
}

/* What haproxy.c does after a reload: the wanted shapes run. */
void install(hx_model *m)
{
	for (svc *v = m->svcs; v; v = v->next) {
		if (run_wanted(v)) {
			for (size_t i = 0; i < v->nslots; i++)
				v->slots[i].ap.st = v->slots[i].st == ST_READY ? AP_READY : AP_MAINT;
		}
	}
}

size_t used_slots(const svc *v)
{
	size_t n = 0;
	for (size_t i = 0; i < v->nslots; i++)
		n += v->slots[i].id != NULL;
	return n;
}

static double secs(struct timespec a, struct timespec b)
{
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static uint16_t sp_mixed(size_t k)
{
	return k % 3 == 0 ? 9090 : 8080; /* 8080 is the most common */
}

/* 100,000 instances in one service: the first 10,000 (by id) are routed,
 * one warning names the service; the whole update is O(n log n) (printed:
 * the quadratic code took minutes here; the bound asserted is generous for
 * a loaded machine and sanitizers). */
static void test_big_service(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	cat_set("big", 100000, 0, sp_mixed);
	nwarn = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	update(&m, "big");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double first = secs(t0, t1);
	svc *v = hx_svc_find(&m, "big");
	assert_non_null(v);
	assert_non_null(v->want.listen);
	assert_int_equal(v->want.port, 8080);
	assert_int_equal(used_slots(v), HX_MAX_INSTANCES);
	assert_true(v->want.nslots >= HX_MAX_INSTANCES && v->want.nslots <= HX_MAX_SLOTS);
	assert_int_equal(nwarn, 2); /* the port disagreement and the limit */
	assert_non_null(strstr(all_warn, "service big: 90000 instances over the limit of 10000"));
	assert_non_null(strstr(all_warn, "service big: instances disagree on service_port"));
	/* the same again: no new warning (logged once), same slots */
	install(&m);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	update(&m, "big");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double again = secs(t0, t1);
	assert_int_equal(nwarn, 2);
	assert_int_equal(used_slots(v), HX_MAX_INSTANCES);
	print_message("100,000 instances: first update %.3f s, unchanged again %.3f s\n", first, again);
	assert_true(first < 10.0 && again < 10.0);
	hx_model_free(&m);
	cat_clear();
}

static slot *slot_of(svc *v, const char *id)
{
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i].id && strcmp(v->slots[i].id, id) == 0)
			return &v->slots[i];
	return NULL;
}

uint16_t sp_8080(size_t k)
{
	(void)k;
	return 8080;
}

/* One change in a service of 100,000 costs O(change): an instance that
 * sorts first is routed in the place of the 10,000th, changed in its slot,
 * deleted (the 10,000th comes back); a routed one deleted lets the
 * 10,001st in.  The routed set stays the first 10,000 by id, each update
 * far quicker than the whole service's (printed; bound generous). */
static void test_incremental(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	cat_set("big", 100000, 0, sp_8080);
	cat_indiv("big");
	update(&m, "big");
	install(&m);
	svc *v = hx_svc_find(&m, "big");
	assert_int_equal(used_slots(v), HX_MAX_INSTANCES);
	assert_non_null(slot_of(v, "big-0009999"));
	assert_null(slot_of(v, "big-0010000"));
	size_t nslots = v->want.nslots;
	struct timespec t0, t1;
	double worst = 0;
#define TIMED(stmt)                                                                          \
	do {                                                                                 \
		clock_gettime(CLOCK_MONOTONIC, &t0);                                         \
		stmt;                                                                        \
		clock_gettime(CLOCK_MONOTONIC, &t1);                                         \
		worst = secs(t0, t1) > worst ? secs(t0, t1) : worst;                         \
	} while (0)
	/* added, sorting first: routed; the 10,000th leaves */
	cat_put1("big", "big-0000000a", "10.9.0.1", 9001, 8080);
	TIMED(update(&m, "big"));
	slot *sl = slot_of(v, "big-0000000a");
	assert_non_null(sl);
	char ab[HX_ADDR_MAX];
	assert_string_equal(hx_ip_str(&sl->addr, ab), "10.9.0.1");
	size_t idx = (size_t)(sl - v->slots);
	slot *out = slot_of(v, "big-0009999");
	assert_true(out == NULL || out->st == ST_DRAIN);
	/* changed: the same slot, the new address */
	cat_put1("big", "big-0000000a", "10.9.0.2", 9002, 8080);
	TIMED(update(&m, "big"));
	sl = slot_of(v, "big-0000000a");
	assert_non_null(sl);
	assert_int_equal((size_t)(sl - v->slots), idx);
	assert_string_equal(hx_ip_str(&sl->addr, ab), "10.9.0.2");
	assert_int_equal(sl->port, 9002);
	assert_int_equal(sl->st, ST_READY);
	/* deleted: the 10,000th is routed again */
	cat_del1("big", "big-0000000a");
	TIMED(update(&m, "big"));
	sl = slot_of(v, "big-0000000a");
	assert_true(sl == NULL || sl->st == ST_DRAIN);
	assert_non_null(slot_of(v, "big-0009999"));
	assert_int_equal(slot_of(v, "big-0009999")->st, ST_READY);
	/* a routed one deleted: the 10,001st comes in */
	cat_del1("big", "big-0000042");
	TIMED(update(&m, "big"));
	assert_non_null(slot_of(v, "big-0010000"));
	assert_int_equal(slot_of(v, "big-0010000")->st, ST_READY);
	sl = slot_of(v, "big-0000042");
	assert_true(sl == NULL || sl->st == ST_DRAIN);
	/* an unrouted one changed, one deleted: nothing routed moves */
	cat_put1("big", "big-0050000", "10.9.0.3", 9003, 8080);
	TIMED(update(&m, "big"));
	cat_del1("big", "big-0050001");
	TIMED(update(&m, "big"));
	assert_null(slot_of(v, "big-0050000"));
	/* the routed set is the first 10,000 by id, as a full computation */
	size_t ready = 0;
	for (size_t i = 0; i < v->nslots; i++)
		ready += v->slots[i].id && v->slots[i].st == ST_READY;
	assert_int_equal(ready, HX_MAX_INSTANCES);
	fsvc *f = fs("big");
	for (size_t k = 0; k < HX_MAX_INSTANCES; k++) {
		slot *s2 = slot_of(v, f->ptrs[k]->id);
		assert_non_null(s2);
		assert_int_equal(s2->st, ST_READY);
	}
	assert_int_equal(v->want.nslots, nslots); /* no slot growth: no reload */
	assert_int_equal(v->want.port, 8080);
	print_message("one change in a service of 100,000: worst update %.6f s\n", worst);
	assert_true(worst < 0.5);
#undef TIMED
	hx_model_free(&m);
	cat_clear();
}

/* Addresses are interned handles (addr.c): equal addresses, equal handles;
 * 0 is 0.0.0.0 (a zeroed view); what no slot holds is freed by the
 * collection, what a slot or one of its views holds stays readable; the
 * table goes with the last model.  A slot is 80 bytes. */
static void test_addresses(void **st)
{
	(void)st;
	assert_true(sizeof(slot) <= 80);
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	hx_ip a, b, c, z = {7};
	char ab[HX_ADDR_MAX];
	assert_true(hx_ip_parse("10.1.0.1", &a));
	assert_true(hx_ip_parse("10.1.0.1", &b));
	assert_true(hx_ip_eq(&a, &b));
	assert_true(hx_ip_parse("::ffff:10.1.0.1", &c));
	assert_false(hx_ip_eq(&a, &c));
	assert_string_equal(hx_ip_str(&c, ab), "::ffff:10.1.0.1");
	assert_true(hx_ip_parse("2001:db8::1", &c));
	assert_string_equal(hx_ip_str(&c, ab), "2001:db8::1");
	assert_true(hx_ip_parse("0.0.0.0", &z));
	assert_int_equal(z.h, 0);
	assert_false(hx_ip_parse("not an address", &z));
	assert_int_equal(z.h, 0);
	assert_string_equal(hx_ip_str(&z, ab), "0.0.0.0");
	cat_set("web", 3, 8000, NULL); /* 10.0.0.1-3 */
	update(&m, "web");
	svc *v = hx_svc_find(&m, "web");
	slot *s1 = slot_of(v, "web-0000000");
	assert_non_null(s1);
	assert_true(hx_ip_parse("10.2.9.9", &s1->ap.addr)); /* what haproxy says */
	for (int i = 0; i < 1000; i++) { /* held by no slot */
		char t[32];
		snprintf(t, sizeof(t), "10.3.%d.%d", i / 250, i % 250);
		assert_true(hx_ip_parse(t, &b));
	}
	assert_true(hx_addr_count() >= 1000);
	hx_addr_gc(true);
	assert_int_equal(hx_addr_count(), 4);
	assert_string_equal(hx_ip_str(&s1->ap.addr, ab), "10.2.9.9");
	assert_string_equal(hx_ip_str(&s1->addr, ab), "10.0.0.1");
	assert_string_equal(hx_ip_str(&slot_of(v, "web-0000002")->addr, ab), "10.0.0.3");
	assert_true(hx_ip_parse("10.0.0.2", &b)); /* held: the same handle */
	assert_true(hx_ip_eq(&b, &slot_of(v, "web-0000001")->addr));
	assert_true(hx_ip_parse("10.4.0.1", &b)); /* a freed handle, reused */
	assert_false(hx_ip_eq(&b, &s1->ap.addr));
	assert_string_equal(hx_ip_str(&b, ab), "10.4.0.1");
	/* without force, updates collect once the table has doubled */
	for (int i = 0; i < 1000; i++) {
		char t[32];
		snprintf(t, sizeof(t), "10.5.%d.%d", i / 250, i % 250);
		assert_true(hx_ip_parse(t, &b));
	}
	update(&m, "web");
	assert_true(hx_addr_count() <= 5);
	hx_model_free(&m);
	assert_int_equal(hx_addr_count(), 0);
	cat_clear();
}

/* Which addresses are routed: what inet_pton takes (either family) but
 * the unspecified address, in its canonical form; the dotted quads
 * slots.c checks without inet_pton among them (hand-picked edges, 2,000
 * random quads of 0-269, some with a leading zero or a byte changed, and
 * 1,000 random strings over digits, dots and colons), at the first
 * computation of the service and as single changes. */
static bool pton_ok(const char *a, char *canon)
{
	unsigned char b[16];
	static const unsigned char zero[16];
	if (inet_pton(AF_INET, a, b) == 1)
		return memcmp(b, zero, 4) != 0 && inet_ntop(AF_INET, b, canon, HX_ADDR_MAX);
	if (inet_pton(AF_INET6, a, b) == 1)
		return memcmp(b, zero, 16) != 0 && inet_ntop(AF_INET6, b, canon, HX_ADDR_MAX);
	return false;
}

static void test_address_forms(void **st)
{
	(void)st;
	static const char *const picked[] = {
		"10.0.0.1", "255.255.255.255", "0.0.0.1", "1.0.0.0", "0.0.0.0", "01.2.3.4",
		"1.2.3.04", "1.2.3.00", "1.2.3.256", "1.2.3.1000", "1.2.3", "1.2.3.4.5", "1..2.3",
		".1.2.3", "1.2.3.", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "::1", "::", "::ffff:1.2.3.4",
		"2001:db8::1", "", "a.b.c.d", "999.1.1.1", "100.200.250.255"};
	size_t npicked = sizeof(picked) / sizeof(picked[0]), n = npicked + 3000;
	char **addrs = calloc(n, sizeof(*addrs));
	srand(14);
	for (size_t i = 0; i < n; i++) {
		if (i < npicked) {
			addrs[i] = strdup(picked[i]);
			continue;
		}
		static const char alpha[] = "0123459.:af";
		addrs[i] = calloc(24, 1);
		if (i % 3) { /* four parts of 0-269, some with a leading zero */
			for (int k = 0, o = 0; k < 4; k++)
				o += snprintf(addrs[i] + o, (size_t)(24 - o), rand() % 20 ? "%s%d" : "%s0%d",
				              k ? "." : "", rand() % 270);
			if (rand() % 8 == 0) /* a byte changed */
				addrs[i][(size_t)rand() % strlen(addrs[i])] = alpha[rand() % 11];
			continue;
		}
		size_t len = 1 + (size_t)rand() % 17;
		for (size_t k = 0; k < len; k++)
			addrs[i][k] = alpha[rand() % (int)(sizeof(alpha) - 1)];
	}
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	cat_set("forms", 0, 8000, NULL);
	cat_indiv("forms");
	char id[32], canon[HX_ADDR_MAX], ab[HX_ADDR_MAX];
	for (size_t i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "f%05zu", i);
		cat_put1("forms", id, addrs[i], 8000, 0);
		if (i == n / 2)
			update(&m, "forms"); /* the first half computed whole, the rest as changes */
	}
	update(&m, "forms");
	svc *v = hx_svc_find(&m, "forms");
	assert_non_null(v);
	size_t nok = 0;
	for (size_t i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "f%05zu", i);
		slot *sl = slot_of(v, id);
		bool ok = pton_ok(addrs[i], canon);
		if (ok != (sl != NULL))
			fail_msg("address \"%s\": %s by inet_pton, %s", addrs[i], ok ? "taken" : "refused",
			         sl ? "routed" : "not routed");
		if (sl)
			assert_string_equal(hx_ip_str(&sl->addr, ab), canon);
		nok += ok;
	}
	print_message("%zu of %zu addresses routed\n", nok, n);
	assert_true(nok > n / 4 && nok < n - n / 4); /* both sides well covered */
	hx_model_free(&m);
	cat_clear();
	for (size_t i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
}

/* A burst of 200 instances: one growth step (one reload); a climb one by
 * one from 8 to 200: a logarithmic number of steps, not 25. */
static void test_slot_growth(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	cat_set("burst", 1, 8000, NULL);
	update(&m, "burst");
	install(&m);
	svc *v = hx_svc_find(&m, "burst");
	assert_int_equal(v->want.nslots, 8);
	cat_set("burst", 200, 8000, NULL);
	update(&m, "burst");
	assert_true(v->want.nslots >= 200);
	assert_int_equal(used_slots(v), 200);
	hx_model_free(&m);
	cat_clear();

	model_new(&m);
	size_t steps = 0, last = 0;
	for (size_t n = 1; n <= 200; n++) {
		cat_set("climb", n, 8001, NULL);
		update(&m, "climb");
		v = hx_svc_find(&m, "climb");
		if (v->want.nslots != last) {
			steps++;
			last = v->want.nslots;
			install(&m); /* a reload */
		}
	}
	print_message("climb 1..200 one at a time: %zu slot sizes (reloads), final %zu slots\n",
	              steps, last);
	assert_true(steps <= 7);
	assert_int_equal(used_slots(v), 200);
	hx_model_free(&m);
	cat_clear();
}

/* Proxy ids stay unique and are reused. */
static void test_proxy_ids(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	char name[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "s%04d", i);
		hx_svc_get(&m, name)->recovered = false;
	}
	unsigned maxid = 0;
	for (svc *v = m.svcs; v; v = v->next)
		maxid = v->pxid > maxid ? v->pxid : maxid;
	assert_int_equal(maxid, HX_FIRST_ID + 1999);
	hx_model_gc(&m); /* nobody wants them: all go */
	assert_null(m.svcs);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "t%04d", i);
		hx_svc_get(&m, name);
	}
	hx_model_sort(&m);
	unsigned prev = 0;
	maxid = 0;
	const char *pname = "";
	for (svc *v = m.svcs; v; v = v->next) {
		assert_true(strcmp(pname, v->name) < 0); /* sorted */
		pname = v->name;
		maxid = v->pxid > maxid ? v->pxid : maxid;
		(void)prev;
	}
	assert_int_equal(maxid, HX_FIRST_ID + 1999); /* released ids were reused */
	/* an id read back from a file: taken only when free */
	svc *a = hx_svc_find(&m, "t0000"), *b = hx_svc_find(&m, "t0001");
	assert_false(hx_svc_set_id(&m, a, b->pxid));
	assert_true(hx_svc_set_id(&m, a, HX_FIRST_ID + 5000));
	assert_int_equal(a->pxid, HX_FIRST_ID + 5000);
	hx_model_free(&m);
}

/* Two services deriving the same port: the first by name is routed; when
 * it leaves, the other one is (its outcome flips without its own change). */
static uint16_t sp_7000(size_t k)
{
	(void)k;
	return 7000;
}

static void test_port_conflict(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.empty_grace = 0;
	cat_set("alpha", 2, 0, sp_7000);
	cat_set("beta", 2, 0, sp_7000);
	model_update(&m, NULL, 0, true);
	assert_non_null(hx_svc_find(&m, "alpha")->want.listen);
	assert_null(hx_svc_find(&m, "beta")->want.listen);
	cat_drop("alpha");
	update(&m, "alpha");
	assert_null(hx_svc_find(&m, "alpha") ? hx_svc_find(&m, "alpha")->want.listen : NULL);
	svc *b = hx_svc_find(&m, "beta");
	assert_non_null(b->want.listen);
	assert_int_equal(used_slots(b), 2);
	hx_model_free(&m);
	cat_clear();
}

/* A service whose instances all leave keeps its listen for empty_grace;
 * back within it: same listen, slots filled; after it: gone. */
static void test_empty_grace(void **st)
{
	(void)st;
	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.empty_grace = 5000; /* the [service] key is read the same way (svc_dur) */
	cat_set("web", 3, 0, sp_7000);
	update(&m, "web");
	install(&m);
	svc *v = hx_svc_find(&m, "web");
	char *listen = strdup(v->want.listen);
	cat_set("web", 0, 0, NULL);
	cat_drop("web"); /* the catalog no longer lists it */
	update(&m, "web");
	v = hx_svc_find(&m, "web");
	assert_non_null(v);
	assert_non_null(v->want.listen);
	assert_string_equal(v->want.listen, listen);
	for (size_t i = 0; i < v->nslots; i++)
		assert_true(v->slots[i].st != ST_READY); /* draining or free */
	clock_ms += 2000;
	assert_int_equal(hx_model_tick(&m, &cat), v->empty_since + 5000);
	cat_set("web", 2, 0, sp_7000);
	update(&m, "web");
	assert_string_equal(v->want.listen, listen);
	/* rendered again as haproxy runs it: the installed text, shared */
	assert_ptr_equal(v->want.listen, v->run.listen);
	assert_ptr_equal(v->want.srvopts, v->run.srvopts);
	assert_int_equal(v->empty_since, 0);
	assert_false(v->in_grace);
	/* empty again, and the grace runs out */
	cat_drop("web");
	update(&m, "web");
	assert_non_null(v->want.listen);
	assert_int_equal(m.ndropq, 0); /* in its grace: the listener stays open */
	clock_ms += 5001;
	assert_int_equal(hx_model_tick(&m, &cat), 0);
	v = hx_svc_find(&m, "web");
	assert_non_null(v); /* haproxy still runs it until the reload */
	assert_null(v->want.listen);
	/* ... and its listener may close at once (disable frontend), once */
	size_t nd = 0;
	char **drops = hx_model_drops_take(&m, &nd);
	assert_int_equal(nd, 1);
	assert_string_equal(drops[0], "web");
	free(drops[0]);
	free(drops);
	v->shut = true; /* what runtime.c sets once haproxy answered */
	update(&m, "web");
	assert_int_equal(m.ndropq, 0); /* closed already: not again */
	/* back before the reload: the same section, but its listener is
	 * closed, so the reload is needed all the same */
	cat_set("web", 2, 0, sp_7000);
	update(&m, "web");
	assert_string_equal(v->want.listen, listen);
	assert_true(v->sdiff);
	assert_true(m.nsdiff > 0);
	/* a reload made haproxy read the file: open again, nothing to do */
	hx_model_drops_reset(&m);
	assert_false(v->shut);
	assert_false(v->sdiff);
	assert_int_equal(m.ndropq, 0);
	/* gone again after a reload that still had it (one in flight):
	 * queued again by the reset */
	cat_drop("web");
	update(&m, "web");
	clock_ms += 5001;
	hx_model_tick(&m, &cat);
	drops = hx_model_drops_take(&m, &nd);
	assert_int_equal(nd, 1);
	free(drops[0]);
	free(drops);
	v->shut = true;
	hx_model_drops_reset(&m); /* the new worker listens again */
	assert_false(v->shut);
	assert_int_equal(m.ndropq, 1);
	free(listen);
	hx_model_free(&m);
	cat_clear();
}

/* A port already bound on this host: the service is excluded (reported),
 * the others are not; once the port is free, it is included at the retry. */
static void test_bind_exclusion(void **st)
{
	(void)st;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	socklen_t al = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	long port = ntohs(a.sin_port);
	assert_true(hx_bind_test("127.0.0.1", (unsigned)port) < 0);

	static hx_model m; /* static: see model_fixture.h */
	model_new(&m);
	m.bind_check = true;
	cat_set("clash", 1, port, NULL);
	cat_set("good", 1, port == 65000 ? 65001 : 65000, NULL);
	model_update(&m, NULL, 0, true);
	svc *c = hx_svc_find(&m, "clash"), *g = hx_svc_find(&m, "good");
	if (hx_bind_test("127.0.0.1", (unsigned)g->port) == 0)
		assert_non_null(g->want.listen);
	assert_null(c->want.listen);
	assert_non_null(c->excluded);
	assert_int_equal(m.nexcluded, 1);
	char *note = hx_model_excluded_note(&m);
	assert_non_null(strstr(note, "service clash"));
	assert_non_null(strstr(note, "cannot be bound"));
	free(note);
	/* still held at the retry: still out, retried later again */
	clock_ms += HX_EXCLUDE_RETRY_MS;
	uint64_t next = hx_model_tick(&m, &cat);
	assert_true(next > clock_ms);
	assert_null(c->want.listen);
	close(fd);
	clock_ms = next;
	assert_int_equal(hx_model_tick(&m, &cat), 0);
	assert_non_null(c->want.listen);
	assert_null(c->excluded);
	assert_int_equal(m.nexcluded, 0);
	hx_model_free(&m);
	cat_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_big_service),   cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_slot_growth),   cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_proxy_ids),     cmocka_unit_test(test_port_conflict),
		cmocka_unit_test(test_empty_grace),   cmocka_unit_test(test_bind_exclusion),
		cmocka_unit_test(test_dirty_lists),   cmocka_unit_test(test_fd_cap),
		cmocka_unit_test(test_fd_loose),     cmocka_unit_test(test_fd_recovered),
		cmocka_unit_test(test_address_forms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
