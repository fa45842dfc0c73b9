#!/usr/bin/env python3
"""Emulator of the parts of Consul's HTTP API that a registry agent uses.

Written from Consul's API documentation and, where the documentation is
silent, from how Consul's agent and state store behave (see README.md in this
directory for the list of emulated behaviours and the known differences).
It behaves like a single `consul agent -dev` (one server, one node, leader
known, state forgotten on restart unless --state-file is given).

Python 3 standard library only.

    consul_emulator.py --http-addr 127.0.0.1 --port 0
    -> first stdout line: "listening 127.0.0.1:PORT"
"""

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

EMULATED_VERSION = "1.20.2"
CHECK_BUF_SIZE = 4096             # checks.DefaultBufSize
DEFAULT_QUERY_TIME = 300.0        # 5m, default ?wait
MAX_QUERY_TIME = 600.0            # 10m, cap of ?wait
JITTER_FRACTION = 16              # wait += random(wait/16)
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
META_KEY_RE = re.compile(r"^[a-zA-Z0-9_-]+$")

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
VALID_STATUS = (PASSING, WARNING, CRITICAL)

ANON_SUFFIX = (". The anonymous token is used implicitly when a request does not "
               "specify a token.")


def log(msg):
    try:
        sys.stderr.write("consul-emulator: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def goquote(s):
    """Approximation of Go's %q for the strings we format."""
    return json.dumps(s, ensure_ascii=False)


# --------------------------------------------------------------------------
# Go time.ParseDuration
# --------------------------------------------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
          "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUM_RE = re.compile(r"([0-9]*)(\.[0-9]*)?")
_UNIT_RE = re.compile(r"[^0-9.]*")


def parse_go_duration(text):
    """Return seconds (float) or raise ValueError with Go's message."""
    orig = text
    bad = ValueError("time: invalid duration " + goquote(orig))
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0.0
    if s == "":
        raise bad
    total = 0.0
    while s:
        m = _NUM_RE.match(s)
        whole, frac = m.group(1), m.group(2)
        if whole == "" and (frac is None or frac == "."):
            raise bad
        s = s[m.end():]
        u = _UNIT_RE.match(s).group(0)
        s = s[len(u):]
        if u == "":
            raise ValueError("time: missing unit in duration " + goquote(orig))
        if u not in _UNITS:
            raise ValueError("time: unknown unit %s in duration %s"
                             % (goquote(u), goquote(orig)))
        num = float((whole or "0") + ((frac if frac and frac != "." else "")))
        total += num * _UNITS[u]
    return -total if neg else total


def parse_cli_duration(text):
    """CLI helper: plain number = seconds, else a Go duration."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_go_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def go_duration_string(sec):
    """Go's Duration.String() for the values we produce (e.g. 10s, 1m0s)."""
    if sec == 0:
        return "0s"
    ns = int(round(sec * 1e9))
    neg = ns < 0
    ns = abs(ns)
    if ns < 1000000000:
        if ns < 1000:
            out = "%dns" % ns
        elif ns < 1000000:
            out = ("%.6f" % (ns / 1e3)).rstrip("0").rstrip(".") + "\u00b5s"
        else:
            out = ("%.9f" % (ns / 1e6)).rstrip("0").rstrip(".") + "ms"
    else:
        h, rem = divmod(ns, 3600 * 10**9)
        m, rem = divmod(rem, 60 * 10**9)
        secs = ("%.9f" % (rem / 1e9)).rstrip("0").rstrip(".")
        out = ""
        if h:
            out += "%dh" % h
        if h or m:
            out += "%dm" % m
        out += secs + "s"
    return ("-" if neg else "") + out


# --------------------------------------------------------------------------
# Go-like JSON request decoding
# --------------------------------------------------------------------------

class DecodeError(Exception):
    pass


def _json_kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _norm(k):
    return k.lower().replace("_", "")


def _mismatch(v, where, gotype):
    kind = _json_kind(v)
    if kind == "number" and gotype == "int":
        kind = "number %s" % json.dumps(v)
    return DecodeError("json: cannot unmarshal %s into Go struct field %s of type %s"
                       % (kind, where, gotype))


def _dec_str(v, where):
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _mismatch(v, where, "string")
    return v


def _dec_int(v, where):
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _mismatch(v, where, "int")
    if isinstance(v, float):
        if v != int(v):
            raise _mismatch(v, where, "int")
        v = int(v)
    return v


def _dec_bool(v, where):
    if v is None:
        return False
    if not isinstance(v, bool):
        raise _mismatch(v, where, "bool")
    return v


def _dec_strlist(v, where):
    if v is None:
        return None
    if not isinstance(v, list):
        raise _mismatch(v, where, "[]string")
    out = []
    for x in v:
        if not isinstance(x, str):
            raise _mismatch(x, where, "string")
        out.append(x)
    return out


def _dec_strmap(v, where):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _mismatch(v, where, "map[string]string")
    out = {}
    for k, x in v.items():
        if not isinstance(x, str):
            raise _mismatch(x, where, "string")
        out[k] = x
    return out


def _dec_duration(v, where):
    """CheckType durations: a Go duration string or a number of nanoseconds."""
    if isinstance(v, str):
        try:
            return parse_go_duration(v)
        except ValueError as e:
            raise DecodeError(str(e))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v) / 1e9
    return 0.0  # other JSON types are ignored by Consul's UnmarshalJSON


