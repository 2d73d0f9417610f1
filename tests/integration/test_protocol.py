"""The SMTP dialogue itself: greeting, EHLO, command sequencing, syntax errors, PIPELINING.
Replies exactly as in docs/smtp-replies.md."""

from __future__ import annotations

import time

import pytest

from lab import flows, smtp_client

EXTENSIONS = ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]


def test_greeting_and_ehlo(gateway, session):
    c = gateway.client("smtp")
    try:
        g = c.read_reply()
        assert str(g) == f"220 {gateway.hostname} ESMTP mxedge", g.raw
        r = c.ehlo("client.example.test")
        assert r.code == 250 and r.lines[0].startswith(gateway.hostname), r.raw
        for ext in EXTENSIONS + ["STARTTLS"]:
            assert ext in c.extensions, f"{ext} not offered: {r.raw!r}"
        assert int(c.extensions["SIZE"]) > 0
        assert "BINARYMIME" not in c.extensions
        c.command("HELO client.example.test").expect(250)
        assert c.command("HELO client.example.test").last.startswith(gateway.hostname)
        c.command("QUIT").expect(221, "2.0.0", contains="Bye")
        assert c.closed_by_peer(3)
    finally:
        c.close()


def test_helo_and_ehlo_need_a_name(gateway, session):
    c = session(gateway, ehlo=False)
    c.command("EHLO").expect(501, "5.5.4", contains="Syntax: EHLO hostname")
    c.command("HELO").expect(501, "5.5.4")


def test_command_sequencing(gateway, session):
    c = session(gateway, ehlo=False)
    c.command("MAIL FROM:<a@example.test>").expect(503, "5.5.1", contains="Error: send HELO/EHLO first")
    c.ehlo().expect(250)
    c.command("RCPT TO:<u@lab.test>").expect(503, "5.5.1", contains="Error: need MAIL command")
    c.command("DATA").expect(503, "5.5.1", contains="Error: need MAIL command")
    c.send(b"BDAT 5\r\nabcde")
    c.read_reply().expect(503, "5.5.1", contains="Error: need MAIL command")
    c.command("NOOP").expect(250, "2.0.0")   # the 5 chunk octets were consumed, not parsed
    c.command("MAIL FROM:<a@example.test>").expect(250, "2.1.0", contains="Ok")
    c.command("MAIL FROM:<a@example.test>").expect(503, "5.5.1", contains="Error: nested MAIL command")
    c.command("DATA").expect(554, "5.5.1", contains="Error: no valid recipients")
    c.command("RSET").expect(250, "2.0.0", contains="Ok")
    c.command("RCPT TO:<u@lab.test>").expect(503, "5.5.1")  # RSET ended the transaction


