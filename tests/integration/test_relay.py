"""The inbound path end to end: client → mxedge → next hop (smtp-sink or a Postfix receiver)."""

from __future__ import annotations

import re
import time

from lab import flows, smtp_client, swaks


def _top_received(msg) -> str:
    received = msg.headers("Received")
    assert received, f"no Received: header in {msg.raw[:500]!r}"
    return received[0]


def _assert_tls_logged(gw, version: str, cipher: str) -> None:
    lines = [l for l in gw.log_text().splitlines() if version in l and cipher in l]
    assert lines, (f"no gateway log line names the TLS version {version} and cipher {cipher}; log tail:\n"
                   + "\n".join(gw.log_text().splitlines()[-30:]))


def _assert_received_by_gateway(msg, gw, qid: str, tls: tuple[str, str] | None) -> None:
    top = _top_received(msg)
    proto = "ESMTPS" if tls else "ESMTP"
    assert re.search(rf"\bby {re.escape(gw.hostname)} \(mxedge\) with {proto} id {re.escape(qid)}\b", top), top
    if tls:
        assert tls[0] in top and tls[1] in top, f"TLS version/cipher {tls} missing in: {top}"


def test_swaks_starttls_relays_to_sink(gateway, smtp_sink):
    r = swaks.send("127.0.0.1", gateway.smtp_port, to="alice@lab.test", message_id="starttls-1@client.example.test",
                   tls="starttls")
    assert r.rc == 0, r.transcript
    qid = r.queue_id()
    assert qid, f"no '250 ... queued as <id>' reply:\n{r.transcript}"
    assert r.last_reply().startswith("250 2.0.0 Ok: queued as "), r.last_reply()
    tls = r.tls_cipher()
    assert tls is not None, r.transcript
    m = smtp_sink.wait_for_message_id("starttls-1@client.example.test")
    assert m.rcpt_to == ["alice@lab.test"] and m.mail_from == "sender@example.test"
    _assert_received_by_gateway(m, gateway, qid, tls)
    gateway.wait_log(rf"event=message\.accepted\b.*\bqid={re.escape(qid)}\b", regex=True)
    gateway.wait_log(rf"event=message\.relayed\b.*\bqid={re.escape(qid)}\b", regex=True)
    gateway.wait_log("event=session.closed")
    _assert_tls_logged(gateway, *tls)


def test_swaks_implicit_tls_relays_to_sink(gateway, smtp_sink):
    r = swaks.send("127.0.0.1", gateway.smtps_port, to="bob@lab.test", message_id="implicit-1@client.example.test",
                   tls="implicit")
    assert r.rc == 0, r.transcript
    qid, tls = r.queue_id(), r.tls_cipher()
    assert qid and tls, r.transcript
    m = smtp_sink.wait_for_message_id("implicit-1@client.example.test")
    _assert_received_by_gateway(m, gateway, qid, tls)
    gateway.wait_log(rf"event=message\.relayed\b.*\bqid={re.escape(qid)}\b", regex=True)
    _assert_tls_logged(gateway, *tls)


def test_plaintext_message_relayed_with_esmtp_received(gateway, smtp_sink, session):
    c = session(gateway)
    mid, r = flows.send_message(c)
    r.expect(250, "2.0.0", contains="queued as")
    m = smtp_sink.wait_for_message_id(mid)
    # RFC 3848: ESMTPS only when STARTTLS was used
    _assert_received_by_gateway(m, gateway, smtp_client.queue_id(r), None)


def test_content_arrives_intact(gateway, smtp_sink, session):
    body = ("first line\r\n"
            ".a line starting with a dot\r\n"
            "..two dots\r\n"
            ".\r\n"  # a lone dot line inside the body (dot-stuffed on the wire both ways)
            "UTF-8 8bit: Grüße, 日本語\r\n"
            + "x" * 998 + "\r\n"   # the longest legal line
            "\tTab and trailing spaces   \r\n"
            "last line\r\n").encode("utf-8")
    c = session(gateway, tls=True)
    mid, content = smtp_client.build_message(body=body, extra_headers=["X-Lab-Header: folded", "  continuation"])
    r = c.send_mail("sender@example.test", ["a@lab.test", "B@Lab.Test", "c@lab.test"], content)
    r.expect(250)
    m = smtp_sink.wait_for_message_id(mid)
    assert m.rcpt_to == ["a@lab.test", "B@Lab.Test", "c@lab.test"]
    # smtp-sink stores LF line ends; everything after the gateway's Received: header is the original
    sent = content.replace(b"\r\n", b"\n")
    assert m.raw.endswith(sent), f"content changed:\nsent {sent!r}\ngot  {m.raw!r}"
    prefix = m.raw[: len(m.raw) - len(sent)]
    assert prefix.startswith(b"Received: "), prefix


