"""Both daemons speak systemd's notification protocol (Type=notify, WatchdogSec=), as the appliance's
units expect: READY=1 once serving, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on
SIGTERM, and WATCHDOG=1 at half the interval. The data plane pings only while every worker's event
loop answers: a worker thread stopped on its own (ptrace, the other threads running) stops the
pings and is logged, and they resume when it runs again.

The test stands in for the service manager: it binds the datagram socket named by NOTIFY_SOCKET
and sets WATCHDOG_USEC, as systemd does for the service's main process."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import time

import pytest

from lab import controlplane as cp_mod, util

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207


class Manager:
    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self.unread: list[tuple[float, str]] = []

    def env(self, watchdog_usec: int) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": str(watchdog_usec)}

    def _recv(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.got.append((time.monotonic(), data))
            self.unread.append((time.monotonic(), data))

    def drain(self, seconds: float) -> list[tuple[float, str]]:
        """Everything not yet read plus what arrives within `seconds`."""
        self._recv(seconds)
        new, self.unread = self.unread, []
        return new

    def wait_for(self, prefix: str, timeout: float = 15.0) -> str:
        """The next message starting with `prefix` (those before it are consumed, those after kept)."""
        end = time.monotonic() + timeout
        while True:
            while self.unread:
                _, m = self.unread.pop(0)
                if m.startswith(prefix):
                    return m
            if time.monotonic() >= end:
                raise AssertionError(f"no {prefix!r} within {timeout}s; got {[m for _, m in self.got][-10:]}")
            self._recv(0.2)

    def close(self):
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def manager(tmp_path):
    m = Manager(str(tmp_path / "notify.sock"))
    yield m
    m.close()


def _pings(msgs) -> int:
    return sum(1 for _, m in msgs if m == "WATCHDOG=1")


def _thread_id(pid: int, name: str) -> int:
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return int(tid)
    raise AssertionError(f"no thread {name} in {pid}")


def test_dataplane_notifies_and_its_watchdog_follows_the_workers(gateway_factory, smtp_sink, manager):
    gw = gateway_factory(smtp_sink.port, start=False)
    gw.env = manager.env(400_000)  # pings every 200 ms
    gw.start()
    ready = manager.wait_for("READY=1")
    assert re.search(r"STATUS=accepting on 2 listener\(s\) with [12] worker\(s\)", ready), ready
    assert "event=service.watchdog" in gw.run_log() and "interval_ms=400" in gw.run_log()
    steady = manager.drain(1.5)
    assert _pings(steady) >= 5, steady

    # One worker stopped (its thread alone): no more pings, and the log names the worker.
    libc = ctypes.CDLL(None, use_errno=True)
    tid = _thread_id(gw.proc.pid, "mxedge-w0")
    assert libc.ptrace(PTRACE_SEIZE, tid, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.ptrace(PTRACE_INTERRUPT, tid, 0, 0) == 0, os.strerror(ctypes.get_errno())
        os.waitpid(tid, getattr(os, "__WALL", 0x40000000))
        manager.drain(0.6)                  # a ping already on its way may still arrive
        stuck = manager.drain(1.5)
        assert _pings(stuck) == 0, stuck
        util.wait_until(lambda: "event=service.worker_unresponsive" in gw.run_log(), 5, message="the unresponsive worker is logged")
        assert "workers=0" in gw.run_log()
    finally:
        libc.ptrace(PTRACE_DETACH, tid, 0, 0)
    resumed = manager.drain(1.5)
    assert _pings(resumed) >= 3, resumed

    gw.reload()
    assert manager.wait_for("RELOADING=1") == "RELOADING=1"
    assert manager.wait_for("READY=1").startswith("READY=1\nSTATUS=reloaded")
    gw.proc.send_signal(signal.SIGTERM)
    assert manager.wait_for("STOPPING=1") == "STOPPING=1"
    assert gw.proc.wait(20) == 0


def test_without_a_watchdog_interval_the_dataplane_only_notifies(gateway_factory, smtp_sink, manager):
    gw = gateway_factory(smtp_sink.port, start=False)
    gw.env = {"NOTIFY_SOCKET": manager.path}
    gw.start()
    manager.wait_for("READY=1")
    assert _pings(manager.drain(1.0)) == 0
    assert "event=service.watchdog" not in gw.run_log()


def test_controlplane_notifies_reloads_on_sighup_and_pings(dns_lab, mta_sts_server, tmp_path, manager):
    reason = cp_mod.missing_binary_reason()
    if reason:
        pytest.skip(reason)
    cp = cp_mod.ControlPlane(str(tmp_path / "cp"), dns_lab, mta_sts_server)
    cp.env = manager.env(300_000)
    cp.start()
    try:
        assert manager.wait_for("READY=1").startswith("READY=1\nSTATUS=serving ")
        assert _pings(manager.drain(1.2)) >= 5
        cp.proc.send_signal(signal.SIGHUP)
        assert manager.wait_for("RELOADING=1") == "RELOADING=1"
        assert manager.wait_for("READY=1").startswith("READY=1\nSTATUS=reloaded; ")
        util.wait_until(lambda: "event=controlplane.reloaded" in cp.run_log(), 5, message="the SIGHUP reload is logged")
        cp.proc.send_signal(signal.SIGTERM)
        assert manager.wait_for("STOPPING=1") == "STOPPING=1"
    finally:
        cp.stop()
