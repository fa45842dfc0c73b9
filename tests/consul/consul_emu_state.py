"""Consul emulator (see consul_emulator.py): the agent and its one-server catalog.

The agent's local services and checks (TTL, reaping), the catalog they sync to with its
indexes, the state file, and the JSON renderings in the field order Go encodes them.
Python 3 standard library only.
"""

import json
import os
import random
import threading
import time
import uuid

from consul_emu_wire import (
    CHECK_BUF_SIZE, CRITICAL, EMULATED_VERSION, PASSING, go_duration_string, log)


# --------------------------------------------------------------------------
# The agent + single-server catalog
# --------------------------------------------------------------------------

class CheckState(object):
    """Agent-local state of one check (local/state.go CheckState + CheckTTL)."""

    def __init__(self, hc, ttl, reap_after):
        self.hc = hc                  # HealthCheck fields (agent view)
        self.ttl = ttl                # seconds, 0 = not a TTL check
        self.ttl_deadline = None      # monotonic; None = timer not armed
        self.last_output = ""         # CheckTTL.lastOutput
        self.critical_since = None    # CheckState.CriticalTime (monotonic)
        self.reap_after = reap_after  # DeregisterCriticalServiceAfter (clamped)
        self.in_sync = False          # in sync with the catalog
        self.defer_deadline = None    # deferred output sync (check_update_interval)
        self.initial_status = CRITICAL  # status from the definition (for --state-file)