def test_null_sender_and_several_transactions_per_session(gateway, smtp_sink, session):
    c = session(gateway)
    ids = []
    for i in range(3):
        mid, r = flows.send_message(c, sender="" if i == 1 else "s@example.test", rcpts=(f"u{i}@lab.test",))
        r.expect(250)
        ids.append(mid)
    c.command("QUIT").expect(221)
    for i, mid in enumerate(ids):
        m = smtp_sink.wait_for_message_id(mid)
        assert m.rcpt_to == [f"u{i}@lab.test"]
        assert m.mail_from == ("" if i == 1 else "s@example.test")


def test_ipv6_listener(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port, listeners=[{"name": "smtp", "tls_mode": "starttls"}], ipv6=True)
    host, port = gw.address("smtp")
    assert host == "::1"
    c = session(gw, tls=True)
    mid, r = flows.send_message(c)
    r.expect(250)
    assert smtp_sink.wait_for_message_id(mid)


def test_postfix_sender_through_gateway_to_postfix_receiver(gateway_factory, postfix_factory, lab_pki):
    """Postfix (sender, TLS verify) → mxedge → Postfix (receiver, STARTTLS; next_hop tls: verify)."""
    rcv = postfix_factory("receiver", tls="encrypt")
    gw = gateway_factory(rcv.smtpd_port, config={"next_hop": {
        "tls": "verify", "ca_file": lab_pki.ca_pem, "verify_name": "smtp.lab.test"}})
    snd = postfix_factory("sender", relay_port=gw.smtp_port, tls_level="verify", verify_name="mx.lab.test")
    body = "Line 1\r\n.dotted\r\n" + "y" * 990 + "\r\nEnd\r\n"
    mid, content = smtp_client.build_message(subject="postfix to postfix via mxedge", body=body,
                                             sender="alice@sender.lab.test", to="bob@lab.test")
    snd.sendmail(content, "alice@sender.lab.test", ["bob@lab.test"])
    snd.wait_queue_empty(30)
    assert re.search(rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{gw.smtp_port}",
                     snd.log_text()), snd.log_text()
    delivered = rcv.wait_maildir(1, timeout=30)
    assert len(delivered) == 1
    m = delivered[0]
    assert m.message_id == f"<{mid}>"
    assert m.headers("Delivered-To") == ["bob@lab.test"]
    original_body = content.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
    assert m.raw.replace(b"\r\n", b"\n").endswith(original_body)
    received = " ".join(m.headers("Received"))
    assert f"by {gw.hostname} (mxedge) with ESMTPS id" in received, received
    # the gateway's own hop to the receiver used TLS
    assert re.search(r"TLS connection established from \S*\[127\.0\.0\.1\]", rcv.log_text()), rcv.log_text()


def test_next_hop_verify_failure_is_not_downgraded(gateway_factory, postfix_factory, lab_pki, session):
    """next_hop tls: verify with a name the receiver's certificate does not carry: nothing is
    delivered (the message stays spooled), never a fallback to an unverified session."""
    rcv = postfix_factory("receiver")
    gw = gateway_factory(rcv.smtpd_port, config={"next_hop": {
        "tls": "verify", "ca_file": lab_pki.ca_pem, "verify_name": "other.lab.test"}})
    c = session(gw)
    mid, r = flows.send_message(c)
    r.expect(250)
    # wait for at least one delivery attempt to have happened
    rcv.wait_log(r"connect from \S*\[127\.0\.0\.1\]", timeout=20)
    time.sleep(3)
    assert rcv.maildir_messages() == []
    assert "message.relayed" not in gw.log_text()


def test_permanent_refusal_at_the_next_hop_notifies_the_sender_once(sink_factory, gateway_factory):
    """A 5xx from the next hop settles the recipient as failed and sends a DSN to an internal sender
    through the next hop; when the next hop refuses that notice too, there is no notice about the
    notice. An external sender cannot be notified while outbound delivery is off: logged, not queued."""
    sink = sink_factory(hard_reject=["RCPT"])
    gw = gateway_factory(sink.port)
    internal = swaks.send("127.0.0.1", gw.smtp_port, to="alice@lab.test", sender="boss@lab.test",
                          message_id="refused-1@lab.test")
    assert internal.rc == 0, internal.transcript
    qid = internal.queue_id()
    gw.wait_log(rf"event=message\.failed\b.*\bqid={re.escape(qid)}\b", regex=True)
    queued = gw.wait_log(rf"event=dsn\.queued\b.*\babout={re.escape(qid)}\b.*route=next_hop", regex=True)
    dsn_qid = re.search(r"\bqid=(\S+)", queued).group(1)
    gw.wait_log(rf"event=message\.failed\b.*\bqid={re.escape(dsn_qid)}\b", regex=True)   # the notice is refused too
    gw.wait_log(rf"event=dsn\.suppressed\b.*\bqid={re.escape(dsn_qid)}\b", regex=True)    # and nothing about it
    external = swaks.send("127.0.0.1", gw.smtp_port, to="bob@lab.test", sender="someone@remote.example",
                          message_id="refused-2@remote.example")
    assert external.rc == 0, external.transcript
    gw.wait_log(rf"event=dsn\.not_sent\b.*\bqid={re.escape(external.queue_id())}\b", regex=True)
