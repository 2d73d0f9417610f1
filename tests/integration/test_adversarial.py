"""Adversarial SMTP against the running gateway, the cases the other suites do not already cover
(smuggling: test_smuggling.py; STARTTLS injection: test_tls.py; oversize and floods: test_limits.py;
open relay: test_open_relay.py; non-ASCII without SMTPUTF8 and BDAT edge cases: test_extensions.py):

- TLS downgrade: TLS 1.0 and 1.1 clients (openssl s_client), TLS 1.2 ClientHellos offering only
  3DES or only RC4 suites (built by hand: this OpenSSL cannot offer them any more), and a
  renegotiation request (pyOpenSSL) are all refused, logged, and leave the gateway serving;
- cleartext after a TLS close_notify: between commands and in the middle of a BDAT chunk, the
  cleartext that follows is never read as SMTP (no reply, no transaction, no message at the next
  hop), and the partial message is not relayed.

Every case ends by relaying a control message, so "refused" never means "the gateway is down"."""

from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

from lab import smtp_client, util


def _s_client(port: int, *args: str, stdin: bytes = b"QUIT\n", timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp",
                           "-servername", "mx.lab.test", *args],
                          input=stdin, capture_output=True, timeout=timeout)


def _handshake_done(out: bytes) -> bool:
    """s_client prints the negotiated protocol and cipher only after a completed handshake."""
    m = re.search(rb"Cipher is (\S+)", out)
    return bool(m) and m.group(1) not in (b"(NONE)", b"0000")


def _control_message_arrives(gw, smtp_sink, session, tag: str) -> None:
    c = session(gw, tls=True)
    mid, content = smtp_client.build_message(message_id=f"control-{tag}@client.example.test")
    c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    smtp_sink.wait_for_message_id(f"control-{tag}@client.example.test", timeout=20)


