"""Common SMTP flows against the gateway, shared by the integration tests, benchmarks and the demo."""

from __future__ import annotations

from . import smtp_client


def open_session(gw, listener: str = "smtp", tls: bool = False, ehlo: bool = True,
                 **kw) -> smtp_client.SMTPClient:
    """A client after the greeting and EHLO (and STARTTLS + second EHLO on a starttls listener when
    tls=True). The caller closes it."""
    c = gw.client(listener, **kw)
    try:
        c.read_reply().expect(220)
        if ehlo:
            c.ehlo().expect(250)
            if tls and gw.listener(listener).get("tls_mode", "starttls") == "starttls":
                c.starttls().expect(220)
                c.ehlo().expect(250)
    except BaseException:
        c.close()
        raise
    return c


def send_message(c: smtp_client.SMTPClient, rcpts=("user@lab.test",), sender: str = "sender@example.test",
                 message_id: str | None = None, body: str | bytes = "hello\r\n", **kw
                 ) -> tuple[str, smtp_client.Reply]:
    """MAIL/RCPT/DATA on an open session; returns (message_id, final reply)."""
    mid, content = smtp_client.build_message(message_id, body=body, sender=sender, to=rcpts[0], **kw)
    return mid, c.send_mail(sender, list(rcpts), content)


def send_control_message(gw, sink, listener: str = "smtp", timeout: float = 20) -> str:
    """A well-formed message in a fresh session, waited for at the sink. Used as a barrier: a test
    that must show something was NOT relayed sends this afterwards and checks the sink once it came."""
    c = open_session(gw, listener)
    try:
        mid, r = send_message(c, subject="control message")
        r.expect(250)
        c.quit()
    finally:
        c.close()
    sink.wait_for_message_id(mid, timeout=timeout)
    return mid


def submit(gw, rcpts, subject: str, sender: str = "sender@lab.test", listener: str = "intake",
           rcpt_params: str = "", body: str | None = None, **client_kw) -> str:
    """One message in a session of its own (MAIL, each RCPT with `rcpt_params`, DATA), every step
    expected to succeed; returns the gateway's queue id. Subject and Message-ID carry `subject`.
    client_kw go to the client (e.g. source_address="127.0.0.2")."""
    c = open_session(gw, listener, **client_kw)
    try:
        _, content = smtp_client.build_message(f"{subject}@lab.test", subject=subject, body=body or f"test {subject}\r\n",
                                               sender=sender or "MAILER-DAEMON@lab.test", to=rcpts[0])
        c.mail(sender).expect(250)
        for rcpt in rcpts:
            c.rcpt(rcpt, rcpt_params).expect(250)
        reply = c.data(content).expect(250)
        c.quit()
    finally:
        c.close()
    return smtp_client.queue_id(reply)
