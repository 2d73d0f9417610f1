"""Both daemons under a service user (as the appliance runs them, mxedge-dp and mxedge-cp with
ambient capabilities from their units): once listeners are bound and BPF programs attached each keeps
only what its running work needs: the data plane nothing at all without a fast path, the control
plane nothing. The user here is `nobody`, set by setpriv(1) with the unit's capabilities as ambient
ones. And the threads that parse what the Internet sends (the data plane's workers, every thread of
the control plane) run under the worker sandbox, a per-thread seccomp filter (policy/privileges.h)."""

from __future__ import annotations

import os
import pwd
import grp
import shutil
import signal
import socket
import ssl

from lab import controlplane as cp_mod, gateway as gateway_mod, smtp_client, util

# The unit's set but CAP_SYS_RESOURCE, which the sandboxes these tests run in may not have at all.
UNIT_CAPS = "+net_bind_service,+net_admin,+bpf,+perfmon,+ipc_lock"


def _status_file(path: str) -> dict[str, str]:
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _status(pid: int) -> dict[str, str]:
    return _status_file(f"/proc/{pid}/status")


def _threads(pid: int) -> dict[str, dict[str, str]]:
    """Every thread's status by "name/tid"."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            st = _status_file(f"/proc/{pid}/task/{tid}/status")
        except FileNotFoundError:
            continue
        out[f"{st['Name']}/{tid}"] = st
    return out


def _give_to_nobody(top: str) -> None:
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    for d, _, files in os.walk(top):
        os.chown(d, nobody.pw_uid, nogroup.gr_gid)
        for f in files:
            os.chown(os.path.join(d, f), nobody.pw_uid, nogroup.gr_gid)


def _free_privileged_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024 on 127.0.0.1")


def test_service_user_keeps_no_capability_without_a_fast_path(gateway_factory, smtp_sink, session, tmp_path):
    nobody = pwd.getpwnam("nobody")
    gw = gateway_factory(smtp_sink.port, start=False, binary=util.as_service_user(tmp_path, gateway_mod.binary_path(), UNIT_CAPS))
    gw.write_config()
    _give_to_nobody(gw.workdir)  # the service user owns its spool and sockets
    gw.start()
    st = _status(gw.proc.pid)
    assert st["Uid"].split()[1] == str(nobody.pw_uid), st["Uid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
    assert "event=privileges.dropped effective=none" in gw.run_log()
    threads = _threads(gw.proc.pid)
    workers = {k: v for k, v in threads.items() if k.startswith("mxedge-w")}
    assert len(workers) == 2, sorted(threads)
    for name, t in threads.items():  # capabilities are per thread: none kept any
        assert int(t["CapEff"], 16) == 0 and int(t["CapPrm"], 16) == 0, (name, t["CapEff"], t["CapPrm"])
    for name, t in workers.items():
        assert t["Seccomp"] == "2" and t["NoNewPrivs"] == "1", (name, t["Seccomp"], t["NoNewPrivs"])
    assert "worker.sandbox_failed" not in gw.run_log()
    # It still does its work: a message relayed, a reload, a clean stop.
    c = session(gw, tls=True)
    _, content = smtp_client.build_message(message_id="as-nobody@client.example.test")
    c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    smtp_sink.wait_for_message_id("as-nobody@client.example.test", timeout=20)
    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log(r"event=dataplane\.reloaded", timeout=10)
    assert gw.stop() == 0


def test_root_keeps_its_capabilities(gateway):
    """Run as root (a host install without the unit), nothing is dropped: root owns its files
    whatever its capabilities, and the management socket's group change needs CAP_CHOWN."""
    assert int(_status(gateway.proc.pid)["CapEff"], 16) != 0
    assert "event=privileges.dropped" not in gateway.run_log()


def test_workers_run_in_the_sandbox_and_the_main_thread_does_not(gateway, session, smtp_sink):
    """The filter is the workers' own: the main thread (BPF maps, the management API) has one fewer
    and the test process's own filters are counted in both."""
    own = int(_status_file("/proc/self/status").get("Seccomp_filters", "0"))
    threads = _threads(gateway.proc.pid)
    main = _status_file(f"/proc/{gateway.proc.pid}/status")
    assert int(main["Seccomp_filters"]) == own, main["Seccomp_filters"]
    workers = [t for k, t in threads.items() if k.startswith("mxedge-w")]
    assert workers, sorted(threads)
    for t in workers:
        assert int(t["Seccomp_filters"]) == own + 1 and t["Seccomp"] == "2", t
    # Sandboxed workers still do their work.
    c = session(gateway, tls=True)
    _, content = smtp_client.build_message(message_id="sandboxed-worker@client.example.test")
    c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    smtp_sink.wait_for_message_id("sandboxed-worker@client.example.test", timeout=20)


