"""Run mxedge-controlplane against the DNS and MTA-STS labs, and speak its policy protocol.

    cp = ControlPlane(workdir, dns_lab, sts_server)     # config: lab resolver, lab CA, own socket
    cp.start()                                          # waits for event=controlplane.started
    link = cp.link()                                    # PolicyLink: a data plane's end, in Python
    snap = link.hello()                                 # Hello -> Snapshot
    link.request("dane-ok.test")                        # PolicyRequest
    delta = link.expect("delta")                        # next Delta (policy.v1 message object)
    link.ack(delta)
    cp.wait_log("event=policy.compiled .*domain=dane-ok.test")
    cp.stop()

The protocol classes come from policy/proto/mxedge/policy/v1/policy.proto, compiled with protoc into
$MXEDGE_BUILD_DIR/tests/python_gen the first time they are needed (`policy_pb2()`).
Frames are length-delimited (a varint length, then the message).
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time

from . import gateway as gateway_mod
from . import util

REPO_ROOT = gateway_mod.REPO_ROOT
STARTED_EVENT = "event=controlplane.started"


def binary_path() -> str:
    return os.path.join(gateway_mod.build_dir(), "controlplane", "mxedge-controlplane")


def missing_binary_reason() -> str | None:
    if not os.path.exists(binary_path()):
        return f"control plane binary not built: {binary_path()} does not exist"
    return None


_PB2 = None


def policy_pb2():
    """The generated Python module for mxedge.policy.v1."""
    global _PB2
    if _PB2 is None:
        out = os.path.join(gateway_mod.build_dir(), "tests", "python_gen")
        os.makedirs(out, exist_ok=True)
        root = os.path.join(REPO_ROOT, "policy", "proto")
        subprocess.run(["protoc", f"--python_out={out}", "-I", root,
                        os.path.join(root, "mxedge", "policy", "v1", "policy.proto")], check=True)
        if out not in sys.path:
            sys.path.insert(0, out)
        _PB2 = importlib.import_module("mxedge.policy.v1.policy_pb2")
    return _PB2


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def frame(message) -> bytes:
    body = message.SerializeToString()
    return encode_varint(len(body)) + body


class PolicyLink:
    """A data plane's end of the policy socket, for tests."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.pb = policy_pb2()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, msg) -> None:
        self.sock.sendall(frame(msg))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _frame(self, deadline: float) -> bytes | None:
        while True:
            n, shift, i = 0, 0, 0
            complete = False
            while i < len(self.buf):
                b = self.buf[i]
                n |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if not b & 0x80:
                    complete = True
                    break
            if complete and len(self.buf) - i >= n:
                body, self.buf = self.buf[i:i + n], self.buf[i + n:]
                return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame from the control plane")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk

    def receive(self, timeout: float | None = None):
        """The next ToDataplane message; None when the control plane closed the connection."""
        body = self._frame(time.monotonic() + (timeout or self.timeout))
        if body is None:
            return None
        m = self.pb.ToDataplane()
        m.ParseFromString(body)
        return m

    def expect(self, kind: str, timeout: float | None = None):
        """The next message, which must be `kind` ("snapshot" or "delta"); returns its payload."""
        m = self.receive(timeout)
        if m is None:
            raise AssertionError(f"connection closed while waiting for a {kind}")
        got = m.WhichOneof("msg")
        if got != kind:
            raise AssertionError(f"expected a {kind}, got {got}: {m}")
        return getattr(m, kind)

    def hello(self, have_version: int = 0):
        m = self.pb.ToControlplane()
        m.hello.have_version = have_version
        m.hello.dataplane_id = "pytest"
        self.send(m)
        return self.expect("snapshot")

    def request(self, *domains: str) -> None:
        m = self.pb.ToControlplane()
        m.request.domains.extend(domains)
        self.send(m)

    def ack(self, push) -> None:
        m = self.pb.ToControlplane()
        m.ack.version = push.version
        m.ack.nonce = push.nonce
        self.send(m)

    def nack(self, push, error: str, need_snapshot: bool) -> None:
        m = self.pb.ToControlplane()
        m.nack.version = push.version
        m.nack.nonce = push.nonce
        m.nack.error = error
        m.nack.need_snapshot = need_snapshot
        self.send(m)

    def policies_until(self, domains: set[str], timeout: float = 30.0) -> dict[str, object]:
        """Reads deltas (acking each) until every domain in `domains` has a policy; returns them."""
        got: dict[str, object] = {}
        deadline = time.monotonic() + timeout
        while not domains <= set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no policy for {sorted(domains - set(got))} within {timeout}s")
            d = self.expect("delta", timeout=left)
            self.ack(d)
            for p in d.upserts:
                got[p.domain] = p
        return got


