"""Consul emulator (see consul_emulator.py): what is Go's or the wire's.

Constants of the emulated agent, Go-compatible parsing and printing (time.ParseDuration,
%q, encoding/json's escaping, strconv.ParseBool, ServeMux path cleaning), the strict
decoding of request bodies as Consul's structs, metadata validation and the HTTP errors.
Python 3 standard library only.
"""

import argparse
import json
import re
import sys



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
