"""limits.*: line lengths, recipients, sizes, connections, timeouts, data rate, error count."""

from __future__ import annotations

import time

import pytest

from lab import flows, smtp_client


def _gw(gateway_factory, smtp_sink, **limits):
    return gateway_factory(smtp_sink.port, config={"limits": limits})


def test_command_line_too_long(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, command_line_length=512)
    c = session(gw)
    # 510 characters + CRLF = 512: the longest allowed line
    c.command("NOOP " + "x" * 505).expect(250, "2.0.0")
    c.command("NOOP " + "x" * 506).expect(500, "5.5.2", contains="Error: command line too long")
    c.command("NOOP " + "y" * 5000).expect(500, "5.5.2", contains="command line too long")
    # the rest of an over-long line is discarded, not read as further commands
    c.send(b"NOOP " + b"z" * 600 + b" QUIT\r\nRCPT TO:<x@lab.test>\r\n")
    c.read_reply().expect(500, "5.5.2")
    c.read_reply().expect(503, "5.5.1", contains="need MAIL")
    c.command("NOOP").expect(250)
    mid, r = flows.send_message(c)
    r.expect(250)
    smtp_sink.wait_for_message_id(mid)


def test_recipients_over_limit(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, recipients_per_message=3)
    c = session(gw)
    c.mail("sender@example.test").expect(250)
    for i in range(3):
        c.rcpt(f"r{i}@lab.test").expect(250, "2.1.5")
    c.rcpt("r3@lab.test").expect(452, "4.5.3", contains="Error: too many recipients")
    c.rcpt("r4@lab.test").expect(452, "4.5.3")
    mid, content = smtp_client.build_message()
    c.data(content).expect(250)
    m = smtp_sink.wait_for_message_id(mid)
    assert m.rcpt_to == ["r0@lab.test", "r1@lab.test", "r2@lab.test"]


def test_declared_size_over_limit(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, message_size=20000)
    c = session(gw)
    assert c.extensions.get("SIZE") == "20000", c.extensions
    c.mail("sender@example.test", "SIZE=20001").expect(552, "5.3.4", contains="Message size exceeds fixed limit")
    c.mail("sender@example.test", "SIZE=20000").expect(250, "2.1.0")
    c.command("RSET").expect(250)
    # a SIZE beyond any integer: over the limit (552) or a malformed parameter (555), never accepted
    r = c.mail("sender@example.test", "SIZE=99999999999999999999")
    assert r.startswith("552 5.3.4") or r.startswith("555 5.5.4"), r.raw


def test_undeclared_size_over_limit(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, message_size=20000)
    c = session(gw)
    mid, r = flows.send_message(c, body=("z" * 98 + "\r\n") * 300, message_id="too-big@client.example.test")
    r.expect(552, "5.3.4", contains="Message size exceeds fixed limit")
    # the session goes on; a message within the limit is accepted
    mid2, r = flows.send_message(c, body=("z" * 98 + "\r\n") * 150)
    r.expect(250)
    smtp_sink.wait_for_message_id(mid2)
    assert smtp_sink.find("too-big@client.example.test") == []


def test_bdat_over_size_limit(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, message_size=20000)
    c = session(gw)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    r1 = c.bdat(b"Subject: big\r\n\r\n" + b"a" * 15000 + b"\r\n")
    assert r1.code == 250, r1.raw
    c.bdat(b"b" * 15000 + b"\r\n", last=True).expect(552, "5.3.4")
    c.command("NOOP").expect(250)


def test_text_line_too_long(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, text_line_length=1000)
    c = session(gw)
    mid, r = flows.send_message(c, body="x" * 998 + "\r\n")          # 1000 with CRLF: allowed
    r.expect(250)
    mid2, r = flows.send_message(c, body="x" * 999 + "\r\n")         # 1001: refused
    r.expect(554, "5.6.0", contains="text line too long")
    smtp_sink.wait_for_message_id(mid)
    flows.send_control_message(gw, smtp_sink)
    assert smtp_sink.find(mid2) == []


def test_connections_per_source(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, connections_per_source=3)
    held = [session(gw, ehlo=False) for _ in range(3)]
    with gw.client("smtp") as c:
        r = c.read_reply()
        r.expect(421, "4.7.0", contains="too many connections from 127.0.0.1")
        assert r.startswith(f"421 4.7.0 {gw.hostname} Error: too many connections from 127.0.0.1"), r.raw
        assert c.closed_by_peer(3)
    # another source address is not affected
    other = session(gw, source_address="127.0.0.2")
    other.command("NOOP").expect(250)
    # a slot frees up when a session ends
    held[0].command("QUIT").expect(221)
    held[0].close()

    def fourth_ok():
        with gw.client("smtp") as c:
            return c.read_reply().code == 220
    deadline = time.monotonic() + 5
    while not fourth_ok():
        assert time.monotonic() < deadline, "slot not released after QUIT"
        time.sleep(0.2)


