/* metrics.c - the agent's counters, gauges and histograms, kept in one
 * place for every plugin, and their Prometheus text exposition, which
 * ends with the standard process_* metrics read from /proc (the core
 * writes process_start_time_seconds itself); and the catalog's gauges,
 * bounded by default whatever the fleet's size and read from figures the
 * catalog's flush keeps (O(1) a scrape). */
#include "catalog.h"
#include "metrics.h"
#include "util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,    10};
#define NBUCKETS REGENT_ARRAY_LEN(buckets)

struct regent_metric {
	regent_metric_type type;
	char *name, *help, *labels;
	double value;                 /* counter/gauge; histogram sum */
	uint64_t count;               /* histogram */
	uint64_t bucket[NBUCKETS];
	struct regent_metric *next;
};

struct regent_metrics {
	regent_metric *head, *tail;
	regent_map *index;            /* "name{labels}" -> metric */
	regent_map *last;             /* name -> the last metric of that name in the list */
};

regent_metrics *regent_metrics_new(void)
{
	regent_metrics *m = regent_xcalloc(1, sizeof(*m));
	m->index = regent_map_new();
	m->last = regent_map_new();
	return m;
}

void regent_metrics_free(regent_metrics *m)
{
	if (!m)
		return;
	regent_metric *x = m->head;
	while (x) {
		regent_metric *n = x->next;
		free(x->name);
		free(x->help);
		free(x->labels);
		free(x);
		x = n;
	}
	regent_map_free(m->index, NULL);
	regent_map_free(m->last, NULL);
	free(m);
}

regent_metric *regent_metrics_get(regent_metrics *m, regent_metric_type type, const char *name,
                                  const char *help, const char *labels)
{
	char *key = regent_xasprintf("%s{%s}", name, labels ? labels : "");
	regent_metric *x = regent_map_get(m->index, key);
	if (!x) {
		x = regent_xcalloc(1, sizeof(*x));
		x->type = type;
		x->name = regent_xstrdup(name);
		x->help = regent_xstrdup(help ? help : "");
		x->labels = regent_xstrdup(labels ? labels : "");
		/* Keep metrics of one name together for the exposition. */
		regent_metric *after = regent_map_get(m->last, name);
		regent_map_put(m->last, name, x);
		if (after) {
			x->next = after->next;
			after->next = x;
			if (m->tail == after)
				m->tail = x;
		} else {
			if (m->tail)
				m->tail->next = x;
			else
				m->head = x;
			m->tail = x;
		}
		regent_map_put(m->index, key, x);
	}
	free(key);
	return x;
}

void regent_metric_add(regent_metric *m, double v)
{
	if (m)
		m->value += v;
}

void regent_metric_set(regent_metric *m, double v)
{
	if (m)
		m->value = v;
}

void regent_metric_observe(regent_metric *m, double seconds)
{
	if (!m)
		return;
	m->value += seconds;
	m->count++;
	for (size_t i = 0; i < NBUCKETS; i++)
		if (seconds <= buckets[i])
			m->bucket[i]++;
}

double regent_metric_value(const regent_metric *m)
{
	return m->type == REGENT_METRIC_HISTOGRAM ? (double)m->count : m->value;
}

static void write_num(regent_buf *out, double v)
{
	if (isinf(v))
		regent_buf_printf(out, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		regent_buf_printf(out, "%.0f", v);
	else {
		/* The shortest text that reads back as v: "%.9g" would round a
		 * Unix time such as 1796031870.5 to tens of seconds. */
		char t[40];
		snprintf(t, sizeof(t), "%.15g", v);
		if (strtod(t, NULL) != v)
			snprintf(t, sizeof(t), "%.17g", v);
		regent_buf_printf(out, "%s", t);
	}
}

static void write_sample(regent_buf *out, const char *name, const char *suffix, const char *labels,
                         const char *extra, double v)
{
	bool has = labels && labels[0];
	bool hasx = extra && extra[0];
	regent_buf_printf(out, "%s%s", name, suffix);
	if (has || hasx)
		regent_buf_printf(out, "{%s%s%s}", has ? labels : "", has && hasx ? "," : "",
		                  hasx ? extra : "");
	regent_buf_add(out, " ", 1);
	write_num(out, v);
	regent_buf_add(out, "\n", 1);
}

static void write_process(regent_buf *out);

void regent_metrics_write(regent_metrics *m, regent_buf *out)
{
	const char *last = NULL;
	static const char *const tnames[] = {"", "counter", "gauge", "histogram"};
	for (regent_metric *x = m->head; x; x = x->next) {
		if (!last || strcmp(last, x->name) != 0) {
			regent_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name,
			                  tnames[x->type]);
			last = x->name;
		}
		if (x->type != REGENT_METRIC_HISTOGRAM) {
			write_sample(out, x->name, "", x->labels, NULL, x->value);
			continue;
		}
		for (size_t i = 0; i < NBUCKETS; i++) {
			char le[32];
			snprintf(le, sizeof(le), "le=\"%g\"", buckets[i]);
			write_sample(out, x->name, "_bucket", x->labels, le, (double)x->bucket[i]);
		}
		write_sample(out, x->name, "_bucket", x->labels, "le=\"+Inf\"", (double)x->count);
		write_sample(out, x->name, "_sum", x->labels, NULL, x->value);
		write_sample(out, x->name, "_count", x->labels, NULL, (double)x->count);
	}
	write_process(out);
}

