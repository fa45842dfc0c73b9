#!/usr/bin/env python3
"""soak_tool.py - the driver of `bench/run soak` (bench/lib/soak.sh).

  soak_tool.py base N LO HI PORTSFILE   the first of N consecutive ports in LO..HI free on
                                        127.0.0.1 and not in the harness's PORTSFILE
  soak_tool.py run SPEC.json            the soak: samples, signals and writes for its
                                        duration, then the result rows (JSON lines) on stdout

SPEC (written by soak.sh): store ("etcd" or "consul": ep is then the agent's URL), duration_s, warmup_s, sample_s, hup_s, newsvc_s, ep, prefix,
instances, out (a directory), smoke (true: the growth rows are shown, not judged), metrics (the client's /metrics URL), haproxy_cfg (the file the
client's managed haproxy runs), newsvc_ports (ports for the services the soak adds), agents:
{"client"|"register": {"pid", "ini", "log", "toggle": [section, key, value_a, value_b]}}.

While it runs: every sample_s each agent's memory (VmRSS, RssAnon), open descriptors,
threads and CPU; the haproxy processes running the client's file; the client's catalog total
(/metrics) against the registry's count (etcd's keys, or the Consul agent's services whose
checks pass, the same moment); /metrics is also
scraped every 5 s like a Prometheus would.  Every hup_s both agents get SIGHUP after one key
of their file changed (so every reload replaces a plugin instance: make-before-break, the
store re-attaching its lease); every newsvc_s a service of 5 instances is written straight
into the registry (etcd keys, or services of the Consul agent) and deleted half a period later (the haproxy reload path).  The rows compare the
figures after the warm-up with those at the end; their targets are fixed here, before any run.
"""
import base64
import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scale_tool  # noqa: E402  (the bench's shared helpers)
from scale_tool import b64, cpu_ns, inst_value  # noqa: E402

KIB = 1024


class Etcd(scale_tool.Etcd):
    """scale_tool's client, connecting again once when its kept connection broke (a soak
    outlives idle connections), with the soak's writes and reads."""
    def __init__(self, ep, prefix):
        super().__init__(ep)
        self.ep, self.prefix = ep, prefix

    def post(self, path, body):
        try:
            return super().post(path, body)
        except (OSError, http.client.HTTPException):
            super().__init__(self.ep)
            return super().post(path, body)

    def add_service(self, name, n, sport):
        ops = []
        for i in range(n):
            key = "%s%s/soak-writer/i%d/8000" % (self.prefix, name, i)
            ops.append({"request_put": {"key": b64(key), "value": b64(inst_value("127.3.0.%d" % (i + 1), 30000 + i, sport))}})
        self.post("/v3/kv/txn", {"success": ops})

    def del_service(self, name, n):
        self.post("/v3/kv/deleterange", {"key": b64(self.prefix + name + "/"),
                                          "range_end": b64(self.prefix + name + "0")})

    def instances(self):
        """{(service, address, port)} of every key under the prefix."""
        out, key, end = set(), self.prefix, self.prefix[:-1] + chr(ord(self.prefix[-1]) + 1)
        while True:
            r = self.post("/v3/kv/range", {"key": b64(key), "range_end": b64(end), "limit": 5000})
            kvs = r.get("kvs", [])
            for kv in kvs:
                k = base64.b64decode(kv["key"]).decode()
                v = json.loads(base64.b64decode(kv["value"]))
                out.add((k[len(self.prefix):].split("/", 1)[0], v["address"], int(v["port"])))
            if not r.get("more"):
                return out
            key = base64.b64decode(kvs[-1]["key"]).decode() + "\0"


class Consul:
    """The same three operations against a Consul agent (the emulator or a real one)."""
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    def req(self, method, path, body=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            c.request(method, path, None if body is None else json.dumps(body))
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:200]))
            return json.loads(data) if data else None
        finally:
            c.close()

    def passing(self):
        """The agent's services whose every check passes (what a client with health_states =
        passing routes to), by service ID."""
        svcs = self.req("GET", "/v1/agent/services")
        checks = self.req("GET", "/v1/agent/checks")
        bad = {c.get("ServiceID") for c in checks.values() if c.get("Status") != "passing"}
        return {sid: v for sid, v in svcs.items() if v.get("Service") != "consul" and sid not in bad}

    def count(self, prefix):
        """`prefix` is not used (Consul has no key prefix)."""
        return len(self.passing())

    def instances(self):
        return {(v["Service"], v.get("Address", ""), int(v["Port"])) for v in self.passing().values()}

    def add_service(self, name, n, sport):
        for i in range(n):
            self.req("PUT", "/v1/agent/service/register",
                     {"ID": "%s-i%d" % (name, i), "Name": name, "Address": "127.3.0.%d" % (i + 1),
                      "Port": 30000 + i, "Meta": {"service_port": str(sport)}})

    def del_service(self, name, n):
        for i in range(n):
            self.req("PUT", "/v1/agent/service/deregister/%s-i%d" % (name, i))


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0])
            elif k == "Threads":
                out[k] = int(v)
    return out


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def haproxy_procs(cfg):
    """pids of the processes running haproxy with the client's file."""
    n = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            c = cmdline(p)
            if "haproxy" in c.split(" ", 1)[0] and cfg in c:
                n.append(int(p))
    return n


