/* consul_util.h - pure helpers of the Consul store plugin (no loop; memory,
 * string map and URL escaping are the host table's, ABI 1.4), shared by the
 * plugin and its unit test: the agent address forms, Go durations, the agent
 * service registration body, the blocking-query index rules, and the
 * decoding of /v1/catalog/services and /v1/health/service answers. */
#ifndef REGENT_CONSUL_UTIL_H
#define REGENT_CONSUL_UTIL_H

#include <regent/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the agent's address ---- */

/* "http://host:port", "https://host:port" (an optional path prefix is
 * kept), "host:port" (= http), or "unix:///abs/path".  On success returns
 * 0 with *base (malloc'd, no trailing '/') the URL prefix requests are
 * built on ("http://localhost" for a socket) and *unix_path (malloc'd, or
 * NULL).  On error returns -EINVAL and writes why. */
int consul_parse_address(const regent_host *h, const char *addr, char **base, char **unix_path,
                         char *why, size_t whylen);

/* url with any "user:password@" replaced by "***@", for log lines.
 * malloc'd. */
char *consul_redact_url(const regent_host *h, const char *url);

/* A Go duration for ms: "15s", "1m", "1500ms". */
void consul_duration(uint64_t ms, char *buf, size_t len);

/* The TTL check of a Consul service id: "service:<cid>" (Consul's own
 * default name for a service's single check).  malloc'd. */
char *consul_check_id(const regent_host *h, const char *cid);

/* The Consul service id of a regent instance id: characters Consul
 * handles everywhere (URL paths, CLI, UI, DNS-less tools): [A-Za-z0-9._-]
 * kept, '/' -> ':', anything else -> '_' and two hex digits.  So
 * "backend-1/0123456789ab/80" -> "backend-1:0123456789ab:80" (registrator's
 * host:container:port), stable across restarts.  The regent id itself
 * travels in the meta "regent-id".  malloc'd. */
char *consul_service_id(const regent_host *h, const char *regent_id);

/* Meta keys the plugin itself writes (so they leave the instance's meta on
 * the way back). */
#define CONSUL_META_PROTO "proto"
#define CONSUL_META_SERVICE_PORT "service_port"
#define CONSUL_META_NODE "node"
#define CONSUL_META_ID "regent-id"     /* the regent instance id */
#define CONSUL_META_HASH "regent-hash" /* hash of the registration (also the check's Notes) */
#define CONSUL_HASH_LEN 17             /* 16 hex digits + NUL */
#define CONSUL_META_MAX 64 /* Consul's limit of pairs */

/* Whether Consul accepts key as a service meta key and it is not one of
 * ours: [A-Za-z0-9_-]{1,128}, not "consul-..." (reserved by Consul). */
bool consul_meta_key_ok(const char *key);

/* The body of PUT /v1/agent/service/register for inst (its node: inst->node,
 * else node).  Instance meta keys Consul would refuse are left out and
 * named in dropped (comma-separated, truncated; "" when none).  malloc'd
 * JSON text. */
/* hash (CONSUL_HASH_LEN, may be NULL) gets the registration's hash, also
 * written to Meta "regent-hash" and to the check's Notes ("regent <hash>"),
 * so that any change of the registration changes the check and shows in
 * /v1/health/state/any, and a restarted regent can tell whether the agent
 * holds exactly what it would register. */
char *consul_register_body(const regent_host *h, const regent_instance *inst, const char *node,
                           uint64_t ttl_ms, uint64_t deregister_after_ms, char *dropped,
                           size_t droppedlen, char *hash);

/* ---- blocking queries ---- */

/* The X-Consul-Index header (decimal uint64) or 0 when absent/bad. */
uint64_t consul_parse_index(const char *header);

/* The index to send with the next query after a successful read that
 * answered `got`, the last one being `prev` (Consul's client rules: an
 * index that went backwards, or 0, restarts from 0).  *reset says that it
 * did. */
uint64_t consul_next_index(uint64_t prev, uint64_t got, bool *reset);

/* ---- decoding answers ---- */

/* /v1/catalog/services: {"name":["tag",...],...}.  Returns the number of
 * services (names and their tags point into *root, which the caller frees
 * with consul_services_free), or -EINVAL with why. */
typedef struct consul_service_entry {
	const char *name;
	const char **tags;
	size_t ntags;
} consul_service_entry;
typedef struct consul_services {
	void *root; /* json_t */
	consul_service_entry *v;
	size_t n;
} consul_services;
int consul_parse_services(const regent_host *h, const char *body, size_t len, consul_services *out,
                          char *why, size_t whylen);
void consul_services_free(consul_services *s);
/* Whether tags holds every one of want (case-insensitive, as Consul's tag
 * filter). */
bool consul_tags_match(const char *const *tags, size_t ntags, const char *const *want,
                       size_t nwant);

/* /v1/health/service/<name>: the instances.  Entries that cannot become an
 * instance (missing ID or port, bad proto or service_port meta) are
 * skipped and counted in *skipped, the first reason in why.  Instances not
 * registered by regent (no "node" meta) get the id "<Node>/<ID>" (Consul
 * IDs are only unique per node) and the Consul node as node.  Returns 0 or
 * -EINVAL (not an array: nothing usable). */
typedef struct consul_instances {
	void *root;          /* json_t */
	regent_instance *v;  /* pointers into root or into the blocks below */
	const regent_instance **ptrs;
	size_t n;
	void **blocks;       /* allocations owned here */
	size_t nblocks;
	bool checkless;      /* some entry (serving or not, skipped or not) has no check
	                      * of its own, only the node's: its changes move no check */
} consul_instances;
#define CONSUL_STATE_PASSING 0x1u
#define CONSUL_STATE_WARNING 0x2u
/* states: which check statuses count as serving (an entry is taken only
 * when every one of its checks is in them).  Entries with the meta
 * "regent-id" get that id.  out->checkless: an entry without a check whose
 * ServiceID is set (a registration without a check). */
int consul_parse_health(const regent_host *h, const char *body, size_t len, const char *service,
                        unsigned states, consul_instances *out, size_t *skipped, char *why,
                        size_t whylen);
void consul_instances_free(consul_instances *s);

/* /v1/health/state/any: one signature per service name (an order-free
 * hash of its checks' node, id, status and ModifyIndex; never 0) put into
 * sigs (host->map_put: name -> (void *)(uintptr_t)sig), and *node_sig the
 * same over node-level checks (serfHealth...).  Returns the number of
 * checks or -EINVAL with why. */
int consul_parse_state(const regent_host *host, const char *body, size_t len, regent_map *sigs,
                       uint64_t *node_sig, char *why, size_t whylen);

/* /v1/agent/services: the services a regent of `node` registered (Meta
 * "node" == node and a "proto" meta).  Each: the Consul id, the regent id
 * (Meta "regent-id", else the Consul id: registrations of regent < 0.2),
 * the hash (Meta "regent-hash", "" when none).  Strings point into root. */
typedef struct consul_agent_service {
	const char *cid, *rid, *hash, *service;
} consul_agent_service;
typedef struct consul_agent_services {
	void *root;
	consul_agent_service *v;
	size_t n;
} consul_agent_services;
int consul_parse_agent_services(const regent_host *h, const char *body, size_t len,
                                const char *node, consul_agent_services *out, char *why,
                                size_t whylen);
void consul_agent_services_free(consul_agent_services *s);

#endif
