"""REQUIRETLS (RFC 8689) end to end: the gateway offers REQUIRETLS only under TLS, accepts
`MAIL FROM:<..> REQUIRETLS` only there, and delivers such a message only to an MX found through
DNSSEC (or MTA-STS), over TLS 1.2+ with a verified certificate, to a server that advertises
REQUIRETLS; otherwise the sender gets a 5.7.30 notice with the header only. "TLS-Required: No"
lets a message through a DANE failure.

Real components only: mxedge-controlplane (signed lab DNS, MTA-STS nginx), the sending gateway, the
delivery lab's Postfix receivers (Postfix 3.7 does not advertise REQUIRETLS), and, as an MX that
does, a second mxedge-dataplane on mx.dane-ee.dlv.test's address (port 25, the certificate its
TLSA record names) in place of that case's Postfix receiver for the module.
"""

from __future__ import annotations

import time

import pytest

from lab import controlplane as cp_mod
from lab import gateway as gw_mod
from lab import smtp_client
from lab import smtp_sink as sink_mod
from lab import util


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)


ALLOWED = ["127.0.0.1/32", "::1"]


@pytest.fixture(scope="module")
def plane(delivery_lab, dns_lab, mta_sts_server, lab_root, lab_pki):
    """The control plane, the sending gateway (an outbound intake listener with STARTTLS and an
    inbound listener) and an smtp-sink as its next hop, where notices to lab.test senders arrive."""
    cp = cp_mod.ControlPlane(lab_root.unique_sub("cp"), dns_lab, mta_sts_server)
    cp.start()
    sink = sink_mod.SmtpSink(lab_root.unique_sub("sink"))
    sink.start()
    ob = {"enabled": True, "policy_socket": cp.socket_path,
          "policy_state_file": lab_root.unique_sub("state") + "/policy.state",
          "ca_file": lab_pki.ca_pem, "retry_min": "30s", "retry_max": "60s",
          "connect_timeout": "3s", "command_timeout": "15s", "policy_wait": "15s"}
    gw = gw_mod.Gateway(lab_root.unique_sub("gw"), lab_pki, next_hop_port=sink.port, hostname="gw.lab.test",
                        listeners=[{"name": "intake", "tls_mode": "starttls", "role": "outbound",
                                    "allowed_networks": ALLOWED},
                                   {"name": "smtp", "tls_mode": "starttls"}],
                        config={"outbound": ob})
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


@pytest.fixture(scope="module")
def requiretls_mx(delivery_lab, lab_root, lab_pki):
    """mxedge-dataplane as mx.dane-ee.dlv.test (DANE-EE 3 1 1 of the certificate it serves): it
    advertises REQUIRETLS after STARTTLS and relays to an smtp-sink. The Postfix receiver of that
    address is stopped meanwhile and started again afterwards."""
    host = "mx.dane-ee.dlv.test"
    postfix = delivery_lab.receiver("dane-ee")
    cert = delivery_lab.cert(host)
    sink = sink_mod.SmtpSink(lab_root.unique_sub("mxsink"))
    sink.start()
    postfix.stop()
    mx = gw_mod.Gateway(lab_root.unique_sub("mx"), lab_pki, next_hop_port=sink.port, hostname=host,
                        accepted_domains=["dane-ee.dlv.test"],
                        listeners=[{"name": "mx", "tls_mode": "starttls", "address": f"{delivery_lab.address(host)}:25",
                                    "certificates": [cert.as_gateway_certificate()]}])
    try:
        mx.start()
        mx.sink = sink
        yield mx
    finally:
        mx.stop()
        mx.cleanup()
        sink.stop()
        postfix.start()


def submit(gw, rcpt: str, subject: str, mail_params: str = "", tls: bool = True, extra_headers=None,
           sender: str = "sender@lab.test", listener: str = "intake") -> str:
    """One message over STARTTLS (unless tls=False); returns the queue id."""
    c = gw.client(listener)
    try:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        if tls:
            c.starttls().expect(220)
            c.ehlo().expect(250)
        _, content = smtp_client.build_message(f"{subject}@lab.test", subject=subject, body=f"test {subject}\r\n",
                                               sender=sender, to=rcpt, extra_headers=extra_headers)
        c.mail(sender, mail_params).expect(250)
        c.rcpt(rcpt).expect(250)
        reply = c.data(content).expect(250)
        c.quit()
    finally:
        c.close()
    return smtp_client.queue_id(reply)


def wait_notice(sink, subject: str, timeout: float = 30):
    """The delivery status notice at `sink` about the message with `subject`: (status part text,
    returned part content type, returned part text)."""
    def find():
        for m in sink.messages():
            msg = m.message
            if msg.get_content_type() != "multipart/report":
                continue
            parts = list(msg.iter_parts())
            returned = parts[2].as_string()
            if f"Subject: {subject}" in returned:
                status = "\n".join(str(p) for p in parts[1].iter_parts()) if parts[1].is_multipart() else str(parts[1].get_payload())
                return status, parts[2].get_content_type(), returned, m
        return None
    return util.wait_until(find, timeout, interval=0.2, message=f"a notice about {subject!r}")


