"""Running the load generators and parsing what they print."""

from __future__ import annotations

import json
import re
import subprocess

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read a duration from {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def _run(argv: list[str], timeout: float) -> str:
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def wrk(url: str, *, connections: int, duration: float, cpus: str | None, script: str | None = None,
        threads: int = 1) -> dict:
    """Closed loop: `connections` keep-alive connections, each sending its next request
    when the previous response is in."""
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if script:
        argv += ["-s", script]
    argv.append(url)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = _run(argv, timeout=duration + 60)
    result: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    result["rps"] = float(m.group(1))
    for pct, key in [("50", "p50_ms"), ("75", "p75_ms"), ("90", "p90_ms"), ("99", "p99_ms")]:
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            result[key] = _to_ms(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = sum(int(g) for g in m.groups()) if m else 0
    return result


def h2load(url: str, *, clients: int, streams: int, duration: float, cpus: str | None,
           data_file: str | None = None, headers: list[str] | None = None, warmup: float = 1.0) -> dict:
    """h2c with prior knowledge: `clients` connections × `streams` concurrent streams."""
    argv = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{max(1, round(duration))}",
            f"--warm-up-time={max(100, int(warmup * 1000))}ms"]
    if data_file:
        argv += ["-d", data_file]
    for h in headers or []:
        argv += ["-H", h]
    argv.append(url)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = _run(argv, timeout=duration + warmup + 60)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not m:
        raise RuntimeError(f"h2load printed no req/s:\n{out}")
    result: dict = {"rps": float(m.group(1))}
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if m:
        result["requests"] = int(m.group(3))
        result["errors"] = int(m.group(4)) + int(m.group(5))
    m = re.search(r"status codes: (\d+) 2xx", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
    if m and done:
        result["non_2xx"] = max(0, int(done.group(1)) - int(m.group(1)) - result.get("errors", 0))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        result["mean_ms"] = _to_ms(m.group(3))
        result["max_ms"] = _to_ms(m.group(2))
    return result


def bench_load(binary: str, port: int, *, rate: float, connections: int, duration: float, warmup: float,
               cpus: str | None, path: str = "/") -> dict:
    """Open loop at a fixed rate (crates/bench `bench-load`); latency from intended send time."""
    argv = [binary, "--addr", f"127.0.0.1:{port}", "--path", path, "--rate", str(rate),
            "--connections", str(connections), "--duration", str(duration), "--warmup", str(warmup)]
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = json.loads(_run(argv, timeout=duration + warmup + 60))
    lat = out["latency_ms"]
    return {
        "achieved_rps": out["achieved_rps"],
        "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "p999_ms": lat["p999"],
        "max_ms": lat["max"],
        "uncorrected_p99_ms": out["uncorrected_latency_ms"]["p99"],
        "requests": out["completed"], "errors": out["errors"], "non_2xx": out["non_2xx"],
    }