class Emulator(object):
    def __init__(self, cfg):
        self.cfg = cfg
        self.cond = threading.Condition(threading.RLock())
        self.stopping = False
        self.index = 0
        # catalog (state store) tables
        self.nodes_index = 0
        self.services_index = 0
        self.checks_index = 0
        self.service_index = {}      # service name -> index ("service.<name>")
        self.extinction_index = 0    # service_last_extinction (0 = never)
        self.node = None
        self.cat_services = {}       # service ID -> NodeService + indexes
        self.cat_checks = {}         # check ID -> HealthCheck + indexes
        # agent local state
        self.services = {}           # service ID -> NodeService (agent view)
        self.svc_in_sync = {}        # service ID -> bool
        self.checks = {}             # check ID -> CheckState
        self.next_reap = time.monotonic() + cfg.reap_interval
        self.node_id = str(uuid.uuid4())
        self._dirty = False
        saved = self._load_state()
        self._bootstrap(saved)

    # ---------------- startup / persistence ----------------

    def _next_index(self):
        self.index += 1
        return self.index

    def _bootstrap(self, saved):
        with self.cond:
            if saved:
                self.index = int(saved.get("index", 0))
                self.node_id = saved.get("node_id") or self.node_id
            else:
                # A fresh -dev server applies a few raft entries (configuration,
                # autopilot, CA...) before the node registers itself.
                self.index = 10
            idx = self._next_index()
            addr = self.cfg.node_address
            self.node = {
                "ID": self.node_id, "Node": self.cfg.node, "Address": addr,
                "Datacenter": self.cfg.datacenter,
                "TaggedAddresses": {"lan": addr, "lan_ipv4": addr,
                                    "wan": addr, "wan_ipv4": addr},
                "Meta": {"consul-network-segment": "",
                         "consul-version": EMULATED_VERSION},
                "CreateIndex": idx, "ModifyIndex": idx,
            }
            self.nodes_index = idx
            self.cat_checks["serfHealth"] = {
                "Node": self.cfg.node, "CheckID": "serfHealth",
                "Name": "Serf Health Status", "Status": PASSING, "Notes": "",
                "Output": "Agent alive and reachable", "ServiceID": "",
                "ServiceName": "", "ServiceTags": [], "Type": "", "Interval": "",
                "Timeout": "", "ExposedPort": 0,
                "CreateIndex": idx, "ModifyIndex": idx,
            }
            self.checks_index = idx
            idx = self._next_index()
            self.cat_services["consul"] = {
                "ID": "consul", "Service": "consul", "Tags": [], "Address": "",
                "TaggedAddresses": None,
                "Meta": {"non_voter": "false", "raft_version": "3",
                         "read_replica": "false", "serf_protocol_current": "2",
                         "serf_protocol_max": "5", "serf_protocol_min": "1",
                         "version": EMULATED_VERSION},
                "Port": 8300, "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False, "CreateIndex": idx, "ModifyIndex": idx,
            }
            self.services_index = idx
            self.service_index["consul"] = idx
            if saved:
                self._restore(saved)

    def _load_state(self):
        path = self.cfg.state_file
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path) as fh:
                return json.load(fh)
        except Exception as e:
            log("ignoring unreadable state file %s: %s" % (path, e))
            return None

    def _restore(self, saved):
        now = time.monotonic()
        wall = time.time()
        for svc in saved.get("services", []):
            self.services[svc["ID"]] = svc
            self.svc_in_sync[svc["ID"]] = False
        for c in saved.get("checks", []):
            hc = c["hc"]
            if hc.get("ServiceID") and hc["ServiceID"] not in self.services:
                continue
            st = CheckState(hc, c.get("ttl", 0.0), c.get("reap_after", 0.0))
            expires = c.get("expires")
            if st.ttl <= 0 or expires is None or expires <= wall:
                # Consul's agent (agent.go loadChecks) brings a persisted check back critical
                # "to avoid placing potentially unhealthy services into the active pool",
                # whatever its definition's Status; only a TTL check's state that has not
                # expired yet is restored over that (loadCheckState).
                hc["Status"] = CRITICAL
                hc["Output"] = ""
            if st.ttl > 0:
                st.ttl_deadline = now + st.ttl
            st.initial_status = c.get("initial_status") or CRITICAL
            self.checks[hc["CheckID"]] = st
        self._sync_locked()

    def save_state(self):
        path = self.cfg.state_file
        if not path:
            return
        with self.cond:
            now = time.monotonic()
            wall = time.time()
            checks = []
            for st in self.checks.values():
                expires = None
                if st.ttl > 0 and st.ttl_deadline is not None:
                    expires = wall + (st.ttl_deadline - now)
                checks.append({"hc": st.hc, "ttl": st.ttl, "reap_after": st.reap_after,
                               "expires": expires,
                               "initial_status": st.initial_status})
            data = {"version": 1, "index": self.index, "node_id": self.node_id,
                    "services": list(self.services.values()), "checks": checks}
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except Exception as e:
            log("cannot write state file %s: %s" % (path, e))

    # ---------------- catalog writes (one raft entry each) ----------------

    def _touch_name_after_removal(self, name, idx):
        if any(s["Service"] == name for s in self.cat_services.values()):
            self.service_index[name] = idx
        else:
            self.service_index.pop(name, None)
            self.extinction_index = idx

    def _bump_check_service(self, hc, idx):
        if hc.get("ServiceID"):
            svc = self.cat_services.get(hc["ServiceID"])
            if svc is not None:
                self.service_index[svc["Service"]] = idx
        else:
            # a node-level check touches every service of the node
            for s in self.cat_services.values():
                self.service_index[s["Service"]] = idx

    def _cat_register(self, svc, checks):
        idx = self._next_index()
        if svc is not None:
            sid = svc["ID"]
            old = self.cat_services.get(sid)
            new = dict(svc)
            new.pop("CreateIndex", None)
            new.pop("ModifyIndex", None)
            if old is None or not _same_service(old, new):
                new["CreateIndex"] = old["CreateIndex"] if old else idx
                new["ModifyIndex"] = idx
                self.cat_services[sid] = new
                self.services_index = idx
                self.service_index[new["Service"]] = idx
                if old is not None and old["Service"] != new["Service"]:
                    self._touch_name_after_removal(old["Service"], idx)
        for hc in checks:
            new = dict(hc)
            new.pop("CreateIndex", None)
            new.pop("ModifyIndex", None)
            if new.get("ServiceID"):
                owner = self.cat_services.get(new["ServiceID"])
                if owner is None:
                    continue
                new["ServiceName"] = owner["Service"]
                new["ServiceTags"] = list(owner["Tags"] or [])
            old = self.cat_checks.get(new["CheckID"])
            if old is not None and _same_check(old, new):
                continue
            new["CreateIndex"] = old["CreateIndex"] if old else idx
            new["ModifyIndex"] = idx
            self.cat_checks[new["CheckID"]] = new
            self.checks_index = idx
            self._bump_check_service(new, idx)
        self.cond.notify_all()

    def _cat_deregister_service(self, sid):
        idx = self._next_index()
        svc = self.cat_services.pop(sid, None)
        if svc is None:
            return
        for cid in [c for c, hc in self.cat_checks.items() if hc.get("ServiceID") == sid]:
            del self.cat_checks[cid]
            self.checks_index = idx
        self.services_index = idx
        self._touch_name_after_removal(svc["Service"], idx)
        self.cond.notify_all()

    def _cat_deregister_check(self, cid):
        idx = self._next_index()
        hc = self.cat_checks.pop(cid, None)
        if hc is None:
            return
        self.checks_index = idx
        self._bump_check_service(hc, idx)
        self.cond.notify_all()

    # ---------------- anti-entropy (agent -> catalog) ----------------

    def _sync_locked(self):
        for sid in list(self.cat_services):
            if sid != "consul" and sid not in self.services:
                self._cat_deregister_service(sid)
        for cid in list(self.cat_checks):
            if cid != "serfHealth" and cid not in self.checks:
                self._cat_deregister_check(cid)
        for sid, svc in self.services.items():
            if self.svc_in_sync.get(sid):
                continue
            out = [st for st in self.checks.values()
                   if st.hc.get("ServiceID") == sid and not st.in_sync]
            self._cat_register(svc, [st.hc for st in out])
            self.svc_in_sync[sid] = True
            for st in out:
                st.in_sync = True
        for st in self.checks.values():
            if not st.in_sync:
                self._cat_register(None, [st.hc])
                st.in_sync = True
        if self.cfg.state_file:
            self._dirty = True

    # ---------------- agent operations ----------------

    def update_check_locked(self, cid, status, output, now=None):
        """local State.UpdateCheck."""
        st = self.checks.get(cid)
        if st is None:
            return
        now = time.monotonic() if now is None else now
        if status == CRITICAL:
            if st.critical_since is None:
                st.critical_since = now
        else:
            st.critical_since = None
        hc = st.hc
        if hc["Status"] == status and hc["Output"] == output:
            return
        interval = self.cfg.check_update_interval
        if interval > 0 and hc["Status"] == status:
            hc["Output"] = output
            if st.defer_deadline is None:
                st.defer_deadline = now + interval / 2.0 + random.random() * interval
            return
        hc["Status"] = status
        hc["Output"] = output
        st.in_sync = False

    def ttl_set_status(self, cid, status, output):
        """CheckTTL.SetStatus: update, remember output, restart the TTL clock."""
        st = self.checks[cid]
        total = len(output.encode("utf-8"))
        if total > CHECK_BUF_SIZE:
            output = "%s ... (captured %d of %d bytes)" % (
                output.encode("utf-8")[:CHECK_BUF_SIZE].decode("utf-8", "ignore"),
                CHECK_BUF_SIZE, total)
        now = time.monotonic()
        self.update_check_locked(cid, status, output, now)
        st.last_output = output
        st.ttl_deadline = now + st.ttl

    def _check_state(self, hc, ct, initial, old, now):
        """The agent's state of check hc (its type ct) as added now: the reap
        interval raised to the minimum (with the agent's log line), the TTL
        started (CheckTTL.Start()), in sync when old had the same check."""
        reap_after = ct.get("DeregisterCriticalServiceAfter", 0.0)
        if reap_after > 0 and reap_after < self.cfg.min_deregister:
            log("check %s has deregister interval below minimum of %s"
                % (hc["CheckID"], go_duration_string(self.cfg.min_deregister)))
            reap_after = self.cfg.min_deregister
        st = CheckState(hc, ct.get("TTL", 0.0), reap_after if reap_after > 0 else 0.0)
        st.initial_status = initial
        st.in_sync = old is not None and _same_check(old.hc, hc)
        st.ttl_deadline = now + st.ttl
        return st

    def add_service_locked(self, svc, chk_types, replace_existing_checks):
        sid = svc["ID"]
        existing = {cid: False for cid, st in self.checks.items()
                    if st.hc.get("ServiceID") == sid}
        snapshot = {cid: (st.hc["Status"], st.hc["Output"])
                    for cid, st in self.checks.items()}
        new_checks = []
        for i, ct in enumerate(chk_types):
            cid = ct.get("CheckID") or ""
            if cid == "":
                cid = "service:%s" % sid
                if len(chk_types) > 1:
                    cid += ":%d" % (i + 1)
            existing[cid] = True
            name = ct.get("Name") or "Service '%s' check" % svc["Service"]
            hc = {
                "Node": self.cfg.node, "CheckID": cid, "Name": name,
                "Status": ct.get("Status") or CRITICAL, "Notes": ct.get("Notes", ""),
                "Output": "", "ServiceID": sid, "ServiceName": svc["Service"],
                "ServiceTags": list(svc["Tags"] or []), "Type": "ttl",
                "Interval": "", "Timeout": "", "ExposedPort": 0,
            }
            initial = hc["Status"]
            if cid in snapshot:   # keep the status of an existing check
                hc["Status"], hc["Output"] = snapshot[cid]
            new_checks.append((hc, ct, initial))
        old = self.services.get(sid)
        self.services[sid] = svc
        self.svc_in_sync[sid] = old is not None and _same_service(old, svc)
        now = time.monotonic()
        for hc, ct, initial in new_checks:
            cid = hc["CheckID"]
            self.checks[cid] = self._check_state(hc, ct, initial, self.checks.get(cid), now)
        if replace_existing_checks:
            for cid, keep in existing.items():
                if not keep:
                    self.checks.pop(cid, None)
        self._sync_locked()
        self.cond.notify_all()

    def add_check_locked(self, hc, ct):
        cid = hc["CheckID"]
        existing = self.checks.get(cid)
        self.checks[cid] = self._check_state(hc, ct, hc["Status"], existing, time.monotonic())
        if existing is not None:
            # Agent.AddCheck snapshots the previous state to avoid flapping
            self.update_check_locked(cid, existing.hc["Status"], existing.hc["Output"])
        self._sync_locked()
        self.cond.notify_all()

    def remove_service_locked(self, sid):
        self.services.pop(sid, None)
        self.svc_in_sync.pop(sid, None)
        for cid in [c for c, st in self.checks.items() if st.hc.get("ServiceID") == sid]:
            del self.checks[cid]
        self._sync_locked()
        self.cond.notify_all()

    def remove_check_locked(self, cid):
        self.checks.pop(cid, None)
        self._sync_locked()
        self.cond.notify_all()

    # ---------------- timers: TTL, deferred output sync, reaper ----------------

    def _run_due_locked(self, now):
        changed = False
        for cid, st in list(self.checks.items()):
            if st.ttl > 0 and st.ttl_deadline is not None and now >= st.ttl_deadline:
                st.ttl_deadline = None
                # Consul's agent logs this at WARN ("Check missed TTL, is now critical")
                log("%s check %s missed its TTL, is now critical"
                    % (time.strftime("%H:%M:%S", time.localtime()), cid))
                out = "TTL expired"
                if st.last_output:
                    out = "TTL expired (last output before timeout follows): " + st.last_output
                self.update_check_locked(cid, CRITICAL, out, now)
                changed = True
            if st.defer_deadline is not None and now >= st.defer_deadline:
                st.defer_deadline = None
                st.in_sync = False
                changed = True
        if now >= self.next_reap:
            self.next_reap = now + self.cfg.reap_interval
            reaped = set()
            for cid, st in list(self.checks.items()):
                sid = st.hc.get("ServiceID")
                if not sid or sid in reaped or st.critical_since is None:
                    continue
                if st.reap_after > 0 and now - st.critical_since > st.reap_after:
                    reaped.add(sid)
                    log("check %s has been critical for too long; deregistered service %s"
                        % (cid, sid))
                    self.remove_service_locked(sid)
                    changed = True
        if changed:
            self._sync_locked()
            self.cond.notify_all()

    def _next_deadline_locked(self):
        cands = [self.next_reap]
        for st in self.checks.values():
            if st.ttl > 0 and st.ttl_deadline is not None:
                cands.append(st.ttl_deadline)
            if st.defer_deadline is not None:
                cands.append(st.defer_deadline)
        return min(cands)

    def scheduler(self):
        last_save = 0.0
        with self.cond:
            while not self.stopping:
                self._run_due_locked(time.monotonic())
                if self.cfg.state_file and self._dirty:
                    if time.monotonic() - last_save > 0.05:
                        self._dirty = False
                        last_save = time.monotonic()
                        self.save_state()
                timeout = self._next_deadline_locked() - time.monotonic()
                if self.cfg.state_file and self._dirty:
                    timeout = min(timeout, 0.05)
                self.cond.wait(max(0.0, min(timeout, 5.0)))

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    # ---------------- read-side index rules ----------------

    def idx_catalog_services(self):
        return max(self.services_index, 1)

    def idx_service(self, name, checks):
        """state store maxIndexForService."""
        if name in self.service_index:
            return self.service_index[name]
        if self.extinction_index:
            return self.extinction_index
        m = max(self.nodes_index, self.services_index)
        if checks:
            m = max(m, self.checks_index)
        return max(m, 1)


