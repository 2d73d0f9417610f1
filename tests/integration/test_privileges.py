"""The data plane under a service user (as the appliance runs it, mxedge-dp with ambient
capabilities from its unit): once listeners are bound and BPF programs attached it keeps only what
the running data plane needs, and nothing at all without a fast path. The user here is `nobody`,
set by setpriv(1) with the unit's capabilities as ambient ones."""

from __future__ import annotations

import os
import pwd
import grp
import signal
import stat

from lab import gateway as gateway_mod, smtp_client

# The unit's set but CAP_SYS_RESOURCE, which the sandboxes these tests run in may not have at all.
UNIT_CAPS = "+net_bind_service,+net_admin,+bpf,+perfmon,+ipc_lock"


def _status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def test_service_user_keeps_no_capability_without_a_fast_path(gateway_factory, smtp_sink, session, tmp_path):
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrnam("nogroup")
    wrapper = tmp_path / "as-nobody.sh"
    wrapper.write_text("#!/bin/sh\n"
                       f"exec setpriv --reuid={nobody.pw_uid} --regid={nogroup.gr_gid} --clear-groups "
                       f"--inh-caps={UNIT_CAPS} --ambient-caps={UNIT_CAPS} {gateway_mod.binary_path()} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    gw = gateway_factory(smtp_sink.port, start=False, binary=str(wrapper))
    gw.write_config()
    for d, _, files in os.walk(gw.workdir):    # the service user owns its spool and sockets
        os.chown(d, nobody.pw_uid, nogroup.gr_gid)
        for f in files:
            os.chown(os.path.join(d, f), nobody.pw_uid, nogroup.gr_gid)
    gw.start()
    st = _status(gw.proc.pid)
    assert st["Uid"].split()[1] == str(nobody.pw_uid), st["Uid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapAmb"], 16) == 0, st
    assert "event=privileges.dropped effective=none" in gw.run_log()
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
