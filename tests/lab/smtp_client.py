"""A raw-socket SMTP client for adversarial tests.

Unlike smtplib or swaks it sends exactly the bytes it is given, never waits for a reply it was not
asked to read, and can upgrade to TLS at any moment (with the ssl module), so a test can pipeline,
inject, smuggle, split and stall at will.

    c = SMTPClient("127.0.0.1", port)         # connects; the greeting is NOT read yet
    c.read_reply().expect(220)
    c.ehlo()                                   # -> Reply, sets c.extensions
    c.starttls()                               # STARTTLS + handshake (when the reply is 220)
    c.send(b"MAIL FROM:<a@b>\\r\\nRCPT TO:<c@lab.test>\\r\\n")   # exact bytes
    r1, r2 = c.read_replies(2)
    c.closed_by_peer(timeout=2)                # True when the server closed the connection

Replies: Reply.code (int), .lines (text after the code and separator), .enhanced ("5.7.1" or
None), str(reply) = the last line, reply.expect(code, enhanced=None) raises with the whole reply.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field


class SMTPClientError(AssertionError):
    pass


class ConnectionClosed(SMTPClientError):
    """The server closed the connection before a (complete) reply arrived."""


class ReplyTimeout(SMTPClientError):
    """No complete reply within the timeout."""


_ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


@dataclass
class Reply:
    code: int
    lines: list[str] = field(default_factory=list)
    raw: bytes = b""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else ""

    @property
    def enhanced(self) -> str | None:
        m = _ENH_RE.match(self.lines[0]) if self.lines else None
        return ".".join(m.groups()) if m else None

    def startswith(self, prefix: str) -> bool:
        """True when "CODE TEXT" of the first line starts with `prefix` (e.g. "550 5.7.1")."""
        return f"{self.code} {self.lines[0] if self.lines else ''}".startswith(prefix)

    def expect(self, code: int, enhanced: str | None = None, contains: str | None = None) -> "Reply":
        ok = self.code == code and (enhanced is None or self.enhanced == enhanced) and (
            contains is None or contains in self.text)
        if not ok:
            want = f"{code}{' ' + enhanced if enhanced else ''}{' ...' + contains if contains else ''}"
            raise SMTPClientError(f"expected {want}, got: {self.raw.decode('utf-8', 'replace')!r}")
        return self

    def __str__(self) -> str:
        return f"{self.code} {self.last}"


def client_context(ca_file: str | None = None, verify: bool = False, ciphers: str | None = None,
                   min_version: ssl.TLSVersion | None = None, max_version: ssl.TLSVersion | None = None
                   ) -> ssl.SSLContext:
    """An SSLContext for tests: no verification unless `verify` (then against `ca_file`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_file:
            ctx.load_verify_locations(ca_file)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def dot_stuff(content: bytes) -> bytes:
    """The DATA payload for `content` (CRLF lines): leading dots doubled, CRLF.CRLF appended."""
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    lines = content.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
    return stuffed + b".\r\n"


def build_message(message_id: str | None = None, subject: str = "lab test", body: str | bytes = "hello\r\n",
                  sender: str = "sender@example.test", to: str = "user@lab.test",
                  extra_headers: list[str] | None = None) -> tuple[str, bytes]:
    """(message_id, RFC 5322 message with CRLF line ends)."""
    message_id = (message_id or f"{uuid.uuid4().hex}@client.example.test").strip("<>")
    head = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}", f"Message-ID: <{message_id}>",
            "Date: Thu, 01 Jan 2026 00:00:00 +0000", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8"]
    head += list(extra_headers or [])
    if isinstance(body, str):
        body = body.encode()
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return message_id, ("\r\n".join(head) + "\r\n\r\n").encode() + body


