/* plot.c - the status page's charts as inline SVG, drawn on the server:
 * an axis from 0 to the largest value (labelled), bars (a latency per
 * interval) or a step line (a size per interval), a <title> and a text
 * summary for readers without the picture.  Output size is bounded by the
 * number of intervals (at most one element or path step per interval). */
#include "plot.h"

#include <stdio.h>

#define PAD_L 56.0 /* room for the y labels */
#define PAD_T 6.0
#define PAD_B 18.0 /* room for the x labels */
#define PAD_R 6.0

void stats_fmt_seconds(double s, char *out, size_t len)
{
	if (!(s >= 0) || s > 1e9) /* NaN, negative, infinite */
		snprintf(out, len, "?");
	else if (s < 0.001)
		snprintf(out, len, "%.0f µs", s * 1e6);
	else if (s < 0.01)
		snprintf(out, len, "%.2f ms", s * 1e3);
	else if (s < 1)
		snprintf(out, len, "%.1f ms", s * 1e3);
	else if (s < 60)
		snprintf(out, len, "%.2f s", s);
	else
		snprintf(out, len, "%lu min %lu s", (unsigned long)s / 60, (unsigned long)s % 60);
}

static void fmt_value(const stats_plot *p, double v, char *out, size_t len)
{
	if (p->seconds)
		stats_fmt_seconds(v, out, len);
	else
		snprintf(out, len, "%.0f", v);
}

void stats_svg_plot(stats_buf *b, const stats_plot *p)
{
	size_t slots = p->slots > p->n ? p->slots : p->n;
	if (slots == 0)
		slots = 1;
	double max = 0;
	size_t with = 0;
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i] >= 0) {
			with++;
			if (p->v[i] > max)
				max = p->v[i];
		}
	double w = STATS_PLOT_W, h = STATS_PLOT_H;
	double sw = w / (double)slots;
	size_t offset = slots - p->n;
	char top[48], last[48] = "";
	fmt_value(p, max, top, sizeof(top));
	for (size_t i = p->n; i-- > 0;)
		if (p->v[i] >= 0) {
			fmt_value(p, p->v[i], last, sizeof(last));
			break;
		}

	stats_buf_puts(b, "<svg class=\"plot\" id=\"");
	stats_buf_html(b, p->id);
	stats_buf_printf(b, "\" role=\"img\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
	                    "xmlns=\"http://www.w3.org/2000/svg\"><title>",
	                 PAD_L + w + PAD_R, PAD_T + h + PAD_B, PAD_L + w + PAD_R, PAD_T + h + PAD_B);
	stats_buf_html(b, p->title);
	if (with)
		stats_buf_printf(b, ": largest %s, latest %s", top, last);
	else
		stats_buf_puts(b, ": no data yet");
	stats_buf_puts(b, "</title>");
	/* Frame, scale labels, x labels. */
	stats_buf_printf(b,
	                 "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
	                 "stroke=\"#bbb\"/>",
	                 PAD_L, PAD_T, w, h);
	stats_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"ymax\">",
	                 PAD_L - 4, PAD_T + 9);
	stats_buf_html(b, top);
	stats_buf_printf(b, "</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">0</text>",
	                 PAD_L - 4, PAD_T + h);
	stats_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", PAD_L, PAD_T + h + 14);
	stats_buf_html(b, p->left ? p->left : "");
	stats_buf_printf(b, "</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", PAD_L + w,
	                 PAD_T + h + 14);
	stats_buf_html(b, p->right ? p->right : "");
	stats_buf_puts(b, "</text>");
	if (!with) {
		stats_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		                    "fill=\"#777\">no data yet</text></svg>",
		                 PAD_L + w / 2, PAD_T + h / 2 + 4);
		return;
	}
	double scale = max > 0 ? h / max : 0;
	if (p->kind == STATS_PLOT_BARS) {
		stats_buf_puts(b, "<g class=\"bars\" fill=\"#3a6ea5\">");
		for (size_t i = 0; i < p->n; i++) {
			if (!(p->v[i] > 0))
				continue;
			double bh = p->v[i] * scale;
			if (bh < 1)
				bh = 1;
			double x = PAD_L + (double)(offset + i) * sw;
			stats_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", x,
			                 PAD_T + h - bh, sw > 1.5 ? sw - 0.5 : 1, bh);
		}
		stats_buf_puts(b, "</g>");
	} else {
		stats_buf_puts(b, "<path class=\"line\" fill=\"none\" stroke=\"#3a6ea5\" "
		                  "stroke-width=\"1.5\" d=\"");
		bool pen = false;
		for (size_t i = 0; i < p->n; i++) {
			if (p->v[i] < 0) {
				pen = false;
				continue;
			}
			double x0 = PAD_L + (double)(offset + i) * sw, y = PAD_T + h - p->v[i] * scale;
			if (pen)
				stats_buf_printf(b, "V%.1fH%.1f", y, x0 + sw);
			else
				stats_buf_printf(b, "M%.1f %.1fH%.1f", x0, y, x0 + sw);
			pen = true;
		}
		stats_buf_puts(b, "\"/>");
	}
	stats_buf_puts(b, "</svg>");
}
