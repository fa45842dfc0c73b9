#!/usr/bin/env python3
"""loadgen.py - a steady client for the end-to-end test: sends HTTP GETs to
one URL (a new connection each, like curl in a loop) from a few threads
until a stop file appears or the duration ends, and writes one JSON line per
request: {"t": unix seconds at the answer, "status": int or 0, "body": str,
"error": str}.  Loopback only; bounded in time and rate."""
import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=float, default=30.0, help="hard limit, seconds")
    ap.add_argument("--stop-file", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.005, help="pause per thread between requests")
    a = ap.parse_args()
    host = a.url.split("/")[2].split(":")[0]
    if not host.startswith("127.") and host not in ("localhost", "[::1]"):
        raise SystemExit("loadgen: refusing a non-loopback URL: " + a.url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    lock = threading.Lock()
    out = open(a.out, "w")
    deadline = time.time() + a.duration

    def done():
        return time.time() >= deadline or (a.stop_file and os.path.exists(a.stop_file))

    def worker():
        while not done():
            rec = {"status": 0, "body": "", "error": ""}
            try:
                with opener.open(a.url, timeout=5) as r:
                    rec["status"] = r.status
                    rec["body"] = r.read(200).decode("utf-8", "replace").strip()
            except urllib.error.HTTPError as e:
                rec["status"] = e.code
                rec["error"] = "http %d" % e.code
            except Exception as e:  # socket errors, timeouts
                rec["error"] = type(e).__name__ + ": " + str(e)
            rec["t"] = time.time()
            with lock:
                out.write(json.dumps(rec) + "\n")
                out.flush()
            time.sleep(a.interval)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


if __name__ == "__main__":
    main()
