"""Process lifecycle: SIGTERM shutdown with sessions in flight, SIGHUP reload, config validation."""

from __future__ import annotations

import threading
import time

import pytest

from lab import flows, gateway as gateway_mod, smtp_client, util


def _finish_or_421(c: smtp_client.SMTPClient, steps, hostname: str) -> list[str]:
    """Run `steps` (callables returning a Reply) until one answers 421; returns the replies.
    A 421 must be the shutdown reply; a closed connection without any 421 is a failure."""
    got = []
    for step in steps:
        try:
            r = step()
        except smtp_client.ConnectionClosed as e:
            raise AssertionError(f"connection closed without '421 4.3.2' after {got}: {e}")
        except OSError as e:
            # the write failed because the server closed: its 421 may still be in our buffer
            try:
                r = c.read_reply(timeout=2)
            except smtp_client.SMTPClientError:
                raise AssertionError(f"connection closed without '421 4.3.2' after {got}: {e}")
        got.append(str(r))
        if r.code == 421:
            assert r.startswith(f"421 4.3.2 {hostname} Service shutting down"), r.raw
            assert c.closed_by_peer(3)
            return got
    return got


def test_sigterm_with_sessions_in_flight(gateway, smtp_sink, session):
    gw = gateway
    idle = session(gw)                                    # between commands
    mid_tx = session(gw)                                  # inside a transaction
    mid_tx.mail("a@example.test").expect(250)
    mid_tx.rcpt("user@lab.test").expect(250)
    in_data = session(gw, tls=True)                       # in the middle of DATA, over TLS
    in_data.mail("b@example.test").expect(250)
    in_data.rcpt("user@lab.test").expect(250)
    in_data.command("DATA").expect(354)
    data_id, content = smtp_client.build_message(message_id="in-data@client.example.test")
    payload = smtp_client.dot_stuff(content)
    in_data.send(payload[:40])

    gw.proc.send_signal(15)   # SIGTERM
    exit_result = {}

    def waiter():
        try:
            exit_result["rc"] = gw.proc.wait(30)
        except Exception as e:  # noqa: BLE001
            exit_result["error"] = repr(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)

    # the session in DATA finishes its message, or is told 421
    replies_data = _finish_or_421(in_data, [lambda: (in_data.send(payload[40:]), in_data.read_reply())[1]],
                                  gw.hostname)
    # the one inside a transaction
    tx_id, tx_content = smtp_client.build_message(message_id="mid-tx@client.example.test")
    replies_tx = _finish_or_421(mid_tx, [lambda: mid_tx.data(tx_content), lambda: mid_tx.command("QUIT")],
                                gw.hostname)
    # the idle one: a command now gets 421 (or, if it is still served, QUIT works)
    replies_idle = _finish_or_421(idle, [lambda: idle.command("NOOP"), lambda: idle.command("QUIT")], gw.hostname)

    t.join(35)
    assert "rc" in exit_result, f"gateway did not exit within 30s of SIGTERM ({exit_result})"
    assert exit_result["rc"] == 0, f"exit status {exit_result['rc']}; log:\n{util.tail(gw.log_text())}"

    # new connections are refused once it is gone
    with pytest.raises(OSError):
        smtp_client.SMTPClient("127.0.0.1", gw.smtp_port, timeout=2).read_reply()

    # every message that got 250 is delivered (after a restart if it was not relayed before exit)
    acked = []
    if replies_data and replies_data[0].startswith("250"):
        acked.append(data_id)
    if replies_tx and replies_tx[0].startswith("250"):
        acked.append(tx_id)
    gw.start()
    for mid in acked:
        smtp_sink.wait_for_message_id(mid, timeout=20)
    print(f"in DATA: {replies_data}; in transaction: {replies_tx}; idle: {replies_idle}")


def test_sigterm_idle_exits_zero(gateway):
    assert gateway.stop() == 0
    assert not gateway.last_stop_forced


def test_new_connection_during_shutdown_gets_421_or_refused(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port)
    busy = session(gw)
    busy.mail("a@example.test").expect(250)
    gw.proc.send_signal(15)
    time.sleep(0.2)
    try:
        c = smtp_client.SMTPClient("127.0.0.1", gw.smtp_port, timeout=3)
    except OSError:
        return  # listener already closed: fine
    with c:
        try:
            r = c.read_reply()
        except smtp_client.SMTPClientError:
            return  # closed without a greeting: the listener was being torn down
        assert r.startswith(f"421 4.3.2 {gw.hostname} Service shutting down"), r.raw


def test_sighup_reload_accepted_domains(gateway_factory, smtp_sink, session):
    gw = gateway_factory(smtp_sink.port, accepted_domains=["lab.test"])
    old = session(gw)
    c = session(gw)
    c.mail("a@example.test").expect(250)
    c.rcpt("user@lab2.test").expect(554, "5.7.1")
    c.close()

    gw.update_config({"accepted_domains": ["lab.test", "lab2.test"]}, write=False)
    gw.reload()

    def new_session_accepts():
        s = flows.open_session(gw)
        try:
            s.mail("a@example.test").expect(250)
            return s.rcpt("user@lab2.test").code == 250
        finally:
            s.close()

    util.wait_until(new_session_accepts, 10, interval=0.2, message="lab2.test accepted after SIGHUP")
    assert gw.running
    # the session opened before the reload is still alive and works
    old.command("NOOP").expect(250)
    mid, r = flows.send_message(old, rcpts=("user@lab.test",))
    r.expect(250)
    smtp_sink.wait_for_message_id(mid)

    # removing a domain takes effect too
    gw.update_config({"accepted_domains": ["lab2.test"]}, write=False)
    gw.reload()

    def lab_refused():
        s = flows.open_session(gw)
        try:
            s.mail("a@example.test").expect(250)
            return s.rcpt("user@lab.test").code == 554
        finally:
            s.close()

    util.wait_until(lab_refused, 10, interval=0.2, message="lab.test refused after second SIGHUP")
    s = flows.open_session(gw)
    try:
        mid, r = flows.send_message(s, rcpts=("user@lab2.test",))
        r.expect(250)
    finally:
        s.close()
    smtp_sink.wait_for_message_id(mid)


def test_sighup_with_broken_config_keeps_running(gateway_factory, smtp_sink, session):
    """An operator's typo in a reload must not take the gateway down (the old config stays)."""
    gw = gateway_factory(smtp_sink.port)
    gw.update_config({"limits": {"command_line_length": 100}}, write=False)   # below the RFC minimum
    gw.reload()
    time.sleep(1)
    assert gw.running
    c = session(gw)
    mid, r = flows.send_message(c)
    r.expect(250)
    smtp_sink.wait_for_message_id(mid)


def test_invalid_config_refused_at_start(gateway_factory, smtp_sink):
    gw = gateway_factory(smtp_sink.port, start=False, config={"limits": {"command_line_length": 100}})
    with pytest.raises(gateway_mod.GatewayError) as e:
        gw.start(timeout=10)
    assert "command_line_length" in str(e.value)
    assert gw.proc.poll() not in (None, 0)
