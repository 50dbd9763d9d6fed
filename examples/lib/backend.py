#!/usr/bin/env python3
"""A tiny HTTP backend for ferrymesh's examples (Python 3 standard library only).

Every request gets a short text body naming the backend and an `x-backend` header,
unless one of the failure options says otherwise. It binds 127.0.0.1 only.

  --port N               port to listen on (required)
  --name NAME            name in bodies and in the x-backend header (default: backend)
  --fail-first N         answer the first N requests with --fail-status
  --fail-status CODE     status of a failed request (default 503)
  --fail-if-exists FILE  answer every request with --fail-status while FILE exists
  --delay-ms MS          wait MS milliseconds before answering
  --health-path PATH     health endpoint (default /healthz): 200, or 503 while
                         --unhealthy-if-exists FILE exists; never delayed, failed or recorded
  --record FILE          append one JSON line per request (method, path, headers, body)

A request may ask for its own delay with the query parameter `delay_ms=MS`.
Health requests do not count for --fail-first.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="backend")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--fail-if-exists", default=None)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--health-path", default="/healthz")
    p.add_argument("--unhealthy-if-exists", default=None)
    p.add_argument("--record", default=None)
    return p.parse_args(argv)


def make_handler(args):
    lock = threading.Lock()
    state = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a proxy's connection pool expects
        server_version = "example-backend"
        sys_version = ""
        # Headers and body are written separately: without TCP_NODELAY, Nagle's
        # algorithm and the peer's delayed ACK hold the body for ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *a):  # quiet: the run scripts print what matters
            pass

        def reply(self, status, body):
            data = body.encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-backend", args.name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def handle_any(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            path, _, query = self.path.partition("?")
            params = urllib.parse.parse_qs(query)
            if path == args.health_path:
                sick = args.unhealthy_if_exists and os.path.exists(args.unhealthy_if_exists)
                self.reply(503 if sick else 200, f"{args.name} {'unhealthy' if sick else 'healthy'}\n")
                return
            with lock:
                state["requests"] += 1
                n = state["requests"]
                if args.record:
                    with open(args.record, "a", encoding="utf-8") as f:
                        f.write(json.dumps({
                            "backend": args.name,
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body.decode("utf-8", "replace"),
                        }) + "\n")
            delay_ms = args.delay_ms
            if params.get("delay_ms", [""])[0].isdigit():
                delay_ms = int(params["delay_ms"][0])
            if delay_ms > 0:
                time.sleep(delay_ms / 1000.0)
            failing = n <= args.fail_first or (
                args.fail_if_exists is not None and os.path.exists(args.fail_if_exists))
            if failing:
                self.reply(args.fail_status, f"{args.name} failed request {n}\n")
            else:
                self.reply(200, f"{args.name} answered request {n}: {self.command} {self.path}\n")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

    return Handler


def main(argv):
    args = parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
