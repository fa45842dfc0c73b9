/* model.h - the instance model (model.c): validation of names and values,
 * the hard limits, the core's immutable reference-counted copies and the
 * JSON form stores keep. */
#ifndef REGENT_CORE_MODEL_H
#define REGENT_CORE_MODEL_H

#include <regent/plugin.h>
#include <stddef.h>

/* The core's own immutable, reference-counted copy of an instance.  The
 * blocks host->instance_decode gives plugins are these too (ABI 1.6), so
 * a store's decoded instance and the catalog's are one block
 * (host->catalog_set_decoded). */
typedef struct regent_inst {
	regent_instance pub; /* every pointer points into this allocation, but
	                      * service and node: shared names (model.c) */
	unsigned refs;
	uint32_t magic;      /* REGENT_INST_MAGIC (in the padding: no cost) */
} regent_inst;

#define REGENT_INST_MAGIC 0x72696e73u /* "rins" */

/* Hard limits on one instance (from any source or registry): an instance
 * over one is refused as a whole (one warning naming it), so no single
 * registry entry can make the agent's work grow without bound.  Consul's
 * own limits are 64 meta pairs, keys of 128 and values of 512 bytes. */
#define REGENT_MAX_META 64          /* meta pairs per instance */
#define REGENT_MAX_TAGS 64          /* tags per instance (128 bytes each) */
#define REGENT_MAX_VALUE (64 * 1024) /* bytes of an encoded instance value */

bool regent_valid_service(const char *name);
bool regent_valid_address(const char *addr);
/* Validates and deep-copies; on failure returns NULL and writes why. */
regent_inst *regent_inst_copy(const regent_instance *src, const char *default_node, char *why,
                              size_t whylen);
regent_inst *regent_inst_ref(regent_inst *i);
/* The core's block behind an instance instance_decode gave (ABI 1.6), with
 * a reference taken, or NULL when inst is not such a block (a plugin bug:
 * its magic is not there). */
regent_inst *regent_inst_of_decoded(const regent_instance *inst);
void regent_inst_unref(regent_inst *i);
bool regent_instance_equal(const regent_instance *a, const regent_instance *b);
char *regent_instance_encode(const regent_instance *inst);
int regent_instance_decode(const char *json, size_t len, const char *service, const char *id,
                           regent_instance **out);
/* regent_instance_decode with (fast) or without the reader of the common
 * shape (regent_instance_decode_fast, tried first), for the tests that
 * compare both. */
int regent_instance_decode_ex(const char *json, size_t len, const char *service, const char *id,
                              regent_instance **out, bool fast);
/* The common shape of an instance's JSON (the fields regent writes, strings
 * of printable ASCII without escapes, unsigned integers, no duplicate key,
 * at most REGENT_MAX_TAGS / _META, up to 16 KiB) read without a JSON tree:
 * 0 with *out set (what the jansson path decodes), or 1 (*out NULL) when
 * the value is anything else, valid or not: then the jansson path decides. */
int regent_instance_decode_fast(const char *json, size_t len, const char *service,
                                const char *id, regent_instance **out);
/* Drops the reference instance_decode gave (the block may live on in the
 * catalog, ABI 1.6). */
void regent_instance_free(regent_instance *inst);
const char *regent_proto_name(regent_proto p);

#endif
