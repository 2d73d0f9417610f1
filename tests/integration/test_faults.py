"""Fault injection against the running gateway (issue #12), beyond test_durability.py (kill -9,
next hop down, full disk) and test_outbound_resilience.py (control plane down):

- file descriptors exhausted: new connections get a clear 421 instead of waiting in the backlog,
  the worker does not spin on failing accepts, a session already open gets a temporary failure or
  a real 250 (never a 250 for mail it could not spool), and service resumes with the limit back;
- the wall clock jumping forwards and backwards (libfaketime, the monotonic clock untouched):
  queue ids stay unique, nothing acknowledged is lost, and timeouts still work."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

from lab import smtp_client, util


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _nofile(pid: int) -> tuple[int, int]:
    out = subprocess.run(["prlimit", f"--pid={pid}", "--nofile", "--raw", "--noheadings", "--output=SOFT,HARD"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def _set_soft_nofile(pid: int, soft: int) -> None:
    """Only the soft limit: raising a hard limit back needs CAP_SYS_RESOURCE, which a sandboxed root
    may lack."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:{_nofile(pid)[1]}"], check=True)


def test_file_descriptor_exhaustion(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port)
    # A gateway that has been working: one message relayed first. (In the sanitizer build, UBSan's
    # vptr check probes memory through pipe(2) on the first call through each type, which fails with
    # EMFILE and reports a false "invalid vptr"; after this message every type on the path is known.)
    warm = session(gw)
    _, content = smtp_client.build_message(message_id="before-exhaustion@client.example.test")
    warm.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    smtp_sink.wait_for_message_id("before-exhaustion@client.example.test", timeout=20)
    pid = gw.proc.pid
    early = session(gw)                          # a session from before the exhaustion
    early.mail("early@example.test").expect(250)
    early.rcpt("user@lab.test").expect(250)
    soft, _ = _nofile(pid)
    _set_soft_nofile(pid, _open_fds(pid) + 6)
    clients = []
    try:
        for _ in range(40):
            clients.append(socket.create_connection(gw.address("smtp"), timeout=5))
        greetings = []
        for s in clients:
            try:
                greetings.append(s.recv(512).decode(errors="replace"))
            except socket.timeout:
                greetings.append("")
        served = [s for s, g in zip(clients, greetings) if g.startswith("220 ")]
        busy = [g for g in greetings if g.startswith("421 4.3.2 mx.lab.test Service busy, try again later")]
        waiting = [s for s, g in zip(clients, greetings) if not g]
        assert busy, greetings
        assert len(served) + len(busy) + len(waiting) == len(greetings), greetings
        # The worker waits for descriptors instead of spinning on failing accepts.
        t0 = _cpu_seconds(pid)
        time.sleep(2)
        assert _cpu_seconds(pid) - t0 < 0.5
        assert re.search(r"event=accept\.fd_exhausted .*refused=\d+", gw.run_log())
        # The session from before: its message is spooled (250) or refused for now (4xx), never lost.
        _, content = smtp_client.build_message(message_id="during-exhaustion@client.example.test")
        r = early.data(content)
        assert r.code == 250 or 400 <= r.code < 500, str(r)
        acknowledged = r.code == 250
        # A worker whose spare descriptor was taken by another thread waits; once sessions end and
        # free descriptors, every waiting client is answered (served or told 421), none is left hanging.
        for s in served:
            s.close()
        for s in waiting:
            s.settimeout(5)
            g = s.recv(512).decode(errors="replace")
            assert g.startswith("220 ") or g.startswith("421 4.3.2"), g
    finally:
        for s in clients:
            s.close()
        _set_soft_nofile(pid, soft)
    # Service resumes.
    c = session(gw, tls=True)
    _, content = smtp_client.build_message(message_id="after-exhaustion@client.example.test")
    c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    smtp_sink.wait_for_message_id("after-exhaustion@client.example.test", timeout=30)
    if acknowledged:
        smtp_sink.wait_for_message_id("during-exhaustion@client.example.test", timeout=60)


def test_next_hop_that_fails_at_once_backs_off_instead_of_spinning(gateway_factory, session):
    """connect() to 255.255.255.255 fails with ENETUNREACH before any packet leaves (as socket()
    does when descriptors run out): the relay must back off like for any unreachable next hop, not
    retry in a loop that never returns to the event loop."""
    gw = gateway_factory(25, next_hop_host="255.255.255.255")
    pid = gw.proc.pid
    c = session(gw)
    _, content = smtp_client.build_message(message_id="unreachable-hop@client.example.test")
    c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
    t0 = _cpu_seconds(pid)
    time.sleep(2)
    assert _cpu_seconds(pid) - t0 < 0.5, "the worker spins on the failing next hop"
    for _ in range(4):   # every worker still answers
        session(gw).command("NOOP").expect(250)
    log = gw.run_log()
    attempts = len(re.findall(r"event=relay\.next_hop_unavailable", log))
    assert 1 <= attempts <= 6, f"{attempts} attempts in about 2 s"
    assert "Network is unreachable" in log


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def _received_date(msg) -> float:
    """The time in the gateway's own Received: header (the first one)."""
    import email.utils
    value = msg.headers("Received")[0]
    return email.utils.parsedate_to_datetime(value.rsplit(";", 1)[1].strip()).timestamp()


def test_wall_clock_jumps(gateway_factory, smtp_sink, session, tmp_path):
    """The wall clock jumps 2 hours forward, then a day back (libfaketime, re-read at every call;
    the monotonic clock is left alone, as NTP stepping the clock leaves it). Mail deferred before
    the jump is delivered after it on the normal back-off, new mail carries the new time, and every
    queue id stays unique."""
    if not os.path.exists(FAKETIME_LIB):
        raise AssertionError(f"{FAKETIME_LIB} is missing (Debian package libfaketime, installed by scripts/setup.sh)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    gw = gateway_factory(smtp_sink.port, start=False)
    gw.env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
              "FAKETIME_DONT_FAKE_MONOTONIC": "1",
              # the sanitizer build: libfaketime is preloaded ahead of the ASan runtime
              "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    gw.start()
    smtp_sink.stop()                               # the next hop is down: A is deferred
    qids = []

    def send(tag: str) -> None:
        c = session(gw)
        _, content = smtp_client.build_message(message_id=f"clock-{tag}@client.example.test")
        r = c.send_mail("sender@example.test", ["user@lab.test"], content).expect(250)
        qids.append(smtp_client.queue_id(r))

    send("a")
    util.wait_until(lambda: "event=relay.next_hop_unavailable" in gw.run_log(), 10, message="A waiting for the next hop")
    offset.write_text("+2h\n")
    smtp_sink.start()
    a = smtp_sink.wait_for_message_id("clock-a@client.example.test", timeout=30)
    send("b")
    b = smtp_sink.wait_for_message_id("clock-b@client.example.test", timeout=30)
    assert abs(_received_date(b) - (time.time() + 7200)) < 300, b.headers("Received")[0]
    assert _received_date(a) < _received_date(b)
    offset.write_text("-1d\n")
    send("c")
    c = smtp_sink.wait_for_message_id("clock-c@client.example.test", timeout=30)
    assert abs(_received_date(c) - (time.time() - 86400)) < 300, c.headers("Received")[0]
    assert len(set(qids)) == 3 and all(qids), qids
    assert "level=error" not in gw.run_log()
