/* metrics.c - the agent's counters, gauges and histograms, kept in one
 * place for every plugin, and their Prometheus text exposition. */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
};

regent_metrics *regent_metrics_new(void)
{
	regent_metrics *m = regent_xcalloc(1, sizeof(*m));
	m->index = regent_map_new();
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
		regent_metric *after = NULL;
		for (regent_metric *p = m->head; p; p = p->next)
			if (strcmp(p->name, name) == 0)
				after = p;
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
	else
		regent_buf_printf(out, "%.9g", v);
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
}
