#!/usr/bin/env python3
"""prop_analyze.py - propagation bench: match Docker events to haproxy's runtime state.

  prop_analyze.py DIR STORE TARGET_MS ROWS.jsonl LABEL DEBOUNCE_MS

DIR holds plan.tsv (prop_drive.py: seq container service addr port start|kill issued_ns),
events-*.jsonl (dockev.py), poll.jsonl (hapoll.py), floor-*.json (floors.py); per-event.csv
is written there.

For each event: start = Docker's `start` event timeNano -> the first poll in which haproxy
routes to SERVICE ADDR:PORT; kill = Docker's `kill` event timeNano (regent takes a container
down on `kill`, before `die`) -> the first poll in which it no longer does.  Only polls before
the driver's next event count: a change not shown by then is "never shown" (before, a kill
the driver gave up on after its timeout took the same container's next kill, 10 cycles on, as
its own: ~19 s, which also made the kill p99 ~200 ms by interpolation).  The path is
"reload" when the worker that shows the change is not the one that ran at the time of the
event (the change came with a reload), else "fast" (runtime API).

A start is also timed to the first poll in which haproxy has the runtime state the agent sets
for the joiner (address, state ready, weight back; a checked joiner is still down until its
first check passes): "docker start -> runtime state set", beside "-> haproxy" (routes to it),
which since a joiner of a checked service starts pending includes haproxy's check schedule.
"""
import csv
import glob
import json
import os
import sys


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def stats_row(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90), "p99": pct(xs, 99),
            "max": max(xs) if xs else None}