def _same_service(a, b):
    keys = ("ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
            "Weights", "EnableTagOverride", "Kind")
    return all(a.get(k) == b.get(k) for k in keys)


def _same_check(a, b):
    keys = ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
            "ServiceName", "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort")
    return all(a.get(k) == b.get(k) for k in keys)


# --------------------------------------------------------------------------
# JSON renderings (field order as Go encodes the structs)
# --------------------------------------------------------------------------

_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}


def _tagged(svc):
    ta = svc.get("TaggedAddresses")
    if not ta:
        return None
    return {k: {"Address": v["Address"], "Port": v["Port"]} for k, v in ta.items()}


def render_health_service(svc):
    out = {}
    if svc.get("Kind"):
        out["Kind"] = svc["Kind"]
    out["ID"] = svc["ID"]
    out["Service"] = svc["Service"]
    out["Tags"] = list(svc.get("Tags") or [])
    out["Address"] = svc.get("Address", "")
    ta = _tagged(svc)
    if ta:
        out["TaggedAddresses"] = ta
    out["Meta"] = svc.get("Meta")
    if svc.get("Port"):
        out["Port"] = svc["Port"]
    out["Weights"] = dict(svc.get("Weights") or {"Passing": 1, "Warning": 1})
    out["EnableTagOverride"] = bool(svc.get("EnableTagOverride"))
    out["Proxy"] = dict(_PROXY)
    out["Connect"] = {}
    out["PeerName"] = ""
    out["CreateIndex"] = svc["CreateIndex"]
    out["ModifyIndex"] = svc["ModifyIndex"]
    return out


