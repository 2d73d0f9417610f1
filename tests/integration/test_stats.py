"""The data plane's Prometheus endpoint (stats.listen): counters move with real traffic."""

from __future__ import annotations

import re
import time
import urllib.request

from lab import ports, swaks


def _metrics(port: int) -> dict[str, int]:
    """Sum of every mxedge_* sample over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r"^(mxedge_[a-z0-9_]+)(\{[^}]*\})? (\d+)$", line)
        assert m, f"malformed exposition line: {line!r}"
        out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3))
    return out


def test_metrics_count_sessions_messages_and_relay(gateway_factory, smtp_sink):
    port = ports.free_port()
    gw = gateway_factory(smtp_sink.port, config={"stats": {"listen": f"127.0.0.1:{port}"}})
    before = _metrics(port)
    assert before["mxedge_messages_accepted_total"] == 0
    assert before["mxedge_sessions_active"] == 0
    r = swaks.send("127.0.0.1", gw.smtp_port, to="alice@lab.test", message_id="stats-1@client.example.test", tls="starttls")
    assert r.rc == 0, r.transcript
    smtp_sink.wait_for_message_id("stats-1@client.example.test")
    r2 = swaks.send("127.0.0.1", gw.smtp_port, to="mallory@elsewhere.example", message_id="stats-2@x", tls="starttls")
    assert r2.rc != 0
    deadline = time.time() + 10
    while True:
        m = _metrics(port)
        if m["mxedge_messages_relayed_total"] == 1 and m["mxedge_sessions_closed_total"] == 2 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert m["mxedge_connections_accepted_total"] == 2
    assert m["mxedge_tls_handshakes_tls13_total"] + m["mxedge_tls_handshakes_tls12_total"] == 2
    assert m["mxedge_messages_accepted_total"] == 1
    assert m["mxedge_messages_relayed_total"] == 1
    assert m["mxedge_recipients_accepted_total"] == 1
    assert m["mxedge_recipients_refused_total"] == 1
    assert m["mxedge_sessions_closed_total"] == 2
    assert m["mxedge_sessions_active"] == 0
    assert m["mxedge_spool_pending_messages"] == 0
    assert m["mxedge_spool_commits_total"] >= 1


def test_invalid_stats_address_is_rejected_with_its_line(gateway_factory, smtp_sink):
    gw = gateway_factory(smtp_sink.port, start=False, config={"stats": {"listen": "localhost:99999"}})
    try:
        gw.start(timeout=5)
        started = True
    except Exception as e:  # the lab raises when the gateway exits instead of becoming ready
        started = False
        assert "stats.listen" in str(e) or "invalid stats address" in gw.log_text(), str(e)
    assert not started, "the gateway started with an invalid stats address"
