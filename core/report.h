/* report.h - what the agent reports about itself (report.c): the /metrics
 * page (the metrics registry's series, the catalog's gauges, this host's
 * instances, the start time) and the /healthz document (jansson), both
 * built from the agent's state; the host table's metrics_write and
 * health_json hand them to the plugins that serve them. */
#ifndef REGENT_CORE_REPORT_H
#define REGENT_CORE_REPORT_H

#include "host.h"
#include "util.h"

/* Appends the Prometheus text exposition of everything the agent counts.
 * The catalog's counts are rendered once per snapshot (held by the agent):
 * a scrape costs O(services), not O(instances). */
void regent_report_metrics(regent_agent *a, regent_buf *out);
/* {"plugins":{"KIND NAME":{"healthy":bool[,"reason":..][,"note":..]},..},
 * "ok":bool[,"note":..]}, compact, malloc'd (free() it); a NULL agent
 * (a plugin validating its config) has no plugins and is ok. */
char *regent_report_health(const regent_agent *a);

#endif
