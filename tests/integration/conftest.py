"""Integration tests of mxedge's inbound path against real peers (see tests/lab).

ctest runs: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
with MXEDGE_BUILD_DIR (gateway binary: $MXEDGE_BUILD_DIR/dataplane/mxedge-dataplane) and
MXEDGE_SOURCE_DIR. Tests that need the gateway skip (fixture gateway_binary) only when that binary
does not exist. Expected replies follow docs/smtp-replies.md exactly.
"""

from __future__ import annotations

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from lab.fixtures import *  # noqa: E402,F401,F403
from lab import flows  # noqa: E402


@pytest.fixture
def session():
    """session(gw, listener="smtp", tls=False, ehlo=True, **client_kw) -> lab.flows.open_session(...);
    every client is closed at teardown."""
    clients = []

    def make(gw, listener: str = "smtp", tls: bool = False, ehlo: bool = True, **kw):
        c = flows.open_session(gw, listener, tls=tls, ehlo=ehlo, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