# ---- intake -------------------------------------------------------------------------------------


def test_advertised_only_after_starttls_and_refused_in_cleartext(plane):
    gw, _ = plane
    for listener in ("intake", "smtp"):
        c = gw.client(listener)
        try:
            c.read_reply().expect(220)
            before = c.ehlo().expect(250)
            assert "REQUIRETLS" not in before.text and "STARTTLS" in before.text, before.text
            c.mail("sender@lab.test", "REQUIRETLS").expect(530, "5.7.10")
            c.starttls().expect(220)
            after = c.ehlo().expect(250)
            assert "REQUIRETLS" in after.text, after.text
            c.mail("sender@lab.test", "REQUIRETLS=YES").expect(555, "5.5.4")
            c.mail("sender@lab.test", "REQUIRETLS").expect(250)
            c.command("RSET").expect(250)
            c.quit()
        finally:
            c.close()


# ---- outbound -----------------------------------------------------------------------------------


def test_accepted_to_a_dane_mx_that_advertises_requiretls(plane, requiretls_mx):
    gw, _ = plane
    mx = requiretls_mx
    qid = submit(gw, "rita@dane-ee.dlv.test", "rtls-ok-1", mail_params="REQUIRETLS")
    accepted = gw.wait_log(rf"event=message.accepted .*qid={qid}", timeout=10)
    assert "requiretls=1" in accepted, accepted
    line = gw.wait_log(rf"event=message.delivered .*qid={qid}", timeout=30)
    assert "requiretls=1" in line and "verified=dane" in line and "dnssec=secure" in line, line
    assert "tls=TLSv1.3" in line or "tls=TLSv1.2" in line, line
    # The receiving MTA got REQUIRETLS on MAIL FROM, under TLS, and spooled it as such.
    got = mx.wait_log(r"event=message.accepted .*from=<sender@lab.test>", timeout=10)
    assert "requiretls=1" in got and "tls=TLSv1." in got, got


def test_refused_by_an_mx_that_does_not_advertise_requiretls(plane, delivery_lab):
    gw, _ = plane
    before = len(delivery_lab.receiver("dane-ta").maildir_messages())
    qid = submit(gw, "tom@dane-ta.dlv.test", "rtls-noadv-1", mail_params="REQUIRETLS")
    refused = gw.wait_log(rf"event=relay.requiretls_refused .*qid={qid}", timeout=30)
    assert "does not advertise REQUIRETLS" in refused, refused
    failed = gw.wait_log(rf"event=message.failed .*qid={qid}", timeout=10)
    assert "5.7.30" in failed and "does not advertise REQUIRETLS" in failed, failed
    status, ctype, returned, notice = wait_notice(gw.sink, "rtls-noadv-1")
    assert "Status: 5.7.30" in status and "does not advertise REQUIRETLS" in status, status
    assert "Action: failed" in status, status
    # RFC 8689 5: the header only.
    assert ctype == "text/rfc822-headers", ctype
    assert "test rtls-noadv-1" not in returned
    assert notice.mail_from == ""
    time.sleep(0.5)
    assert len(delivery_lab.receiver("dane-ta").maildir_messages()) == before


def test_refused_without_dnssec_or_mta_sts_before_any_connection(plane, delivery_lab):
    gw, _ = plane
    delivery_lab.reset_connections()
    qid = submit(gw, "ivy@insecure.dlv.test", "rtls-insecure-1", mail_params="REQUIRETLS")
    failed = gw.wait_log(rf"event=message.failed .*qid={qid}", timeout=30)
    assert "5.7.30" in failed and "not DNSSEC-validated (insecure) and no MTA-STS policy" in failed, failed
    status, ctype, _, _ = wait_notice(gw.sink, "rtls-insecure-1")
    assert "Status: 5.7.30" in status and ctype == "text/rfc822-headers", status
    assert "x-mxedge;" in status, status  # our decision, not a server's reply
    assert delivery_lab.connections("mx.insecure.dlv.test") == 0
    # The same destination without REQUIRETLS is delivered (opportunistic TLS), as before.
    qid2 = submit(gw, "ivy@insecure.dlv.test", "rtls-insecure-2")
    gw.wait_log(rf"event=message.delivered .*qid={qid2}", timeout=30)


def test_tls_required_no_passes_a_dane_failure_and_without_it_is_deferred(plane, delivery_lab):
    gw, _ = plane
    rcv = delivery_lab.receiver("dane-fail")
    qid = submit(gw, "carl@dane-fail.dlv.test", "rtls-trn-1", extra_headers=["TLS-Required: No"])
    accepted = gw.wait_log(rf"event=message.accepted .*qid={qid}", timeout=10)
    assert "tls_required_no=1" in accepted, accepted
    line = gw.wait_log(rf"event=message.delivered .*qid={qid}", timeout=30)
    assert "tls_required_no=1" in line and "policy_ignored=" in line and "requirement=dane" in line, line
    gw.wait_log(r"event=delivery.tls_required_no .*domain=dane-fail.dlv.test", timeout=5)
    assert util.wait_until(lambda: any("rtls-trn-1" in m.raw.decode(errors="replace") for m in rcv.maildir_messages()), 10, interval=0.2)
    # Without the header field: deferred as before, never delivered.
    qid2 = submit(gw, "carl@dane-fail.dlv.test", "rtls-trn-2")
    deferred = gw.wait_log(rf"event=message.deferred .*qid={qid2}", timeout=30)
    assert "no MX host of dane-fail.dlv.test could be used" in deferred, deferred
    time.sleep(1)
    assert not any("rtls-trn-2" in m.raw.decode(errors="replace") for m in rcv.maildir_messages())


