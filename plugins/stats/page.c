/* page.c - the stats sink's HTML page (/), for a person: the health of
 * every plugin instance with its reason, each service's instances with
 * what other plugins say about them (the haproxy sink's server state and
 * check result, through host->annotations_foreach), the last catalog
 * changes with each sink's propagation latency, and the last hour as two
 * small inline SVG charts (latency, catalog size).  One page, no script,
 * nothing loaded from anywhere, every value escaped.  Built per request
 * from what the core holds; it owns nothing past the call. */
#include "page.h"
#include "plot.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Whether the core's host table has an entry (ABI 1.2 entries on an
 * older core: the page shows less). */
#define HAS(h, f) ((h)->size >= offsetof(regent_host, f) + sizeof((h)->f))

#define MAX_PUBLISHERS 8 /* columns of annotations at most */

static const char page_style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
    "h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}"
    "table{border-collapse:collapse;min-width:40em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f0f0f0}tbody.svc tr:first-child td{border-top:2px solid #888}"
    ".ok{color:#176117}.bad{color:#a11;font-weight:bold}.warn{color:#8a5a00;font-weight:bold}"
    ".muted{color:#777}.gone td{background:#f7f7f7}small{color:#555}"
    "code{font:12px ui-monospace,monospace}"
    "figure{display:inline-block;margin:0 2em 1em 0}figcaption{font-size:.9em;color:#444}"
    "svg.plot text{font:10px system-ui,sans-serif;fill:#444}";

/* ---- health ---- */

static void html_health(const regent_host *h, regent_ctx *ctx, stats_buf *b, bool *ok_out)
{
	char *text = h->health_json(ctx);
	json_t *root = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	json_t *plugins = json_object_get(root, "plugins");
	*ok_out = json_is_true(json_object_get(root, "ok"));
	stats_buf_puts(b, "<table id=\"plugins\"><thead><tr><th>plugin instance</th><th>health</th>"
	                  "<th>reason</th></tr></thead><tbody>\n");
	const char *name;
	json_t *v;
	json_object_foreach(plugins, name, v) {
		bool healthy = json_is_true(json_object_get(v, "healthy"));
		const char *reason = json_string_value(json_object_get(v, "reason"));
		if (!reason) /* healthy, with something worth saying */
			reason = json_string_value(json_object_get(v, "note"));
		stats_buf_puts(b, "<tr><td>");
		stats_buf_html(b, name);
		stats_buf_printf(b, "</td><td class=\"%s\">%s</td><td>", healthy ? "ok" : "bad",
		                 healthy ? "healthy" : "unhealthy");
		stats_buf_html(b, reason ? reason : "");
		stats_buf_puts(b, "</td></tr>\n");
	}
	if (!root)
		stats_buf_puts(b, "<tr><td colspan=\"3\" class=\"bad\">health unavailable</td></tr>\n");
	stats_buf_puts(b, "</tbody></table>\n");
	json_decref(root);
}

/* ---- annotations ---- */

typedef struct note {
	const char *publisher;
	const regent_annotation *a;
} note;

typedef struct notes {
	note *v;
	size_t n, cap;
	const char *pub[MAX_PUBLISHERS]; /* columns, in the core's order */
	size_t npub;
	bool oom;
	uint64_t now_ns; /* wall clock when the page is made: the ages */
} notes;

static void collect_note(void *arg, const char *publisher, const regent_annotation *a)
{
	notes *ns = arg;
	size_t col = 0;
	while (col < ns->npub && strcmp(ns->pub[col], publisher) != 0)
		col++;
	if (col == ns->npub) {
		if (ns->npub == MAX_PUBLISHERS)
			return;
		ns->pub[ns->npub++] = publisher;
	}
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 64;
		note *v = realloc(ns->v, cap * sizeof(*v));
		if (!v) {
			ns->oom = true;
			return;
		}
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n++] = (note){publisher, a};
}

static int cmp_note(const void *x, const void *y)
{
	const note *a = x, *b = y;
	int c = strcmp(a->a->service, b->a->service);
	if (!c)
		c = strcmp(a->a->id, b->a->id);
	return c ? c : strcmp(a->publisher, b->publisher);
}