def get(url, path, timeout=30):
    """The body of GET path on url's host and port."""
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", path)
        return c.getresponse().read()
    finally:
        c.close()


def metrics(url):
    m = {}
    for line in get(url, urllib.parse.urlsplit(url).path, 10).decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
    return m


def client_instances(url):
    """{(service, address, port)} of the client's catalog (the stats sink's /v1/catalog)."""
    doc = json.loads(get(url, "/v1/catalog"))
    return {(name, i["address"], int(i["port"])) for name, insts in doc["services"].items() for i in insts}


def set_key(path, section, key, value):
    """Rewrites `key = ...` in [section] of the INI file at path (atomically)."""
    lines = open(path).read().split("\n")
    cur, done = None, False
    for i, l in enumerate(lines):
        s = l.strip()
        if s.startswith("["):
            cur = s.strip("[]").strip()
        elif cur == section and s.split("=")[0].strip() == key:
            lines[i] = "%s = %s" % (key, value)
            done = True
    if not done:
        raise RuntimeError("%s: no %s in [%s]" % (path, key, section))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.rename(tmp, path)


def ours(pid, ini):
    """The pid still runs regent with this file (never signal a recycled pid)."""
    c = cmdline(pid)
    return "regent" in c and ini in c


def cmd_base(n, lo, hi, portsf):
    taken = set()
    try:
        taken = {int(l) for l in open(portsf) if l.strip()}
    except OSError:
        pass
    p = lo
    while p + n - 1 <= hi:
        ok = True
        for q in range(p, p + n):
            if q in taken:
                ok = False
            else:
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
                finally:
                    s.close()
            if not ok:
                p = q + 1
                break
        if ok:
            print(p)
            return 0
    return 1


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def slope_per_h(pts):
    """Least-squares slope of (t_s, v) points, per hour."""
    if len(pts) < 3:
        return 0.0
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in pts) / den * 3600