def test_sessions_total(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, sessions_total=2)
    session(gw, ehlo=False, source_address="127.0.0.11")
    session(gw, ehlo=False, source_address="127.0.0.12")
    with gw.client("smtp", source_address="127.0.0.13") as c:
        r = c.read_reply()
        assert r.startswith(f"421 4.3.2 {gw.hostname} Service busy, try again later"), r.raw
        assert c.closed_by_peer(3)


def test_command_timeout(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, command_timeout="1s")
    c = session(gw)
    t0 = time.monotonic()
    r = c.read_reply(timeout=6)
    assert r.startswith(f"421 4.4.2 {gw.hostname} Error: timeout exceeded"), r.raw
    assert 0.8 <= time.monotonic() - t0 <= 4
    assert c.closed_by_peer(3)


def test_data_timeout(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, data_timeout="1s")
    c = session(gw)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.command("DATA").expect(354)
    c.send(b"Subject: stalled\r\nMessage-ID: <stalled@x>\r\n\r\npartial")
    r = c.read_reply(timeout=6)
    r.expect(421, "4.4.2", contains="timeout exceeded")
    assert c.closed_by_peer(3)
    flows.send_control_message(gw, smtp_sink)
    assert smtp_sink.find("stalled@x") == []


def test_min_data_rate(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, min_data_rate=2000, data_rate_grace="1s", data_timeout="20s")
    c = session(gw)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    c.command("DATA").expect(354)
    c.send(b"Subject: slow\r\nMessage-ID: <slow@x>\r\n\r\n")
    deadline = time.monotonic() + 10
    reply = None
    while time.monotonic() < deadline:
        try:
            c.send(b"0123456789" * 5 + b"\r\n")        # ~100 bytes/s, far below 2000
        except OSError:
            break
        try:
            reply = c.read_reply(timeout=0.5)
            break
        except smtp_client.ReplyTimeout:
            continue
        except smtp_client.ConnectionClosed:
            break
    assert reply is not None, "no reply while trickling data below min_data_rate"
    assert reply.startswith(f"421 4.4.2 {gw.hostname} Error: data rate too low"), reply.raw
    flows.send_control_message(gw, smtp_sink)
    assert smtp_sink.find("slow@x") == []


def test_fast_enough_data_is_not_cut(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, min_data_rate=2000, data_rate_grace="1s")
    c = session(gw)
    mid, r = flows.send_message(c, body=("q" * 78 + "\r\n") * 2000)   # 160 KB at loopback speed
    r.expect(250)
    smtp_sink.wait_for_message_id(mid)


def test_errors_per_session(gateway_factory, smtp_sink, session):
    gw = _gw(gateway_factory, smtp_sink, errors_per_session=3)
    c = session(gw)
    codes = []
    for i in range(6):
        try:
            c.send_line(f"BOGUS{i}")
        except OSError:
            pass  # closed already: the 421 is in the receive buffer
        try:
            r = c.read_reply()
        except smtp_client.ConnectionClosed:
            break
        codes.append(str(r))
        if r.code == 421:
            assert r.startswith(f"421 4.7.0 {gw.hostname} Error: too many errors"), r.raw
            break
        assert r.startswith("502 5.5.2 Error: command not recognized"), r.raw
    assert codes[-1].startswith("421 4.7.0"), codes
    assert 3 <= len(codes) <= 4, codes
    assert c.closed_by_peer(3)


@pytest.mark.parametrize("greeting_delay", ["1s"])
def test_talking_before_greeting(gateway_factory, smtp_sink, greeting_delay):
    gw = _gw(gateway_factory, smtp_sink, greeting_delay=greeting_delay)
    with gw.client("smtp") as c:
        c.send(b"EHLO eager.example.test\r\n")
        r = c.read_reply(timeout=5)
        assert r.startswith(f"554 5.5.0 {gw.hostname} Protocol error: data sent before greeting"), r.raw
        assert c.closed_by_peer(3)
    # a patient client gets the greeting after the delay
    with gw.client("smtp") as c:
        t0 = time.monotonic()
        r = c.read_reply(timeout=5)
        assert r.startswith(f"220 {gw.hostname} ESMTP mxedge"), r.raw
        assert time.monotonic() - t0 >= 0.8