def test_requiretls_wins_over_tls_required_no(plane):
    gw, _ = plane
    qid = submit(gw, "dora@dane-fail.dlv.test", "rtls-both-1", mail_params="REQUIRETLS",
                 extra_headers=["TLS-Required: No"])
    accepted = gw.wait_log(rf"event=message.accepted .*qid={qid}", timeout=10)
    assert "requiretls=1" in accepted and "tls_required_no" not in accepted, accepted
    # The only MX fails DANE: a host failure (transient), never a relaxed delivery.
    deferred = gw.wait_log(rf"event=message.deferred .*qid={qid}", timeout=30)
    assert "no MX host of dane-fail.dlv.test could be used" in deferred, deferred
    assert not gw.events("message.delivered") or all(e.get("qid") != qid for e in gw.events("message.delivered"))


# ---- inbound relay ------------------------------------------------------------------------------


def test_inbound_relay_refuses_a_next_hop_without_tls_with_5_7_30(requiretls_mx):
    """The MX gateway relays to its smtp-sink next hop (no TLS, no REQUIRETLS): a REQUIRETLS message
    for it fails with 5.7.30 and its sender (in the MX gateway's accepted domain) gets the notice,
    relayed to that same next hop (a notice from <> is not bound by REQUIRETLS)."""
    mx = requiretls_mx
    qid = submit(mx, "una@dane-ee.dlv.test", "rtls-relay-1", mail_params="REQUIRETLS",
                 sender="sam@dane-ee.dlv.test", listener="mx")
    failed = mx.wait_log(rf"event=message.failed .*qid={qid}", timeout=30)
    assert "5.7.30" in failed and "no TLS session with" in failed, failed
    status, ctype, returned, notice = wait_notice(mx.sink, "rtls-relay-1")
    assert "Status: 5.7.30" in status and ctype == "text/rfc822-headers", status
    assert notice.rcpt_to == ["sam@dane-ee.dlv.test"], notice.rcpt_to
    assert not mx.sink.find("rtls-relay-1@lab.test")


def test_inbound_relay_to_a_verified_next_hop_that_does_not_advertise_requiretls(delivery_lab, lab_root, lab_pki):
    """next_hop.tls verify, certificate verified (Postfix receiver of sts-ok.dlv.test, lab CA), but
    Postfix 3.7 does not advertise REQUIRETLS: 5.7.30 naming that, and the notice (to a sender in the
    accepted domain) goes to the same next hop, where Postfix delivers it; the message itself never
    arrives there. A message without REQUIRETLS is relayed as usual."""
    host = "mx.sts-ok.dlv.test"
    postfix = delivery_lab.receiver("sts-ok")
    gw = gw_mod.Gateway(lab_root.unique_sub("gwv"), lab_pki, next_hop_port=25, next_hop_host=delivery_lab.address(host),
                        hostname="gw.sts-ok.dlv.test", accepted_domains=["sts-ok.dlv.test"],
                        listeners=[{"name": "smtp", "tls_mode": "starttls"}],
                        config={"next_hop": {"tls": "verify", "verify_name": host, "ca_file": lab_pki.ca_pem}})
    try:
        gw.start()
        plain = submit(gw, "pat@sts-ok.dlv.test", "rtls-hop-0", sender="sue@sts-ok.dlv.test", listener="smtp")
        gw.wait_log(rf"event=message.relayed .*qid={plain}", timeout=30)
        qid = submit(gw, "pat@sts-ok.dlv.test", "rtls-hop-1", mail_params="REQUIRETLS", sender="sue@sts-ok.dlv.test",
                     listener="smtp")
        failed = gw.wait_log(rf"event=message.failed .*qid={qid}", timeout=30)
        assert "5.7.30" in failed and "does not advertise REQUIRETLS" in failed, failed

        def notice():
            for m in postfix.maildir_messages():
                text = m.raw.decode(errors="replace")
                if "multipart/report" in text and "Subject: rtls-hop-1" in text:
                    return text
            return None
        text = util.wait_until(notice, 30, interval=0.2, message="the 5.7.30 notice in the receiver's Maildir")
        assert "Status: 5.7.30" in text and "text/rfc822-headers" in text, text
        assert not any("test rtls-hop-1" in m.raw.decode(errors="replace") for m in postfix.maildir_messages())
    finally:
        gw.stop()
        gw.cleanup()
