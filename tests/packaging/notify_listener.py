#!/usr/bin/env python3
"""notify_listener.py SOCKET OUTFILE - a stand-in for systemd's notification
socket: binds a unix datagram socket (SOCKET starting with '@' is in the
abstract namespace, as systemd may hand out) and appends every message to
OUTFILE as one line: "<CLOCK_MONOTONIC usec at receipt> <fields joined by |>".
Writes "listening" to OUTFILE.ready once bound; runs until killed."""
import os
import socket
import sys
import time

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
with open(out + ".ready", "w") as f:
    f.write("listening\n")
while True:
    data = s.recv(65536)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with open(out, "a") as f:
        f.write("%d %s\n" % (now, data.decode("utf-8", "replace").replace("\n", "|")))
        f.flush()
        os.fsync(f.fileno())
