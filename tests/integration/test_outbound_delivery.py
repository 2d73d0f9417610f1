"""Outbound delivery under per-destination policy, end to end: an internal client submits mail on the
gateway's outbound intake listener; mxedge-dataplane asks mxedge-controlplane for each destination's
policy (DNSSEC-validated MX/TLSA from the signed lab DNS, MTA-STS from the lab's nginx) and delivers
to the delivery lab's Postfix receivers (lab/delivery.py) only over connections that satisfy it.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from lab import controlplane as cp_mod
from lab import flows
from lab import gateway as gw_mod
from lab import smtp_sink as sink_mod
from lab import util


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)


def outbound_config(cp, lab_root, lab_pki, **over) -> dict:
    ob = {"enabled": True, "policy_socket": cp.socket_path,
          "policy_state_file": lab_root.unique_sub("state") + "/policy.state",
          "ca_file": lab_pki.ca_pem, "retry_min": "30s", "retry_max": "60s",
          "connect_timeout": "3s", "command_timeout": "15s", "policy_wait": "15s"}
    ob.update(over)
    return {"outbound": ob}


INTAKE = [{"name": "intake", "tls_mode": "none", "role": "outbound", "allowed_networks": ["127.0.0.1/32", "::1"]}]


@pytest.fixture(scope="module")
def plane(delivery_lab, dns_lab, mta_sts_server, lab_root, lab_pki):
    """The control plane, a gateway with an outbound intake listener, and an smtp-sink as the next
    hop (where notices to the organisation's senders arrive)."""
    cp = cp_mod.ControlPlane(lab_root.unique_sub("cp"), dns_lab, mta_sts_server)
    cp.start()
    sink = sink_mod.SmtpSink(lab_root.unique_sub("sink"))
    sink.start()
    gw = gw_mod.Gateway(lab_root.unique_sub("gw"), lab_pki, next_hop_port=sink.port, hostname="gw.lab.test",
                        listeners=INTAKE, config=outbound_config(cp, lab_root, lab_pki))
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


def delivered_line(gw, domain: str, timeout: float = 30) -> str:
    return gw.wait_log(rf"event=message.delivered .*domain={domain} ", timeout=timeout)


def dsn_parts(sink_message):
    """(delivery-status text, returned part content type, the whole notice) of a DSN the sink got."""
    m = sink_message.message
    assert m.get_content_type() == "multipart/report" and m.get_param("report-type") == "delivery-status", m
    parts = list(m.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    status = "\n".join(str(p) for p in parts[1].iter_parts()) if parts[1].is_multipart() else parts[1].get_payload()
    return str(status), parts[2].get_content_type(), m


def test_dane_ee_delivery_ignores_names_and_reports_usage_3(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["alice@dane-ee.dlv.test"], "dane-ee-1", body="outbound test\r\n.leading dot line\r\n")
    line = delivered_line(gw, "dane-ee.dlv.test")
    assert "verified=dane" in line and "dane_usage=3" in line and "dane_depth=0" in line, line
    assert "requirement=dane" in line and "dnssec=secure" in line, line
    assert delivery_lab.receiver("dane-ee").wait_maildir(1, timeout=10)
    body = delivery_lab.receiver("dane-ee").maildir_messages()[0]
    assert "..leading dot line" not in str(body) and ".leading dot line" in str(body)


def test_dane_ta_delivery_matches_the_ca_in_the_chain(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["bob@dane-ta.dlv.test"], "dane-ta-1")
    line = delivered_line(gw, "dane-ta.dlv.test")
    assert "verified=dane" in line and "dane_usage=2" in line, line
    assert delivery_lab.receiver("dane-ta").wait_maildir(1, timeout=10)


def test_dane_ta_by_public_key_2_1_1_delivers(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["tina@dane-ta-spki.dlv.test"], "dane-ta-spki-1")
    line = delivered_line(gw, "dane-ta-spki.dlv.test")
    assert "verified=dane" in line and "dane_usage=2" in line and "dane_depth=1" in line, line
    assert delivery_lab.receiver("dane-ta-spki").wait_maildir(1, timeout=10)


def test_tlsa_mismatch_is_deferred_never_delivered(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["carol@dane-fail.dlv.test"], "dane-fail-1")
    failed = gw.wait_log(r"event=delivery.attempt_failed .*domain=dane-fail.dlv.test .*requirement=dane", timeout=30)
    assert "validation-failure" in failed, failed
    deferred = gw.wait_log(r"event=message.deferred .*domain=dane-fail.dlv.test", timeout=10)
    assert "no MX host of dane-fail.dlv.test could be used" in deferred, deferred
    time.sleep(1)
    assert delivery_lab.receiver("dane-fail").maildir_messages() == []


def test_mx_fallback_reaches_the_second_host_when_the_first_fails_dane(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["dave@dane-fallback.dlv.test"], "fallback-1")
    gw.wait_log(r"event=delivery.attempt_failed .*domain=dane-fallback.dlv.test .*host=bad.dane-fallback.dlv.test", timeout=30)
    line = delivered_line(gw, "dane-fallback.dlv.test")
    assert "host=good.dane-fallback.dlv.test" in line and "verified=dane" in line, line
    good = delivery_lab.receiver("good.dane-fallback.dlv.test")
    assert good.wait_maildir(1, timeout=10)
    assert delivery_lab.receiver("bad.dane-fallback.dlv.test").maildir_messages() == []


def test_mta_sts_enforce_delivers_with_a_webpki_certificate_for_the_mx_name(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["erin@sts-ok.dlv.test"], "sts-ok-1")
    line = delivered_line(gw, "sts-ok.dlv.test")
    assert "requirement=webpki" in line and "verified=webpki" in line and "mta_sts=enforce" in line, line
    assert delivery_lab.receiver("sts-ok").wait_maildir(1, timeout=10)


def test_mta_sts_enforce_with_a_wrong_certificate_is_deferred(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["frank@sts-badcert.dlv.test"], "sts-badcert-1")
    failed = gw.wait_log(r"event=delivery.attempt_failed .*domain=sts-badcert.dlv.test", timeout=30)
    assert "certificate-host-mismatch" in failed and "requirement=webpki" in failed, failed
    gw.wait_log(r"event=message.deferred .*domain=sts-badcert.dlv.test", timeout=10)
    assert delivery_lab.receiver("sts-badcert").maildir_messages() == []


def test_insecure_destination_gets_opportunistic_tls(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["grace@insecure.dlv.test"], "insecure-1")
    line = delivered_line(gw, "insecure.dlv.test")
    assert "requirement=may" in line and "tls=TLSv1" in line and "verified=none" in line and "dnssec=insecure" in line, line
    assert delivery_lab.receiver("insecure").wait_maildir(1, timeout=10)


def test_stripped_starttls_insecure_goes_cleartext_but_dane_refuses(plane, delivery_lab):
    gw, _ = plane
    flows.submit(gw, ["heidi@stripped.dlv.test"], "stripped-1")
    line = delivered_line(gw, "stripped.dlv.test")
    assert "tls=none" in line and "requirement=may" in line, line
    flows.submit(gw, ["ivan@dane-stripped.dlv.test"], "dane-stripped-1")
    failed = gw.wait_log(r"event=delivery.attempt_failed .*domain=dane-stripped.dlv.test", timeout=30)
    assert "starttls-not-supported" in failed, failed
    gw.wait_log(r"event=message.deferred .*domain=dane-stripped.dlv.test", timeout=10)


def test_bogus_destination_is_deferred_without_a_connection(plane, delivery_lab):
    gw, cp = plane
    delivery_lab.reset_connections()
    flows.submit(gw, ["judy@bogus.dlv.test"], "bogus-1")
    deferred = gw.wait_log(r"event=message.deferred .*domain=bogus.dlv.test", timeout=30)
    assert "dnssec-invalid" in deferred, deferred
    cp.wait_log(r"event=policy.compiled .*domain=bogus.dlv.test .*verdict=defer")
    time.sleep(1)
    assert delivery_lab.connections("mx.bogus.dlv.test") == 0


def test_one_message_to_two_destinations_is_split_by_policy(plane, delivery_lab):
    gw, _ = plane
    before = len(delivery_lab.receiver("dane-ee").maildir_messages())
    flows.submit(gw, ["kim@dane-ee.dlv.test", "leo@dane-fail.dlv.test"], "split-1")
    util.wait_until(lambda: len(delivery_lab.receiver("dane-ee").maildir_messages()) > before, 30,
                    message="the dane-ee copy of the split message")
    line = gw.wait_log(r"event=message.deferred .*domain=dane-fail.dlv.test .*rcpts=1", timeout=30)
    assert line


def test_intake_refuses_clients_outside_allowed_networks(plane):
    gw, _ = plane
    host, port = gw.address("intake")
    with socket.create_connection((host, port), timeout=10, source_address=("127.0.0.2", 0)) as s:
        greeting = s.recv(512).decode()
    assert greeting.startswith("554 5.7.1") and "127.0.0.2" in greeting, greeting
    gw.wait_log(r"event=session.refused .*reason=\"?not in allowed_networks", timeout=5)


def test_null_mx_bounces_with_a_dsn_to_the_sender(plane):
    gw, _ = plane
    qid = flows.submit(gw, ["nobody@null-mx.test"], "nullmx-1", sender="sender@lab.test")
    gw.wait_log(rf"event=message.failed .*qid={qid} .*domain=null-mx.test", timeout=30)
    gw.wait_log(rf"event=dsn.queued .*about={qid} .*route=next_hop", timeout=10)
    notice = util.wait_until(lambda: [m for m in gw.sink.messages() if "nullmx-1" in m.raw.decode(errors="replace")], 20,
                             message="the DSN at the next hop")[0]
    assert notice.mail_from == "" and notice.rcpt_to == ["sender@lab.test"]
    status, returned, m = dsn_parts(notice)
    assert "Action: failed" in status and "Status: 5.1.10" in status, status
    assert "Final-Recipient: rfc822; nobody@null-mx.test" in status and f"X-Mxedge-Queue-ID: {qid}" in status, status
    assert "null MX" in status  # the diagnostic names the policy that failed
    assert returned == "message/rfc822"
    assert m["Auto-Submitted"] == "auto-replied" and m["From"].startswith("Mail Delivery System")


def test_no_bounce_of_a_bounce_and_notify_never(plane):
    gw, _ = plane
    before = len(gw.sink.messages())
    q1 = flows.submit(gw, ["nobody@null-mx.test"], "bounce-of-bounce-1", sender="")
    gw.wait_log(rf"event=dsn.suppressed .*qid={q1}", timeout=30)
    q2 = flows.submit(gw, ["nobody@null-mx.test"], "notify-never-1", sender="sender@lab.test", rcpt_params="NOTIFY=NEVER")
    gw.wait_log(rf"event=message.failed .*qid={q2}", timeout=30)
    time.sleep(1.5)
    assert not [m for m in gw.sink.messages()[before:] if "bounce-of-bounce-1" in m.raw.decode(errors="replace")
                or "notify-never-1" in m.raw.decode(errors="replace")]
    assert not gw.events("dsn.queued") or all(e.get("about") not in (q1, q2) for e in gw.events("dsn.queued"))


@pytest.fixture
def short_lived(plane, lab_root, lab_pki):
    """A second gateway on the same control plane with a queue lifetime of seconds."""
    gw, cp = plane
    g = gw_mod.Gateway(lab_root.unique_sub("gw-short"), lab_pki, next_hop_port=gw.sink.port, hostname="gw2.lab.test",
                       listeners=[dict(INTAKE[0])],
                       config=outbound_config(cp, lab_root, lab_pki, retry_min="1s", retry_max="1s",
                                              queue_lifetime="4s", delay_warning="1s"))
    g.sink = gw.sink
    g.start()
    try:
        yield g
    finally:
        g.stop()
        g.cleanup()


def test_queue_lifetime_ends_in_a_failure_notice_naming_the_last_reason(short_lived):
    gw = short_lived
    qid = flows.submit(gw, ["carol@dane-fail.dlv.test"], "expire-1", sender="sender@lab.test")
    gw.wait_log(rf"event=message.expired .*qid={qid} .*domain=dane-fail.dlv.test", timeout=30)
    notice = util.wait_until(lambda: [m for m in gw.sink.messages()
                                      if "expire-1" in m.raw.decode(errors="replace") and "Action: failed" in m.raw.decode(errors="replace")],
                             20, message="the failure notice")[0]
    status, _, _ = dsn_parts(notice)
    assert "Status: 4.7.5" in status and "delivery time expired" in status and "validation-failure" in status, status


def test_delay_notice_only_when_asked_with_will_retry_until(short_lived):
    gw = short_lived
    flows.submit(gw, ["carol@dane-fail.dlv.test"], "delay-1", sender="sender@lab.test", rcpt_params="NOTIFY=DELAY,FAILURE")
    delayed = util.wait_until(lambda: [m for m in gw.sink.messages()
                                       if "delay-1" in m.raw.decode(errors="replace") and "Action: delayed" in m.raw.decode(errors="replace")],
                              20, message="the delay notice")[0]
    status, returned, m = dsn_parts(delayed)
    assert "Will-Retry-Until:" in status and m["Subject"].startswith("Delayed Mail"), status
    assert len(gw.events("dsn.queued")) >= 1
    qid_plain = flows.submit(gw, ["carol@dane-fail.dlv.test"], "nodelay-1", sender="sender@lab.test")
    gw.wait_log(rf"event=message.expired .*qid={qid_plain}", timeout=30)
    time.sleep(1)
    assert not [m for m in gw.sink.messages()
                if "nodelay-1" in m.raw.decode(errors="replace") and "Action: delayed" in m.raw.decode(errors="replace")]


def trace(gw, *args: str) -> list[dict]:
    import json
    import subprocess
    binary = os.path.join(gw_mod.build_dir(), "dataplane", "mxedge-trace")
    p = subprocess.run([binary, "--spool", gw.spool_dir, "--json", *args], capture_output=True, text=True, timeout=20)
    assert p.returncode in (0, 3), p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_message_trace_records_each_attempt_with_its_policy_and_verification(plane):
    gw, _ = plane
    qid = flows.submit(gw, ["trace@dane-fallback.dlv.test"], "trace-1", sender="sender@lab.test")
    gw.wait_log(rf"event=message.delivered .*qid={qid}", timeout=30)
    events = util.wait_until(lambda: [e for e in trace(gw, "--qid", qid) if e["event"] == "delivered"] and trace(gw, "--qid", qid),
                             10, message="the delivered event in the trace")
    d = [e for e in events if e["event"] == "delivered"][0]
    assert d["host"] == "good.dane-fallback.dlv.test" and d["requirement"] == "dane" and d["verification"] == "dane"
    assert d["dane_usage"] == 3 and d["tls"].startswith("TLSv1") and d["dnssec"] == "secure" and d["dane_mode"] == "opportunistic"
    assert d["detail"].startswith("250 ")
    # The domain's attempts include the failed first host, with the RFC 8460 result type.
    failed = [e for e in trace(gw, "--domain", "dane-fallback.dlv.test") if e["event"] == "attempt_failed"]
    assert failed and failed[-1]["host"] == "bad.dane-fallback.dlv.test" and failed[-1]["result_type"] == "validation-failure"
    # Deferrals and their reasons are there too.
    deferred = [e for e in trace(gw, "--domain", "dane-fail.dlv.test") if e["event"] == "deferred"]
    assert deferred and "could be used" in deferred[0]["detail"]
    # An unknown message is exit status 3 and no output.
    assert trace(gw, "--qid", "NO-SUCH-QID") == []


def test_tls_outcomes_are_recorded_per_policy_for_tlsrpt_and_survive_a_restart(plane, lab_root, lab_pki, delivery_lab):
    """Issue #8, outcome recording: each outbound TLS session's outcome, per policy domain and type,
    with what a report's failure-details need; durable across a restart."""
    gw0, cp = plane
    g = gw_mod.Gateway(lab_root.unique_sub("gw-tlsrpt"), lab_pki, next_hop_port=gw0.sink.port, hostname="gw3.lab.test",
                       listeners=[dict(INTAKE[0])], config=outbound_config(cp, lab_root, lab_pki))
    g.start()
    try:
        g.wait_log(r"event=policy.link.connected", timeout=10)
        for i, domain in enumerate(["dane-ee", "insecure", "dane-fail", "sts-badcert", "bogus", "dane-stripped"]):
            flows.submit(g, [f"rpt{i}@{domain}.dlv.test"], f"tlsrpt-{i}")
        for domain in ("dane-ee", "insecure"):
            g.wait_log(rf"event=message.delivered .*domain={domain}.dlv.test ", timeout=30)
        for domain in ("dane-fail", "sts-badcert", "bogus", "dane-stripped"):
            g.wait_log(rf"event=message.deferred .*domain={domain}.dlv.test ", timeout=30)
        time.sleep(0.5)  # the end of the loop turn writes the counts
        rows = util.wait_until(lambda: (lambda r: r if len(r) >= 6 else None)(g.tls_outcomes()), 10, message="outcome rows")
        by = {(k[0], k[1], k[2]): (k, v) for k, v in rows.items()}
        today = int(time.time()) // 86400 * 86400

        (k, v) = by[("dane-ee.dlv.test", "tlsa", "")]
        assert v["sessions"] >= 1 and "3 1 1 " in v["policy_strings"] and v["day"] == today
        assert k[3:] == ("", "", "")  # successes are counted per policy, without hosts
        (k, v) = by[("insecure.dlv.test", "no-policy-found", "")]
        assert v["sessions"] >= 1
        (k, v) = by[("dane-fail.dlv.test", "tlsa", "validation-failure")]
        assert k[3] == "mx.dane-fail.dlv.test" and k[4] == delivery_lab.address("mx.dane-fail.dlv.test") and k[5] == "127.0.0.1"
        (k, v) = by[("sts-badcert.dlv.test", "sts", "certificate-host-mismatch")]
        assert k[3] == "mx.sts-badcert.dlv.test" and v["policy_id"] and "mx.sts-badcert.dlv.test" in v["mx_hosts"]
        (k, v) = by[("bogus.dlv.test", "tlsa", "dnssec-invalid")]
        assert k[3] == "" and v["sessions"] >= 1  # no session began: no receiving host
        (k, v) = by[("dane-stripped.dlv.test", "tlsa", "starttls-not-supported")]
        assert k[3] == "mx.dane-stripped.dlv.test"
        # Durable: what was counted is still there after a stop and a start (new attempts only add).
        before = g.tls_outcomes()
        g.stop()
        g.start()
        after = g.tls_outcomes()
        assert all(after[k]["sessions"] >= v["sessions"] for k, v in before.items()), (before, after)
    finally:
        g.stop()
        g.cleanup()
