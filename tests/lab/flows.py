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