def _fields(obj, spec, struct, strict):
    """Map JSON keys of obj (case-insensitively) onto spec's canonical names."""
    by_norm = {}
    for canon in spec:
        by_norm[_norm(canon)] = canon
    out = {}
    for k, v in obj.items():
        canon = by_norm.get(_norm(k))
        if canon is None:
            if strict:
                raise DecodeError("json: unknown field %s" % goquote(k))
            continue
        out[canon] = (v, "%s.%s" % (struct, canon))
    return out


_CHECK_SPEC = {
    "CheckID": "str", "Name": "str", "Status": "str", "Notes": "str",
    "ScriptArgs": "strlist", "Args": "strlist", "HTTP": "str", "H2PING": "str",
    "H2PingUseTLS": "bool", "Header": "any", "Method": "str", "Body": "str",
    "DisableRedirects": "bool", "TCP": "str", "UDP": "str", "Interval": "dur",
    "AliasNode": "str", "AliasService": "str", "DockerContainerID": "str",
    "Shell": "str", "GRPC": "str", "GRPCUseTLS": "bool", "OSService": "str",
    "TLSServerName": "str", "TLSSkipVerify": "bool", "Timeout": "dur",
    "TTL": "dur", "SuccessBeforePassing": "int", "FailuresBeforeWarning": "int",
    "FailuresBeforeCritical": "int", "ProxyHTTP": "str", "ProxyGRPC": "str",
    "DeregisterCriticalServiceAfter": "dur", "OutputMaxSize": "int",
    "ServiceID": "str",
}

_SERVICE_SPEC = {
    "Kind": "str", "ID": "str", "Name": "str", "Tags": "strlist",
    "Address": "str", "TaggedAddresses": "tagged", "Meta": "strmap",
    "Port": "int", "SocketPath": "str", "Weights": "weights",
    "EnableTagOverride": "bool", "Check": "check", "Checks": "checks",
    "Token": "str", "Proxy": "any", "Connect": "any", "Locality": "any",
    "Namespace": "str", "Partition": "str",
}

_CHECKDEF_SPEC = dict(_CHECK_SPEC)
_CHECKDEF_SPEC.update({"ID": "str", "Token": "str", "Namespace": "str",
                       "Partition": "str"})
del _CHECKDEF_SPEC["CheckID"]


def _decode_value(kind, v, where):
    if kind == "str":
        return _dec_str(v, where)
    if kind == "int":
        return _dec_int(v, where)
    if kind == "bool":
        return _dec_bool(v, where)
    if kind == "strlist":
        return _dec_strlist(v, where)
    if kind == "strmap":
        return _dec_strmap(v, where)
    if kind == "dur":
        return _dec_duration(v, where)
    if kind == "weights":
        if v is None:
            return None
        if not isinstance(v, dict):
            raise _mismatch(v, where, "structs.Weights")
        f = _fields(v, {"Passing": "int", "Warning": "int"}, "Weights", False)
        return {"Passing": _dec_int(*f["Passing"]) if "Passing" in f else 0,
                "Warning": _dec_int(*f["Warning"]) if "Warning" in f else 0}
    if kind == "tagged":
        if v is None:
            return None
        if not isinstance(v, dict):
            raise _mismatch(v, where, "map[string]structs.ServiceAddress")
        out = {}
        for k, sa in v.items():
            if not isinstance(sa, dict):
                raise _mismatch(sa, where, "structs.ServiceAddress")
            f = _fields(sa, {"Address": "str", "Port": "int"}, "ServiceAddress", False)
            out[k] = {"Address": _dec_str(*f["Address"]) if "Address" in f else "",
                      "Port": _dec_int(*f["Port"]) if "Port" in f else 0}
        return out
    if kind == "check":
        if v is None:
            return None
        return decode_check_type(v, where)
    if kind == "checks":
        if v is None:
            return []
        if not isinstance(v, list):
            raise _mismatch(v, where, "structs.CheckTypes")
        return [decode_check_type(x, where) for x in v if x is not None]
    return v


def decode_check_type(obj, where="ServiceDefinition.Check", spec=None):
    """structs.CheckType (strict: unknown fields are rejected, as Consul does)."""
    spec = spec or _CHECK_SPEC
    if not isinstance(obj, dict):
        raise _mismatch(obj, where, "structs.CheckType")
    f = _fields(obj, spec, "CheckType", True)
    ct = {}
    for canon, kind in spec.items():
        if canon in f:
            ct[canon] = _decode_value(kind, f[canon][0], f[canon][1])
    if not ct.get("ScriptArgs") and ct.get("Args"):
        ct["ScriptArgs"] = ct["Args"]
    ct.pop("Args", None)
    return ct


def _check_empty(ct):
    if ct is None:
        return True
    for v in ct.values():
        if v not in (None, "", 0, 0.0, False, [], {}):
            return False
    return True


def check_type_validate(ct):
    """structs.CheckType.Validate()."""
    interval_check = bool(ct.get("ScriptArgs") or ct.get("HTTP") or ct.get("TCP")
                          or ct.get("UDP") or ct.get("GRPC") or ct.get("H2PING")
                          or ct.get("OSService"))
    is_alias = bool(ct.get("AliasNode") or ct.get("AliasService"))
    interval = ct.get("Interval", 0.0)
    ttl = ct.get("TTL", 0.0)
    if interval > 0 and ttl > 0:
        return "Interval and TTL cannot both be specified"
    if interval_check and interval <= 0:
        return "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    if interval_check and is_alias:
        return "Interval cannot be set for Alias checks"
    if is_alias and ttl > 0:
        return "TTL must be not be set for Alias checks"
    if not interval_check and not is_alias and ttl <= 0:
        return "TTL must be > 0 for TTL checks"
    if ct.get("OutputMaxSize", 0) < 0:
        return "MaxOutputMaxSize must be positive"
    if ct.get("FailuresBeforeWarning", 0) > ct.get("FailuresBeforeCritical", 0):
        return "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
    return None