@pytest.mark.parametrize("line,reply", [
    ("MAIL FROM:<a@@example.test>", "501 5.1.7 Bad sender address syntax"),
    ("MAIL FROM:<a@example.test", "501 5.1.7 Bad sender address syntax"),
    ("MAIL FROM:<a@example.test> FOO=BAR", "555 5.5.4 Unsupported option: FOO=BAR"),
    ("MAIL FROM:<a@example.test> BODY=BINARYMIME", "555 5.5.4 Unsupported option: BODY=BINARYMIME"),
    ("MAIL FROM:<a@example.test> BODY=8BITMIME", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> BODY=7BIT", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SIZE=100", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SIZE=abc", "555 5.5.4 Unsupported option: SIZE=abc"),
    ("MAIL FROM:<a@example.test> RET=SOMETIMES", "555 5.5.4 Unsupported option: RET=SOMETIMES"),
    ("mail from:<a@example.test>", "250 2.1.0"),
])
def test_mail_syntax(gateway, session, line, reply):
    c = session(gateway)
    r = c.command(line)
    assert r.startswith(reply), f"{line!r} -> {r.raw!r}, want {reply!r}"


@pytest.mark.parametrize("line,reply", [
    ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
    ("RCPT TO:<user@>", "501 5.1.3 Bad recipient address syntax"),
    ("RCPT TO:<user@lab.test> FOO=BAR", "555 5.5.4 Unsupported option: FOO=BAR"),
    ("RCPT TO:<user@lab.test> NOTIFY=SOMETIMES", "555 5.5.4 Unsupported option: NOTIFY=SOMETIMES"),
    ("RCPT TO:<user@lab.test> NOTIFY=NEVER,SUCCESS", "555 5.5.4 Unsupported option: NOTIFY=NEVER,SUCCESS"),
    ("rcpt to:<user@lab.test>", "250 2.1.5"),
])
def test_rcpt_syntax(gateway, session, line, reply):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    r = c.command(line)
    assert r.startswith(reply), f"{line!r} -> {r.raw!r}, want {reply!r}"


def test_other_commands(gateway, session):
    c = session(gateway)
    c.command("NOOP").expect(250, "2.0.0", contains="Ok")
    c.command("RSET").expect(250, "2.0.0", contains="Ok")
    c.command("VRFY postmaster").expect(502, "5.5.1", contains="Error: command not implemented")
    c.command("EXPN staff").expect(502, "5.5.1", contains="Error: command not implemented")
    c.command("XYZZY").expect(502, "5.5.2", contains="Error: command not recognized")
    r = c.command("HELP")
    assert str(r) == "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP STARTTLS", r.raw
    c.command("QUIT").expect(221, "2.0.0", contains="Bye")


def test_data_reply_texts(gateway, smtp_sink, session):
    c = session(gateway)
    c.mail("a@example.test").expect(250)
    c.rcpt("user@lab.test").expect(250)
    r = c.command("DATA")
    assert str(r) == "354 End data with <CR><LF>.<CR><LF>", r.raw
    mid, content = smtp_client.build_message()
    c.send(smtp_client.dot_stuff(content))
    r = c.read_reply()
    assert r.startswith("250 2.0.0 Ok: queued as "), r.raw
    qid = smtp_client.queue_id(r)
    assert qid and qid.isalnum(), r.raw
    smtp_sink.wait_for_message_id(mid)


def test_pipelining_transaction_in_order(gateway, smtp_sink, session):
    c = session(gateway)
    assert "PIPELINING" in c.extensions
    c.send(b"MAIL FROM:<pipe@example.test>\r\n"
           b"RCPT TO:<one@lab.test>\r\n"
           b"RCPT TO:<nobody@foreign.test>\r\n"
           b"RCPT TO:<two@lab.test>\r\n"
           b"DATA\r\n")
    replies = c.read_replies(5)
    assert [r.code for r in replies] == [250, 250, 554, 250, 354], [str(r) for r in replies]
    assert replies[2].startswith("554 5.7.1 <nobody@foreign.test>: Relay access denied")
    mid, content = smtp_client.build_message()
    c.send(smtp_client.dot_stuff(content) + b"QUIT\r\n")
    final, bye = c.read_replies(2)
    final.expect(250, "2.0.0", contains="queued as")
    bye.expect(221)
    m = smtp_sink.wait_for_message_id(mid)
    assert m.rcpt_to == ["one@lab.test", "two@lab.test"] and m.mail_from == "pipe@example.test"


def test_pipelining_whole_session_with_bdat_in_one_write(gateway, smtp_sink, session):
    """Everything after EHLO in a single write (BDAT makes the message part of the pipeline)."""
    c = session(gateway)
    mid, content = smtp_client.build_message()
    c.send(b"RSET\r\nMAIL FROM:<pipe2@example.test>\r\nRCPT TO:<three@lab.test>\r\nRCPT TO:<four@lab.test>\r\n"
           + f"BDAT {len(content)} LAST\r\n".encode() + content
           + b"MAIL FROM:<pipe3@example.test>\r\nRCPT TO:<five@lab.test>\r\nNOOP\r\nRSET\r\nQUIT\r\n")
    replies = c.read_replies(10)
    got = [str(r) for r in replies]
    assert [r.code for r in replies] == [250, 250, 250, 250, 250, 250, 250, 250, 250, 221], got
    assert replies[1].startswith("250 2.1.0") and replies[2].startswith("250 2.1.5"), got
    assert replies[4].startswith("250 2.0.0 Ok: queued as"), got
    assert replies[5].startswith("250 2.1.0") and replies[6].startswith("250 2.1.5"), got
    m = smtp_sink.wait_for_message_id(mid)
    assert m.rcpt_to == ["three@lab.test", "four@lab.test"]


def test_pipelined_commands_split_across_writes(gateway, smtp_sink, session):
    """Command lines cut at arbitrary points (even inside CRLF) are reassembled."""
    c = session(gateway)
    stream = b"MAIL FROM:<split@example.test>\r\nRCPT TO:<six@lab.test>\r\nDATA\r\n"
    for i in range(0, len(stream), 7):
        c.send(stream[i:i + 7])
        time.sleep(0.02)
    assert [r.code for r in c.read_replies(3)] == [250, 250, 354]
    mid, content = smtp_client.build_message()
    payload = smtp_client.dot_stuff(content)
    cut = payload.index(b"\r\n.\r\n") + 1      # between CR and LF of the final CRLF.CRLF
    c.send(payload[:cut])
    time.sleep(0.2)
    c.send(payload[cut:])
    c.read_reply().expect(250)
    smtp_sink.wait_for_message_id(mid)


def test_reply_to_quit_after_refused_data(gateway, session):
    c = session(gateway)
    mid, r = flows.send_message(c, rcpts=("x@foreign.test",))
    assert r.code == 554
    c.command("QUIT").expect(221)
