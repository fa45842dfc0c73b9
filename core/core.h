/* core.h - an umbrella over the core's module headers (not installed),
 * kept for the fuzz targets; the core's own files include the header of
 * each module they use (config.h, loader.h, log.h, metrics.h, model.h,
 * util.h, ...), each saying what its module owns. */
#ifndef REGENT_CORE_H
#define REGENT_CORE_H

#include "config.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "util.h"

#endif