def parse_body(raw):
    if raw is None or raw.strip() == b"":
        raise DecodeError("EOF")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DecodeError("invalid character in string literal")
    except json.JSONDecodeError as e:
        ch = e.doc[e.pos:e.pos + 1] if e.pos < len(e.doc) else ""
        if ch == "":
            raise DecodeError("unexpected EOF")
        raise DecodeError("invalid character %s looking for beginning of value"
                          % ("'" + ch + "'"))


def decode_service_definition(raw):
    obj = parse_body(raw)
    if not isinstance(obj, dict):
        raise DecodeError("json: cannot unmarshal %s into Go value of type "
                          "structs.ServiceDefinition" % _json_kind(obj))
    f = _fields(obj, _SERVICE_SPEC, "ServiceDefinition", False)
    d = {}
    for canon, kind in _SERVICE_SPEC.items():
        if canon in f:
            d[canon] = _decode_value(kind, f[canon][0], f[canon][1])
    return d


# --------------------------------------------------------------------------
# Go net/http ServeMux path cleaning (301 redirect for unclean paths)
# --------------------------------------------------------------------------

def go_path_clean(p):
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        out = "/" + out
    return out or ("/" if rooted else ".")


def go_clean_path(p):
    if p == "":
        return "/"
    if not p.startswith("/"):
        p = "/" + p
    np = go_path_clean(p)
    if p.endswith("/") and np != "/":
        np += "/"
    return np


# --------------------------------------------------------------------------
# HTTP errors
# --------------------------------------------------------------------------