def cmd_run(specf):
    spec = json.load(open(specf))
    prefix = spec["prefix"].rstrip("/") + "/"
    e = Consul(spec["ep"]) if spec.get("store") == "consul" else Etcd(spec["ep"], prefix)
    agents = spec["agents"]
    out = spec["out"]
    samples, events = [], []
    t_start = time.monotonic()
    t_end = t_start + spec["duration_s"]
    next_sample = t_start + 1
    next_scrape = t_start + 5
    next_hup = t_start + spec["hup_s"] if spec["hup_s"] else None
    next_new = t_start + spec["newsvc_s"] / 2 if spec["newsvc_s"] else None
    hups = 0
    flip = {name: False for name in agents}
    extra = None  # (name, keys, delete_at)
    extra_n = 0
    ports = spec["newsvc_ports"]
    mismatches = []
    scrape_errors = 0

    def sample(now):
        s = {"t": round(now - t_start, 3)}
        for name, a in agents.items():
            pid = a["pid"]
            if not ours(pid, a["ini"]):
                raise RuntimeError("%s agent (pid %d) is gone" % (name, pid))
            st = proc_status(pid)
            s[name] = {"rss": st["VmRSS"], "anon": st["RssAnon"], "hwm": st["VmHWM"],
                       "threads": st["Threads"], "fds": len(os.listdir("/proc/%d/fd" % pid)),
                       "cpu_ns": cpu_ns(pid)}
        hp = haproxy_procs(spec["haproxy_cfg"])
        s["haproxy"] = len(hp)
        want = e.count(prefix)
        m = metrics(spec["metrics"])
        have = int(m.get("regent_catalog_instances", -1))
        s["registry"], s["catalog"] = want, have
        if have != want:
            # A change in flight, or a catalog that went wrong: look every 0.2 s until both
            # agree (at most 60 s) and keep how long they differed.
            t0 = time.monotonic()
            while have != want and time.monotonic() - t0 < 60:
                time.sleep(0.2)
                want = e.count(prefix)
                have = int(metrics(spec["metrics"]).get("regent_catalog_instances", -1))
            mismatches.append({"t": s["t"], "s": round(time.monotonic() - t0, 2), "registry": want,
                               "catalog": have, "agreed": have == want})
        s["reloads"] = m.get("regent_reloads_total")
        s["reload_errors"] = m.get("regent_reload_errors_total")
        samples.append(s)

    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        if extra and now >= extra[2]:
            e.del_service(extra[0], extra[1])
            events.append({"t": round(now - t_start, 3), "what": "service %s deleted" % extra[0]})
            extra = None
        elif next_new and now >= next_new and not extra:
            name = "soakx%05d" % extra_n
            sport = ports[extra_n % len(ports)]
            e.add_service(name, 5, sport)
            events.append({"t": round(now - t_start, 3), "what": "service %s added (port %d)" % (name, sport)})
            extra = (name, 5, now + spec["newsvc_s"] / 2)
            extra_n += 1
            next_new += spec["newsvc_s"]
        elif next_hup and now >= next_hup:
            for name, a in agents.items():
                sec, key, va, vb = a["toggle"]
                flip[name] = not flip[name]
                set_key(a["ini"], sec, key, vb if flip[name] else va)
                if not ours(a["pid"], a["ini"]):
                    raise RuntimeError("%s agent (pid %d) is gone" % (name, a["pid"]))
                os.kill(a["pid"], signal.SIGHUP)
            hups += 1
            events.append({"t": round(now - t_start, 3), "what": "SIGHUP %d" % hups})
            next_hup += spec["hup_s"]
        elif now >= next_sample:
            sample(now)
            next_sample += spec["sample_s"]
        elif now >= next_scrape:
            try:
                metrics(spec["metrics"])
            except (OSError, http.client.HTTPException):
                scrape_errors += 1
            next_scrape += 5
        else:
            time.sleep(0.05)
    if extra:
        e.del_service(extra[0], extra[1])
        events.append({"t": round(time.monotonic() - t_start, 3), "what": "service %s deleted" % extra[0]})
    time.sleep(spec["sample_s"])
    sample(time.monotonic())
    # The end state: the register agent's churn stopped (a last reload with churn = 0, which
    # also moves every instance back to its first port), then the client's catalog must hold
    # exactly the registry's instances, compared one by one.
    reg = agents.get("register")
    if reg and reg.get("churn_key"):
        set_key(reg["ini"], reg["churn_key"][0], reg["churn_key"][1], "0ms")
        if ours(reg["pid"], reg["ini"]):
            os.kill(reg["pid"], signal.SIGHUP)
        events.append({"t": round(time.monotonic() - t_start, 3), "what": "churn stopped (SIGHUP)"})
    t0 = time.monotonic()
    final = None
    while time.monotonic() - t0 < 60:
        time.sleep(1.0)
        a, b = e.instances(), client_instances(spec["metrics"])
        final = (a, b, round(time.monotonic() - t0, 1))
        if a == b and len(a) >= spec["instances"]:
            break
    with open(os.path.join(out, "samples.json"), "w") as f:
        json.dump({"samples": samples, "events": events, "mismatches": mismatches}, f, indent=1)
    rows(spec, samples, hups, extra_n, mismatches, scrape_errors, final)
    return 0


def row(**r):
    r["bench"] = "soak"
    print(json.dumps(r))