static const char *state_class(const char *st)
{
	if (!strcmp(st, "up") || !strcmp(st, "ready") || !strcmp(st, "passing"))
		return "ok";
	if (!strcmp(st, "down") || !strcmp(st, "failed") || !strcmp(st, "critical"))
		return "bad";
	return "warn";
}

/* When the annotation's state last changed (ABI 1.5), 0: unknown or a
 * publisher whose struct ends before the field. */
static uint64_t note_since(const regent_annotation *a)
{
	return a->size >= offsetof(regent_annotation, since_wall_ns) + sizeof(a->since_wall_ns)
	               ? a->since_wall_ns
	               : 0;
}

/* "changed 12 s ago" (under 2 min), "5 min ago" (under 2 h), "3 h ago",
 * worded when the page is made (the publisher gives the time, not the
 * age: its text stays the same while the state does). */
static void age_text(stats_buf *b, uint64_t now_ns, uint64_t since_ns, bool after)
{
	uint64_t s = now_ns > since_ns ? (now_ns - since_ns) / 1000000000ull : 0;
	stats_buf_printf(b, "%schanged %llu %s ago", after ? ", " : "",
	                 (unsigned long long)(s < 120 ? s : s < 7200 ? s / 60 : s / 3600),
	                 s < 120 ? "s" : s < 7200 ? "min" : "h");
}

/* The cells of one row: one per publisher, from the run [from, to) of
 * notes about this instance. */
static void note_cells(stats_buf *b, const notes *ns, size_t from, size_t to)
{
	for (size_t col = 0; col < ns->npub; col++) {
		const regent_annotation *a = NULL;
		for (size_t k = from; k < to && !a; k++)
			if (ns->v[k].publisher == ns->pub[col])
				a = ns->v[k].a;
		if (!a) {
			stats_buf_puts(b, "<td class=\"muted\">-</td>");
			continue;
		}
		stats_buf_printf(b, "<td class=\"state\"><span class=\"%s\">", state_class(a->state));
		stats_buf_html(b, a->state);
		stats_buf_puts(b, "</span>");
		bool detail = a->detail && a->detail[0];
		uint64_t since = note_since(a);
		if (detail || since) {
			stats_buf_puts(b, " <small>");
			if (detail)
				stats_buf_html(b, a->detail);
			if (since)
				age_text(b, ns->now_ns, since, detail);
			stats_buf_puts(b, "</small>");
		}
		if (a->label && a->label[0]) {
			stats_buf_puts(b, " <small class=\"muted\">");
			stats_buf_html(b, a->label);
			stats_buf_puts(b, "</small>");
		}
		stats_buf_puts(b, "</td>");
	}
}

/* ---- the services table ---- */

static void instance_row(stats_buf *b, const regent_instance *in, const notes *ns, size_t from,
                         size_t to)
{
	stats_buf_puts(b, "<tr><td>");
	stats_buf_html(b, in->service);
	stats_buf_puts(b, "</td><td><code>");
	stats_buf_html(b, in->id);
	stats_buf_puts(b, "</code></td><td>");
	stats_buf_html(b, in->address);
	stats_buf_printf(b, "</td><td>%u</td><td>%s</td><td>", in->port,
	                 in->proto == REGENT_PROTO_UDP ? "udp" : "tcp");
	stats_buf_html(b, in->node ? in->node : "");
	stats_buf_puts(b, "</td><td>");
	for (size_t i = 0; i < in->ntags; i++) {
		if (i)
			stats_buf_puts(b, ", ");
		stats_buf_html(b, in->tags[i]);
	}
	stats_buf_puts(b, "</td><td>");
	for (size_t i = 0; i < in->nmeta; i++) {
		if (i)
			stats_buf_puts(b, "<br>");
		stats_buf_html(b, in->meta[i].key);
		stats_buf_puts(b, "=");
		stats_buf_html(b, in->meta[i].value);
	}
	stats_buf_puts(b, "</td>");
	note_cells(b, ns, from, to);
	stats_buf_puts(b, "</tr>\n");
}

/* An instance other plugins still know (a server draining) that is no
 * longer in the catalog. */
