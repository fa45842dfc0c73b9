#!/usr/bin/env python3
"""metrics_check.py - checks one /metrics exposition of regent (issue 17),
parsed by Debian's python3-prometheus-client.

  metrics_check.py BASE MODE SERVICES NODE [MIN_RELOAD_TS]
  metrics_check.py BASE store-ops PLUGIN SEED_ADDRESS

MODE bounded: no per-service or per-node series (the default), a bounded
number of samples whatever SERVICES is; MODE per-service: one
regent_catalog_instances{service} per service and a
regent_catalog_node_instances{node=NODE}, never node="".  Both: the process_*
metrics, regent_config_last_reload_successful == 1 and its timestamp at or
after MIN_RELOAD_TS, regent_catalog_services == SERVICES.  Mode
reload-failed: only regent_config_last_reload_successful == 0.  Mode store-ops
(a store with a watch open, metrics_per_service on): regent_store_ops_total
and regent_store_errors_total of PLUGIN list the same ops, op="watch" is
counted (the stream is open), and an entry that names no node (the seed's
ip:port) is counted under SEED_ADDRESS, never node="".  Prints what
it saw; exits 1 with the reasons otherwise."""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# Samples regent writes whatever the fleet: plugin counters, histograms,
# process_*; generous, the point is that it does not grow with SERVICES.
BOUNDED_SAMPLES = 400


def store_ops(samples, plugin, seed_addr):
    def ops(name):
        return {s.labels.get("op"): s.value for s in samples
                if s.name == name and s.labels.get("plugin") == plugin}
    # the parser names a counter's samples name_total
    req, err = ops("regent_store_ops_total"), ops("regent_store_errors_total")
    errors = []
    if not req or set(req) != set(err):
        errors.append("ops %s vs errors %s" % (sorted(req), sorted(err)))
    if req.get("watch", 0) < 1:
        errors.append("regent_store_ops_total{op=watch} = %r with the watch open" % req.get("watch"))
    nodes = {s.labels.get("node"): s.value for s in samples
             if s.name == "regent_catalog_node_instances"}
    if "" in nodes or nodes.get(seed_addr, 0) < 1:
        errors.append("regent_catalog_node_instances %r, want %s counted, no node=\"\""
                      % (nodes, seed_addr))
    print("store-ops: %d ops listed in both; watch %r; nodes %r" % (len(req), req.get("watch"), nodes))
    return errors


def main():
    if sys.argv[2] == "store-ops":
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        text = opener.open(sys.argv[1] + "/metrics", timeout=10).read().decode("utf-8")
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        errors = store_ops(samples, sys.argv[3], sys.argv[4])
        if errors:
            print("\n".join(errors))
            sys.exit(1)
        return
    base, mode, nsvc, node = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    min_ts = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = opener.open(base + "/metrics", timeout=10).read().decode("utf-8")
    fams = {}
    samples = []
    for fam in text_string_to_metric_families(text):  # raises on a format error
        fams[fam.name] = fam
        samples.extend(fam.samples)

    def val(name, **labels):
        for s in samples:
            if s.name == name and s.labels == labels:
                return s.value
        return None

    errors = []
    ok = val("regent_config_last_reload_successful")
    if mode == "reload-failed":
        if ok != 0:
            errors.append("regent_config_last_reload_successful = %r, want 0" % ok)
    else:
        if ok != 1:
            errors.append("regent_config_last_reload_successful = %r, want 1" % ok)
        ts = val("regent_config_last_reload_success_timestamp_seconds")
        if ts is None or ts < min_ts:
            errors.append("regent_config_last_reload_success_timestamp_seconds = %r, want >= %r"
                          % (ts, min_ts))
        for name, typ in (("process_resident_memory_bytes", "gauge"),
                          ("process_cpu_seconds", "counter"),  # the parser drops _total
                          ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                          ("process_start_time_seconds", "gauge")):
            if name not in fams or fams[name].type != typ or not fams[name].samples:
                errors.append("%s (%s) missing" % (name, typ))
        if (val("process_resident_memory_bytes") or 0) <= 0:
            errors.append("process_resident_memory_bytes not positive")
        if val("regent_catalog_services") != nsvc:
            errors.append("regent_catalog_services = %r, want %d"
                          % (val("regent_catalog_services"), nsvc))
        by_svc = [s for s in samples if "service" in s.labels]
        by_node = [s for s in samples if s.name == "regent_catalog_node_instances"]
        if mode == "bounded":
            if by_svc or by_node:
                errors.append("%d per-service and %d per-node series without "
                              "metrics_per_service" % (len(by_svc), len(by_node)))
            if len(samples) > BOUNDED_SAMPLES:
                errors.append("%d samples with %d services, want at most %d"
                              % (len(samples), nsvc, BOUNDED_SAMPLES))
            if val("regent_catalog_instances") != nsvc:
                errors.append("regent_catalog_instances = %r, want %d"
                              % (val("regent_catalog_instances"), nsvc))
            if val("regent_catalog_nodes") != 1:
                errors.append("regent_catalog_nodes = %r, want 1" % val("regent_catalog_nodes"))
        elif mode == "per-service":
            svc = [s for s in samples if s.name == "regent_catalog_instances"]
            if len(svc) != nsvc or any(s.value != 1 or not s.labels.get("service") for s in svc):
                errors.append("%d regent_catalog_instances{service} series, want %d of value 1"
                              % (len(svc), nsvc))
            nodes = {s.labels.get("node"): s.value for s in by_node}
            if nodes != {node: float(nsvc)}:
                errors.append("regent_catalog_node_instances %r, want {%r: %d}"
                              % (nodes, node, nsvc))
        else:
            errors.append("unknown mode %r" % mode)
    print("%s: %d families, %d samples" % (mode, len(fams), len(samples)))
    if errors:
        print("\n".join(errors))
        sys.exit(1)


if __name__ == "__main__":
    main()
