"""Runs mxedge-resolve ($MXEDGE_BUILD_DIR/controlplane/mxedge-resolve) against a DnsLab.

`run(lab, names, ...)` returns the JSON objects it printed (one per name and round) and the stats
objects separately; `base_args(lab)` are the flags that point the resolver at the lab (root server,
lab trust anchor, loopback allowed, `test.` not answered from unbound's built-in local zones).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from . import gateway as gateway_mod


def binary_path() -> str:
    return os.path.join(gateway_mod.build_dir(), "controlplane", "mxedge-resolve")


def missing_binary_reason() -> str | None:
    path = binary_path()
    if not os.path.exists(path):
        return f"resolver binary not built: {path} does not exist (set MXEDGE_BUILD_DIR or build it)"
    return None


def base_args(lab, mode: str = "stub") -> list[str]:
    """Flags for the lab. mode: "stub" (root server address), "hints" (full recursion from the
    lab's root hints) or "forward" (through the lab's unbound, validating locally)."""
    args = ["--trust-anchor", lab.trust_anchor_file, "--allow-loopback", "--nodefault-zone", "test.", "--no-ipv6"]
    if mode == "stub":
        args += ["--root-server", lab.nsd_address]
    elif mode == "hints":
        args += ["--root-hints", lab.root_hints_file]
    elif mode == "forward":
        args += ["--forwarder", lab.unbound_address]
    else:
        raise ValueError(mode)
    return args


@dataclass
class ResolveRun:
    results: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    returncode: int = 0
    stderr: str = ""
    seconds: float = 0.0

    def by_name(self, name: str, round_: int = 0) -> dict:
        key = name.rstrip(".").lower()
        for r in self.results:
            if r.get("round") == round_ and (r.get("domain") or r.get("qname")) == key:
                return r
        raise KeyError(f"{name} (round {round_}) not in the output: {[r.get('domain') or r.get('qname') for r in self.results]}")


def run(lab, names: list[str], rtype: str | None = None, mode: str = "stub", extra: list[str] | None = None,
        timeout: float = 120, check: bool = True) -> ResolveRun:
    argv = [binary_path(), "--json", *base_args(lab, mode), *(extra or [])]
    if rtype:
        argv += ["--type", rtype]
    argv += list(names)
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    out = ResolveRun(returncode=p.returncode, stderr=p.stderr, seconds=time.monotonic() - t0)
    for line in p.stdout.splitlines():
        obj = json.loads(line)
        (out.stats if obj.get("stats") else out.results).append(obj)
    if check and p.returncode != 0:
        raise AssertionError(f"mxedge-resolve exited {p.returncode}: {p.stderr}")
    return out
