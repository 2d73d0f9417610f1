"""A 250 reply means the message is on disk: it survives kill -9, a next hop that is down, a
restart, and a full spool file system (which yields 452 4.3.1, never a false 250)."""

from __future__ import annotations

import os
import time

from lab import flows, loadsend, smtp_client, util


def _expected_body(body_size: int) -> bytes:
    # what lab.loadsend sends, as smtp-sink stores it (LF line ends)
    return (("x" * 70 + "\r\n") * max(1, body_size // 72)).replace("\r\n", "\n").encode()


def _wait_all_delivered(sink, message_ids, timeout: float) -> None:
    want = set(message_ids)

    def missing():
        return want - set(sink.message_ids())

    util.wait_until(lambda: not missing(), timeout, interval=0.25,
                    message=lambda: f"{len(missing())} of {len(want)} acknowledged messages at the sink, "
                                    f"e.g. {sorted(missing())[:5]}")


def test_kill9_during_load_loses_no_acknowledged_message(gateway_factory, smtp_sink):
    gw = gateway_factory(smtp_sink.port)
    load = loadsend.LoadSender("127.0.0.1", gw.smtp_port, threads=4, messages_per_session=3, starttls=True,
                               body_size=3000).start()
    try:
        util.wait_until(lambda: len(load.acked()) >= 60, 90, interval=0.05,
                        message=lambda: f"60 acknowledged messages (have {len(load.acked())}, "
                                        f"errors {[r.error for r in load.errors()][:3]}, "
                                        f"refused {[r.reply for r in load.refused()][:3]})")
        gw.kill9()
    finally:
        load.stop()
    acked = load.acked()
    refused = load.refused()
    assert not refused, f"replies other than 250 under load: {[r.reply for r in refused][:5]}"
    gw.start()
    _wait_all_delivered(smtp_sink, acked, timeout=90)
    by_id: dict[str, int] = {}
    for m in smtp_sink.messages():
        mid = (m.message_id or "").strip("<>")
        by_id[mid] = by_id.get(mid, 0) + 1
        if mid.startswith("load-"):
            assert m.body == _expected_body(3000), f"{mid}: body damaged ({len(m.body)} bytes)"
    dups = {k: v for k, v in by_id.items() if v > 1}
    print(f"acknowledged {len(acked)}, delivered {len(by_id)} distinct, duplicates {len(dups)}")


def test_kill9_with_next_hop_down(gateway_factory, smtp_sink, session):
    smtp_sink.stop()
    gw = gateway_factory(smtp_sink.port)
    c = session(gw)
    ids = []
    for _ in range(5):
        mid, r = flows.send_message(c, body="survive kill -9\r\n")
        r.expect(250, "2.0.0", contains="queued as")
        ids.append(mid)
    c.close()
    gw.kill9()
    smtp_sink.start()
    gw.start()
    _wait_all_delivered(smtp_sink, ids, timeout=30)


def test_next_hop_down_then_back(gateway_factory, smtp_sink, session):
    smtp_sink.stop()
    gw = gateway_factory(smtp_sink.port, config={"next_hop": {"retry_min": "1s", "retry_max": "2s"}})
    c = session(gw)
    ids = []
    for _ in range(3):
        mid, r = flows.send_message(c)
        r.expect(250)
        ids.append(mid)
    time.sleep(3)   # a few failed attempts
    assert gw.running
    assert "message.relayed" not in gw.log_text()
    smtp_sink.start()
    _wait_all_delivered(smtp_sink, ids, timeout=20)
    for mid in ids:
        assert len(smtp_sink.find(mid)) == 1


def test_next_hop_tempfail_is_retried(gateway_factory, sink_factory, session):
    sink = sink_factory("sink", soft_reject=["RCPT"])
    gw = gateway_factory(sink.port, config={"next_hop": {"retry_min": "1s", "retry_max": "2s"}})
    c = session(gw)
    mid, r = flows.send_message(c)
    r.expect(250)
    time.sleep(3)   # attempts at 0s, ~1s, ~3s are answered 450 at RCPT
    assert sink.messages() == []
    sink.restart(soft_reject=None)
    sink.wait_for_message_id(mid, timeout=20)


def test_spool_survives_clean_restart(gateway_factory, smtp_sink, session):
    smtp_sink.stop()
    gw = gateway_factory(smtp_sink.port)
    c = session(gw)
    ids = [flows.send_message(c)[0] for _ in range(3)]
    c.quit()
    c.close()
    assert gw.stop() == 0
    smtp_sink.start()
    gw.start()
    _wait_all_delivered(smtp_sink, ids, timeout=30)


def test_disk_full(gateway_factory, smtp_sink, tmpfs_factory, lab_dir):
    """Spool on a 4 MiB tmpfs, next hop down: sending until it is full yields 452 4.3.1, never a 250
    for a message that is not stored, never a crash; after a restart every acknowledged message is
    delivered."""
    fs = tmpfs_factory(os.path.join(lab_dir, "spoolfs"), "4m")
    smtp_sink.stop()
    gw = gateway_factory(smtp_sink.port, config={
        "spool": {"directory": os.path.join(fs.path, "spool"), "segment_size": "1MiB", "min_free_bytes": 0}})
    body = ("d" * 98 + "\r\n") * 1500        # 150 KB: larger than memory_body_limit
    acked, full_replies, other = [], [], []
    c = None
    for i in range(80):
        if c is None:
            c = flows.open_session(gw)
        try:
            mid, r = flows.send_message(c, body=body, message_id=f"fill-{i}@client.example.test")
        except (smtp_client.SMTPClientError, OSError) as e:
            other.append(f"session error: {e}")
            c.close()
            c = None
            continue
        if r.code == 250:
            acked.append(mid)
            continue
        if r.startswith("452 4.3.1"):
            full_replies.append(str(r))
            if len(full_replies) >= 3:
                break
        else:
            other.append(str(r))
        try:
            c.command("RSET")
        except (smtp_client.SMTPClientError, OSError):
            c.close()
            c = None
        assert gw.running, f"gateway died after {len(acked)} messages; log:\n{util.tail(gw.log_text())}"
    if c is not None:
        c.close()
    used, total = fs.usage()
    assert full_replies, f"no 452 4.3.1 after {len(acked)} acknowledged messages (tmpfs {used}/{total} bytes)"
    assert not other, f"replies other than 250 / 452 4.3.1: {other}"
    assert all(r.startswith("452 4.3.1 Insufficient system storage") for r in full_replies), full_replies
    assert acked, "not a single message fit"
    assert gw.running
    rc = gw.stop()
    assert rc == 0 and not gw.last_stop_forced, f"exit status {rc} on SIGTERM with a full spool"
    smtp_sink.start()
    gw.start()
    _wait_all_delivered(smtp_sink, acked, timeout=60)
    for mid in acked:
        m = smtp_sink.find(mid)[0]
        assert m.body == body.replace("\r\n", "\n").encode(), f"{mid} damaged"