def _control_plane_as_nobody(dns_lab, lab_pki, lab_root, tmp_path, caps: str, name: str) -> cp_mod.ControlPlane:
    """A control plane serving its MTA-STS policy on a port below 1024, as nobody."""
    cert = lab_pki.issue("privileges-publish", ["mta-sts.lab.test"])
    plane = cp_mod.ControlPlane(lab_root.unique_sub(name), dns_lab)
    keys = os.path.join(plane.workdir, "keys")
    os.makedirs(keys, exist_ok=True)
    shutil.copy(cert.chain, os.path.join(keys, "publish.pem"))
    shutil.copy(cert.key, os.path.join(keys, "publish.key"))
    os.chmod(os.path.join(keys, "publish.key"), 0o600)
    port = _free_privileged_port()
    plane.config = gateway_mod.deep_merge(plane.config, {
        "hostname": "mx.lab.test", "accepted_domains": ["lab.test"],
        "mta_sts_publish": {"listen": f"127.0.0.1:{port}", "mx": ["mx.lab.test"],
                            "certificates": [{"cert_file": os.path.join(keys, "publish.pem"),
                                              "key_file": os.path.join(keys, "publish.key")}]}})
    plane.publish_port = port
    plane.binary = util.as_service_user(tmp_path, cp_mod.binary_path(), caps)
    plane.write_config()
    _give_to_nobody(plane.workdir)
    return plane


def test_control_plane_binds_its_port_then_keeps_nothing_and_runs_sandboxed(dns_lab, lab_pki, lab_root, tmp_path):
    plane = _control_plane_as_nobody(dns_lab, lab_pki, lab_root, tmp_path, "+net_bind_service", "privileges-cp")
    try:
        plane.start()
        plane.wait_log(r"event=mta_sts\.publish\.started")
        assert "event=privileges.dropped effective=none" in plane.run_log()
        threads = _threads(plane.proc.pid)
        assert "mxedge-mtasts" in {k.split("/")[0] for k in threads}, sorted(threads)
        for name, t in threads.items():  # the serving thread too: it started after the drop
            assert t["Uid"].split()[1] == str(pwd.getpwnam("nobody").pw_uid), (name, t["Uid"])
            assert int(t["CapEff"], 16) == 0 and int(t["CapPrm"], 16) == 0 and int(t["CapAmb"], 16) == 0, \
                (name, t["CapEff"], t["CapPrm"], t["CapAmb"])
            assert t["Seccomp"] == "2" and t["NoNewPrivs"] == "1", (name, t["Seccomp"], t["NoNewPrivs"])
        # The port bound with the capability is served without it.
        ctx = ssl.create_default_context(cafile=lab_pki.ca_pem)
        with socket.create_connection(("127.0.0.1", plane.publish_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="mta-sts.lab.test") as tls:
                tls.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.lab.test\r\n"
                            b"Connection: close\r\n\r\n")
                reply = b""
                while chunk := tls.recv(4096):
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b"mode: " in reply and b"mx: mx.lab.test" in reply, reply
        plane.proc.send_signal(signal.SIGHUP)
        plane.wait_log(r"event=controlplane\.reloaded")
        assert "sandbox_failed" not in plane.run_log()
        assert plane.stop() == 0
    finally:
        plane.stop()


def test_control_plane_without_the_capability_cannot_bind_and_says_so(dns_lab, lab_pki, lab_root, tmp_path):
    """The negative control of the test above: the bind really needs CAP_NET_BIND_SERVICE."""
    plane = _control_plane_as_nobody(dns_lab, lab_pki, lab_root, tmp_path, "", "privileges-cp-nocap")
    try:
        try:
            plane.start(timeout=10)
        except AssertionError as e:
            assert f"cannot listen on 127.0.0.1:{plane.publish_port}" in str(e), str(e)
        else:
            raise AssertionError("the control plane started without CAP_NET_BIND_SERVICE")
        assert plane.proc.poll() == 1
    finally:
        plane.stop()
