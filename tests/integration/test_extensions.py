"""ESMTP extensions: CHUNKING/BDAT (RFC 3030), DSN (RFC 3461), SMTPUTF8 (RFC 6531)."""

from __future__ import annotations

from lab import smtp_client

# --------------------------------------------------------------------------------------------------
# BDAT


def test_bdat_chunks_binary_safe(gateway, smtp_sink, session):
    c = session(gateway)
    assert "CHUNKING" in c.extensions
    mid, content = smtp_client.build_message(
        body=b".leading dot\r\n..two dots\r\n.\r\nmiddle\r\n" + "Grüße 8bit\r\n".encode() + (b"x" * 70 + b"\r\n") * 40 + b"end\r\n")
    c.mail("chunks@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    # cut points: inside a header, between CR and LF, right before a "." line, arbitrary
    cuts = [10, content.index(b"\r\n", 40) + 1, content.index(b"\r\n.\r\n") + 2, len(content) - 500]
    pieces, prev = [], 0
    for cut in cuts:
        pieces.append(content[prev:cut])
        prev = cut
    pieces.append(content[prev:])
    total = 0
    for p in pieces:
        total += len(p)
        r = c.bdat(p)
        # docs/smtp-replies.md: "250 2.0.0 Ok: <n> octets received"; n may be this chunk's size or
        # the octets received so far (RFC 3030's examples count the running total at LAST)
        assert str(r) in (f"250 2.0.0 Ok: {len(p)} octets received", f"250 2.0.0 Ok: {total} octets received"), r.raw
    r = c.bdat(b"", last=True)
    r.expect(250, "2.0.0", contains="queued as")
    m = smtp_sink.wait_for_message_id(mid)
    assert m.raw.endswith(content.replace(b"\r\n", b"\n")), m.raw[-200:]


def test_bdat_single_last_chunk(gateway, smtp_sink, session):
    c = session(gateway)
    mid, content = smtp_client.build_message()
    c.mail("one@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.bdat(content, last=True).expect(250, "2.0.0", contains="queued as")
    smtp_sink.wait_for_message_id(mid)


def test_data_after_bdat_refused(gateway, session):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.bdat(b"Subject: x\r\n").expect(250)
    c.command("DATA").expect(503, "5.5.1", contains="Error: DATA not allowed after BDAT")


def test_bdat_without_recipients(gateway, session):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    c.rcpt("a@foreign.test").expect(554)
    c.send(b"BDAT 12\r\nNOOP\r\nNOOP\r\n")
    c.read_reply().expect(554, "5.5.1", contains="Error: no valid recipients")
    c.command("RSET").expect(250)   # the 12 octets were read as data, not as two NOOPs
    c.command("NOOP").expect(250)
    assert c.read_available(0.3) == b""


def test_malformed_bdat_closes(gateway, session):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.command("BDAT twelve").expect(501, "5.5.4", contains="Syntax: BDAT chunk-size [LAST]")
    assert c.closed_by_peer(3)


def test_bdat_negative_or_huge_size_closes(gateway, session):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    r = c.command("BDAT -5")
    r.expect(501, "5.5.4")
    assert c.closed_by_peer(3)


# --------------------------------------------------------------------------------------------------
# DSN


def _params(args: str) -> dict[str, str]:
    out = {}
    for tok in args.split()[1:]:
        k, _, v = tok.partition("=")
        out[k.upper()] = v
    return out


def test_dsn_parameters_relayed_to_sink(gateway, smtp_sink, session):
    c = session(gateway)
    assert "DSN" in c.extensions
    c.mail("s@example.test", "RET=HDRS ENVID=lab+2Benv-1").expect(250, "2.1.0")
    c.rcpt("r1@lab.test", "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;r1+2Borig@lab.test").expect(250, "2.1.5")
    c.rcpt("r2@lab.test", "NOTIFY=NEVER").expect(250)
    c.rcpt("r3@lab.test").expect(250)
    mid, content = smtp_client.build_message()
    c.data(content).expect(250)
    m = smtp_sink.wait_for_message_id(mid)
    mp = _params(m.mail_args)
    assert mp.get("RET") == "HDRS" and mp.get("ENVID") == "lab+2Benv-1", m.mail_args
    r1, r2, r3 = (_params(a) for a in m.rcpt_args)
    assert r1.get("NOTIFY") == "SUCCESS,DELAY" and r1.get("ORCPT") == "rfc822;r1+2Borig@lab.test", m.rcpt_args
    assert r2.get("NOTIFY") == "NEVER", m.rcpt_args
    assert "NOTIFY" not in r3, m.rcpt_args


def test_dsn_parameters_reach_postfix_receiver(gateway_factory, postfix_factory, session):
    """Carried to a Postfix next hop: its queue file shows ENVID, RET, NOTIFY and ORCPT."""
    rcv = postfix_factory("receiver", hold=True)
    gw = gateway_factory(rcv.smtpd_port)
    c = session(gw, tls=True)
    c.mail("s@example.test", "RET=FULL ENVID=envelope-42").expect(250)
    c.rcpt("bob@lab.test", "NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob-orig@lab.test").expect(250)
    mid, content = smtp_client.build_message()
    c.data(content).expect(250)
    qid = rcv.wait_held(1, timeout=30)[0]
    env = rcv.dsn_envelope(qid)
    assert env["envid"] == "envelope-42" and env["ret"] == "FULL", env
    assert env["sender"] == "s@example.test"
    assert env["recipients"] == [{"address": "bob@lab.test", "orcpt": "rfc822;bob-orig@lab.test",
                                  "notify": {"FAILURE", "DELAY"}}], env


# --------------------------------------------------------------------------------------------------
# SMTPUTF8


def test_non_ascii_address_needs_smtputf8(gateway, session):
    c = session(gateway)
    assert "SMTPUTF8" in c.extensions
    c.command("MAIL FROM:<jürgen@example.test>").expect(553, "5.6.7",
                                                        contains="Non-ASCII address requires SMTPUTF8")
    c.command("MAIL FROM:<ascii@example.test>").expect(250)
    c.command("RCPT TO:<müller@lab.test>").expect(553, "5.6.7", contains="Non-ASCII address requires SMTPUTF8")


def test_smtputf8_message_delivered(gateway_factory, postfix_factory, session):
    rcv = postfix_factory("receiver")
    gw = gateway_factory(rcv.smtpd_port)
    c = session(gw, tls=True)
    c.command("MAIL FROM:<jürgen@example.test> SMTPUTF8").expect(250, "2.1.0")
    c.command("RCPT TO:<müller@lab.test>").expect(250, "2.1.5")
    mid, content = smtp_client.build_message(subject="Grüße", sender="jürgen@example.test", to="müller@lab.test")
    c.data(content).expect(250)
    m = rcv.wait_maildir(1, timeout=30)[0]
    assert m.message_id == f"<{mid}>"
    assert m.raw.count("Delivered-To: müller@lab.test".encode()) == 1, m.raw[:600]
    assert "Return-Path: <jürgen@example.test>".encode() in m.raw

