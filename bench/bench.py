#!/usr/bin/env python3
"""ferry against Envoy, haproxy, nginx and a direct connection, on this machine, in one run.

Usually started by bench/run.sh, which installs the tools and builds the release
binaries first. Python 3.11 standard library only.

For each scenario and worker count ("batch"), every target is started with an
equivalent config, smoke-checked, warmed up, then measured in interleaved rounds
(round r runs the targets in an order rotated by r: A B C D E, B C D E A, ...).
Each batch holds /tmp/ferry-cpu.lock, so builds and tests on the machine wait
for it, and releases it afterwards. Results (every sample) go to
bench/results/<timestamp>.json; docs/benchmarks.md is regenerated from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import configs  # noqa: E402
import loadgen  # noqa: E402
import report  # noqa: E402
from procs import Proc, cpu_lock, http_get, log, port_free, wait_ready  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = REPO.parent / "shared" / "fixtures" / "seed-front-proxy-v2.yaml"
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/ferrymesh/target"))
RELEASE = TARGET_DIR / "release"

# Above the kernel's ephemeral range (32768-60999 here) and above the 10000-32767 range
# that the project's tests pick ports from, so neither can take them mid-run.
BACKEND_PORT = 62080
PORTS = {  # target: (HTTP/1.1 port, h2c port, admin port)
    "ferry": (62100, 62100, 62101),
    "envoy": (62200, 62200, 62201),
    "haproxy": (62300, 62300, None),
    "nginx": (62400, 62401, None),
    # The tracing scenario's second instance of each proxy (tracing on).
    "ferry+tracing": (62500, 62500, 62501),
    "envoy+tracing": (62600, 62600, 62601),
}
ALL_TARGETS = ["direct", "ferry", "envoy", "haproxy", "nginx"]
SCENARIOS = ["http1", "fixed", "h2c", "grpc", "large", "routes", "footprint", "tracing"]

N_ROUTES, N_ROUTE_CLUSTERS = 10_000, 1_000
N_CLUSTERS = 10_000
LARGE_BODY = 1 << 20
GRPC_MESSAGE = bytes([0x0A, 0x40]) + b"x" * 64  # a 66-byte protobuf-like message


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        self.work = Path(args.workdir) / stamp
        self.work.mkdir(parents=True, exist_ok=True)
        self.out_path = Path(args.out) if args.out else HERE / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
        self.samples: list[dict] = []
        self.notes: list[str] = []
        self.ferry = str(RELEASE / "ferry")
        self.bench_load = str(RELEASE / "bench-load")
        self.backend_bin = str(RELEASE / "bench-backend")
        self.grpc_file = self.work / "grpc-request.bin"
        self.grpc_file.write_bytes(b"\x00" + len(GRPC_MESSAGE).to_bytes(4, "big") + GRPC_MESSAGE)
        self.post_script = self.work / "post-1mib.lua"
        self.post_script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = string.rep("a", {LARGE_BODY})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
        self.post_script_8m = self.work / "post-8mib.lua"
        self.post_script_8m.write_text(self.post_script.read_text().replace(str(LARGE_BODY), str(8 * LARGE_BODY)))
        self.meta = self._meta()

    # --- bookkeeping ---------------------------------------------------------

    def _meta(self) -> dict:
        def version(argv: list[str]) -> str:
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
                text = (out.stdout + out.stderr).strip().splitlines()
                return text[0] if text else ""
            except (OSError, subprocess.TimeoutExpired):
                return "missing"

        cpu = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "crates"], capture_output=True, text=True).stdout.strip()
        return {
            "timestamp": self.stamp,
            "git": rev + ("+dirty" if dirty else ""),
            "cpu": cpu,
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "versions": {
                "envoy": version(["envoy", "--version"]).split("version:")[-1].strip(),
                "haproxy": version(["haproxy", "-v"]),
                "nginx": version(["nginx", "-v"]),
                "wrk": version(["wrk", "-v"]),
                "h2load": version(["h2load", "--version"]),
            },
        }

    def save(self) -> None:
        data = {
            "meta": self.meta,
            "params": {k: v for k, v in vars(self.args).items() if k not in ("workdir", "out")},
            "envoy_only_config": configs.ENVOY_ONLY,
            "notes": self.notes,
            "samples": self.samples,
        }
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        self.out_path.write_text(json.dumps(data, indent=1) + "\n")

    def record(self, scenario: str, workers: int, target: str, rnd: int, metrics: dict) -> None:
        self.samples.append({"scenario": scenario, "workers": workers, "target": target, "round": rnd, "metrics": metrics})
        bad = metrics.get("errors", 0) + metrics.get("non_2xx", 0)
        flag = f"  ({bad} errors/non-2xx)" if bad else ""
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items() if k in report.SHOWN_IN_LOG}
        log(f"    {scenario:9} w{workers} {target:8} round {rnd}: {shown}{flag}")

    # --- processes -------------------------------------------------------------

    def cpus(self, workers: int, role: str) -> str | None:
        """workers=1: the proxy has CPU 1 to itself; backend and load generator share CPU 0.
        workers=2: nothing is pinned; proxy, backend and load generator share both CPUs."""
        if workers != 1 or self.args.no_pin:
            return None
        return "1" if role == "proxy" else "0"

    def start_backend(self, workers: int) -> Proc:
        if not port_free(BACKEND_PORT):
            raise RuntimeError(f"port {BACKEND_PORT} for the backend is in use")
        proc = Proc("backend", [self.backend_bin, "--listen", f"127.0.0.1:{BACKEND_PORT}", "--threads", str(workers)],
                    self.work / "backend.log", cpus=self.cpus(workers, "backend"))
        wait_ready(proc, BACKEND_PORT, "/", deadline_s=10)
        return proc

    def start_target(self, target: str, kind: str, workers: int, tag: str) -> tuple[Proc, float]:
        """Starts `target` with config `kind` (main | routes | seed | clusters1 | clustersN);
        returns the process and its startup time to ready (seconds)."""
        h1, h2, admin = PORTS[target]
        d = self.work / f"{tag}-{target}"
        d.mkdir(parents=True, exist_ok=True)
        ready_path = {"seed": "/service", "routes": f"/r{N_ROUTES - 1}/x"}.get(kind, "/")
        cpus = self.cpus(workers, "proxy")
        if target in ("ferry", "envoy", "ferry+tracing", "envoy+tracing"):
            for_envoy = target.startswith("envoy")
            if kind in ("observed", "traced"):
                text = configs.envoy_observed(h1, admin, BACKEND_PORT, traced=kind == "traced")
            elif kind == "main":
                text = configs.envoy_main(h1, admin, BACKEND_PORT, for_envoy=for_envoy)
            elif kind == "routes":
                text = configs.envoy_routes(h1, admin, BACKEND_PORT, N_ROUTES, N_ROUTE_CLUSTERS, for_envoy=for_envoy)
            elif kind == "seed":
                seed = configs.seed_v3 if for_envoy else configs.seed
                text = seed(SEED.read_text(), h1, admin, BACKEND_PORT)
            elif kind.startswith("clusters"):
                n = 1 if kind == "clusters1" else N_CLUSTERS
                text = configs.envoy_clusters(h1, admin, BACKEND_PORT, n, for_envoy=for_envoy)
            else:
                raise ValueError(kind)
            cfg = d / "bootstrap.yaml"
            cfg.write_text(text)
            if target.startswith("ferry"):
                check = subprocess.run([self.ferry, "validate", str(cfg)], capture_output=True, text=True)
                if check.returncode != 0:
                    raise RuntimeError(f"ferry refuses the {kind} config:\n{check.stdout}{check.stderr}")
                argv = [self.ferry, "proxy", "-c", str(cfg), "--concurrency", str(workers), "--log-level", "warn"]
            else:
                argv = ["envoy", "-c", str(cfg), "--concurrency", str(workers), "--disable-hot-restart",
                        "--log-level", "warn"]
        elif target == "haproxy":
            hk = "clusters" if kind.startswith("clusters") else kind
            map_path = d / "routes.map"
            if kind == "routes":
                map_path.write_text(configs.haproxy_route_map(N_ROUTES, N_ROUTE_CLUSTERS))
            n = N_ROUTE_CLUSTERS if kind == "routes" else (N_CLUSTERS if kind == "clustersN" else 1)
            cfg = d / "haproxy.cfg"
            cfg.write_text(configs.haproxy(hk, workers=workers, h1_port=h1, backend_port=BACKEND_PORT,
                                           n_clusters=n, map_path=str(map_path)))
            argv = ["haproxy", "-f", str(cfg), "-db"]
        elif target == "nginx":
            nk = "clusters" if kind.startswith("clusters") else kind
            n = N_ROUTE_CLUSTERS if kind == "routes" else (N_CLUSTERS if kind == "clustersN" else 1)
            for sub in ("client_body", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
                (d / sub).mkdir(exist_ok=True)
            cfg = d / "nginx.conf"
            cfg.write_text(configs.nginx(nk, workers=workers, prefix=str(d), h1_port=h1, h2_port=h2,
                                         backend_port=BACKEND_PORT, n_routes=N_ROUTES, n_clusters=n))
            argv = ["nginx", "-p", str(d), "-c", str(cfg), "-g", "daemon off;"]
        else:
            raise ValueError(target)
        for port in {h1, h2, admin} - {None}:
            if not port_free(port):
                raise RuntimeError(f"port {port} for {target} is in use")
        proc = Proc(target, argv, d / "log.txt", cpus=cpus)
        startup = wait_ready(proc, h1, ready_path)
        return proc, startup

    # --- one measurement ---------------------------------------------------------

    def measure(self, scenario: str, target: str, workers: int, proc: Proc | None, duration: float) -> dict:
        h1, h2 = (BACKEND_PORT, BACKEND_PORT) if target == "direct" else PORTS[target][:2]
        cpus = self.cpus(workers, "load")
        sampler = RssSampler(proc) if proc else None
        if sampler:
            sampler.start()
        try:
            if scenario in ("http1", "routes", "footprint", "tracing"):
                path = {"http1": "/", "tracing": "/", "routes": f"/r{N_ROUTES - 1}/x", "footprint": "/service"}[scenario]
                m = loadgen.wrk(f"http://127.0.0.1:{h1}{path}", connections=50, duration=duration, cpus=cpus)
            elif scenario == "fixed":
                m = loadgen.bench_load(self.bench_load, h1, rate=self.args.rate, connections=50,
                                       duration=duration, warmup=1.0, cpus=cpus)
            elif scenario == "h2c":
                m = loadgen.h2load(f"http://127.0.0.1:{h2}/", clients=10, streams=10, duration=duration, cpus=cpus)
            elif scenario == "grpc":
                m = loadgen.h2load(f"http://127.0.0.1:{h2}/bench.Echo/Unary", clients=10, streams=10,
                                   duration=duration, cpus=cpus, data_file=str(self.grpc_file),
                                   headers=["content-type: application/grpc", "te: trailers"])
            elif scenario in ("large", "large8"):
                script = self.post_script if scenario == "large" else self.post_script_8m
                m = loadgen.wrk(f"http://127.0.0.1:{h1}/echo", connections=8, duration=duration, cpus=cpus,
                                script=str(script))
                m["mib_per_s"] = m["rps"] * LARGE_BODY / (1 << 20) * (1 if scenario == "large" else 8)
            else:
                raise ValueError(scenario)
        finally:
            if sampler:
                sampler.stop()
        if sampler:
            m["rss_peak_kb"] = sampler.peak_rss
            m["pss_peak_kb"] = sampler.peak_pss
        return m

    def smoke(self, scenario: str, target: str) -> None:
        """A few requests with their answers checked, before anything is timed."""
        h1, h2 = (BACKEND_PORT, BACKEND_PORT) if target == "direct" else PORTS[target][:2]
        if scenario in ("http1", "fixed", "tracing"):
            status, body = http_get(h1, "/")
            if status != 200 or body != b"hello, ferry\n":
                raise RuntimeError(f"{target}: GET / answered {status} {body[:80]!r}")
        elif scenario == "routes":
            status, body = http_get(h1, f"/r{N_ROUTES - 1}/x")
            if status != 200 or body != b"hello, ferry\n":
                raise RuntimeError(f"{target}: GET /r{N_ROUTES - 1}/x answered {status}")
        elif scenario == "large":
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", h1, timeout=10)
            payload = os.urandom(LARGE_BODY)
            conn.request("POST", "/echo", body=payload, headers={"Host": "bench"})
            resp = conn.getresponse()
            got = resp.read()
            conn.close()
            if resp.status != 200 or got != payload:
                raise RuntimeError(f"{target}: 1 MiB echo answered {resp.status}, {len(got)} bytes (equal: {got == payload})")
        elif scenario in ("h2c", "grpc"):
            argv = ["h2load", "-n20", "-c1", "-m5"]
            url = f"http://127.0.0.1:{h2}/"
            if scenario == "grpc":
                argv += ["-d", str(self.grpc_file), "-H", "content-type: application/grpc", "-H", "te: trailers"]
                url += "bench.Echo/Unary"
            out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=30).stdout
            if "20 succeeded" not in out or "20 2xx" not in out:
                raise RuntimeError(f"{target}: h2load smoke check failed:\n{out}")
            if scenario == "grpc" and shutil.which("curl"):
                v = subprocess.run(["curl", "-sS", "-v", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
                                    "-H", "te: trailers", "--data-binary", f"@{self.grpc_file}", "-o", "/dev/null", url],
                                   capture_output=True, text=True, timeout=30)
                if "grpc-status: 0" not in v.stderr:
                    raise RuntimeError(f"{target}: no grpc-status 0 in the gRPC answer:\n{v.stderr[-2000:]}")

    # --- batches -------------------------------------------------------------------

    def batch(self, scenario: str, workers: int) -> None:
        targets = [t for t in self.args.targets if not (scenario == "footprint" and t == "direct")]
        if scenario == "tracing":
            # Stats only (with request ids) against stats + tracing at 1% sampling.
            proxies = [t for t in targets if t in ("ferry", "envoy")]
            targets = [x for t in proxies for x in (t, t + "+tracing")]
        rounds, duration = self.args.rounds, self.args.duration
        if scenario == "fixed":
            duration = self.args.fixed_duration
        log(f"== {scenario}, {workers} worker(s): {len(targets)} targets x {rounds} round(s) x {duration}s")
        with cpu_lock(f"{scenario} w{workers}"):
            if scenario == "footprint":
                self.footprint(workers, targets)
                return
            kind = "routes" if scenario == "routes" else "main"
            kinds = {t: kind for t in targets}
            if scenario == "tracing":
                kinds = {t: "traced" if t.endswith("+tracing") else "observed" for t in targets}
            backend = self.start_backend(workers)
            procs: dict[str, Proc | None] = {}
            try:
                for t in targets:
                    if t == "direct":
                        procs[t] = None
                        continue
                    proc, startup = self.start_target(t, kinds[t], workers, f"{scenario}-w{workers}")
                    procs[t] = proc
                    time.sleep(0.5)
                    rss, pss = proc.memory_kb()
                    if scenario == "routes":
                        self.record(scenario + "_idle", workers, t, 0, {"startup_ms": startup * 1000, "rss_idle_kb": rss, "pss_idle_kb": pss})
                for t in targets:
                    self.smoke(scenario, t)
                # Warm-up: connections, pools and caches of every target, not recorded.
                for t in targets:
                    self.measure(scenario if scenario != "fixed" else "http1", t, workers, procs[t], self.args.warmup)
                for r in range(rounds):
                    order = targets[r % len(targets):] + targets[: r % len(targets)]
                    for t in order:
                        m = self.measure(scenario, t, workers, procs[t], duration)
                        self.record(scenario, workers, t, r, m)
                if scenario == "large":
                    # Does RSS grow with body size? The same load with 8 MiB bodies, once.
                    for t in targets:
                        if procs[t]:
                            m = self.measure("large8", t, workers, procs[t], duration)
                            self.record("large8", workers, t, 0, m)
            finally:
                for p in procs.values():
                    if p:
                        p.stop()
                backend.stop()
            self.save()

    def footprint(self, workers: int, targets: list[str]) -> None:
        """Scenario 7: the founding document's configuration (idle RSS, RSS under load,
        startup), then 1 and 10,000 clusters (RSS per cluster, startup)."""
        backend = self.start_backend(workers)
        try:
            for r in range(self.args.footprint_rounds):
                order = targets[r % len(targets):] + targets[: r % len(targets)]
                for t in order:
                    m: dict = {}
                    proc, startup = self.start_target(t, "seed", workers, f"footprint-w{workers}-r{r}")
                    try:
                        m["seed_startup_ms"] = startup * 1000
                        time.sleep(1.0)
                        m["seed_rss_idle_kb"], m["seed_pss_idle_kb"] = proc.memory_kb()
                        load = self.measure("footprint", t, workers, proc, self.args.footprint_load)
                        m["seed_rps"] = load["rps"]
                        m["seed_rss_load_kb"] = load["rss_peak_kb"]
                        m["errors"] = load.get("errors", 0)
                        m["non_2xx"] = load.get("non_2xx", 0)
                    finally:
                        proc.stop()
                    for kind, n in (("clusters1", 1), ("clustersN", N_CLUSTERS)):
                        proc, startup = self.start_target(t, kind, workers, f"footprint-w{workers}-r{r}")
                        try:
                            time.sleep(1.0)
                            rss, _ = proc.memory_kb()
                            m[f"rss_{n}c_kb"] = rss
                            m[f"startup_{n}c_ms"] = startup * 1000
                        finally:
                            proc.stop()
                    m["kb_per_cluster"] = (m[f"rss_{N_CLUSTERS}c_kb"] - m["rss_1c_kb"]) / (N_CLUSTERS - 1)
                    self.record("footprint", workers, t, r, m)
        finally:
            backend.stop()
        self.save()


class RssSampler:
    """Samples a process group's RSS/PSS every 100 ms while load runs; keeps the peak."""

    def __init__(self, proc: Proc):
        self.proc = proc
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            rss, pss = self.proc.memory_kb()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            if self._stop.wait(0.1):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        rss, pss = self.proc.memory_kb()
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 worker, 1 round of 2 s: a smoke run of a few minutes")
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per batch (default 3)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 5)")
    p.add_argument("--fixed-duration", type=float, default=None, help="seconds per fixed-rate measurement (default 8)")
    p.add_argument("--rate", type=float, default=4000, help="fixed-rate scenario: requests/s (default 4000)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset at 1 worker")
    p.add_argument("--no-docs", action="store_true", help="do not regenerate docs/benchmarks.md")
    p.add_argument("--workdir", default="/tmp/ferry-bench")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    q = args.quick
    args.workers = [int(w) for w in (args.workers or ("1" if q else "1,2")).split(",")]
    args.rounds = args.rounds or (1 if q else 3)
    args.duration = args.duration or (2.0 if q else 5.0)
    args.fixed_duration = args.fixed_duration or (3.0 if q else 8.0)
    args.warmup = 1.0
    args.footprint_rounds = 1 if q else 2
    args.footprint_load = 2.0 if q else 4.0
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.targets = [t for t in args.targets.split(",") if t]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s}; known: {SCENARIOS}")
    for t in args.targets:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t}; known: {ALL_TARGETS}")
    for binary in ("ferry", "bench-load", "bench-backend"):
        if not (RELEASE / binary).exists():
            p.error(f"{RELEASE / binary} is missing: build with cargo build --release -p ferry -p ferry-bench")

    run = Run(args)
    log(f"results: {run.out_path}   work dir (configs, logs): {run.work}")
    t0 = time.monotonic()
    try:
        for s in args.scenarios:
            for w in args.workers:
                run.batch(s, w)
    finally:
        run.save()
    log(f"done in {time.monotonic() - t0:.0f}s; results in {run.out_path}")
    data = json.loads(run.out_path.read_text())
    print(report.text_summary(data))
    if not args.no_docs and not args.quick:
        report.write_docs(data, run.out_path)
        log("docs/benchmarks.md and bench/results/latest.svg regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