def render_check(hc, with_index=True):
    out = {}
    for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
              "ServiceName"):
        out[k] = hc.get(k, "")
    out["ServiceTags"] = list(hc.get("ServiceTags") or [])
    out["Type"] = hc.get("Type", "")
    out["Interval"] = hc.get("Interval", "")
    out["Timeout"] = hc.get("Timeout", "")
    out["ExposedPort"] = hc.get("ExposedPort", 0)
    out["Definition"] = {}
    out["CreateIndex"] = hc.get("CreateIndex", 0) if with_index else 0
    out["ModifyIndex"] = hc.get("ModifyIndex", 0) if with_index else 0
    return out


def render_catalog_service_node(node, svc):
    out = {"ID": node["ID"], "Node": node["Node"], "Address": node["Address"],
           "Datacenter": node["Datacenter"],
           "TaggedAddresses": dict(node["TaggedAddresses"]),
           "NodeMeta": dict(node["Meta"]), "ServiceKind": svc.get("Kind", ""),
           "ServiceID": svc["ID"], "ServiceName": svc["Service"],
           "ServiceTags": list(svc.get("Tags") or []),
           "ServiceAddress": svc.get("Address", "")}
    ta = _tagged(svc)
    if ta:
        out["ServiceTaggedAddresses"] = ta
    out["ServiceWeights"] = dict(svc.get("Weights") or {"Passing": 1, "Warning": 1})
    out["ServiceMeta"] = svc.get("Meta")
    out["ServicePort"] = svc.get("Port", 0)
    out["ServiceSocketPath"] = ""
    out["ServiceEnableTagOverride"] = bool(svc.get("EnableTagOverride"))
    out["ServiceProxy"] = dict(_PROXY)
    out["ServiceConnect"] = {}
    out["ServiceLocality"] = None
    out["CreateIndex"] = svc["CreateIndex"]
    out["ModifyIndex"] = svc["ModifyIndex"]
    return out


def render_agent_service(svc, dc):
    out = {}
    if svc.get("Kind"):
        out["Kind"] = svc["Kind"]
    out["ID"] = svc["ID"]
    out["Service"] = svc["Service"]
    out["Tags"] = list(svc.get("Tags") or [])
    out["Meta"] = dict(svc.get("Meta") or {})
    out["Port"] = svc.get("Port", 0)
    out["Address"] = svc.get("Address", "")
    ta = _tagged(svc)
    if ta:
        out["TaggedAddresses"] = ta
    out["Weights"] = dict(svc.get("Weights") or {"Passing": 1, "Warning": 1})
    out["EnableTagOverride"] = bool(svc.get("EnableTagOverride"))
    out["Datacenter"] = dc
    return out