static void gone_row(stats_buf *b, const char *service, const char *id, const notes *ns,
                     size_t from, size_t to)
{
	stats_buf_puts(b, "<tr class=\"gone\"><td>");
	stats_buf_html(b, service);
	stats_buf_puts(b, "</td><td><code>");
	stats_buf_html(b, id);
	stats_buf_puts(b, "</code></td><td colspan=\"6\" class=\"muted\">not in the catalog any more"
	                  "</td>");
	note_cells(b, ns, from, to);
	stats_buf_puts(b, "</tr>\n");
}

/* End of the run of notes about (service, id) starting at k. */
static size_t run_end(const notes *ns, size_t k)
{
	size_t e = k + 1;
	while (e < ns->n && !strcmp(ns->v[e].a->service, ns->v[k].a->service) &&
	       !strcmp(ns->v[e].a->id, ns->v[k].a->id))
		e++;
	return e;
}

/* One <tbody> per service: its instances (sorted by id) merged with the
 * notes about it (sorted the same way). */
static void service_body(const regent_host *h, const regent_catalog *cat, stats_buf *b,
                         const char *service, const notes *ns, size_t *k)
{
	const regent_instance *const *insts = NULL;
	size_t n = cat ? h->catalog_instances(cat, service, &insts) : 0;
	size_t cols = 8 + ns->npub;
	stats_buf_puts(b, "<tbody class=\"svc\" data-service=\"");
	stats_buf_html(b, service);
	stats_buf_puts(b, "\">\n");
	size_t j = 0, rows = 0;
	while (j < n || (*k < ns->n && !strcmp(ns->v[*k].a->service, service))) {
		bool have_note = *k < ns->n && !strcmp(ns->v[*k].a->service, service);
		rows++;
		int c = j == n ? 1 : !have_note ? -1 : strcmp(insts[j]->id, ns->v[*k].a->id);
		if (c < 0) {
			instance_row(b, insts[j++], ns, 0, 0);
		} else {
			size_t e = run_end(ns, *k);
			if (c == 0)
				instance_row(b, insts[j++], ns, *k, e);
			else
				gone_row(b, service, ns->v[*k].a->id, ns, *k, e);
			*k = e;
		}
	}
	if (rows == 0) {
		stats_buf_puts(b, "<tr><td>");
		stats_buf_html(b, service);
		stats_buf_printf(b, "</td><td colspan=\"%zu\" class=\"muted\">no instances</td></tr>\n",
		                 cols - 1);
	}
	stats_buf_puts(b, "</tbody>\n");
}

static void services_table(const regent_host *h, const regent_catalog *cat, stats_buf *b,
                           const notes *ns)
{
	const char *const *names = NULL;
	size_t nsvc = cat ? h->catalog_services(cat, &names) : 0;
	stats_buf_puts(b, "<table id=\"catalog\"><thead><tr><th>service</th><th>instance</th>"
	                  "<th>address</th><th>port</th><th>proto</th><th>node</th><th>tags</th>"
	                  "<th>meta</th>");
	for (size_t col = 0; col < ns->npub; col++) {
		stats_buf_puts(b, "<th>");
		stats_buf_html(b, ns->pub[col]);
		stats_buf_puts(b, "</th>");
	}
	stats_buf_puts(b, "</tr></thead>\n");
	/* The union of the catalog's services and those notes name, by name. */
	size_t i = 0, k = 0;
	while (i < nsvc || k < ns->n) {
		int c = i == nsvc ? 1 : k == ns->n ? -1 : strcmp(names[i], ns->v[k].a->service);
		const char *svc = c <= 0 ? names[i] : ns->v[k].a->service;
		service_body(h, cat, b, svc, ns, &k);
		if (c <= 0)
			i++;
	}
	if (nsvc == 0 && ns->n == 0)
		stats_buf_printf(b, "<tbody><tr><td colspan=\"%zu\" class=\"muted\">the catalog is "
		                    "empty</td></tr></tbody>\n",
		                 8 + ns->npub);
	stats_buf_puts(b, "</table>\n");
}

/* ---- recent changes ---- */

static void fmt_time(uint64_t wall_ns, const char *fmt, char *out, size_t len)
{
	time_t t = (time_t)(wall_ns / 1000000000ull);
	struct tm tm;
	out[0] = '\0';
	if (gmtime_r(&t, &tm))
		strftime(out, len, fmt, &tm);
}

