"""Starting, watching and stopping the processes of a benchmark (stdlib only)."""

from __future__ import annotations

import fcntl
import http.client
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CPU_LOCK = "/tmp/ferry-cpu.lock"


@contextmanager
def cpu_lock(what: str):
    """Holds the machine's CPU lock (the same flock(2) lock as `flock /tmp/ferry-cpu.lock`)
    while a batch of measurements runs, so builds and tests never overlap with it."""
    fd = os.open(CPU_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"  waiting for {CPU_LOCK} ({what}) ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Proc:
    """A process started in its own process group (setsid), stdin from /dev/null,
    output to a log file; optionally pinned with taskset."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpus: str | None = None, cwd: str | None = None):
        self.name = name
        self.log_path = log_path
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv
        self.argv = argv
        self._log = open(log_path, "ab")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=cwd,
        )

    @property
    def pgid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """Every live process of the group (nginx's master and workers, for example)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # Field 5 (pgrp) comes after the parenthesised command name.
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                out.append(int(entry))
        return out

    def memory_kb(self) -> tuple[int, int]:
        """(RSS, PSS) in KiB summed over the process group."""
        rss = pss = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            except OSError:
                continue
        return rss, pss

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        else:
            # The group may outlive its leader (nginx workers): end the rest.
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "bench"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, path: str, deadline_s: float = 60.0) -> float:
    """Polls `GET path` through the proxy until it answers 200; returns the seconds since
    the process was started (startup time to ready, polled every 2 ms)."""
    end = time.monotonic() + deadline_s
    last_error = ""
    while time.monotonic() < end:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}):\n{proc.tail()}")
        try:
            status, _ = http_get(port, path, timeout=0.5)
            if status == 200:
                elapsed = time.monotonic() - proc.started
                time.sleep(0.05)
                if not proc.alive():  # someone else answered on that port
                    raise RuntimeError(f"{proc.name} exited after :{port} answered:\n{proc.tail()}")
                return elapsed
            last_error = f"status {status}"
        except OSError as e:
            last_error = str(e)
        time.sleep(0.002)
    raise RuntimeError(f"{proc.name} not ready on :{port}{path} after {deadline_s}s ({last_error}):\n{proc.tail()}")


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        # As the servers do: a port whose old connections sit in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
