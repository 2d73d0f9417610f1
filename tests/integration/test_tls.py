"""TLS on the inbound side: certificates served, STARTTLS rules, require_tls, STARTTLS injection."""

from __future__ import annotations

import os
import ssl
import subprocess

import pytest

from lab import flows, smtp_client, swaks


def _der(pem_path: str) -> bytes:
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


@pytest.mark.parametrize("key_type,cipher", [("ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256"),
                                             ("rsa", "ECDHE-RSA-AES128-GCM-SHA256")])
def test_swaks_starttls_gets_ecdsa_or_rsa_certificate(gateway, smtp_sink, lab_pki, lab_dir, key_type, cipher):
    """Both certificates are servable: a TLS 1.2 client that only offers an ECDSA (RSA) suite gets
    the ECDSA (RSA) leaf, verified against the lab CA for mx.lab.test."""
    peer = os.path.join(lab_dir, f"peer-{key_type}.pem")
    r = swaks.send("127.0.0.1", gateway.smtp_port, message_id=f"cert-{key_type}@client.example.test",
                   extra=["--tls-protocol", "tlsv1_2", "--tls-cipher", cipher, "--tls-verify",
                          "--tls-ca-path", lab_pki.ca_pem, "--tls-sni", "mx.lab.test",
                          "--tls-get-peer-cert", peer])
    assert r.rc == 0, r.transcript
    assert r.tls_cipher() == ("TLSv1.2", cipher), r.transcript
    assert _der(peer) == _der(getattr(lab_pki, key_type).cert)
    m = smtp_sink.wait_for_message_id(f"cert-{key_type}@client.example.test")
    assert "TLSv1.2" in m.headers("Received")[0]


@pytest.mark.parametrize("key_type,cipher", [("ecdsa", "ECDHE-ECDSA-AES256-GCM-SHA384"),
                                             ("rsa", "ECDHE-RSA-AES256-GCM-SHA384")])
def test_implicit_tls_serves_ecdsa_and_rsa(gateway, lab_pki, session, key_type, cipher):
    ctx = smtp_client.client_context(lab_pki.ca_pem, verify=True, ciphers=cipher,
                                     max_version=ssl.TLSVersion.TLSv1_2)
    c = session(gateway, "smtps", ssl_context=ctx)
    assert c.tls_version() == "TLSv1.2" and c.cipher() == cipher
    assert c.peer_certificate_der() == _der(getattr(lab_pki, key_type).cert)
    assert "STARTTLS" not in c.extensions, "STARTTLS must not be offered on an implicit-TLS listener"
    # both rows of docs/smtp-replies.md apply here (TLS active; STARTTLS not offered)
    r = c.command("STARTTLS")
    assert (r.startswith("554 5.5.1 Error: TLS already active")
            or r.startswith("502 5.5.1 Error: command not implemented")), r.raw


def test_tls13_by_default_and_chain_verifies(gateway, lab_pki, session):
    ctx = smtp_client.client_context(lab_pki.ca_pem, verify=True)
    c = session(gateway, tls=True, ssl_context=ctx)
    assert c.tls_version() == "TLSv1.3"
    assert "STARTTLS" not in c.extensions, "STARTTLS offered again after TLS started"


def test_ehlo_offers_starttls_only_in_plaintext(gateway, session):
    c = session(gateway)
    assert "STARTTLS" in c.extensions
    r = c.command("STARTTLS now")
    r.expect(501, "5.5.4", contains="Syntax: STARTTLS")
    c.starttls().expect(220, "2.0.0", contains="Ready to start TLS")
    assert c.pre_tls_leftover == b""
    r = c.ehlo().expect(250)
    assert "STARTTLS" not in c.extensions
    c.command("STARTTLS").expect(554, "5.5.1", contains="Error: TLS already active")


def test_starttls_not_offered_on_plain_listener(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port, listeners=[{"name": "smtp", "tls_mode": "none"}])
    c = session(gw)
    assert "STARTTLS" not in c.extensions
    c.command("STARTTLS").expect(502, "5.5.1", contains="Error: command not implemented")


def test_require_tls(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port, listeners=[{"name": "smtp", "tls_mode": "starttls", "require_tls": True}])
    c = session(gw)
    c.mail("sender@example.test").expect(530, "5.7.0", contains="Must issue a STARTTLS command first")
    c.starttls().expect(220)
    c.ehlo().expect(250)
    mid, r = flows.send_message(c)
    r.expect(250, "2.0.0")
    assert smtp_sink.wait_for_message_id(mid)


def test_starttls_command_injection(gateway, smtp_sink, session):
    """A MAIL command pipelined after STARTTLS in the same packet (CVE-2011-0411 class) must be
    discarded: after the handshake the server answers only what the client sends over TLS, and the
    session state is reset (EHLO is required again)."""
    c = session(gateway)
    c.send(b"STARTTLS\r\nMAIL FROM:<x@evil.test>\r\n")
    c.read_reply().expect(220, "2.0.0")
    c.start_tls_now()
    assert c.pre_tls_leftover == b"", f"plaintext reply after 220: {c.pre_tls_leftover!r}"
    # EHLO is required again: the first command after TLS is MAIL → 503 (not a reply to the injected MAIL)
    c.mail("real@example.test").expect(503, "5.5.1", contains="send HELO/EHLO first")
    r = c.ehlo()
    assert r.code == 250 and r.lines[0].startswith("mx.lab.test"), r
    # not "nested MAIL": the injected command left no transaction behind
    c.mail("real@example.test").expect(250, "2.1.0")
    c.command("NOOP").expect(250, "2.0.0")
    assert c.read_available(0.3) == b"", "unexpected extra replies"
    c.command("RSET").expect(250)
    flows.send_control_message(gateway, smtp_sink)
    assert all(m.mail_from != "x@evil.test" for m in smtp_sink.messages())


def test_starttls_injection_reply_belongs_to_first_command(gateway, session):
    c = session(gateway)
    c.send(b"STARTTLS\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<victim@lab.test>\r\n")
    c.read_reply().expect(220)
    c.start_tls_now()
    assert c.pre_tls_leftover == b""
    r = c.ehlo()
    assert r.code == 250 and len(r.lines) > 1, f"first reply after TLS is not the EHLO reply: {r.raw!r}"
    c.command("NOOP").expect(250, "2.0.0")
    assert c.read_available(0.3) == b""


def test_wrong_protocol_on_implicit_listener_does_not_crash(gateway, session, smtp_sink):
    """Plaintext SMTP against the implicit-TLS port is a failed handshake, nothing more."""
    with smtp_client.SMTPClient("127.0.0.1", gateway.smtps_port, timeout=5) as c:
        c.send(b"EHLO plain.example.test\r\n")
        c.read_available(2)
    flows.send_control_message(gateway, smtp_sink, listener="smtps")
    assert gateway.running


def test_openssl_s_client_starttls_smtp(gateway, lab_pki):
    """An independent TLS client (openssl s_client -starttls smtp) verifies the chain."""
    cp = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{gateway.smtp_port}", "-starttls",
                         "smtp", "-CAfile", lab_pki.ca_pem, "-verify_hostname", "mx.lab.test",
                         "-verify_return_error", "-brief"],
                        input=b"QUIT\r\n", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    out = cp.stdout.decode(errors="replace")
    assert "Verification: OK" in out, out
    assert "Protocol version: TLSv1.3" in out, out
