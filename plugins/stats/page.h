/* page.h - the stats sink's HTML page (page.c). */
#ifndef REGENT_STATS_PAGE_H
#define REGENT_STATS_PAGE_H

#include "render.h"

/* Appends the whole page for snapshot cat (NULL: none yet). */
void stats_render_page(const regent_host *h, regent_ctx *ctx, const regent_catalog *cat,
                       const char *version, stats_buf *b);

#endif