@pytest.mark.parametrize("proto", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused(gateway, smtp_sink, session, proto):
    r = _s_client(gateway.address("smtp")[1], proto, "-cipher", "DEFAULT@SECLEVEL=0")
    out = r.stdout + r.stderr
    assert not _handshake_done(out), out.decode(errors="replace")[-2000:]
    assert re.search(rb"protocol version|unsupported protocol|no protocols available|alert", out), out[-2000:]
    util.wait_until(lambda: "event=tls.handshake_failed" in gateway.run_log(), 10, message="the refusal is logged")
    _control_message_arrives(gateway, smtp_sink, session, proto.strip("-"))


def _client_hello(suites: list[int], version: int = 0x0303) -> bytes:
    """A TLS ClientHello record offering exactly `suites`, built by hand: the local OpenSSL no
    longer has 3DES or RC4 suites, so it cannot play a client that offers only those."""
    ext = b""
    ext += struct.pack("!HH", 0x000A, 6) + struct.pack("!HHH", 4, 0x001D, 0x0017)          # supported_groups
    ext += struct.pack("!HH", 0x000B, 2) + b"\x01\x00"                                   # ec_point_formats
    sigs = [0x0403, 0x0804, 0x0401, 0x0201]
    ext += struct.pack("!HHH", 0x000D, 2 + 2 * len(sigs), 2 * len(sigs)) + b"".join(struct.pack("!H", x) for x in sigs)
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00"
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", x) for x in suites)
    body += b"\x01\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


WEAK_SUITES = {
    "3des": [0x000A, 0xC012, 0xC008],          # RSA / ECDHE-RSA / ECDHE-ECDSA with 3DES-EDE-CBC
    "rc4": [0x0005, 0x0004, 0xC011, 0xC007],   # RSA / ECDHE with RC4-128
}


@pytest.mark.parametrize("kind", sorted(WEAK_SUITES))
def test_weak_cipher_only_clients_are_refused(gateway, smtp_sink, session, kind):
    c = session(gateway)
    c.command("STARTTLS").expect(220)
    c.sock.sendall(_client_hello(WEAK_SUITES[kind]))
    c.sock.settimeout(5)
    first = c.sock.recv(7)
    # An alert record (21), fatal (2), handshake_failure (40) or insufficient_security (71); never a
    # ServerHello (a handshake record, 22).
    assert first[:1] == b"\x15", f"expected an alert, got {first!r}"
    assert first[5:6] == b"\x02" and first[6] in (40, 71), first
    util.wait_until(lambda: "event=tls.handshake_failed" in gateway.run_log(), 10, message="the refusal is logged")
    _control_message_arrives(gateway, smtp_sink, session, "weak-" + kind)


def test_renegotiation_is_refused(gateway, smtp_sink, session):
    """TLS 1.2 (1.3 has no renegotiation): after EHLO the client asks to renegotiate; the gateway
    (SSL_OP_NO_RENEGOTIATION) refuses, and nothing is answered on a renegotiated channel."""
    from OpenSSL import SSL
    c = session(gateway)
    c.command("STARTTLS").expect(220)
    ctx = SSL.Context(SSL.TLSv1_2_METHOD)
    # pyOpenSSL wants a blocking socket; the kernel's receive timeout keeps a silent server from
    # hanging the test.
    c.sock.settimeout(None)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
    conn = SSL.Connection(ctx, c.sock)
    conn.set_connect_state()
    conn.do_handshake()
    assert conn.get_protocol_version_name() == "TLSv1.2"
    conn.sendall(b"EHLO client.example.test\r\n")
    ehlo = b""
    while b"250 " not in ehlo:
        ehlo += conn.recv(4096)
    refused = None
    try:
        conn.renegotiate()
        conn.do_handshake()
        conn.sendall(b"NOOP\r\n")
        answer = conn.recv(4096)
    except (SSL.Error, OSError) as e:
        refused = e
        answer = b""
    assert refused is not None or not answer.startswith(b"250"), f"renegotiated and answered: {answer!r}"
    _control_message_arrives(gateway, smtp_sink, session, "renegotiation")


def _close_notify(c: smtp_client.SMTPClient) -> socket.socket:
    """Send a TLS close_notify and return the plaintext socket below (the server may answer with
    its own close_notify or just close)."""
    assert c.tls_active
    try:
        raw = c.sock.unwrap()
    except (ssl.SSLError, OSError):
        raw = c.sock   # the server closed first; any cleartext below fails to send, which is fine
    c.sock = raw
    return raw


def _cleartext_is_not_smtp(raw: socket.socket) -> bytes:
    """Whatever the server sends after cleartext commands; an SMTP reply would be a failure."""
    try:
        raw.sendall(b"MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<user@lab.test>\r\nDATA\r\n"
                    b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n")
    except OSError:
        return b""
    raw.settimeout(3)
    got = b""
    try:
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


def test_cleartext_after_close_notify_between_commands(gateway, smtp_sink, session):
    c = session(gateway, tls=True)
    c.mail("sender@example.test").expect(250)
    raw = _close_notify(c)
    got = _cleartext_is_not_smtp(raw)
    assert not re.search(rb"^\d{3}[ -]", got, re.M), f"cleartext after close_notify was answered: {got!r}"
    _control_message_arrives(gateway, smtp_sink, session, "close-notify")
    assert not any(b"smuggled" in m.raw for m in smtp_sink.messages())


def test_close_notify_in_the_middle_of_a_bdat_chunk(gateway, smtp_sink, session):
    c = session(gateway, tls=True)
    c.mail("sender@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    mid, content = smtp_client.build_message(message_id="half-bdat@client.example.test")
    c.send(f"BDAT {len(content)} LAST\r\n".encode() + content[: len(content) // 2])
    raw = _close_notify(c)
    # The rest of the chunk, then a whole transaction, in cleartext.
    try:
        raw.sendall(content[len(content) // 2:])
    except OSError:
        pass
    got = _cleartext_is_not_smtp(raw)
    assert not re.search(rb"^\d{3}[ -]", got, re.M), f"cleartext after close_notify was answered: {got!r}"
    _control_message_arrives(gateway, smtp_sink, session, "half-bdat")
    time.sleep(1)
    ids = smtp_sink.message_ids()
    assert "half-bdat@client.example.test" not in ids, f"a message cut by close_notify was relayed: {ids}"
    assert not any(b"smuggled" in m.raw for m in smtp_sink.messages())
    assert re.search(r"event=session\.closed[^\n]*tls=TLSv1\.3", gateway.run_log())
