#!/usr/bin/env python3
"""A byte-forwarding front for a Consul agent's HTTP port, so the plugin's
unix-socket and TLS settings can be tested against the emulator (which only
speaks plain TCP) and, unchanged, against a real agent.

    agent_proxy.py unix PATH TARGET_PORT
    agent_proxy.py tls PORT TARGET_PORT CERT KEY CLIENT_CA

tls: listens on 127.0.0.1:PORT with CERT/KEY and requires a client
certificate signed by CLIENT_CA.  Prints "ready" once listening; every
refused handshake is logged on stderr.  Python 3 standard library only.
"""
import os
import select
import socket
import ssl
import sys
import threading


def relay(a, b):
    """One thread per connection (an SSL object must not be read and written
    from two threads at once)."""
    try:
        while True:
            if isinstance(a, ssl.SSLSocket) and a.pending():
                ready = [a]
            else:
                ready, _, _ = select.select([a, b], [], [])
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass


def serve(conn, target):
    try:
        up = socket.create_connection(("127.0.0.1", target), timeout=5)
        up.settimeout(None)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:
        sys.stderr.write("agent_proxy: upstream: %s\n" % e)
        conn.close()
        return
    relay(conn, up)
    conn.close()
    up.close()


def main():
    mode = sys.argv[1]
    if mode == "unix":
        path, target = sys.argv[2], int(sys.argv[3])
        if os.path.exists(path):
            os.unlink(path)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ctx = None
    else:
        port, target = int(sys.argv[2]), int(sys.argv[3])
        cert, key, ca = sys.argv[4], sys.argv[5], sys.argv[6]
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ls.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = ls.accept()
        if ctx is not None:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn.settimeout(5)
                conn = ctx.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                sys.stderr.write("agent_proxy: TLS handshake refused: %s\n" % e)
                conn.close()
                continue
        threading.Thread(target=serve, args=(conn, target), daemon=True).start()


if __name__ == "__main__":
    main()
