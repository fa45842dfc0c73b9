/* plot.h - the status page's small charts (plot.c): a series of values,
 * one per fixed interval, drawn as inline SVG on the server (no script,
 * nothing loaded), and the formatting of durations for people.  Pure:
 * unit-tested by tests/stats/test_render.c. */
#ifndef REGENT_STATS_PLOT_H
#define REGENT_STATS_PLOT_H

#include "render.h"

#include <stdint.h>

#define STATS_PLOT_W 360 /* drawing area, SVG user units */
#define STATS_PLOT_H 80

typedef enum stats_plot_kind {
	STATS_PLOT_BARS, /* one bar per interval with a value (latency) */
	STATS_PLOT_LINE, /* a step line through every interval (a size) */
} stats_plot_kind;

typedef struct stats_plot {
	const char *id;        /* element id of the <svg> */
	const char *title;     /* "propagation latency (worst per 10 s)" */
	stats_plot_kind kind;
	bool seconds;          /* values are seconds (labels as "12 ms") */
	const double *v;       /* n values, oldest first; a negative value is "no data" */
	size_t n;
	size_t slots;          /* the x axis holds this many intervals (n <= slots: the
	                        * newest at the right edge, the left empty) */
	const char *left, *right; /* x axis labels ("-1 h", "now") */
} stats_plot;

/* Appends <svg role="img" ...> with a <title> and a text description,
 * the y scale from 0 to the largest value (labelled), and the series. */
void stats_svg_plot(stats_buf *b, const stats_plot *p);

/* "850 µs", "12.3 ms", "1.25 s", "2 min 5 s". */
void stats_fmt_seconds(double s, char *out, size_t len);

#endif
