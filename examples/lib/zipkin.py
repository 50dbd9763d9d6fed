#!/usr/bin/env python3
"""A Zipkin collector stand-in for ferrymesh's examples (Python 3 standard library only).

Accepts Zipkin v2 JSON spans (`POST /api/v2/spans`, a JSON array, as Envoy's
`HTTP_JSON` reporter sends them), answers 202 Accepted like a real Zipkin, and appends
every span as one JSON line to --out. It binds 127.0.0.1 only; `GET /healthz` answers
200 so scripts can wait for it.

  --port N     port to listen on (required)
  --out FILE   where spans go, one JSON object per line (required)
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(out):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "example-zipkin"
        sys_version = ""
        disable_nagle_algorithm = True

        def log_message(self, fmt, *a):
            pass

        def reply(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def read_body(self):
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def do_GET(self):
            self.reply(200 if self.path == "/healthz" else 404)

        def do_POST(self):
            body = self.read_body()
            if self.path != "/api/v2/spans":
                self.reply(404)
                return
            try:
                spans = json.loads(body)
            except ValueError:
                self.reply(400)
                return
            with lock, open(out, "a", encoding="utf-8") as f:
                for span in spans:
                    f.write(json.dumps(span, sort_keys=True) + "\n")
            self.reply(202)

    return Handler


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.out))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