class HTTPError(Exception):
    def __init__(self, status, body="", headers=None):
        Exception.__init__(self, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def permission_denied(resource, level, name):
    msg = "Permission denied: anonymous token lacks permission '%s:%s'" % (resource, level)
    if name is not None:
        msg += " on " + goquote(name)
    return HTTPError(403, msg + ANON_SUFFIX)


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
            if st.ttl > 0:
                if expires is None or expires <= wall:
                    # persisted state expired: the check comes back as registered
                    hc["Status"] = c.get("initial_status") or CRITICAL
                    hc["Output"] = ""
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
            old_st = self.checks.get(cid)
            reap_after = ct.get("DeregisterCriticalServiceAfter", 0.0)
            if reap_after > 0 and reap_after < self.cfg.min_deregister:
                log("check %s has deregister interval below minimum of %s"
                    % (cid, go_duration_string(self.cfg.min_deregister)))
                reap_after = self.cfg.min_deregister
            st = CheckState(hc, ct.get("TTL", 0.0), reap_after if reap_after > 0 else 0.0)
            st.initial_status = initial
            st.in_sync = old_st is not None and _same_check(old_st.hc, hc)
            st.ttl_deadline = now + st.ttl          # CheckTTL.Start()
            self.checks[cid] = st
        if replace_existing_checks:
            for cid, keep in existing.items():
                if not keep:
                    self.checks.pop(cid, None)
        self._sync_locked()
        self.cond.notify_all()

    def add_check_locked(self, hc, ct):
        cid = hc["CheckID"]
        existing = self.checks.get(cid)
        reap_after = ct.get("DeregisterCriticalServiceAfter", 0.0)
        if reap_after > 0 and reap_after < self.cfg.min_deregister:
            log("check %s has deregister interval below minimum of %s"
                % (cid, go_duration_string(self.cfg.min_deregister)))
            reap_after = self.cfg.min_deregister
        st = CheckState(hc, ct.get("TTL", 0.0), reap_after if reap_after > 0 else 0.0)
        st.initial_status = hc["Status"]
        st.in_sync = existing is not None and _same_check(existing.hc, hc)
        st.ttl_deadline = time.monotonic() + st.ttl
        self.checks[cid] = st
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


def go_json(obj, pretty):
    if pretty:
        s = json.dumps(obj, indent=4, ensure_ascii=False) + "\n"
    else:
        s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
         .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return s.encode("utf-8")


def parse_bool(v):
    if v in ("1", "t", "T", "TRUE", "true", "True", ""):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(v)


# --------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------

class Request(object):
    def __init__(self, handler, method, path, query, raw_query):
        self.h = handler
        self.method = method
        self.path = path
        self.q = query
        self.raw_query = raw_query
        self._body = None

    def arg(self, name, default=None):
        v = self.q.get(name)
        return v[0] if v else default

    def has(self, name):
        return name in self.q

    def header(self, name):
        return self.h.headers.get(name)

    def body(self):
        if self._body is None:
            self._body = self.h.read_body()
        return self._body

    def token(self):
        t = self.arg("token")
        if t:
            return t
        t = self.header("X-Consul-Token")
        if t:
            return t
        auth = self.header("Authorization")
        if auth:
            parts = auth.split(" ")
            if len(parts) > 1 and parts[0] == "Bearer":
                value = " ".join(parts[1:]).strip()
                return value.split(" ")[0].strip()
        return ""


class Response(object):
    def __init__(self, status=200, body=b"", ctype=None, headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Go's net/http (so Consul) sets TCP_NODELAY on every connection.  Without
    # it, the separate header and body writes of a kept-alive connection meet
    # the client's delayed ACK: ~40 ms per answer.
    disable_nagle_algorithm = True
    server_version = "consul-emulator"
    sys_version = ""

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.server.emu.cfg.verbose:
            log("%s - %s" % (self.address_string(), fmt % args))

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline()
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, resp, method):
        body = resp.body if isinstance(resp.body, bytes) else resp.body.encode("utf-8")
        self.send_response(resp.status)
        if resp.ctype is None and body:
            resp.ctype = "text/plain; charset=utf-8"
        if resp.ctype:
            self.send_header("Content-Type", resp.ctype)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD" and body:
            self.wfile.write(body)

    def _handle(self):
        method = self.command
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        emu = self.server.emu
        try:
            query = parse_qs(parts.query, keep_blank_values=True)
        except Exception:
            query = {}
        req = Request(self, method, path, query, parts.query)
        cleaned = go_clean_path(path)
        if cleaned != path:
            # Go's ServeMux redirects requests for unclean paths (e.g. "//")
            loc = cleaned + ("?" + parts.query if parts.query else "")
            resp = Response(301, "", None, {"Location": loc})
        else:
            try:
                resp = self.server.api.dispatch(req)
            except HTTPError as e:
                resp = Response(e.status, e.body, None, e.headers)
            except Exception as e:  # keep the server alive; report like Consul (500)
                log("internal error on %s %s: %r" % (method, self.path, e))
                resp = Response(500, str(e))
        # always consume a request body so keep-alive stays in sync
        if req._body is None and method in ("PUT", "POST", "DELETE", "PATCH"):
            try:
                req.body()
            except Exception:
                self.close_connection = True
        if emu.cfg.verbose:
            log("%s %s -> %d" % (method, self.path, resp.status))
        self._send(resp, method)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class API(object):
    """Endpoint implementations. Paths are percent-decoded (like Go's URL.Path)."""

    def __init__(self, emu):
        self.emu = emu
        self.cfg = emu.cfg
        # (pattern, is_prefix, allowed methods, function)
        self.routes = [
            ("/v1/agent/service/register", False, ("PUT",), self.agent_service_register),
            ("/v1/agent/service/deregister/", True, ("PUT",), self.agent_service_deregister),
            ("/v1/agent/check/register", False, ("PUT",), self.agent_check_register),
            ("/v1/agent/check/deregister/", True, ("PUT",), self.agent_check_deregister),
            ("/v1/agent/check/pass/", True, ("PUT",), self.agent_check_pass),
            ("/v1/agent/check/warn/", True, ("PUT",), self.agent_check_warn),
            ("/v1/agent/check/fail/", True, ("PUT",), self.agent_check_fail),
            ("/v1/agent/check/update/", True, ("PUT",), self.agent_check_update),
            ("/v1/agent/services", False, ("GET",), self.agent_services),
            ("/v1/agent/checks", False, ("GET",), self.agent_checks),
            ("/v1/agent/self", False, ("GET",), self.agent_self),
            ("/v1/catalog/services", False, ("GET",), self.catalog_services),
            ("/v1/catalog/service/", True, ("GET",), self.catalog_service),
            ("/v1/catalog/datacenters", False, ("GET",), self.catalog_datacenters),
            ("/v1/catalog/nodes", False, ("GET",), self.catalog_nodes),
            ("/v1/health/service/", True, ("GET",), self.health_service),
            ("/v1/health/state/", True, ("GET",), self.health_state),
            ("/v1/status/leader", False, ("GET",), self.status_leader),
            ("/v1/status/peers", False, ("GET",), self.status_peers),
        ]

    # ---------------- plumbing ----------------

    def dispatch(self, req):
        for pattern, prefix, methods, fn in self.routes:
            if (prefix and req.path.startswith(pattern)) or (not prefix and req.path == pattern):
                if req.method == "OPTIONS":
                    return Response(200, "", None, {"Allow": ", ".join(("OPTIONS",) + methods)})
                if req.method not in methods:
                    return Response(405, "method %s not allowed" % req.method, None,
                                    {"Allow": ", ".join(("OPTIONS",) + methods)})
                arg = req.path[len(pattern):] if prefix else None
                return fn(req, arg) if prefix else fn(req)
        if req.path == "/":
            return Response(200, "Consul Agent: UI disabled. To enable, set ui_config.enabled=true "
                                 "in the agent configuration and restart.")
        if req.path.startswith("/v1/"):
            log("not emulated: %s %s" % (req.method, req.path))
        return Response(404, "")

    def json(self, obj, status=200, headers=None):
        return Response(status, go_json(obj, not self.cfg.compact_json),
                        "application/json", headers)

    def identity(self, req):
        """Resolve the request's ACL token: 'mgmt', 'anon'; raises 403 if unknown."""
        if not self.cfg.acl_token:
            return "mgmt"
        tok = req.token()
        if tok == "" or tok == "anonymous":
            return "anon"
        if tok == self.cfg.acl_token:
            return "mgmt"
        raise HTTPError(403, "ACL not found")

    def carried_token(self, req):
        """Consul's maskResultsFilteredByACLs: a request that carried no
        token never learns that results were filtered (the header is
        stripped), so a token-less client of a default-deny cluster sees
        an empty, unflagged answer."""
        return req.token() != ""

    def anon_reads(self, service):
        """--anonymous-read: the anonymous token's policy allows reading this
        service (service "NAME" { policy = "read" } plus node read), as
        set up for Consul's DNS interface in its ACL guides."""
        return service in (self.cfg.anonymous_read or ())

    def query_opts(self, req):
        """parseWait / parseConsistency / parseDC. Returns (min_index, wait)."""
        wait = 0.0
        w = req.arg("wait")
        if w:
            try:
                wait = parse_go_duration(w)
            except ValueError:
                raise HTTPError(400, "Invalid wait time")
        min_index = 0
        i = req.arg("index")
        if i:
            if not re.match(r"^[0-9]+$", i) or int(i) >= 2 ** 64:
                raise HTTPError(400, "Invalid index")
            min_index = int(i)
        if req.has("stale") and req.has("consistent"):
            raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        dc = req.arg("dc")
        if dc and dc != self.cfg.datacenter:
            raise HTTPError(500, "No path to datacenter")
        if req.arg("filter"):
            raise HTTPError(400, "emulator: ?filter is not supported by consul_emulator.py")
        return min_index, wait

    def blocking(self, req, min_index, wait, compute):
        """Run compute() -> (index, obj, filtered) as a blocking query."""
        emu = self.emu
        with emu.cond:
            idx, obj, filtered = compute()
            if min_index > 0:
                if wait <= 0:
                    wait = DEFAULT_QUERY_TIME
                elif wait > MAX_QUERY_TIME:
                    wait = MAX_QUERY_TIME
                wait += random.random() * (wait / JITTER_FRACTION)
                deadline = time.monotonic() + wait
                while idx <= min_index and not emu.stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    emu.cond.wait(remaining)
                    idx, obj, filtered = compute()
        headers = {"X-Consul-Index": str(max(idx, 1)),
                   "X-Consul-KnownLeader": "true",
                   "X-Consul-LastContact": "0",
                   "X-Consul-Effective-Consistency":
                       "stale" if req.has("stale") else
                       ("consistent" if req.has("consistent") else "leader")}
        if filtered and self.carried_token(req):
            headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        return self.json(obj, 200, headers)

    # ---------------- agent: services ----------------

    def agent_service_register(self, req):
        emu = self.emu
        try:
            d = decode_service_definition(req.body())
        except DecodeError as e:
            raise HTTPError(400, "Request decode failed: %s" % e)
        name = d.get("Name", "")
        if name == "":
            raise HTTPError(400, "Missing service name")
        addr = d.get("Address", "")
        if addr in ("0.0.0.0", "::", "[::]"):
            raise HTTPError(400, "Invalid service address")
        ident = self.identity(req)
        weights = d.get("Weights")
        if weights is not None:
            if weights["Passing"] < 1:
                raise HTTPError(400, "Invalid Weights: Passing must be greater than 0")
            if weights["Warning"] < 0:
                raise HTTPError(400, "Invalid Weights: Warning must be greater or equal than 0")
            if weights["Passing"] > 65535 or weights["Warning"] > 65535:
                raise HTTPError(400, "Invalid Weights: DNS Weight must be between 0 and 65535")
        meta = d.get("Meta")
        if meta is not None:
            err = validate_meta(meta)
            if err:
                raise HTTPError(400, "Invalid Service Meta: %s" % err)
        if d.get("Kind"):
            raise HTTPError(400, "emulator: service Kind %s is not supported" % goquote(d["Kind"]))
        chk_types = []
        check = d.get("Check")
        if check is not None and not _check_empty(check):
            chk_types.append(check)
        chk_types.extend(d.get("Checks") or [])
        for ct in chk_types:
            err = check_type_validate(ct)
            if err:
                raise HTTPError(400, "Invalid check: %s" % err)
        for ct in chk_types:
            if ct.get("Status") and ct["Status"] not in VALID_STATUS:
                raise HTTPError(400, "Status for checks must 'passing', 'warning', 'critical'")
        for ct in chk_types:
            if not ct.get("TTL"):
                raise HTTPError(400, "emulator: only TTL checks are supported by consul_emulator.py")
        if ident == "anon":
            raise permission_denied("service", "write", name)
        svc = {
            "ID": d.get("ID") or name, "Service": name,
            "Tags": d.get("Tags"), "Address": addr,
            "TaggedAddresses": None, "Meta": meta,
            "Port": d.get("Port", 0),
            "Weights": weights if weights is not None else {"Passing": 1, "Warning": 1},
            "EnableTagOverride": d.get("EnableTagOverride", False),
        }
        # Agent.addServiceInternal: default tagged addresses from an IP Address
        ta = dict(d.get("TaggedAddresses") or {})
        kind = _ip_kind(addr)
        if kind == 4:
            ta.setdefault("lan_ipv4", {"Address": addr, "Port": svc["Port"]})
            ta.setdefault("wan_ipv4", {"Address": addr, "Port": svc["Port"]})
        elif kind == 6:
            ta.setdefault("lan_ipv6", {"Address": addr, "Port": svc["Port"]})
            ta.setdefault("wan_ipv6", {"Address": addr, "Port": svc["Port"]})
        svc["TaggedAddresses"] = ta or None
        replace = False
        if req.has("replace-existing-checks"):
            v = req.arg("replace-existing-checks", "")
            replace = v in ("", "true")
        with emu.cond:
            emu.add_service_locked(svc, chk_types, replace)
        return Response(200, "")

    def agent_service_deregister(self, req, sid):
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            svc = emu.services.get(sid)
            if svc is None:
                raise HTTPError(404, "Unknown service ID %s. Ensure that the service ID is "
                                     "passed, not the service name." % goquote(sid))
            if ident == "anon":
                raise permission_denied("service", "write", svc["Service"])
            emu.remove_service_locked(sid)
        return Response(200, "")

    # ---------------- agent: checks ----------------

    def _vet_check(self, ident, cid):
        st = self.emu.checks.get(cid)
        if st is None and self.cfg.old_agent:
            # Consul <= 1.11: vetCheckUpdate (ACLs on) answered
            # fmt.Errorf("Unknown check %q") and updateTTLCheck (ACLs off)
            # "CheckID %q does not have associated TTL", both as 500.
            if self.cfg.acl_token:
                raise HTTPError(500, "Unknown check %s" % goquote(cid))
            raise HTTPError(500, "CheckID %s does not have associated TTL" % goquote(cid))
        if st is None:
            raise HTTPError(404, "Unknown check ID %s. Ensure that the check ID is passed, "
                                 "not the check name." % goquote(cid))
        if ident == "anon":
            if st.hc.get("ServiceName"):
                raise permission_denied("service", "write", st.hc["ServiceName"])
            raise permission_denied("node", "write", self.cfg.node)
        return st

    def _ttl_update(self, req, cid, status, output):
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            st = self._vet_check(ident, cid)
            if st.ttl <= 0:
                raise HTTPError(500, "CheckID %s does not have associated TTL" % goquote(cid))
            emu.ttl_set_status(cid, status, output)
            emu._sync_locked()
            emu.cond.notify_all()
        return Response(200, "")

    def agent_check_pass(self, req, cid):
        return self._ttl_update(req, cid, PASSING, req.arg("note", ""))

    def agent_check_warn(self, req, cid):
        return self._ttl_update(req, cid, WARNING, req.arg("note", ""))

    def agent_check_fail(self, req, cid):
        return self._ttl_update(req, cid, CRITICAL, req.arg("note", ""))

    def agent_check_update(self, req, cid):
        try:
            obj = parse_body(req.body())
            if not isinstance(obj, dict):
                raise DecodeError("json: cannot unmarshal %s into Go value of type "
                                  "agent.checkUpdate" % _json_kind(obj))
            f = _fields(obj, {"Status": "str", "Output": "str"}, "checkUpdate", False)
            status = _dec_str(*f["Status"]) if "Status" in f else ""
            output = _dec_str(*f["Output"]) if "Output" in f else ""
        except DecodeError as e:
            raise HTTPError(400, "Request decode failed: %s" % e)
        if status not in VALID_STATUS:
            raise HTTPError(400, "Invalid check status: '%s'" % status)
        return self._ttl_update(req, cid, status, output)

    def agent_check_register(self, req):
        emu = self.emu
        try:
            obj = parse_body(req.body())
            ct = decode_check_type(obj, "CheckDefinition", _CHECKDEF_SPEC)
        except DecodeError as e:
            raise HTTPError(400, "Request decode failed: %s" % e)
        if not ct.get("Name"):
            raise HTTPError(400, "Missing check name")
        if ct.get("Status") and ct["Status"] not in VALID_STATUS:
            raise HTTPError(400, "Bad check status")
        err = check_type_validate(ct)
        if err:
            raise HTTPError(400, "Invalid check: %s" % err)
        if not ct.get("TTL"):
            raise HTTPError(400, "emulator: only TTL checks are supported by consul_emulator.py")
        ident = self.identity(req)
        with emu.cond:
            sid = ct.get("ServiceID", "")
            svc = emu.services.get(sid) if sid else None
            if sid and svc is None:
                raise HTTPError(500, "ServiceID %s does not exist" % goquote(sid))
            if ident == "anon":
                if svc is not None:
                    raise permission_denied("service", "write", svc["Service"])
                raise permission_denied("node", "write", self.cfg.node)
            cid = ct.get("ID") or ct["Name"]
            hc = {"Node": self.cfg.node, "CheckID": cid, "Name": ct["Name"],
                  "Status": ct.get("Status") or CRITICAL, "Notes": ct.get("Notes", ""),
                  "Output": "", "ServiceID": sid,
                  "ServiceName": svc["Service"] if svc else "",
                  "ServiceTags": list(svc["Tags"] or []) if svc else [],
                  "Type": "ttl", "Interval": "", "Timeout": "", "ExposedPort": 0}
            emu.add_check_locked(hc, ct)
        return Response(200, "")

    def agent_check_deregister(self, req, cid):
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            self._vet_check(ident, cid)
            emu.remove_check_locked(cid)
        return Response(200, "")

    # ---------------- agent: reads ----------------

    def agent_services(self, req):
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            out = {}
            filtered = False
            for sid in sorted(emu.services):
                if ident == "anon":
                    filtered = True
                    continue
                out[sid] = render_agent_service(emu.services[sid], self.cfg.datacenter)
        hdr = ({"X-Consul-Results-Filtered-By-ACLs": "true"}
               if filtered and self.carried_token(req) else None)
        return self.json(out, 200, hdr)

    def agent_checks(self, req):
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            out = {}
            filtered = False
            for cid in sorted(emu.checks):
                if ident == "anon":
                    filtered = True
                    continue
                out[cid] = render_check(emu.checks[cid].hc, with_index=False)
        hdr = ({"X-Consul-Results-Filtered-By-ACLs": "true"}
               if filtered and self.carried_token(req) else None)
        return self.json(out, 200, hdr)

    def agent_self(self, req):
        ident = self.identity(req)
        if ident == "anon":
            raise permission_denied("agent", "read", self.cfg.node)
        emu = self.emu
        addr = self.cfg.node_address
        return self.json({
            "Config": {"Datacenter": self.cfg.datacenter,
                       "PrimaryDatacenter": self.cfg.datacenter,
                       "NodeName": self.cfg.node, "NodeID": emu.node_id,
                       "Partition": "", "Revision": "emulator", "Server": True,
                       "Version": EMULATED_VERSION, "BuildDate": "1970-01-01T00:00:01Z"},
            "DebugConfig": {"DevMode": not bool(self.cfg.state_file),
                            "ACLsEnabled": bool(self.cfg.acl_token)},
            "Coord": None,
            "Member": {"Name": self.cfg.node, "Addr": addr, "Port": 8301,
                       "Tags": {"build": EMULATED_VERSION + ":emulator", "dc": self.cfg.datacenter,
                                "id": emu.node_id, "port": "8300", "role": "consul",
                                "vsn": "2"},
                       "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                       "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4},
            "Stats": {"emulator": {"name": "regent tests/consul/consul_emulator.py"}},
            "Meta": {"consul-network-segment": "", "consul-version": EMULATED_VERSION},
            "xDS": None,
        })

    # ---------------- catalog / health ----------------

    def catalog_services(self, req):
        min_index, wait = self.query_opts(req)
        ident = self.identity(req)
        emu = self.emu

        def compute():
            out = {}
            filtered = False
            for s in emu.cat_services.values():
                if ident == "anon" and not self.anon_reads(s["Service"]):
                    filtered = True
                    continue
                tags = out.setdefault(s["Service"], set())
                tags.update(s.get("Tags") or [])
            obj = {k: sorted(v) for k, v in sorted(out.items())}
            return emu.idx_catalog_services(), obj, filtered

        return self.blocking(req, min_index, wait, compute)

    def _service_entries(self, name, tags, ident):
        emu = self.emu
        exists = False
        entries = []
        filtered = False
        for sid in sorted(emu.cat_services):
            s = emu.cat_services[sid]
            if s["Service"] != name:
                continue
            exists = True
            stags = [t.lower() for t in (s.get("Tags") or [])]
            if any(t.lower() not in stags for t in tags):
                continue
            if ident == "anon" and not self.anon_reads(name):
                filtered = True
                continue
            entries.append(s)
        return exists, entries, filtered

    def catalog_service(self, req, name):
        if name == "":
            raise HTTPError(400, "Missing service name")
        min_index, wait = self.query_opts(req)
        ident = self.identity(req)
        tags = req.q.get("tag", [])
        emu = self.emu

        def compute():
            _, entries, filtered = self._service_entries(name, tags, ident)
            obj = [render_catalog_service_node(emu.node, s) for s in entries]
            return emu.idx_service(name, False), obj, filtered

        return self.blocking(req, min_index, wait, compute)

    def health_service(self, req, name):
        if name == "":
            raise HTTPError(400, "Missing service name")
        passing = False
        if req.has("passing"):
            try:
                passing = parse_bool(req.arg("passing", ""))
            except ValueError:
                raise HTTPError(400, "Invalid value for ?passing")
        min_index, wait = self.query_opts(req)
        ident = self.identity(req)
        tags = req.q.get("tag", [])
        emu = self.emu

        def compute():
            _, entries, filtered = self._service_entries(name, tags, ident)
            obj = []
            for s in entries:
                checks = [emu.cat_checks[c] for c in sorted(emu.cat_checks)
                          if not emu.cat_checks[c].get("ServiceID")]
                checks += [emu.cat_checks[c] for c in sorted(emu.cat_checks)
                           if emu.cat_checks[c].get("ServiceID") == s["ID"]]
                if passing and any(c["Status"] != PASSING for c in checks):
                    continue
                obj.append({"Node": dict(emu.node),
                            "Service": render_health_service(s),
                            "Checks": [render_check(c) for c in checks]})
            return emu.idx_service(name, True), obj, filtered

        return self.blocking(req, min_index, wait, compute)

    def health_state(self, req, state):
        """GET /v1/health/state/<state>: every check in that state (any =
        all), indexed by the checks table (any check change wakes it)."""
        if state not in ("any", PASSING, WARNING, CRITICAL):
            raise HTTPError(400, "Invalid check state: %s" % state)
        min_index, wait = self.query_opts(req)
        ident = self.identity(req)
        emu = self.emu

        def compute():
            obj = []
            filtered = False
            for cid in sorted(emu.cat_checks):
                c = emu.cat_checks[cid]
                if state != "any" and c["Status"] != state:
                    continue
                if ident == "anon":
                    svc = c.get("ServiceName") or ""
                    # node checks need node:read, which the DNS policy
                    # of --anonymous-read grants with its service reads
                    if not (self.anon_reads(svc) if svc else self.cfg.anonymous_read):
                        filtered = True
                        continue
                obj.append(render_check(c))
            return max(emu.checks_index, 1), obj, filtered

        return self.blocking(req, min_index, wait, compute)

    def catalog_datacenters(self, req):
        return self.json([self.cfg.datacenter])

    def catalog_nodes(self, req):
        min_index, wait = self.query_opts(req)
        ident = self.identity(req)
        emu = self.emu

        def compute():
            if ident == "anon":
                return max(emu.nodes_index, 1), [], True
            n = dict(emu.node)
            return max(emu.nodes_index, 1), [n], False

        return self.blocking(req, min_index, wait, compute)

    # ---------------- status ----------------

    def status_leader(self, req):
        return self.json("%s:8300" % self.cfg.node_address)

    def status_peers(self, req):
        return self.json(["%s:8300" % self.cfg.node_address])


def _ip_kind(addr):
    import ipaddress
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return 0
    if ip.version == 6 and ip.ipv4_mapped is None:
        return 6
    return 4


def validate_meta(meta):
    if len(meta) > META_MAX_PAIRS:
        return "Node metadata cannot contain more than %d key/value pairs" % META_MAX_PAIRS
    for k, v in meta.items():
        err = None
        if k == "":
            err = "Key cannot be blank"
        elif not META_KEY_RE.match(k):
            err = "Key contains invalid characters"
        elif len(k) > META_KEY_MAX:
            err = "Key is too long (limit: %d characters)" % META_KEY_MAX
        elif k.startswith("consul-"):
            err = "Key prefix 'consul-' is reserved for internal use"
        elif len(v) > META_VALUE_MAX:
            err = "Value is too long (limit: %d characters)" % META_VALUE_MAX
        if err:
            return "Couldn't load metadata pair ('%s', '%s'): %s" % (k, v, err)
    return None


TOO_MANY = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n")


class Server(ThreadingHTTPServer):
    """One thread per connection.  limits.http_max_conns_per_client: a
    client IP holding that many connections gets 429 on the next one,
    which is then closed (Consul's connlimit on its HTTP listener)."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    max_conns_per_client = 200
    conns = None
    conns_lock = None
    refused = 0

    def process_request(self, request, client_address):
        ip = client_address[0] if isinstance(client_address, tuple) else "unix"
        with self.conns_lock:
            n = self.conns.get(ip, 0)
            if self.max_conns_per_client and n >= self.max_conns_per_client:
                self.refused += 1
                refuse = True
            else:
                self.conns[ip] = n + 1
                refuse = False
        if refuse:
            if self.refused == 1 or self.emu.cfg.verbose:
                log("%s: more than %d connections from one client: 429"
                    % (ip, self.max_conns_per_client))
            try:
                request.sendall(TOO_MANY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        ThreadingHTTPServer.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            ThreadingHTTPServer.process_request_thread(self, request, client_address)
        finally:
            ip = client_address[0] if isinstance(client_address, tuple) else "unix"
            with self.conns_lock:
                n = self.conns.get(ip, 1) - 1
                if n <= 0:
                    self.conns.pop(ip, None)
                else:
                    self.conns[ip] = n

    def handle_error(self, request, client_address):
        # A client that went away (a cancelled blocking query, a killed
        # process) is normal for Consul: no traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        ThreadingHTTPServer.handle_error(self, request, client_address)


def main(argv=None):
    p = argparse.ArgumentParser(description="Consul HTTP API emulator (agent -dev subset)")
    p.add_argument("--http-addr", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8500, help="0 = pick a free port")
    p.add_argument("--node", default="emulator")
    p.add_argument("--node-address", default="127.0.0.1",
                   help="the node's Address in the catalog (default 127.0.0.1)")
    p.add_argument("--datacenter", default="dc1")
    p.add_argument("--acl-token", default="",
                   help="enable ACLs (default policy deny) with this management token")
    p.add_argument("--anonymous-read", action="append", metavar="SERVICE",
                   help="with --acl-token: the anonymous token may read this service "
                        "(repeatable; default: nothing)")
    p.add_argument("--http-max-conns-per-client", type=int, default=200, metavar="N",
                   help="limits.http_max_conns_per_client (200 in Consul): the next "
                        "connection from that IP gets 429 and is closed; 0 = no limit")
    p.add_argument("--old-agent", action="store_true",
                   help="answer a TTL update for an unknown check as Consul <= 1.11 did: "
                        "500 'Unknown check \"ID\"' with ACLs, 500 'CheckID \"ID\" does not "
                        "have associated TTL' without (default: 404 'Unknown check ID', 1.12+)")
    p.add_argument("--reap-mode", choices=("real", "fast"), default=None,
                   help="real: DeregisterCriticalServiceAfter floored at 1m and reaped every "
                        "30s (Consul's fixed values, also the default); fast: 1s and 0.3s "
                        "(what the plugin's script tests use); overrides the two options below")
    p.add_argument("--reap-interval", type=parse_cli_duration, default=30.0,
                   help="how often critical services are reaped (check_reap_interval, 30s)")
    p.add_argument("--min-deregister", type=parse_cli_duration, default=60.0,
                   help="minimum DeregisterCriticalServiceAfter (1m in Consul)")
    p.add_argument("--check-update-interval", type=parse_cli_duration, default=300.0,
                   help="deferred sync of output-only check changes (check_update_interval, "
                        "5m); 0 = sync at once")
    p.add_argument("--state-file", default="",
                   help="persist agent services/checks and the index across restarts "
                        "(default: forget everything, like -dev)")
    p.add_argument("--compact-json", action="store_true",
                   help="compact JSON (a non-dev agent); default is -dev's pretty JSON")
    p.add_argument("--verbose", action="store_true")
    cfg = p.parse_args(argv)
    if cfg.reap_mode == "real":
        cfg.reap_interval, cfg.min_deregister = 30.0, 60.0
    elif cfg.reap_mode == "fast":
        cfg.reap_interval, cfg.min_deregister = 0.3, 1.0
    if cfg.reap_interval <= 0:
        p.error("--reap-interval must be > 0")
    if cfg.http_max_conns_per_client < 0:
        p.error("--http-max-conns-per-client must be >= 0")
    log("reaper every %s, DeregisterCriticalServiceAfter floor %s, %s connections per client"
        % (go_duration_string(cfg.reap_interval), go_duration_string(cfg.min_deregister),
           cfg.http_max_conns_per_client or "unlimited"))

    emu = Emulator(cfg)
    server = Server((cfg.http_addr, cfg.port), Handler)
    server.emu = emu
    server.max_conns_per_client = cfg.http_max_conns_per_client
    server.conns = {}
    server.conns_lock = threading.Lock()
    server.api = API(emu)
    host, port = server.server_address[:2]
    sys.stdout.write("listening %s:%d\n" % (host, port))
    sys.stdout.flush()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t_http = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="http", daemon=True)
    t_sched = threading.Thread(target=emu.scheduler, name="scheduler", daemon=True)
    t_http.start()
    t_sched.start()
    while not stop.wait(0.5):
        pass
    emu.stop()
    server.shutdown()
    server.server_close()
    emu.save_state()
    t_sched.join(2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
