"""Self-tests of the lab against the real peers (smtp-sink, Postfix, swaks, openssl).

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/lab
These need no gateway binary; they prove that the fixtures the integration tests rely on work.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time

import pytest

from lab import gateway as gateway_mod
from lab import loadsend, ports, smtp_client, swaks, util
from lab.smtp_client import SMTPClient, build_message


# --------------------------------------------------------------------------------------------------
# certificates


def _openssl_verify(ca: str, cert: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True)


def test_pki_certificates(lab_pki):
    for c in (lab_pki.ecdsa, lab_pki.rsa):
        assert _openssl_verify(lab_pki.ca_pem, c.cert).returncode == 0
        text = subprocess.run(["openssl", "x509", "-in", c.cert, "-noout", "-text"], capture_output=True,
                              text=True).stdout
        assert "DNS:mx.lab.test" in text
        assert ("id-ecPublicKey" in text) == (c.key_type == "ecdsa")
        assert ("rsaEncryption" in text) == (c.key_type == "rsa")
        with open(c.chain) as f:
            chain = f.read()
        with open(c.cert) as f:
            assert chain.startswith(f.read()), "chain must be leaf first"
        assert chain.count("BEGIN CERTIFICATE") == 2
    assert "certificate has expired" in _openssl_verify(lab_pki.ca_pem, lab_pki.expired.cert).stderr
    assert _openssl_verify(lab_pki.ca_pem, lab_pki.untrusted.cert).returncode != 0
    r = subprocess.run(["openssl", "verify", "-CAfile", lab_pki.ca_pem, "-verify_hostname", "mx.lab.test",
                        lab_pki.wrong_name.cert], capture_output=True, text=True)
    assert r.returncode != 0 and "hostname mismatch" in r.stderr


def test_pki_is_cached(lab_pki, lab_root):
    from lab import certs

    assert certs.get_pki(os.path.join(lab_root.path, "pki")) is lab_pki


# --------------------------------------------------------------------------------------------------
# ports and processes


def test_free_port_and_listening_ports():
    p1, p2 = ports.free_port(), ports.free_port()
    assert p1 != p2
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        assert ("127.0.0.1", s.getsockname()[1]) in ports.listening_ports(os.getpid())
    finally:
        s.close()
    with pytest.raises(ValueError):
        ports.free_port("0.0.0.0")


# --------------------------------------------------------------------------------------------------
# smtp-sink


def test_sink_records_messages(smtp_sink):
    r = swaks.send("127.0.0.1", smtp_sink.port, to="a@lab.test,b@lab.test", message_id="selftest-1@x",
                   tls=None, body="line one\r\n.leading dot\r\nend")
    assert r.rc == 0, r.transcript
    m = smtp_sink.wait_for_message_id("selftest-1@x", timeout=10)
    assert m.rcpt_to == ["a@lab.test", "b@lab.test"]
    assert m.mail_from == "sender@example.test"
    assert m.client_addr == "127.0.0.1"
    assert b"\n.leading dot\n" in m.body  # dot-unstuffed
    assert m.header("Subject").startswith("test")
    assert smtp_sink.count() == 1


def test_sink_records_dsn_parameters_and_pipelining(smtp_sink):
    with SMTPClient("127.0.0.1", smtp_sink.port) as c:
        c.read_reply().expect(220)
        ehlo = c.ehlo().expect(250)
        assert "DSN" in c.extensions and "PIPELINING" in c.extensions, ehlo
        mid, content = build_message()
        c.send(b"MAIL FROM:<s@example.test> RET=HDRS ENVID=env+2D1\r\n"
               b"RCPT TO:<r@lab.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@lab.test\r\nDATA\r\n")
        r = c.read_replies(3)
        assert [x.code for x in r] == [250, 250, 354]
        c.send(smtp_client.dot_stuff(content))
        c.read_reply().expect(250)
        c.quit()
    m = smtp_sink.wait_for_message_id(mid)
    assert m.mail_args == "<s@example.test> RET=HDRS ENVID=env+2D1"
    assert m.rcpt_args == ["<r@lab.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@lab.test"]


def test_sink_content_is_exact(smtp_sink):
    body = ("first line\r\n.a dot line\r\n..two dots\r\n.\r\nUTF-8: Grüße\r\n" + "x" * 998 + "\r\n"
            "\tTab and spaces   \r\nlast line\r\n").encode()
    mid, content = build_message(body=body, extra_headers=["X-Lab: folded", "  continuation"])
    with SMTPClient("127.0.0.1", smtp_sink.port) as c:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        c.send_mail("a@example.test", ["b@lab.test"], content).expect(250)
    m = smtp_sink.wait_for_message_id(mid)
    assert m.raw == content.replace(b"\r\n", b"\n")
    assert m.headers("X-Lab") == ["folded continuation"]


def test_sink_failure_modes(sink_factory):
    sink = sink_factory("sink", hard_reject=["RCPT"])
    r = swaks.send("127.0.0.1", sink.port, tls=None)
    assert r.last_code() == 500, r.transcript
    port = sink.port
    sink.restart(hard_reject=None, soft_reject=["."])
    assert sink.port == port
    r = swaks.send("127.0.0.1", sink.port, tls=None, message_id="tempfail@x")
    assert r.last_code() == 450, r.transcript
    time.sleep(0.3)
    assert sink.messages() == []
    assert len(sink.all_messages(include_rejected=True)) == 1
    sink.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    sink.start(soft_reject=None)
    assert sink.port == port
    r = swaks.send("127.0.0.1", sink.port, tls=None, message_id="after-restart@x")
    assert r.rc == 0, r.transcript
    sink.wait_for_message_id("after-restart@x")
    assert [m.message_id for m in sink.messages()] == ["<after-restart@x>"]


def test_sink_partial_transaction_is_not_a_message(smtp_sink):
    c = SMTPClient("127.0.0.1", smtp_sink.port)
    c.read_reply().expect(220)
    c.ehlo()
    c.mail("a@example.test").expect(250)
    c.rcpt("b@lab.test").expect(250)
    c.command("DATA").expect(354)
    c.send(b"Subject: partial\r\n\r\nnot finished\r\n")
    time.sleep(0.3)
    assert smtp_sink.messages() == []   # still open: not complete
    c.close()
    time.sleep(0.3)
    assert smtp_sink.messages() == []


def test_loadsend_against_sink(smtp_sink):
    load = loadsend.LoadSender("127.0.0.1", smtp_sink.port, threads=3, messages_per_session=4,
                               starttls=False, total=24).start()
    load.join(60)
    assert len(load.acked()) == 0  # smtp-sink says "250 2.0.0 Ok", not "queued as"
    assert len(load.results) == 24 and all(r.reply.startswith("250") for r in load.results)
    smtp_sink.wait_for_messages(24)
    assert sorted(smtp_sink.message_ids()) == sorted(f"{r.message_id}" for r in load.results)


# --------------------------------------------------------------------------------------------------
# Postfix


def test_postfix_receiver_starttls_maildir(postfix_factory, lab_pki):
    rcv = postfix_factory("receiver")
    r = swaks.send("127.0.0.1", rcv.smtpd_port, to="someone@lab.test", message_id="rcv-1@x",
                   extra=["--tls-verify", "--tls-ca-path", lab_pki.ca_pem, "--tls-sni", "mx.lab.test"])
    assert r.rc == 0, r.transcript
    assert r.tls_cipher() is not None
    msgs = rcv.wait_maildir(1)
    assert msgs[0].message_id == "<rcv-1@x>"
    assert msgs[0].headers("Delivered-To") == ["someone@lab.test"]
    # foreign domains are refused (no open relay in the lab)
    r = swaks.send("127.0.0.1", rcv.smtpd_port, to="x@foreign.test", tls="starttls")
    assert r.last_code() == 554, r.transcript


@pytest.mark.parametrize("cipher,key_type", [("ECDHE-ECDSA-AES128-GCM-SHA256", "ecdsa"),
                                             ("ECDHE-RSA-AES128-GCM-SHA256", "rsa")])
def test_postfix_serves_ecdsa_and_rsa(postfix_factory, lab_pki, cipher, key_type):
    rcv = postfix_factory("receiver")
    ctx = smtp_client.client_context(lab_pki.ca_pem, verify=True, ciphers=cipher,
                                     max_version=ssl.TLSVersion.TLSv1_2)
    with SMTPClient("127.0.0.1", rcv.smtpd_port, ssl_context=ctx) as c:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        assert "STARTTLS" in c.extensions
        c.starttls().expect(220)
        assert c.pre_tls_leftover == b""
        assert c.tls_version() == "TLSv1.2" and c.cipher() == cipher
        der = c.peer_certificate_der()
        with open(getattr(lab_pki, key_type).cert) as f:
            assert ssl.PEM_cert_to_DER_cert(f.read()) == der
        c.ehlo().expect(250)
        assert "STARTTLS" not in c.extensions
        c.quit()


def test_postfix_sender_relays_to_receiver_with_verify(postfix_factory):
    # the receiver stands in for the gateway: it serves the same lab certificates (mx.lab.test)
    rcv = postfix_factory("receiver", tls="encrypt")
    snd = postfix_factory("sender", relay_port=rcv.smtpd_port, tls_level="verify")
    mid, content = build_message(subject="via postfix", body="intact body\r\n.dot\r\n" + "z" * 900 + "\r\n")
    snd.sendmail(content, "alice@sender.lab.test", ["bob@lab.test"])
    snd.wait_queue_empty(30)
    msgs = rcv.wait_maildir(1)
    assert msgs[0].message_id == f"<{mid}>"
    assert msgs[0].raw.replace(b"\r\n", b"\n").endswith(content.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))
    assert "Verified TLS connection established to 127.0.0.1" in snd.log_text()
    # injection through the sender's own smtpd works too
    r = swaks.send("127.0.0.1", snd.smtpd_port, to="carol@lab.test", message_id="via-smtpd@x", tls=None)
    assert r.rc == 0, r.transcript
    snd.wait_queue_empty(30)
    assert rcv.wait_maildir(2) and rcv.find_maildir("via-smtpd@x")


def test_postfix_sender_verify_refuses_wrong_certificate(postfix_factory, lab_pki):
    rcv = postfix_factory("receiver", certs=[lab_pki.wrong_name])
    snd = postfix_factory("sender", relay_port=rcv.smtpd_port, tls_level="verify")
    _, content = build_message()
    snd.sendmail(content, "alice@sender.lab.test", ["bob@lab.test"])
    snd.wait_log(r"Server certificate not verified|certificate verification failed", timeout=20)
    assert len(snd.queue()) == 1
    assert rcv.maildir_messages() == []


def test_postfix_receiver_hold_shows_dsn_envelope(postfix_factory):
    rcv = postfix_factory("receiver", hold=True)
    with SMTPClient("127.0.0.1", rcv.smtpd_port) as c:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        mid, content = build_message()
        c.mail("s@example.test", "RET=HDRS ENVID=lab-envid-1").expect(250)
        c.rcpt("r@lab.test", "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Brcpt@lab.test").expect(250)
        c.data(content).expect(250)
        c.quit()
    qid = rcv.wait_held(1)[0]
    env = rcv.dsn_envelope(qid)
    assert env["envid"] == "lab-envid-1" and env["ret"] == "HDRS", env
    assert env["recipients"] == [{"address": "r@lab.test", "orcpt": "rfc822;orig+rcpt@lab.test",
                                  "notify": {"SUCCESS", "DELAY"}}], env
    rcv.release_held()
    assert rcv.wait_maildir(1)[0].message_id == f"<{mid}>"


def test_postfix_benchmark_relay(postfix_factory, smtp_sink, lab_pki):
    relay = postfix_factory("relay", sink_port=smtp_sink.port)
    r = swaks.send("127.0.0.1", relay.smtpd_port, to="u@lab.test", message_id="bench-1@x",
                   extra=["--tls-verify", "--tls-ca-path", lab_pki.ca_pem, "--tls-sni", "mx.lab.test"])
    assert r.rc == 0 and r.queue_id(), r.transcript
    m = smtp_sink.wait_for_message_id("bench-1@x")
    assert m.rcpt_to == ["u@lab.test"]
    assert r.queue_id() in m.header("Received")
    r = swaks.send("127.0.0.1", relay.smtpd_port, to="u@foreign.test")
    assert r.last_code() == 554, r.transcript
    assert "smtpd_client_connection_count_limit = 0" in open(os.path.join(relay.etc, "main.cf")).read()


def test_postfix_receiver_smtputf8(postfix_factory):
    rcv = postfix_factory("receiver")
    with SMTPClient("127.0.0.1", rcv.smtpd_port) as c:
        c.read_reply().expect(220)
        c.ehlo().expect(250)
        assert "SMTPUTF8" in c.extensions
        c.command("MAIL FROM:<jürgen@example.test> SMTPUTF8").expect(250)
        c.command("RCPT TO:<müller@lab.test>").expect(250)
        mid, content = build_message(subject="Grüße")
        c.data(content).expect(250)
    m = rcv.wait_maildir(1)[0]
    assert m.raw.count("Delivered-To: müller@lab.test".encode()) == 1
    assert "Return-Path: <jürgen@example.test>".encode() in m.raw


def test_loadsend_counts_acks_against_postfix(postfix_factory, smtp_sink):
    relay = postfix_factory("relay", sink_port=smtp_sink.port)
    load = loadsend.LoadSender("127.0.0.1", relay.smtpd_port, threads=2, messages_per_session=3,
                               starttls=True, total=12, timeout=30).start()
    load.join(120)
    assert len(load.acked()) == 12, [r.reply or r.error for r in load.results]
    smtp_sink.wait_for_messages(12, timeout=30)
    assert sorted(smtp_sink.message_ids()) == sorted(load.acked())


def test_two_postfix_instances_side_by_side(postfix_factory):
    a = postfix_factory("receiver", name="a")
    b = postfix_factory("receiver", name="b")
    assert a.master_pid() != b.master_pid()
    for inst in (a, b):
        r = swaks.send("127.0.0.1", inst.smtpd_port, message_id=f"{inst.name}@x", tls=None)
        assert r.rc == 0, r.transcript
    assert a.wait_maildir(1)[0].message_id == "<a@x>"
    assert b.wait_maildir(1)[0].message_id == "<b@x>"
    pid = a.master_pid()
    a.stop()
    assert not util.pid_alive(pid) and b.running


# --------------------------------------------------------------------------------------------------
# tmpfs


def test_tmpfs_factory(tmpfs_factory, lab_dir):
    t = tmpfs_factory(os.path.join(lab_dir, "small"), "1m")
    assert t.path in util.mounts_under(lab_dir)
    with pytest.raises(OSError):
        with open(os.path.join(t.path, "big"), "wb") as f:
            f.write(b"x" * (2 << 20))
            f.flush()
            os.fsync(f.fileno())
    t.unmount()
    assert util.mounts_under(lab_dir) == []


# --------------------------------------------------------------------------------------------------
# the Gateway wrapper, exercised with a stand-in binary (the real one is tested in tests/integration)

FAKE_GATEWAY = textwrap.dedent("""\
    import signal, sys, time
    cfg = sys.argv[sys.argv.index("--config") + 1]
    text = open(cfg).read()
    def log(line):
        sys.stderr.write(line + "\\n"); sys.stderr.flush()
    def hup(*_):
        log("event=config.reloaded domains=" + str(open(cfg).read().count("lab2.test")))
    def term(*_):
        log("event=dataplane.stopped"); sys.exit(0)
    signal.signal(signal.SIGHUP, hup)
    signal.signal(signal.SIGTERM, term)
    assert "accepted_domains" in text and "tls_mode" in text
    log('event=dataplane.ready listeners=2 note="hello world"')
    while True:
        time.sleep(0.1)
    """)


def test_gateway_wrapper_with_stand_in(lab_dir, lab_pki):
    script = os.path.join(lab_dir, "fake.py")
    with open(script, "w") as f:
        f.write(FAKE_GATEWAY)
    wrapper = os.path.join(lab_dir, "fake-gw")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    gw = gateway_mod.Gateway(os.path.join(lab_dir, "gw"), lab_pki, next_hop_port=2525, binary=wrapper,
                             config={"limits": {"greeting_delay": "1s"}, "next_hop": {"tls": "verify"}})
    try:
        gw.start(timeout=10)
        text = open(gw.config_path).read()
        assert 'tls_mode: "starttls"' in text and 'tls_mode: "implicit"' in text
        assert f'address: "127.0.0.1:{gw.smtp_port}"' in text
        assert 'greeting_delay: "1s"' in text and 'tls: "verify"' in text
        assert 'retry_min: "1s"' in text and "port: 2525" in text
        assert f'cert_file: "{lab_pki.ecdsa.chain}"' in text
        ev = gw.events("dataplane.ready")
        assert ev and ev[0]["note"] == "hello world"
        gw.update_config({"accepted_domains": ["lab.test", "lab2.test"]}, write=False)
        mark = gw.mark()
        gw.reload()
        assert "domains=1" in gw.wait_log("event=config.reloaded", since=mark, timeout=5)
        gw.restart()
        assert gw.runs == 2 and gw.run_log().count("dataplane.ready") == 1
        assert gw.stop() == 0 and not gw.last_stop_forced
        gw.start()
        gw.kill9()
        assert gw.proc.returncode == -signal.SIGKILL
    finally:
        gw.cleanup()


def test_gateway_start_failure_reports_log(lab_dir, lab_pki):
    wrapper = os.path.join(lab_dir, "broken-gw")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\necho 'event=config.invalid problem=\"bad things\"' >&2\nexit 3\n")
    os.chmod(wrapper, 0o755)
    gw = gateway_mod.Gateway(os.path.join(lab_dir, "gw"), lab_pki, next_hop_port=2525, binary=wrapper)
    with pytest.raises(gateway_mod.GatewayError, match="bad things"):
        gw.start(timeout=5)


def test_yaml_writer():
    text = gateway_mod.to_yaml({"a": [{"b": 1, "c": ["x", "y"]}, {"d": True}], "e": {"f": "1s"}, "g": []})
    assert text == ('a:\n  - b: 1\n    c:\n      - "x"\n      - "y"\n  - d: true\ne:\n  f: "1s"\ng: []\n')