typedef struct changes_out {
	stats_buf *b;
	size_t n;
} changes_out;

static void change_row(void *arg, const regent_change *c)
{
	changes_out *o = arg;
	stats_buf *b = o->b;
	char when[32], day[40];
	fmt_time(c->wall_ns, "%H:%M:%S", when, sizeof(when));
	fmt_time(c->wall_ns, "%Y-%m-%d %H:%M:%S UTC", day, sizeof(day));
	o->n++;
	stats_buf_printf(b, "<tr><td title=\"%s\">%s</td><td>", day, when);
	stats_buf_html(b, c->service);
	stats_buf_puts(b, "</td><td><code>");
	stats_buf_html(b, c->id);
	stats_buf_puts(b, "</code></td><td>");
	stats_buf_html(b, c->what);
	stats_buf_puts(b, "</td><td>");
	stats_buf_html(b, c->detail);
	stats_buf_puts(b, "</td><td>");
	for (size_t i = 0; i < c->nsinks; i++) {
		if (i)
			stats_buf_puts(b, "<br>");
		stats_buf_html(b, c->sinks[i]);
		if (!c->applied_ns[i]) {
			stats_buf_puts(b, " <span class=\"warn\">pending</span>");
			continue;
		}
		char lat[48];
		double s = c->applied_ns[i] > c->origin_ns
		               ? (double)(c->applied_ns[i] - c->origin_ns) / 1e9
		               : 0;
		stats_fmt_seconds(s, lat, sizeof(lat));
		stats_buf_puts(b, " ");
		stats_buf_html(b, lat);
	}
	stats_buf_puts(b, "</td></tr>\n");
}

static void changes_table(const regent_host *h, regent_ctx *ctx, stats_buf *b)
{
	stats_buf_puts(b, "<table id=\"changes\"><thead><tr><th>time (UTC)</th><th>service</th>"
	                  "<th>instance</th><th>change</th><th>detail</th>"
	                  "<th>applied by (propagation latency)</th></tr></thead><tbody>\n");
	changes_out o = {b, 0};
	h->changes_foreach(ctx, change_row, &o);
	if (!o.n)
		stats_buf_puts(b, "<tr><td colspan=\"6\" class=\"muted\">no change yet</td></tr>\n");
	stats_buf_puts(b, "</tbody></table>\n");
}

/* ---- the last hour ---- */

typedef struct series {
	double lat[512], size[512];
	size_t n;
	uint32_t applies;
	double worst;
	size_t services, instances;
} series;

static void collect_point(void *arg, const regent_history_point *p)
{
	series *s = arg;
	if (s->n == sizeof(s->lat) / sizeof(s->lat[0]))
		return;
	s->lat[s->n] = p->applies ? p->latency_max : -1;
	s->size[s->n] = (double)p->instances;
	s->n++;
	s->applies += p->applies;
	if (p->applies && p->latency_max > s->worst)
		s->worst = p->latency_max;
	s->services = p->services;
	s->instances = p->instances;
}

static void history_charts(const regent_host *h, regent_ctx *ctx, stats_buf *b)
{
	series *s = calloc(1, sizeof(*s));
	if (!s) {
		b->oom = true;
		return;
	}
	h->history_foreach(ctx, collect_point, s);
	stats_plot lat = {"latency-plot", "propagation latency, worst per 10 s", STATS_PLOT_BARS,
	                  true, s->lat, s->n, 360, "-1 h", "now"};
	stats_plot size = {"size-plot", "instances in the catalog", STATS_PLOT_LINE,
	                   false, s->size, s->n, 360, "-1 h", "now"};
	char worst[48];
	stats_fmt_seconds(s->worst, worst, sizeof(worst));
	stats_buf_puts(b, "<figure>");
	stats_svg_plot(b, &lat);
	stats_buf_printf(b, "<figcaption id=\"latency-caption\">Propagation latency (from a change "
	                    "entering the agent to a sink applying it): %u appl%s in the last hour",
	                 s->applies, s->applies == 1 ? "y" : "ies");
	if (s->applies)
		stats_buf_printf(b, ", the worst %s", worst);
	stats_buf_puts(b, ".</figcaption></figure>\n<figure>");
	stats_svg_plot(b, &size);
	stats_buf_printf(b, "<figcaption id=\"size-caption\">Catalog size: %zu instance%s in %zu "
	                    "service%s now.</figcaption></figure>\n",
	                 s->instances, s->instances == 1 ? "" : "s", s->services,
	                 s->services == 1 ? "" : "s");
	free(s);
}

