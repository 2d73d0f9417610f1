"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA; bare CR/LF is refused; BDAT is length-framed.

Each attempt embeds a fake end-of-data followed by a second transaction (MAIL/RCPT/DATA) from
smuggler@evil.test. A vulnerable server would answer those commands (extra replies) and relay a
second message. We check the exact reply sequence, and that the next hop never sees a smuggled
message (a control message sent afterwards is the barrier).
"""

from __future__ import annotations

import time

import pytest

from lab import flows

SMUGGLED = (b"MAIL FROM:<smuggler@evil.test>\r\n"
            b"RCPT TO:<victim@lab.test>\r\n"
            b"DATA\r\n"
            b"From: <ceo@lab.test>\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")

# fake end-of-data sequences; True = contains a bare CR or LF (the message must be refused)
VARIANTS = [
    (b"\n.\n", True),
    (b"\n.\r\n", True),
    (b"\r.\r\n", True),
    (b"\r.\r", True),
    (b"\r\n.\n", True),
    (b"\r\n.\r", True),
    (b"\r\n\x00.\r\n", False),
]
IDS = ["LF.LF", "LF.CRLF", "CR.CRLF", "CR.CR", "CRLF.LF", "CRLF.CR", "CRLF-NUL.CRLF"]


def _head() -> bytes:
    return (b"From: <sender@example.test>\r\nTo: <user@lab.test>\r\nSubject: smuggling test\r\n"
            b"Message-ID: <smuggling-outer@client.example.test>\r\n\r\nfirst part")


def _assert_no_smuggled_message(gateway, smtp_sink):
    flows.send_control_message(gateway, smtp_sink)
    time.sleep(1.0)  # anything else the gateway would relay is on its way by now
    for m in smtp_sink.messages():
        assert m.mail_from != "smuggler@evil.test", f"smuggled message relayed: {m}"
        assert "smuggled" not in (m.header("Subject") or ""), f"smuggled message relayed: {m}"


@pytest.mark.parametrize("fake_end,bare", VARIANTS, ids=IDS)
def test_data_smuggling(gateway, smtp_sink, session, fake_end, bare):
    c = session(gateway)
    c.send(b"MAIL FROM:<sender@example.test>\r\nRCPT TO:<user@lab.test>\r\nDATA\r\n")
    assert [r.code for r in c.read_replies(3)] == [250, 250, 354]
    c.send(_head() + fake_end + SMUGGLED + b"\r\n.\r\n")
    final = c.read_reply()
    if bare:
        final.expect(554, "5.6.0", contains="bare CR or LF")
    else:
        assert final.code in (250, 554), final.raw
    # nothing else: no replies to smuggled MAIL/RCPT/DATA
    c.send(b"NOOP\r\n")
    c.read_reply().expect(250, "2.0.0")
    assert c.read_available(0.3) == b""
    c.command("QUIT").expect(221)
    _assert_no_smuggled_message(gateway, smtp_sink)
    outer = smtp_sink.find("smuggling-outer@client.example.test")
    if bare or final.code != 250:
        assert outer == [], "a refused message was relayed"
    else:
        assert len(outer) == 1
        # the smuggled commands are body text of the one message
        assert b"MAIL FROM:<smuggler@evil.test>" in outer[0].body


@pytest.mark.parametrize("fake_end,bare", VARIANTS, ids=IDS)
def test_bdat_smuggling(gateway, smtp_sink, session, fake_end, bare):
    c = session(gateway)
    assert "CHUNKING" in c.extensions
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    chunk1 = _head() + fake_end + SMUGGLED
    c.bdat(chunk1).expect(250, "2.0.0", contains=f"{len(chunk1)} octets received")
    chunk2 = b"more text\r\n"
    final = c.bdat(chunk2, last=True)
    if bare:
        final.expect(554, "5.6.0", contains="bare CR or LF")
    else:
        assert final.code in (250, 554), final.raw
    c.command("NOOP").expect(250, "2.0.0")
    assert c.read_available(0.3) == b""
    c.command("QUIT").expect(221)
    _assert_no_smuggled_message(gateway, smtp_sink)


def test_bdat_with_crlf_dot_crlf_is_data(gateway, smtp_sink, session):
    """Inside BDAT, <CRLF>.<CRLF> is ordinary content: one message whose body holds the 'commands',
    relayed with correct dot-stuffing to the DATA-only next hop."""
    c = session(gateway)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    content = (b"From: <sender@example.test>\r\nSubject: bdat dot\r\n"
               b"Message-ID: <bdat-dot@client.example.test>\r\n\r\nbefore\r\n.\r\n" + SMUGGLED + b".\r\nafter\r\n")
    c.bdat(content, last=True).expect(250, "2.0.0", contains="queued as")
    c.command("NOOP").expect(250)
    assert c.read_available(0.3) == b""
    m = smtp_sink.wait_for_message_id("bdat-dot@client.example.test")
    assert m.body == content.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"), m.body
    _assert_no_smuggled_message(gateway, smtp_sink)


def test_bare_lf_in_headers_refused(gateway, smtp_sink, session):
    c = session(gateway)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.command("DATA").expect(354)
    c.send(b"Subject: a\nX-Other: b\r\nMessage-ID: <bare-lf-head@x>\r\n\r\nbody\r\n.\r\n")
    c.read_reply().expect(554, "5.6.0")
    # the session is usable afterwards
    mid, r = flows.send_message(c)
    r.expect(250)
    smtp_sink.wait_for_message_id(mid)
    assert smtp_sink.find("bare-lf-head@x") == []