class SMTPClient:
    def __init__(self, host: str, port: int, timeout: float = 10.0, source_address: str | None = None,
                 implicit_tls: bool = False, ssl_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = "mx.lab.test", connect: bool = True):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.source_address = source_address
        self.implicit_tls = implicit_tls
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.sock: socket.socket | None = None
        self.buf = b""
        self.eof = False
        self.extensions: dict[str, str] = {}
        self.transcript: list[tuple[str, bytes]] = []   # ("C"|"S", bytes)
        self.pre_tls_leftover = b""
        if connect:
            self.connect()

    # ---------------------------------------------------------------------------------------------
    def connect(self) -> "SMTPClient":
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        if self.source_address:
            s.bind((self.source_address, 0))
        s.connect((self.host, self.port))
        self.sock = s
        if self.implicit_tls:
            self._wrap(self.ssl_context or client_context())
        return self

    def _wrap(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_hostname)

    @property
    def tls_active(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def tls_version(self) -> str | None:
        return self.sock.version() if self.tls_active else None

    def cipher(self) -> str | None:
        return self.sock.cipher()[0] if self.tls_active else None

    def peer_certificate_der(self) -> bytes | None:
        return self.sock.getpeercert(binary_form=True) if self.tls_active else None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self) -> "SMTPClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------
    def send(self, data: bytes | str) -> None:
        """Send exactly these bytes (str is UTF-8 encoded), in one sendall()."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def send_line(self, line: bytes | str) -> None:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")

    def _recv_more(self, deadline: float) -> bool:
        """Read what is available into the buffer. False at EOF."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReplyTimeout("timeout")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise ReplyTimeout("timeout")
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        except ssl.SSLError as e:
            if "UNEXPECTED_EOF" in str(e) or "unexpected eof" in str(e).lower():
                data = b""
            else:
                raise
        if not data:
            self.eof = True
            return False
        self.transcript.append(("S", data))
        self.buf += data
        return True

    def read_line(self, timeout: float | None = None) -> bytes | None:
        """One line including its CRLF (or LF); None at EOF (a partial last line is returned)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            if not self._recv_more(deadline):
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def read_reply(self, timeout: float | None = None) -> Reply:
        """One complete (possibly multi-line) reply; ConnectionClosed / ReplyTimeout otherwise."""
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        lines: list[str] = []
        raw = b""
        code = None
        while True:
            try:
                line = self.read_line(max(0.001, deadline - time.monotonic()))
            except ReplyTimeout:
                raise ReplyTimeout(f"no complete reply within {t}s (got {raw!r})")
            if line is None:
                raise ConnectionClosed(f"connection closed by server (partial reply {raw!r})")
            raw += line
            text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
            m = re.match(r"^(\d{3})([ -]?)(.*)$", text)
            if not m:
                raise SMTPClientError(f"malformed reply line {line!r}")
            if code is None:
                code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines, raw)

    def read_replies(self, n: int, timeout: float | None = None) -> list[Reply]:
        return [self.read_reply(timeout) for _ in range(n)]

    def command(self, line: bytes | str, timeout: float | None = None) -> Reply:
        self.send_line(line)
        return self.read_reply(timeout)

    def closed_by_peer(self, timeout: float = 2.0) -> bool:
        """True if the server closes the connection within `timeout` (pending data is discarded)."""
        deadline = time.monotonic() + timeout
        try:
            while self._recv_more(deadline):
                pass
            return True
        except ReplyTimeout:
            return False

    def read_available(self, timeout: float = 0.5) -> bytes:
        """Whatever arrives within `timeout` (plus what was buffered), without parsing."""
        deadline = time.monotonic() + timeout
        try:
            while self._recv_more(deadline):
                pass
        except ReplyTimeout:
            pass
        data, self.buf = self.buf, b""
        return data

    # ---------------------------------------------------------------------------------------------
    def greeting(self, timeout: float | None = None) -> Reply:
        return self.read_reply(timeout)

    def ehlo(self, name: str = "client.example.test") -> Reply:
        r = self.command(f"EHLO {name}")
        if r.code == 250:
            self.extensions = {}
            for line in r.lines[1:]:
                parts = line.split(" ", 1)
                self.extensions[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
        return r

    def start_tls_now(self, context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> None:
        """Handshake now (after a 220 to STARTTLS). Buffered plaintext that arrived after the 220 is
        kept in .pre_tls_leftover (a server must not send any)."""
        self.pre_tls_leftover = self.buf
        self.buf = b""
        self.sock.settimeout(self.timeout)
        ctx = context or self.ssl_context or client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname or self.server_hostname)
        self.extensions = {}

    def starttls(self, context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> Reply:
        r = self.command("STARTTLS")
        if r.code == 220:
            self.start_tls_now(context, server_hostname)
        return r

    def mail(self, sender: str, params: str = "") -> Reply:
        return self.command(f"MAIL FROM:<{sender}>" + (f" {params}" if params else ""))

    def rcpt(self, rcpt: str, params: str = "") -> Reply:
        return self.command(f"RCPT TO:<{rcpt}>" + (f" {params}" if params else ""))

    def data(self, content: bytes, stuff: bool = True, timeout: float | None = None) -> Reply:
        """DATA; on 354 send `content` (dot-stuffed and terminated unless stuff=False, in which
        case `content` must carry its own terminator) and return the final reply; otherwise the
        DATA reply."""
        r = self.command("DATA")
        if r.code != 354:
            return r
        self.send(dot_stuff(content) if stuff else content)
        return self.read_reply(timeout)

    def bdat(self, chunk: bytes, last: bool = False, timeout: float | None = None) -> Reply:
        self.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        return self.read_reply(timeout)

    def send_mail(self, sender: str, rcpts: list[str], content: bytes) -> Reply:
        """MAIL, RCPTs, DATA one step at a time; returns the final reply (or the first failure)."""
        r = self.mail(sender)
        if r.code != 250:
            return r
        ok = 0
        last = r
        for rcpt in rcpts:
            last = self.rcpt(rcpt)
            ok += last.code == 250
        if not ok:
            return last
        return self.data(content)

    def quit(self) -> Reply | None:
        try:
            return self.command("QUIT")
        except (SMTPClientError, OSError):
            return None


def queue_id(reply: Reply) -> str | None:
    m = re.search(r"queued as (\S+)", reply.text)
    return m.group(1) if m else None
