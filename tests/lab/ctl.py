"""Runs mxedgectl ($MXEDGE_BUILD_DIR/controlplane/mxedgectl) for the tests.

    ctl.skip_unless_built()                            # in a module's autouse fixture
    p = ctl.run(cp.mgmt_socket, "status")              # CompletedProcess (text)
    doc = ctl.ok_json(gw.dataplane_socket, "queue", "list")   # --json, exit 0 asserted
    p = ctl.run(None, "config", "validate", path)      # offline commands take no socket
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from . import gateway as gateway_mod


def path() -> str:
    return os.path.join(gateway_mod.build_dir(), "controlplane", "mxedgectl")


def skip_unless_built() -> None:
    if not os.path.exists(path()):
        pytest.skip(f"mxedgectl not built: {path()} does not exist (set MXEDGE_BUILD_DIR or build it)")


def run(socket_path: str | None, *args: str, json_out: bool = False, user: str | None = None,
        timeout: float = 90) -> subprocess.CompletedProcess:
    """mxedgectl [--socket S] [--json] ARGS; `user` runs it through setpriv ("--reuid 65534 ...")."""
    cmd = [path()] + (["--socket", socket_path] if socket_path else []) + (["--json"] if json_out else []) + list(args)
    if user is not None:
        cmd = ["setpriv", *user.split(), "--"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def ok_json(socket_path: str | None, *args: str, **kw) -> dict:
    p = run(socket_path, *args, json_out=True, **kw)
    assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)