/* ---- the catalog's gauges ---- */

/* A label value: backslash, quote and newline escaped as the text format
 * wants (names and addresses are validated, this is a second guard). */
static void write_label(regent_buf *out, const char *v)
{
	for (;;) {
		size_t run = strcspn(v, "\\\"\n");
		regent_buf_add(out, v, run);
		v += run;
		if (!*v)
			return;
		regent_buf_add(out, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
		v++;
	}
}

/* One series `prefix label"} count` (prefix ends with the opening quote):
 * no printf per line, a per-service page has one per service and node. */
static void write_labelled(regent_buf *out, const char *prefix, const char *label, size_t count)
{
	char num[24];
	size_t i = sizeof(num);
	num[--i] = '\n';
	do
		num[--i] = (char)('0' + count % 10);
	while ((count /= 10) && i > 0);
	regent_buf_add(out, prefix, strlen(prefix));
	write_label(out, label);
	regent_buf_add(out, "\"} ", 3);
	regent_buf_add(out, num + i, sizeof(num) - i);
}

/* The default mode reads three figures the flush keeps with the snapshot
 * (O(1) a scrape whatever the fleet's size); per_service walks the
 * snapshot's sorted services and the catalog's by-node counts (O(services
 * + nodes), one sort of the node names). */
void regent_cat_metrics_write(const regent_cat *c, bool per_service, regent_buf *out)
{
	const regent_catalog *cat = regent_cat_current(c);
	const char *const *names;
	size_t n = regent_catalog_services(cat, &names);
	if (per_service) {
		regent_buf_printf(out, "# HELP regent_catalog_instances Instances in the catalog, by "
		                       "service.\n# TYPE regent_catalog_instances gauge\n");
		for (size_t i = 0; i < n; i++)
			write_labelled(out, "regent_catalog_instances{service=\"", names[i],
			               regent_catalog_count_at(cat, i));
	} else {
		regent_buf_printf(out,
		                  "# HELP regent_catalog_instances Instances in the catalog (by service "
		                  "with [agent] metrics_per_service = true).\n"
		                  "# TYPE regent_catalog_instances gauge\nregent_catalog_instances %zu\n",
		                  regent_catalog_total(cat));
	}
	regent_buf_printf(out,
	                  "# HELP regent_catalog_services Services in the catalog.\n"
	                  "# TYPE regent_catalog_services gauge\nregent_catalog_services %zu\n"
	                  "# HELP regent_catalog_nodes Hosts owning instances in the catalog.\n"
	                  "# TYPE regent_catalog_nodes gauge\nregent_catalog_nodes %zu\n",
	                  n, regent_catalog_nodes(cat));
	if (!per_service)
		return;
	regent_buf_printf(out, "# HELP regent_catalog_node_instances Instances in the catalog, "
	                       "by owning node (the address for entries that name no node)."
	                       "\n# TYPE regent_catalog_node_instances gauge\n");
	const regent_map *bynode = regent_cat_nodes(c);
	size_t nn;
	const char **nodes = regent_map_sorted_keys(bynode, &nn);
	for (size_t i = 0; i < nn; i++)
		write_labelled(out, "regent_catalog_node_instances{node=\"", nodes[i],
		               (size_t)(uintptr_t)regent_map_get(bynode, nodes[i]));
	free(nodes);
}

/* ---- process_* (the names the Prometheus client libraries use) ---- */

static void write_gauge(regent_buf *out, const char *name, const char *type, const char *help,
                        double v)
{
	regent_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	write_sample(out, name, "", NULL, NULL, v);
}

/* The number of open descriptors, or -1.  Linux 6.2 and later give it as
 * the size of /proc/self/fd: one stat, O(1).  Before (Debian 12's 6.1
 * says 0), the directory is read: O(descriptors), and a client agent
 * holds one per haproxy listener (the sink's copies), 5,000 and more at
 * 50,000 instances: milliseconds of the loop per scrape. */
static long open_fds(void)
{
	struct stat st;
	if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
		return (long)st.st_size;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	long nfd = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			nfd++;
	closedir(d);
	return nfd > 0 ? nfd - 1 : 0; /* minus the one opendir holds */
}

static void write_process(regent_buf *out)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	FILE *f = fopen("/proc/self/stat", "re");
	if (f) {
		char buf[1024];
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* Fields after "(comm)": comm may hold spaces and parentheses. */
		char *p = strrchr(buf, ')');
		unsigned long utime = 0, stime = 0, vsize = 0;
		long rss = 0;
		if (p && tick > 0 &&
		    sscanf(p + 2,
		           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
		           "%*d %*u %lu %ld",
		           &utime, &stime, &vsize, &rss) == 4) {
			write_gauge(out, "process_cpu_seconds_total", "counter",
			            "Total user and system CPU time spent in seconds.",
			            (double)(utime + stime) / (double)tick);
			write_gauge(out, "process_resident_memory_bytes", "gauge",
			            "Resident memory size in bytes.", (double)rss * (double)page);
			write_gauge(out, "process_virtual_memory_bytes", "gauge",
			            "Virtual memory size in bytes.", (double)vsize);
		}
	}
	long nfd = open_fds();
	if (nfd >= 0)
		write_gauge(out, "process_open_fds", "gauge", "Number of open file descriptors.",
		            (double)nfd);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		write_gauge(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
		            (double)rl.rlim_cur);
}