/* ---- the page ---- */

static void count_local(void *arg, const regent_instance *inst)
{
	(void)inst;
	(*(size_t *)arg)++;
}

void stats_render_page(const regent_host *h, regent_ctx *ctx, const regent_catalog *cat,
                       const char *version, stats_buf *b)
{
	const char *node = h->node(ctx);
	const char *const *names = NULL;
	size_t nsvc = cat ? h->catalog_services(cat, &names) : 0, ninst = 0;
	for (size_t i = 0; i < nsvc; i++)
		ninst += h->catalog_instances(cat, names[i], NULL);
	size_t nlocal = 0;
	h->local_foreach(ctx, count_local, &nlocal);
	bool v12 = HAS(h, history_foreach);

	stats_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	                  "<title>regent");
	if (node) {
		stats_buf_puts(b, " on ");
		stats_buf_html(b, node);
	}
	stats_buf_printf(b, "</title><style>%s</style></head><body>\n<h1>regent", page_style);
	if (node) {
		stats_buf_puts(b, " on <span id=\"node\">");
		stats_buf_html(b, node);
		stats_buf_puts(b, "</span>");
	}
	stats_buf_printf(b,
	                 "</h1>\n<p id=\"summary\">%zu service%s, %zu instance%s in the catalog; "
	                 "%zu local instance%s. Machine-readable: <a href=\"metrics\">metrics</a>, "
	                 "<a href=\"v1/catalog\">catalog</a>, <a href=\"v1/local\">local</a>, "
	                 "<a href=\"healthz\">health</a>.</p>\n",
	                 nsvc, nsvc == 1 ? "" : "s", ninst, ninst == 1 ? "" : "s", nlocal,
	                 nlocal == 1 ? "" : "s");

	bool ok = false;
	stats_buf_puts(b, "<h2>Health</h2>\n");
	html_health(h, ctx, b, &ok);
	stats_buf_printf(b, "<p id=\"overall\" class=\"%s\">%s</p>\n", ok ? "ok" : "bad",
	                 ok ? "All plugin instances are healthy."
	                    : "Some plugin instances are unhealthy: see the reason beside each.");

	notes ns = {.now_ns = h->wall_ns()};
	if (v12)
		h->annotations_foreach(ctx, collect_note, &ns);
	if (ns.oom)
		b->oom = true;
	if (ns.n > 1)
		qsort(ns.v, ns.n, sizeof(*ns.v), cmp_note);
	stats_buf_puts(b, "<h2>Services</h2>\n");
	if (ns.npub)
		stats_buf_puts(b, "<p class=\"muted\">The catalog holds the instances the registries "
		                  "list as alive. The last column(s) say what each plugin sees of them: "
		                  "the haproxy sink, each server's state in haproxy (up, down, drain, "
		                  "maint) and its last check.</p>\n");
	else
		stats_buf_puts(b, "<p class=\"muted\" id=\"no-state\">The catalog holds the instances "
		                  "the registries list as alive. No plugin of this agent reports a "
		                  "state per instance (a haproxy sink in this agent shows each "
		                  "server's state here).</p>\n");
	services_table(h, cat, b, &ns);
	free(ns.v);

	if (v12) {
		stats_buf_puts(b, "<h2>Recent changes</h2>\n");
		changes_table(h, ctx, b);
		stats_buf_puts(b, "<h2>The last hour</h2>\n");
		history_charts(h, ctx, b);
	}

	char when[64];
	fmt_time(h->wall_ns(), "%Y-%m-%d %H:%M:%S UTC", when, sizeof(when));
	stats_buf_printf(b, "<p class=\"muted\">Generated %s by the stats plugin %s.</p>\n"
	                    "</body></html>\n",
	                 when, version);
}