def rows(spec, samples, hups, nnew, mismatches, scrape_errors, final):
    warm = [s for s in samples if s["t"] >= spec["warmup_s"]]
    # The groups compared span a whole cycle of the periodic work (a service present or not,
    # a reload's peak), at least 3 samples.
    k = max(3, -(-max(spec["newsvc_s"], spec["hup_s"]) // spec["sample_s"]) + 1)
    if len(warm) < 2 * k:
        row(section="soak", metric="samples after the warm-up", value=len(warm), target=">= %d" % (2 * k),
            missed="MISSED", note="too few to compare a whole cycle at the start with one at the end")
        return
    first, last = warm[:k], warm[-k:]
    span_h = (warm[-1]["t"] - warm[0]["t"]) / 3600
    smoke = spec.get("smoke")

    def judged(target, ok):
        """A growth row's target and verdict; a smoke (a minute or two, still warming up) shows
        the figures without judging them."""
        if smoke:
            return {"note_prefix": "smoke, not judged: "}
        return {"target": target, "missed": "met" if ok else "MISSED"}

    def grow_row(**r):
        j = r.pop("judge")
        pre = j.pop("note_prefix", "")
        r.update(j)
        r["note"] = pre + r.get("note", "")
        row(**r)
    for name in spec["agents"]:
        sec = "%s agent" % name
        a0 = median([s[name]["anon"] for s in first])
        a1 = median([s[name]["anon"] for s in last])
        amax = max(s[name]["anon"] for s in warm)
        grow = a1 - a0
        lim = 1024
        grow_row(section=sec, metric="anonymous memory (RssAnon): after the warm-up -> at the end (medians over a cycle)",
            value=grow / KIB, unit="MiB growth", judge=judged("<= 1 MiB", grow <= lim),
            note="%.2f -> %.2f MiB, max %.2f; least-squares slope %+.0f KiB/h over %.2f h" % (
                a0 / KIB, a1 / KIB, amax / KIB, slope_per_h([(s["t"], s[name]["anon"]) for s in warm]), span_h))
        r0 = median([s[name]["rss"] for s in first])
        r1 = median([s[name]["rss"] for s in last])
        row(section=sec, metric="resident memory (VmRSS): after the warm-up -> at the end",
            value=(r1 - r0) / KIB, unit="MiB growth",
            note="%.2f -> %.2f MiB; peak (VmHWM) %.2f MiB" % (r0 / KIB, r1 / KIB, samples[-1][name]["hwm"] / KIB))
        f0 = min(s[name]["fds"] for s in first)
        f1 = min(s[name]["fds"] for s in last)
        grow_row(section=sec, metric="open descriptors: after the warm-up -> at the end (minimum over a cycle)",
            value=f1 - f0, unit="growth", judge=judged("<= 0", f1 <= f0),
            note="%d -> %d, max %d" % (f0, f1, max(s[name]["fds"] for s in warm)))
        t0 = min(s[name]["threads"] for s in first)
        t1 = min(s[name]["threads"] for s in last)
        grow_row(section=sec, metric="threads: after the warm-up -> at the end", value=t1 - t0, unit="growth",
            judge=judged("<= 0", t1 <= t0), note="%d -> %d" % (t0, t1))
        c = (warm[-1][name]["cpu_ns"] - warm[0][name]["cpu_ns"]) / 1e9
        row(section=sec, metric="CPU after the warm-up", value=100.0 * c / (warm[-1]["t"] - warm[0]["t"]),
            unit="% of a CPU", note="%.1f s of CPU in %.0f s" % (c, warm[-1]["t"] - warm[0]["t"]))
    hp_end = median([s["haproxy"] for s in last])
    row(section="client's haproxy", metric="haproxy processes running the client's file at the end (median over a cycle)",
        value=hp_end, target="<= 2 (master + worker)", missed="met" if hp_end <= 2 else "MISSED",
        note="max %d over the run" % max(s["haproxy"] for s in warm))
    # How long the client's catalog may lag the registry by design: etcd's watch answers at
    # once; the Consul store's blocking queries back off up to 15 s under sustained churn
    # (Consul's guidance; plugins/consul/consul_disc.c GAP_MAX_MS), plus a read.
    lag = 20.0 if spec.get("store") == "consul" else 2.0
    longest = max([m["s"] for m in mismatches] or [0])
    stuck = [m for m in mismatches if not m["agreed"]]
    row(section="catalog", metric="samples whose client catalog count differed from the registry's: the longest until both agreed",
        value=longest, n=len(mismatches), unit="s", target="<= %g s, always agreed again" % lag,
        missed="met" if longest <= lag and not stuck else "MISSED",
        note="; ".join("t=%.0f s: %.1f s (registry %d, catalog %d%s)" % (
            m["t"], m["s"], m["registry"], m["catalog"], "" if m["agreed"] else ", still different")
            for m in sorted(mismatches, key=lambda m: -m["s"])[:4]) or "%d samples, all agreed" % len(samples))
    if final:
        a, b, waited = final
        row(section="catalog", metric="at the end (churn stopped): the client's instances (service, address, port) equal the registry's",
            value=len(a ^ b), n=len(a), unit="differing", target="0", missed="met" if a == b else "MISSED",
            note="%s; compared %.0f s after the churn stopped" % (
                "equal" if a == b else "only in the registry: %s; only in the client: %s" % (
                    sorted(a - b)[:3], sorted(b - a)[:3]), waited))
    rl = samples[-1].get("reloads") or 0
    row(section="client agent", metric="configuration reloads applied (regent_reloads_total) / SIGHUPs sent",
        value=rl, n=hups, target="= SIGHUPs", missed="met" if rl == hups else "MISSED",
        note="reload errors %d; %d services added and removed through the registry; /metrics scrapes that failed: %d" % (
            samples[-1].get("reload_errors") or 0, nnew, scrape_errors))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "base" and len(sys.argv) == 6:
        return cmd_base(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        return cmd_run(sys.argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
