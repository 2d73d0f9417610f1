"""The policy link between the planes (controlplane/push, dataplane/policy): mxedge-controlplane
resolving against the signed lab DNS and the MTA-STS lab, compiling policies on request and pushing
them (mxedge.policy.v1 over its Unix socket) to data planes — Python ones speaking the protocol
directly (lab/controlplane.py's PolicyLink), and mxedge-dataplane itself with outbound enabled.
"""

from __future__ import annotations

import os
import struct
import time

import pytest

from lab import controlplane as cp_mod
from lab import gateway as gw_mod
from lab import util


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)


@pytest.fixture
def controlplane(dns_lab, mta_sts_server, tmp_path):
    cp = cp_mod.ControlPlane(str(tmp_path / "cp"), dns_lab, mta_sts_server,
                             config={"outbound": {"policy_idle": "4s"}})
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


def read_state(path: str):
    """The data plane's policy state file: magic, u32 length, u32 CRC-32C, Snapshot."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"MXPOLIC1", data[:8]
    (length,) = struct.unpack("<I", data[8:12])
    assert len(data) == 16 + length
    snap = cp_mod.policy_pb2().Snapshot()
    snap.ParseFromString(data[16:])
    return snap


def test_hello_gets_a_snapshot_and_requests_get_compiled_policies(controlplane):
    pb = cp_mod.policy_pb2()
    with controlplane.link() as link:
        snap = link.hello()
        assert snap.version == 0 and len(snap.policies) == 0
        link.request("dane-ok.test", "valid.sts.test", "bad-sig.test", "null-mx.test")
        got = link.policies_until({"dane-ok.test", "valid.sts.test", "bad-sig.test", "null-mx.test"})
    dane = got["dane-ok.test"]
    assert dane.verdict == pb.VERDICT_DELIVER
    assert [h.name for h in dane.hosts] == ["mx1.dane-ok.test", "mx2.dane-ok.test", "mx3.dane-ok.test"]
    assert all(h.tls == pb.TLS_REQUIREMENT_DANE and len(h.tlsa) >= 1 for h in dane.hosts)
    assert dane.expires_at > time.time()
    sts = got["valid.sts.test"]
    assert sts.hosts[0].tls == pb.TLS_REQUIREMENT_WEBPKI and sts.mta_sts == "enforce" and sts.mta_sts_id == "valid1"
    bogus = got["bad-sig.test"]
    assert bogus.verdict == pb.VERDICT_DEFER and bogus.result_type == "dnssec-invalid" and len(bogus.hosts) == 0
    assert got["null-mx.test"].verdict == pb.VERDICT_BOUNCE
    controlplane.wait_log(r"event=policy.compiled .*domain=dane-ok.test .*verdict=deliver")


def test_a_later_data_plane_gets_everything_in_its_snapshot_and_deltas_reach_every_session(controlplane):
    with controlplane.link() as first:
        first.hello()
        first.request("no-tlsa.test")
        first.policies_until({"no-tlsa.test"})
        with controlplane.link() as second:
            snap = second.hello()
            assert {p.domain for p in snap.policies} == {"no-tlsa.test"}
            # A request from one data plane reaches the other as a delta onto its snapshot.
            first.request("insecure.test")
            d = second.expect("delta")
            assert d.base_version == snap.version and d.version == snap.version + 1
            assert [p.domain for p in d.upserts] == ["insecure.test"]
            second.ack(d)


def test_nack_asking_for_a_snapshot_gets_one(controlplane):
    with controlplane.link() as link:
        link.hello()
        link.request("no-tlsa.test")
        d = link.expect("delta")
        link.nack(d, "simulated gap", need_snapshot=True)
        snap = link.expect("snapshot")
        assert snap.version == d.version and {p.domain for p in snap.policies} == {"no-tlsa.test"}
    controlplane.wait_log(r"event=policy.nack .*need_snapshot=true")


def test_malformed_frames_close_only_that_session(controlplane):
    with controlplane.link() as good:
        good.hello()
        with controlplane.link() as bad:
            bad.send_raw(b"\xff\xff\xff\xff\x0f" + b"x" * 16)  # a 4 GiB frame announced
            assert bad.receive(timeout=5) is None
        with controlplane.link() as garbage:
            garbage.send_raw(b"\x05hello")  # five bytes that are no ToControlplane
            assert garbage.receive(timeout=5) is None
        good.request("no-tlsa.test")
        assert "no-tlsa.test" in good.policies_until({"no-tlsa.test"})
    assert controlplane.running
    controlplane.wait_log(r"event=policy.session.closed .*reason=\"?frame larger than 1 MiB")
    controlplane.wait_log(r"event=policy.session.closed .*reason=\"?malformed frame")


def test_expiring_policies_in_use_are_recompiled_and_idle_ones_withdrawn(controlplane):
    with controlplane.link() as link:
        link.hello()
        link.request("ttl.test")  # TTL 2 on MX, A, AAAA and TLSA
        first = link.policies_until({"ttl.test"})["ttl.test"]
        assert first.expires_at - time.time() <= 3
        # Without another request, the control plane recompiles it when it expires ...
        again = link.policies_until({"ttl.test"}, timeout=10)["ttl.test"]
        assert again.expires_at > first.expires_at
        # ... and withdraws it once unused for policy_idle (4 s here).
        deadline = time.monotonic() + 15
        while True:
            d = link.expect("delta", timeout=max(0.1, deadline - time.monotonic()))
            link.ack(d)
            if "ttl.test" in d.removed:
                break
    controlplane.wait_log(r"event=policy.compiled .*domain=ttl.test")


def test_dataplane_keeps_the_policies_it_received_across_restarts(controlplane, lab_pki, tmp_path):
    state = str(tmp_path / "policy.state")
    gw = gw_mod.Gateway(str(tmp_path / "gw"), lab_pki, next_hop_port=1,
                        listeners=[{"name": "smtp", "tls_mode": "none"}],
                        config={"outbound": {"enabled": True, "policy_socket": controlplane.socket_path,
                                             "policy_state_file": state}})
    try:
        gw.start()
        gw.wait_log(r"event=policy.link.connected", timeout=10)
        gw.wait_log(r"event=policy.applied kind=snapshot", timeout=10)
        # Another data plane asks; the delta reaches this one too, and it persists before acking.
        with controlplane.link() as link:
            link.hello()
            link.request("dane-ok.test", "no-tlsa.test")
            link.policies_until({"dane-ok.test", "no-tlsa.test"})
        util.wait_until(lambda: os.path.exists(state) and
                        {p.domain for p in read_state(state).policies} >= {"dane-ok.test", "no-tlsa.test"},
                        10, message="the data plane's state file with both policies")
        version = read_state(state).version
        # The control plane goes away; a restarted data plane starts from its state file.
        controlplane.stop()
        gw.stop()
        gw.start()
        gw.wait_log(rf"event=policy.state_loaded .*version={version} policies=2", timeout=5)
        gw.wait_log(r"event=policy.link.down", timeout=5)
        # When the control plane is back, the data plane reconnects by itself.
        controlplane.start()
        gw.wait_log(r"event=policy.link.connected", timeout=15)
    finally:
        gw.stop()
        gw.cleanup()


def test_a_broken_state_file_is_reported_and_the_data_plane_still_starts(controlplane, lab_pki, tmp_path):
    state = tmp_path / "policy.state"
    state.write_bytes(b"MXPOLIC1" + b"\x10\x00\x00\x00" + b"\x00" * 4 + b"short")
    gw = gw_mod.Gateway(str(tmp_path / "gw"), lab_pki, next_hop_port=1,
                        listeners=[{"name": "smtp", "tls_mode": "none"}],
                        config={"outbound": {"enabled": True, "policy_socket": controlplane.socket_path,
                                             "policy_state_file": str(state)}})
    try:
        gw.start()
        gw.wait_log(r"event=policy.state_unusable .*torn write", timeout=5)
        gw.wait_log(r"event=policy.applied kind=snapshot", timeout=10)
    finally:
        gw.stop()
        gw.cleanup()


def test_controlplane_refuses_a_bad_config_and_a_socket_path_that_is_a_file(dns_lab, tmp_path):
    bad = cp_mod.ControlPlane(str(tmp_path / "bad"), dns_lab, config={"outbound": {"policy_socket": "relative.sock"}})
    bad.write_config()
    import subprocess
    p = subprocess.run([cp_mod.binary_path(), "--config", bad.config_path], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "policy_socket must be an absolute path" in p.stderr
    blocked = cp_mod.ControlPlane(str(tmp_path / "blocked"), dns_lab)
    with open(blocked.socket_path, "w") as f:
        f.write("not a socket")
    with pytest.raises(AssertionError, match="exists and is not a socket"):
        blocked.start()
