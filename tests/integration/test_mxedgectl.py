"""mxedgectl against the running daemons (issue #7): the management API of mxedge-controlplane, which
answers policy / connector / reload / status itself and forwards stats, queue, trace and the XDP
lists to mxedge-dataplane. Both daemons run on the signed lab DNS with the delivery lab's Postfix
receivers as destinations, so policies, queues and traces are real.

Checked: each command's text and --json shape, exit codes (0 ok, 1 negative, 2 usage, 3 daemon
unreachable / feature off, 4 permission denied, 5 not found, 6 failed), peer-credential checks (a
non-admin user, a member of the admin group), the daemons surviving bad requests.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import subprocess
import time

import pytest

from lab import controlplane as cp_mod
from lab import ctl as ctl_mod
from lab import flows
from lab import gateway as gw_mod
from lab import smtp_sink as sink_mod

ADMIN_GROUP = "mxedge-lab-admin"
INTAKE = [{"name": "intake", "tls_mode": "none", "role": "outbound", "allowed_networks": ["127.0.0.1/32", "::1"]},
          {"name": "smtp", "tls_mode": "starttls"}]


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)
    ctl_mod.skip_unless_built()


@pytest.fixture(scope="module")
def admin_group():
    """A real group for the admin-group check, created before the daemons start (they give their
    sockets to it) and removed afterwards."""
    created = subprocess.run(["groupadd", "-f", ADMIN_GROUP], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    try:
        yield grp.getgrnam(ADMIN_GROUP).gr_gid
    finally:
        subprocess.run(["groupdel", ADMIN_GROUP], capture_output=True)


@pytest.fixture(scope="module")
def planes(admin_group, delivery_lab, dns_lab, mta_sts_server, lab_root, lab_pki):
    sink = sink_mod.SmtpSink(lab_root.unique_sub("ctl-sink"))
    sink.start()
    gw_dir = lab_root.unique_sub("ctl-gw")
    gw = gw_mod.Gateway(gw_dir, lab_pki, next_hop_port=sink.port, hostname="gw.lab.test", listeners=INTAKE,
                        config={"outbound": {"enabled": True, "policy_socket": os.path.join(gw_dir, "policy.sock"),
                                             "policy_state_file": os.path.join(gw_dir, "policy.state"),
                                             "ca_file": lab_pki.ca_pem, "retry_min": "1h", "retry_max": "2h",
                                             "connect_timeout": "3s", "command_timeout": "15s", "policy_wait": "15s"},
                                "management": {"admin_group": ADMIN_GROUP}})
    cp = cp_mod.ControlPlane(lab_root.unique_sub("ctl-cp"), dns_lab, mta_sts_server,
                             config={"outbound": {"enabled": True, "policy_socket": gw.config["outbound"]["policy_socket"]},
                                     "management": {"dataplane_socket": gw.dataplane_socket, "admin_group": ADMIN_GROUP},
                                     "connectors": [{"name": "strict", "domains": ["dane-ee.dlv.test"],
                                                     "dane_mode": "opportunistic", "mta_sts_mode": "opportunistic"},
                                                    {"name": "internet", "domains": ["*"]}]})
    cp.start()
    try:
        gw.start()
        gw.wait_log(r"event=policy.link.connected", timeout=10)
        gw.sink = sink
        yield gw, cp
    finally:
        gw.stop()
        cp.stop()
        sink.stop()
        gw.cleanup()


def ctl(cp, *args, json_out: bool = False, socket_path: str | None = None, user: str | None = None,
        timeout: float = 90) -> subprocess.CompletedProcess:
    return ctl_mod.run(socket_path or cp.mgmt_socket, *args, json_out=json_out, user=user, timeout=timeout)


def ok_json(cp, *args, **kw) -> dict:
    return ctl_mod.ok_json(kw.pop("socket_path", None) or cp.mgmt_socket, *args, **kw)


# ---- status / stats ------------------------------------------------------------------------------

def test_status_reports_both_planes(planes):
    gw, cp = planes
    s = ok_json(cp, "status")
    assert s["healthy"] is True, s["problems"]
    c, d = s["controlplane"], s["dataplane"]
    assert c["version"] and c["pid"] == cp.proc.pid and c["config_file"] == cp.config_path
    assert int(c["dataplane_sessions"]) == 1 and c["connectors"] == 2
    assert d["pid"] == gw.pid and d["hostname"] == "gw.lab.test"
    assert [w["index"] for w in d["workers"]] == list(range(len(d["workers"]))) and d["workers"]
    assert {(l["name"], l["tls_mode"], l["role"]) for l in d["listeners"]} == {("intake", "none", "outbound"),
                                                                              ("smtp", "starttls", "inbound")}
    assert d["xdp_interfaces"] == [] and d["outbound_enabled"] is True and d["policy_link_up"] is True
    assert d["policy_version"] == c["policy_version"]
    assert d["spool_directory"] == gw.spool_dir and int(d["spool_free_bytes"]) > 0
    text = ctl(cp, "status")
    assert text.returncode == 0 and text.stdout.startswith("healthy"), text.stdout
    for needle in ("control plane   mxedge-controlplane", "data plane      mxedge-dataplane", "XDP           off",
                   "outbound      policy version", "link up", gw.spool_dir):
        assert needle in text.stdout, text.stdout


def test_stats_counts_messages_and_tls(planes, lab_pki):
    gw, cp = planes
    before = ok_json(cp, "stats")
    assert {"messages_accepted", "sessions_active", "outbound_delivered", "tls_handshakes_tls13"} <= set(before["totals"])
    assert set(before["tls_versions"]) == {"TLSv1.2", "TLSv1.3"}
    # One inbound STARTTLS session (counted by version and cipher) and one outbound submission.
    c = gw.client("smtp")
    c.greeting().expect(220)
    c.ehlo("stats.lab.test").expect(250)
    c.starttls().expect(220)
    c.ehlo("stats.lab.test").expect(250)
    c.quit()
    c.close()
    flows.submit(gw, ["stats@dane-ee.dlv.test"], "stats-1")
    gw.wait_log(r"event=message.delivered .*domain=dane-ee.dlv.test", timeout=30)
    after = ok_json(cp, "stats")
    t0, t1 = before["totals"], after["totals"]
    assert int(t1["messages_accepted"]) == int(t0["messages_accepted"]) + 1
    assert int(t1["outbound_delivered"]) >= int(t0["outbound_delivered"]) + 1
    assert int(after["tls_versions"]["TLSv1.3"]) == int(before["tls_versions"]["TLSv1.3"]) + 1
    assert sum(int(v) for v in after["tls_ciphers"].values()) == sum(int(v) for v in before["tls_ciphers"].values()) + 1
    assert after["xdp_packets"] == {}
    assert len(after["workers"]) >= 1 and "messages_accepted" in after["workers"][0]["counters"]


def test_stats_watch_prints_samples_with_rates(planes):
    _, cp = planes
    p = ctl(cp, "stats", "--watch", "0.2", "--count", "3", "--per-worker")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("--- ") == 3 and p.stdout.count("counters (all workers)") == 3
    assert "/s" in p.stdout and "worker 0 (cpu " in p.stdout
    j = ctl(cp, "stats", "--watch", "0.1", "--count", "2", json_out=True)
    docs = [json.loads(d) for d in j.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert len(docs) == 2 and int(docs[1]["at_ms"]) > int(docs[0]["at_ms"])


# ---- policy ----------------------------------------------------------------------------------------

def test_policy_show_list_refresh_purge(planes):
    _, cp = planes
    shown = ok_json(cp, "policy", "show", "dane-ee.dlv.test")
    e = shown["entries"][0]
    assert e["domain"] == "dane-ee.dlv.test" and e["policy"]["connector"] == "strict"
    assert e["summary"].startswith("deliver via connector strict") and "(dane)" in e["summary"]
    assert e["explain"], e
    text = ctl(cp, "policy", "show", "Dane-EE.dlv.test.")
    assert text.returncode == 0 and text.stdout.startswith("dane-ee.dlv.test: deliver via connector strict"), text.stdout
    bogus = ok_json(cp, "policy", "show", "bogus.dlv.test")["entries"][0]
    assert bogus["summary"].startswith("defer via connector internet"), bogus
    listed = ok_json(cp, "policy", "list")
    assert {"dane-ee.dlv.test", "bogus.dlv.test"} <= {x["domain"] for x in listed["entries"]}
    refreshed = ok_json(cp, "policy", "refresh", "dane-ee.dlv.test")
    assert refreshed["changed"] is True and int(refreshed["version"]) > int(listed["version"])
    assert int(refreshed["entries"][0]["policy"]["version"]) > int(e["policy"]["version"])
    cp.wait_log(r"event=policy.refresh domain=dane-ee.dlv.test")
    purged = ctl(cp, "policy", "purge", "bogus.dlv.test")
    assert purged.returncode == 0 and "purged" in purged.stdout
    assert "bogus.dlv.test" not in {x["domain"] for x in ok_json(cp, "policy", "list")["entries"]}
    again = ctl(cp, "policy", "purge", "bogus.dlv.test", json_out=True)
    assert again.returncode == 5 and json.loads(again.stdout)["error"]["code"] == "NOT_FOUND"
    bad = ctl(cp, "policy", "show", "not a domain")
    assert bad.returncode == 2 and "is not a domain name" in bad.stderr


# ---- connectors and reload ---------------------------------------------------------------------------

def test_connector_list_show_set_persists_and_applies(planes):
    _, cp = planes
    listed = ok_json(cp, "connector", "list")
    assert [c["name"] for c in listed["connectors"]] == ["strict", "internet"]
    assert listed["connectors"][0]["dane_mode"] == "CONNECTOR_MODE_OPPORTUNISTIC"
    text = ctl(cp, "connector", "show", "strict")
    assert text.returncode == 0 and "dane=opportunistic" in text.stdout and "domains=dane-ee.dlv.test" in text.stdout
    before = ok_json(cp, "policy", "show", "dane-ee.dlv.test")["entries"][0]["policy"]
    try:
        changed = ok_json(cp, "connector", "set", "strict", "--dane-mode", "mandatory", "--mta-sts-mode", "none")
        assert changed["connectors"][0]["dane_mode"] == "CONNECTOR_MODE_MANDATORY"
        assert changed["connectors"][0]["mta_sts_mode"] == "CONNECTOR_MODE_NONE" and changed["recompiled"] >= 1
        # Persisted: the file says so, the previous file is kept, and a fresh load agrees.
        text = open(cp.config_path).read()
        assert "mandatory" in text and os.path.exists(cp.config_path + ".bak")
        assert "opportunistic" in open(cp.config_path + ".bak").read()
        valid = ctl_mod.run(None, "config", "validate", cp.config_path)
        assert valid.returncode == 0, valid.stdout + valid.stderr
        # Applied without a restart: the policy is recompiled under the new modes.
        deadline = time.monotonic() + 20
        while True:
            now = ok_json(cp, "policy", "show", "dane-ee.dlv.test")["entries"][0]["policy"]
            if int(now["version"]) > int(before["version"]):
                break
            assert time.monotonic() < deadline, now
            time.sleep(0.1)
        assert now["dane_mode"] == "CONNECTOR_MODE_MANDATORY" and now["mta_sts_mode"] == "CONNECTOR_MODE_NONE", now
        cp.wait_log(r"event=connector.changed connector=strict")
    finally:
        ok_json(cp, "connector", "set", "strict", "--dane-mode", "opportunistic", "--mta-sts-mode", "opportunistic")
    missing = ctl(cp, "connector", "set", "nosuch", "--dane-mode", "none")
    assert missing.returncode == 5 and "no connector 'nosuch'" in missing.stderr
    bad_mode = ctl(cp, "connector", "set", "strict", "--dane-mode", "sometimes")
    assert bad_mode.returncode == 2
    nothing = ctl(cp, "connector", "set", "strict")
    assert nothing.returncode == 2 and "nothing to set" in nothing.stderr


def test_config_reload_both_planes_and_a_bad_file_changes_nothing(planes):
    gw, cp = planes
    r = ok_json(cp, "config", "reload")
    assert r["controlplane_reloaded"] is True and r["dataplane_reloaded"] is True, r
    gw.wait_log("event=dataplane.reloaded")
    good = open(gw.config_path).read()
    try:
        with open(gw.config_path, "w") as f:
            f.write(good + "\nlimits: {message_size: -5}\n")
        bad = ctl(cp, "config", "reload")
        assert bad.returncode == 6, (bad.stdout, bad.stderr)
        assert "control plane: reloaded" in bad.stdout and "data plane:    NOT reloaded" in bad.stdout
        as_json = ctl(cp, "config", "reload", json_out=True)
        doc = json.loads(as_json.stdout)  # one document: what each plane did
        assert as_json.returncode == 6 and doc["controlplane_reloaded"] is True and doc["dataplane_reloaded"] is False
        assert "duplicate key 'limits'" in doc["dataplane_detail"] and "data plane reload rejected" in as_json.stderr
        assert gw.running and cp.running
    finally:
        with open(gw.config_path, "w") as f:
            f.write(good)
    assert ok_json(cp, "status")["healthy"] is True


# ---- queue and trace ---------------------------------------------------------------------------------

def test_queue_list_show_retry_and_trace(planes):
    gw, cp = planes
    qid = flows.submit(gw, ["held@dane-fail.dlv.test", "Second@dane-fail.dlv.test"], "queue-1")
    gw.wait_log(rf"event=message.deferred .*qid={qid}", timeout=60)
    listed = ok_json(cp, "queue", "list", "--domain", "dane-fail.dlv.test")
    [m] = [m for m in listed["messages"] if m["queue_id"] == qid]
    assert m["direction"] == "outbound" and m["sender"] == "sender@lab.test" and m["attempts"] >= 1
    assert [r["address"] for r in m["recipients"]] == ["held@dane-fail.dlv.test", "Second@dane-fail.dlv.test"]
    assert all(r["state"] == "pending" for r in m["recipients"]) and m["last_error"]
    assert int(m["next_attempt_ms"]) > time.time() * 1000 + 30 * 60 * 1000  # retry_min is 1h
    assert ok_json(cp, "queue", "list", "--domain", "nowhere.test")["messages"] == []
    limited = ok_json(cp, "queue", "list", "--limit", "1")
    assert len(limited["messages"]) == 1 and int(limited["total"]) >= 1
    text = ctl(cp, "queue", "list")
    assert text.returncode == 0 and qid in text.stdout and "last error:" in text.stdout
    show = ctl(cp, "queue", "show", qid)
    assert show.returncode == 0 and f"queue id     {qid}" in show.stdout and "recipient    held@dane-fail.dlv.test  pending" in show.stdout
    missing = ctl(cp, "queue", "show", "NOSUCHQID", json_out=True)
    assert missing.returncode == 5 and json.loads(missing.stdout)["error"]["code"] == "NOT_FOUND"
    # retry: attempted at once (and deferred again: the TLSA still does not match).
    mark = gw.mark()
    retried = ok_json(cp, "queue", "retry", qid)
    assert retried["affected"] == 1
    gw.wait_log(rf"event=message.deferred .*qid={qid}", since=mark, timeout=60)
    assert ctl(cp, "queue", "retry").returncode == 2
    # trace by queue id, by recipient (any case), and by domain.
    by_qid = ok_json(cp, "trace", qid)["events"]
    assert "deferred" in {e["event"] for e in by_qid} and all(e["queue_id"] == qid for e in by_qid)
    deferred = [e for e in by_qid if e["event"] == "deferred"][0]
    assert deferred["domain"] == "dane-fail.dlv.test" and deferred["detail"] and deferred["result_type"], deferred
    assert deferred["dane_mode"] == "opportunistic" and deferred["recipients"] == 2
    by_rcpt = ok_json(cp, "trace", "SECOND@dane-fail.dlv.test")["events"]
    assert by_rcpt and all(e["queue_id"] == qid for e in by_rcpt)
    by_domain = ok_json(cp, "trace", "dane-fail.dlv.test")["events"]
    assert {e["queue_id"] for e in by_domain} >= {qid}
    text = ctl(cp, "trace", qid)
    assert text.returncode == 0 and " deferred " in text.stdout and "modes=dane:opportunistic" in text.stdout
    assert ctl(cp, "trace", "nobody@nowhere.test").returncode == 5
    # A delivery's trace names the host, the TLS session and how the certificate was verified.
    ok_qid = flows.submit(gw, ["trace@dane-ee.dlv.test"], "trace-1")
    gw.wait_log(rf"event=message.delivered .*qid={ok_qid}", timeout=30)
    [done] = [e for e in ok_json(cp, "trace", ok_qid)["events"] if e["event"] == "delivered"]
    assert done["host"] == "mx.dane-ee.dlv.test" and done["requirement"] == "dane" and done["verification"] == "dane"
    assert done["dane_usage"] == 3 and done["tls_version"].startswith("TLSv1.")
    text = ctl(cp, "trace", ok_qid)
    assert "verified=dane(usage 3, depth 0)" in text.stdout and "via mx.dane-ee.dlv.test[" in text.stdout, text.stdout


def test_queue_hold_survives_a_restart_then_release_and_delete(planes):
    gw, cp = planes
    qid = flows.submit(gw, ["hold@dane-fail.dlv.test"], "hold-1")
    gw.wait_log(rf"event=message.deferred .*qid={qid}", timeout=60)
    held = ok_json(cp, "queue", "hold", qid)
    assert held["affected"] == 1 and held["messages"][0]["held"] is True
    again = ok_json(cp, "queue", "hold", qid)
    assert again["affected"] == 0 and again["skipped"] == [f"{qid}: already held"]
    assert "held by an administrator" in gw.wait_log(rf"event=message.held .*qid={qid}")
    # Held across a restart: recovered from the spool, reported, and not attempted.
    gw.restart()
    gw.wait_log(r"event=policy.link.connected", timeout=10)
    gw.wait_log(rf"event=message.held .*qid={qid}")
    [m] = ok_json(cp, "queue", "show", qid)["messages"]
    assert m["held"] is True and m["next_attempt_ms"] == "0"
    time.sleep(1.5)
    assert f"qid={qid}" not in "".join(l for l in gw.run_log().splitlines(True) if "event=message.deferred" in l)
    # Released: attempted at once (and deferred again: the TLSA still does not match).
    mark = gw.mark()
    released = ok_json(cp, "queue", "release", qid)
    assert released["affected"] == 1 and released["messages"][0]["held"] is False
    gw.wait_log(rf"event=message.deferred .*qid={qid}", since=mark, timeout=60)
    assert ok_json(cp, "queue", "release", qid)["skipped"] == [f"{qid}: not held"]
    # Deleted: gone from the spool without a notice to the sender.
    sink_before = gw.sink.count()
    text = ctl(cp, "queue", "delete", qid)
    assert text.returncode == 0 and "1 message affected" in text.stdout, text.stdout + text.stderr
    gw.wait_log(rf"event=message.deleted .*qid={qid}")
    assert ctl(cp, "queue", "show", qid).returncode == 5
    assert ctl(cp, "queue", "delete", qid).returncode == 5
    assert ctl(cp, "queue", "hold").returncode == 2
    time.sleep(1)
    assert gw.sink.count() == sink_before
    gw.restart()
    gw.wait_log(r"event=policy.link.connected", timeout=10)
    assert ctl(cp, "queue", "show", qid).returncode == 5


def test_xdp_commands_say_the_fast_path_is_off(planes):
    _, cp = planes
    for args in (["blocklist", "list"], ["blocklist", "add", "192.0.2.0/24"], ["allowlist", "list"], ["ratelimit", "show"]):
        p = ctl(cp, *args, json_out=True)
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert json.loads(p.stdout)["error"]["code"] == "UNAVAILABLE" and "the fast path is off" in p.stderr


# ---- errors and access ------------------------------------------------------------------------------

def test_daemon_down_and_bad_arguments(planes, tmp_path):
    _, cp = planes
    down = ctl(cp, "status", json_out=True, socket_path=str(tmp_path / "nothing.sock"))
    assert down.returncode == 3 and json.loads(down.stdout)["error"]["code"] == "UNAVAILABLE"
    assert "is the daemon running?" in down.stderr
    assert ctl(cp).returncode == 2
    assert ctl(cp, "policy").returncode == 2
    assert ctl(cp, "queue", "frobnicate").returncode == 2
    assert ctl(cp, "status", "--bogus-option").returncode == 2
    for args in ([], ["policy"], ["queue"], ["queue", "list"], ["connector", "set"], ["stats"], ["blocklist", "add"], ["config"]):
        h = ctl(cp, *args, "--help")
        assert h.returncode == 0 and "Usage:" in h.stdout, (args, h.stdout, h.stderr)


def test_a_garbage_request_is_refused_and_the_server_keeps_serving(planes):
    _, cp = planes
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(cp.mgmt_socket)
        s.sendall(b"\x05hello")
        reply = s.recv(4096)
    assert b"bad request" in reply
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(cp.mgmt_socket)
        s.sendall(b"\xff\xff\xff\xff\x0f")  # a length prefix beyond the limit
        assert b"bad request" in s.recv(4096)
    assert ok_json(cp, "status")["healthy"] is True
    cp.wait_log("event=mgmt.bad_request")


def test_non_admin_users_are_refused_and_admin_group_members_served(planes, admin_group):
    gw, cp = planes
    st = os.stat(cp.mgmt_socket)
    assert st.st_mode & 0o777 == 0o660 and st.st_gid == admin_group
    nobody = "--reuid=65534 --regid=65534 --clear-groups"
    # The file's permissions stop a stranger before the server sees it...
    denied = ctl(cp, "status", json_out=True, user=nobody)
    assert denied.returncode == 4 and "permission denied" in denied.stderr
    assert json.loads(denied.stdout)["error"]["code"] == "PERMISSION_DENIED"
    # ...and so do the peer credentials when the file is opened up (a misconfigured /run).
    os.chmod(cp.mgmt_socket, 0o666)
    try:
        denied = ctl(cp, "status", user=nobody)
        assert denied.returncode == 4 and "is not root and not in group 'mxedge-lab-admin'" in denied.stderr
        cp.wait_log(r"event=mgmt.denied .*uid 65534")
    finally:
        os.chmod(cp.mgmt_socket, 0o660)
    member = f"--reuid=65534 --regid=65534 --groups={admin_group}"
    served = ctl(cp, "status", json_out=True, user=member)
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["dataplane"]["pid"] == gw.pid


def test_data_plane_socket_answers_directly(planes):
    gw, cp = planes
    st = os.stat(gw.dataplane_socket)
    assert st.st_mode & 0o777 == 0o660
    s = ok_json(cp, "status", socket_path=gw.dataplane_socket)
    assert "controlplane" not in s or not s["controlplane"].get("pid")
    assert s["dataplane"]["pid"] == gw.pid and s["healthy"] is True
    p = ctl(cp, "policy", "list", socket_path=gw.dataplane_socket)
    assert p.returncode == 2 and "send it to the control plane" in p.stderr


# ---- connectivity analyzer and DNSSEC wizard through the control plane ---------------------------------

def test_check_runs_in_the_control_plane(planes):
    _, cp = planes
    ok = ctl(cp, "check", "dane-ee.dlv.test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "DANE: verified, TLSA 3 1 1 matched at depth 0" in ok.stdout
    assert "Result: connector 'strict' would deliver to mx.dane-ee.dlv.test (dane)" in ok.stdout
    bad = ctl(cp, "check", "dane-fail.dlv.test", json_out=True)
    assert bad.returncode == 1, bad.stderr
    rep = json.loads(bad.stdout)
    assert rep["domain"] == "dane-fail.dlv.test" and rep["error"] == ""
    dns_only = json.loads(ctl(cp, "check", "--no-probe", "insecure.dlv.test", json_out=True).stdout)
    assert dns_only["probed"] is False and dns_only["probes"] == [] and dns_only["hosts"]
    cp.wait_log(r"event=mgmt.check domain=dane-fail.dlv.test probe=true")
    assert ctl(cp, "check", "no such domain").returncode == 2


def test_dns_wizard_runs_in_the_control_plane(planes, dns_lab):
    _, cp = planes
    p = ctl(cp, "dns", "wizard", "nods.wiz.test", "--mx", "mx.nods.wiz.test", json_out=True)
    assert p.returncode == 1, p.stderr
    rep = json.loads(p.stdout)
    assert rep["ready"] is False and rep["mx_names"] == ["mx.nods.wiz.test"]
    dnssec = rep["steps"][0]
    assert dnssec["check"] == "CHECK_DNSSEC" and dnssec["status"] == "STATUS_ACTION_NEEDED"
    assert [r.split()[3:] for r in dnssec["records_to_publish"]] == [dns_lab.ds_record("nods.wiz.test").split()[3:]]
    text = ctl(cp, "dns", "wizard", "nods.wiz.test", "--mx", "mx.nods.wiz.test")
    assert text.returncode == 1 and "Cutover plan" in text.stdout and "IN DS " in text.stdout


def test_zz_both_daemons_stop_cleanly_after_all_of_it(planes):
    """Last in the module: after every management request above, both planes stop on SIGTERM with
    exit 0 (in the sanitizer build a leak or a memory error on any management path fails here)."""
    gw, cp = planes
    assert gw.stop() == 0, gw.log_text()[-3000:]
    assert cp.stop() == 0, cp.log_text()[-3000:]
    for text in (gw.log_text(), cp.log_text()):
        assert "Sanitizer" not in text and "runtime error" not in text
    assert not os.path.exists(cp.mgmt_socket) and not os.path.exists(gw.dataplane_socket)
