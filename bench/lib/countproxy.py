#!/usr/bin/env python3
"""countproxy.py - a TCP proxy on loopback that counts HTTP/1.1 requests and bytes.

  countproxy.py LISTEN_PORT UPSTREAM_PORT STATS.json [--host 127.0.0.1]

Every connection to 127.0.0.1:LISTEN_PORT is piped to 127.0.0.1:UPSTREAM_PORT.  The client's
byte stream is parsed as HTTP/1.1 requests (request line, headers, Content-Length or chunked
body) so that requests are counted by path; the bytes of both directions are counted as they
pass.  STATS.json is rewritten (temp + rename) every 100 ms while something changed:
  {"requests": N, "by_path": {"/v3/kv/txn": N, ...}, "up_bytes": N, "down_bytes": N,
   "connections": N}
The first line on stdout is "listening PORT".
"""
import asyncio
import json
import os
import sys

ST = {"requests": 0, "by_path": {}, "up_bytes": 0, "down_bytes": 0, "connections": 0}
DIRTY = [True]


class ReqParser:
    def __init__(self):
        self.buf = b""
        self.body_left = 0
        self.chunked = False

    def feed(self, data):
        self.buf += data
        while True:
            if self.body_left > 0:
                n = min(self.body_left, len(self.buf))
                self.buf = self.buf[n:]
                self.body_left -= n
                if self.body_left > 0:
                    return
                continue
            if self.chunked:
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                size = int(self.buf[:i].split(b";")[0] or b"0", 16)
                if size == 0:
                    j = self.buf.find(b"\r\n\r\n", i - 2 if i >= 2 else 0)
                    if j < 0:
                        return
                    self.buf = self.buf[j + 4:]
                    self.chunked = False
                    continue
                if len(self.buf) < i + 2 + size + 2:
                    return
                self.buf = self.buf[i + 2 + size + 2:]
                continue
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i].decode("latin-1")
            self.buf = self.buf[i + 4:]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            path = parts[1].split("?")[0] if len(parts) > 1 else "?"
            ST["requests"] += 1
            ST["by_path"][path] = ST["by_path"].get(path, 0) + 1
            for l in lines[1:]:
                k, _, v = l.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    self.body_left = int(v.strip())
                elif k == "transfer-encoding" and "chunked" in v.lower():
                    self.chunked = True


async def pipe(reader, writer, key, parser=None):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            ST[key] += len(data)
            DIRTY[0] = True
            if parser:
                parser.feed(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(cr, cw, host, up):
    ST["connections"] += 1
    DIRTY[0] = True
    try:
        ur, uw = await asyncio.open_connection(host, up)
    except OSError:
        cw.close()
        return
    for w in (cw, uw):
        sock = w.get_extra_info("socket")
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(pipe(cr, uw, "up_bytes", ReqParser()), pipe(ur, cw, "down_bytes"))


async def dump(path):
    while True:
        await asyncio.sleep(0.1)
        if DIRTY[0]:
            DIRTY[0] = False
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(ST, f)
            os.replace(tmp, path)


async def main():
    port, up, stats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    host = "127.0.0.1"
    srv = await asyncio.start_server(lambda r, w: handle(r, w, host, up), host, port)
    print("listening %d" % port, flush=True)
    asyncio.ensure_future(dump(stats))
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