class ControlPlane:
    def __init__(self, workdir: str, dns_lab, sts_server=None, config: dict | None = None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.config_path = os.path.join(workdir, "controlplane.yaml")
        self.log_path = os.path.join(workdir, "controlplane.log")
        self.socket_path = os.path.join(workdir, "policy.sock")
        self.mgmt_socket = os.path.join(workdir, "mgmt.sock")
        base = {
            "listeners": [{"name": "unused", "address": "127.0.0.1:1", "tls_mode": "none"}],
            "accepted_domains": ["lab.test"],
            "next_hop": {"host": "127.0.0.1", "port": 1},
            "spool": {"directory": os.path.join(workdir, "spool-unused")},
            "resolver": {"trust_anchor_file": dns_lab.trust_anchor_file, "root_servers": [dns_lab.nsd_address],
                         "nodefault_zones": ["test."], "ipv6_transport": False, "query_timeout": "3s"},
            "mta_sts": {"cache_file": os.path.join(workdir, "mta-sts.db"), "fetch_timeout": "3s",
                        "connect_timeout": "3s"},
            "outbound": {"policy_socket": self.socket_path},
            "logging": {"format": "logfmt", "level": "info"},
            # mxedgectl's socket; `dataplane_socket` is the gateway's (Gateway.dataplane_socket) when
            # the test links the planes, otherwise a path nothing listens on.
            "management": {"socket": self.mgmt_socket,
                           "dataplane_socket": os.path.join(workdir, "no-dataplane.sock")},
        }
        if sts_server is not None:
            base["mta_sts"]["ca_file"] = sts_server.ca_file
        self.config = gateway_mod.deep_merge(base, config or {})
        self.proc: util.ManagedProcess | None = None
        self.run_offset = 0
        # Extra environment for the daemon (e.g. MXEDGE_TEST_CLOCK_OFFSET for the TLS-RPT sender).
        self.env: dict[str, str] = {}
        # Another program to run in its place with the same arguments (a wrapper that changes user).
        self.binary: str | None = None

    def write_config(self) -> None:
        with open(self.config_path, "w") as f:
            f.write("# written by tests/lab/controlplane.py\n")
            f.write(gateway_mod.to_yaml(self.config))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def start(self, timeout: float = 20.0) -> "ControlPlane":
        reason = missing_binary_reason()
        if reason:
            raise AssertionError(reason)
        self.write_config()
        self.run_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.proc = util.ManagedProcess([self.binary or binary_path(), "--config", self.config_path], self.log_path,
                                        env={**os.environ, **self.env} if self.env else None,
                                        name="mxedge-controlplane")
        self.proc.start()
        deadline = time.monotonic() + timeout
        while STARTED_EVENT not in self.run_log():
            if not self.proc.running:
                raise AssertionError(f"mxedge-controlplane exited with {self.proc.poll()}:\n{util.tail(self.run_log(), 60)}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"mxedge-controlplane not started within {timeout}s:\n{util.tail(self.run_log(), 60)}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        self.proc.stop(timeout)
        return self.proc.poll()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self) -> str:
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def run_log(self) -> str:
        return self.log_text()[self.run_offset:]

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        import re
        rx = re.compile(pattern)

        def find():
            for line in self.run_log().splitlines():
                if rx.search(line):
                    return line
            return None
        return util.wait_until(find, timeout, message=lambda: f"/{pattern}/ in the control plane log:\n"
                                                           f"{util.tail(self.run_log(), 30)}")

    def link(self, timeout: float = 10.0) -> PolicyLink:
        return PolicyLink(self.socket_path, timeout)
