#!/usr/bin/env python3
"""A statsd listener standing in for the CloudWatch agent's (or any statsd server's):
receives UDP datagrams and appends every metric line to a file, flushed per datagram.

    python3 statsd.py --port 8125 --out received.txt
"""
import argparse
import socket

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--port", type=int, default=8125)
parser.add_argument("--out", required=True)
args = parser.parse_args()

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", args.port))
with open(args.out, "a", encoding="utf-8") as out:
    while True:
        data, _ = sock.recvfrom(65535)
        # One metric per line; a datagram may carry several (DogStatsD batching).
        for line in data.decode("utf-8", "replace").splitlines():
            if line:
                out.write(line + "\n")
        out.flush()