def main():
    d, store, target_ms, rows_f = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    label = sys.argv[5] if len(sys.argv) > 5 else store
    debounce = float(sys.argv[6]) if len(sys.argv) > 6 else 50.0
    plan = []
    with open(os.path.join(d, "plan.tsv")) as f:
        for line in f:
            seq, name, svc, addr, port, kind, issued = line.split()
            plan.append((int(seq), name, svc, addr, port, kind, int(issued)))
    evs = {}  # (name, action) -> [events sorted by time]
    deliver = []
    for fn in glob.glob(os.path.join(d, "events-*.jsonl")):
        for line in open(fn):
            e = json.loads(line)
            if not e.get("tn"):
                continue
            evs.setdefault((e.get("name"), e.get("a")), []).append(e)
            if e.get("a") in ("start", "kill"):
                deliver.append((e["rx"] - e["tn"]) / 1e6)
    for v in evs.values():
        v.sort(key=lambda e: e["tn"])
    polls = []
    rtt = []
    for line in open(os.path.join(d, "poll.jsonl")):
        p = json.loads(line)
        if "rtt" in p:
            rtt = [x / 1e6 for x in p["rtt"]]
        elif "pid" in p:
            polls.append(p)
    polls.sort(key=lambda p: p["t"])

    def pid_at(t):
        pid = None
        for p in polls:
            if p["t"] > t:
                break
            pid = p["pid"]
        return pid

    def first(key, field, after, before):
        for p in polls:
            if p["t"] >= before:
                break
            if p["t"] >= after and key in p.get(field, ()):
                return p
        return None

    samples = {}
    per = []
    lost = {"start": 0, "kill": 0}
    plan.sort()
    for i, (seq, name, svc, addr, port, kind, issued) in enumerate(plan):
        key = "%s %s:%s" % (svc, addr, port)
        # A change shows before the driver's next event, or not at all: a later poll is about
        # a later event (the same container's next cycle, after the driver's timeout).
        until = plan[i + 1][6] if i + 1 < len(plan) else float("inf")
        field = "up" if kind == "start" else "down"
        # Docker's event for this request: the first one at or after the API call
        e = next((x for x in evs.get((name, kind), []) if x["tn"] >= issued - 1000000), None)
        if not e:
            lost[kind] += 1
            per.append([seq, name, svc, kind, "", "", "", "no docker event", ""])
            continue
        tn = e["tn"]
        p = first(key, field, tn, until)
        if not p:
            lost[kind] += 1
            per.append([seq, name, svc, kind, tn, "", "", "never shown", ""])
            continue
        path = "reload" if pid_at(tn) != p["pid"] else "fast"
        ms = (p["t"] - tn) / 1e6
        samples.setdefault((kind, path), []).append(ms)
        samples.setdefault((kind, "all"), []).append(ms)
        set_ms = ""
        if kind == "start":
            q = first(key, "set", tn, until)
            if q and q["t"] <= p["t"]:
                qpath = "reload" if pid_at(tn) != q["pid"] else "fast"
                set_ms = "%.3f" % ((q["t"] - tn) / 1e6)
                samples.setdefault(("set", qpath), []).append((q["t"] - tn) / 1e6)
                samples.setdefault(("set", "all"), []).append((q["t"] - tn) / 1e6)
        per.append([seq, name, svc, kind, tn, p["t"], "%.3f" % ms, path, set_ms])
    with open(os.path.join(d, "per-event.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seq", "container", "service", "event", "docker_time_ns", "haproxy_seen_ns", "ms", "path",
                    "runtime_state_set_ms"])
        w.writerows(per)
    rows = []
    for kind in ("start", "set", "kill"):
        for path in ("fast", "reload", "all"):
            xs = samples.get((kind, path), [])
            if not xs:
                continue
            what = ("docker start -> haproxy runtime state set (addr, ready, check pending)"
                    if kind == "set" else "docker %s -> haproxy" % kind)
            r = {"bench": "propagation", "section": label,
                 "metric": "%s (%s)" % (what, "fast path" if path == "fast"
                                        else "reload" if path == "reload" else "all"),
                 "unit": "ms"}
            r.update(stats_row(xs))
            if path == "fast":
                r["target"] = "p99 <= %g ms" % target_ms
                r["missed"] = "met" if r["p99"] <= target_ms else "MISSED"
            rows.append(r)
    fast = samples.get(("start", "fast"), []) + samples.get(("kill", "fast"), [])
    if fast:
        r = {"bench": "propagation", "section": label, "metric": "all events (fast path)",
             "unit": "ms", "target": "p99 <= %g ms" % target_ms}
        r.update(stats_row(fast))
        r["missed"] = "met" if r["p99"] <= target_ms else "MISSED"
        rows.append(r)
    for kind in ("start", "kill"):
        if lost[kind]:
            rows.append({"bench": "propagation", "section": label,
                         "metric": "docker %s never shown in haproxy" % kind, "value": lost[kind],
                         "unit": "events", "target": "0", "missed": "MISSED"})
    # floors
    floors = [("docker /events delivery (timeNano -> event read)", deliver)]
    for fn in sorted(glob.glob(os.path.join(d, "floor-*.json"))):
        fl = json.load(open(fn))
        xs = [x / 1e6 for x in fl["ns"]]
        what = {"etcd-watch": "floor: etcd put -> watch event (v3 JSON gateway)",
                "consul-block": "floor: consul-emulator register -> blocking query wakes",
                "admin-rtt": "floor: one admin-socket round trip (show info;show servers state)"}[fl["what"]]
        floors.append((what, xs))
    floors.append(("poller: admin-socket round trip during the run", rtt))
    for what, xs in floors:
        if xs:
            r = {"bench": "propagation", "section": label, "metric": what, "unit": "ms"}
            r.update(stats_row(xs))
            rows.append(r)
    # regent's own share: fast-path p50 minus the pieces' p50
    fl = {w: pct(xs, 50) for w, xs in floors if xs}
    for kind in ("start", "set", "kill"):
        xs = samples.get((kind, "fast"), [])
        if not xs:
            continue
        pieces = sum(v for w, v in fl.items() if w.startswith("docker /events") or
                     w.startswith("floor: etcd") or w.startswith("floor: consul") or
                     w.startswith("floor: one admin"))
        rows.append({"bench": "propagation", "section": label,
                     "metric": "regent's share: %s fast-path p50 minus the floors' p50" % (
                         "start (runtime state set)" if kind == "set" else kind),
                     "value": pct(xs, 50) - pieces, "unit": "ms",
                     "note": "client agent debounce %g ms (leading edge: a change after a quiet period does not wait it)" % debounce})
    with open(rows_f, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
