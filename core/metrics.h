/* metrics.h - the agent's counters, gauges and histograms (metrics.c). */
#ifndef REGENT_CORE_METRICS_H
#define REGENT_CORE_METRICS_H

#include <regent/plugin.h>
#include "util.h"

typedef struct regent_metrics regent_metrics;
regent_metrics *regent_metrics_new(void);
void regent_metrics_free(regent_metrics *m);
regent_metric *regent_metrics_get(regent_metrics *m, regent_metric_type type, const char *name,
                                  const char *help, const char *labels);
void regent_metric_add(regent_metric *m, double v);
void regent_metric_set(regent_metric *m, double v);
void regent_metric_observe(regent_metric *m, double seconds);
double regent_metric_value(const regent_metric *m);
void regent_metrics_write(regent_metrics *m, regent_buf *out);

#endif
