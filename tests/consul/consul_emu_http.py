"""Consul emulator (see consul_emulator.py): the HTTP layer.

Request and response, the handler, the endpoints (agent, catalog, health, status) with
ACLs and blocking queries, and the threaded server with the per-client connection limit.
Python 3 standard library only.
"""

import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from consul_emu_wire import (
    CRITICAL, DEFAULT_QUERY_TIME, DecodeError, EMULATED_VERSION, HTTPError, JITTER_FRACTION,
    MAX_QUERY_TIME, PASSING, VALID_STATUS, WARNING, _CHECKDEF_SPEC, _check_empty, _dec_str,
    _fields, _ip_kind, _json_kind, check_type_validate, decode_check_type,
    decode_service_definition, go_clean_path, go_json, goquote, log, parse_body, parse_bool,
    parse_go_duration, permission_denied, validate_meta)
from consul_emu_state import (
    render_agent_service, render_catalog_service_node, render_check, render_health_service)


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
        self.server.api.count(method, path, resp.status)
        self._send(resp, method)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class API(object):
    """Endpoint implementations. Paths are percent-decoded (like Go's URL.Path)."""

    def __init__(self, emu):
        self.emu = emu
        self.cfg = emu.cfg
        self.pace_lock = threading.Lock()
        self.pace_next = 0.0
        self.counts = {}
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

    def pace(self, req):
        """--agent-rate N: the agent's writes (PUT /v1/agent/...) are answered
        at most N a second, one after the other in arrival order: an agent
        saturated by its callers.  Only the answer is late; what it does is
        unchanged."""
        rate = self.cfg.agent_rate
        if rate <= 0 or req.method != "PUT" or not req.path.startswith("/v1/agent/"):
            return
        with self.pace_lock:
            now = time.monotonic()
            slot = max(now, self.pace_next)
            self.pace_next = slot + 1.0 / rate
        if slot > now:
            time.sleep(slot - now)

    def count(self, method, path, status):
        """Requests answered, by method, route and status (logged at exit)."""
        route = "other"
        for pattern, prefix, _methods, _fn in self.routes:
            if (prefix and path.startswith(pattern)) or (not prefix and path == pattern):
                route = pattern
                break
        key = "%s %s %d" % (method, route, status)
        with self.pace_lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def dispatch(self, req):
        self.pace(req)
        return self._dispatch(req)

    def _dispatch(self, req):
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

    def _agent_listing(self, req, table, render):
        """/v1/agent/services and /v1/agent/checks: every entry of table
        rendered, none for the anonymous token (filtered, said by the header
        when a token was carried)."""
        emu = self.emu
        ident = self.identity(req)
        with emu.cond:
            out = {}
            filtered = False
            for key in sorted(table):
                if ident == "anon":
                    filtered = True
                    continue
                out[key] = render(table[key])
        hdr = ({"X-Consul-Results-Filtered-By-ACLs": "true"}
               if filtered and self.carried_token(req) else None)
        return self.json(out, 200, hdr)

    def agent_services(self, req):
        return self._agent_listing(
            req, self.emu.services, lambda svc: render_agent_service(svc, self.cfg.datacenter))

    def agent_checks(self, req):
        return self._agent_listing(
            req, self.emu.checks, lambda st: render_check(st.hc, with_index=False))

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
            # one pass over the checks, in check id order: the node's, then
            # each service's (sorting every check once per entry made an
            # answer of 10,000 entries take ~45 s)
            node_checks, by_service = [], {}
            for cid in sorted(emu.cat_checks):
                c = emu.cat_checks[cid]
                sid = c.get("ServiceID")
                if not sid:
                    node_checks.append(c)
                else:
                    by_service.setdefault(sid, []).append(c)
            for s in entries:
                checks = node_checks + by_service.get(s["ID"], [])
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
