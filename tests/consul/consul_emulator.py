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
import signal
import sys
import threading

from consul_emu_wire import go_duration_string, log, parse_cli_duration
from consul_emu_state import Emulator
from consul_emu_http import API, Handler, Server


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
    p.add_argument("--agent-rate", type=float, default=0.0, metavar="N",
                   help="answer the agent's writes (PUT /v1/agent/...) at most N a second, "
                        "in arrival order: a saturated agent (default 0: unlimited)")
    p.add_argument("--verbose", action="store_true")
    cfg = p.parse_args(argv)
    if cfg.reap_mode == "real":
        cfg.reap_interval, cfg.min_deregister = 30.0, 60.0
    elif cfg.reap_mode == "fast":
        cfg.reap_interval, cfg.min_deregister = 0.3, 1.0
    if cfg.reap_interval <= 0:
        p.error("--reap-interval must be > 0")
    if cfg.agent_rate < 0:
        p.error("--agent-rate must be >= 0")
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
    log("requests answered (method route status: count): %s"
        % ", ".join("%s: %d" % kv for kv in sorted(server.api.counts.items())))
    t_sched.join(2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
