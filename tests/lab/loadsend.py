"""A small threaded SMTP load sender for durability tests and demos (not the benchmark loadgen).

    load = LoadSender("127.0.0.1", port, threads=4, messages_per_session=5, starttls=True)
    load.start()                      # runs until stop() or `total` messages were attempted
    util.wait_until(lambda: len(load.acked()) >= 50, 30)
    gw.kill9(); load.stop()
    load.acked()                      # Message-IDs that got "250 ... queued as" (acknowledged)

Each message has a unique Message-ID; a message counts as acknowledged only when the client read the
final 250 reply to its end of data.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass

from . import smtp_client


@dataclass
class SendResult:
    message_id: str
    acked: bool
    reply: str = ""
    queue_id: str | None = None
    error: str | None = None
    at: float = 0.0


class LoadSender:
    def __init__(self, host: str, port: int, threads: int = 4, messages_per_session: int = 5,
                 starttls: bool = True, implicit_tls: bool = False, rcpt: str = "user@lab.test",
                 sender: str = "load@example.test", body_size: int = 2000, total: int | None = None,
                 timeout: float = 10.0, pause_on_error: float = 0.05, tag: str | None = None):
        self.host = host
        self.port = port
        self.threads_n = threads
        self.per_session = messages_per_session
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.rcpt = rcpt
        self.sender = sender
        self.body_size = body_size
        self.total = total
        self.timeout = timeout
        self.pause_on_error = pause_on_error
        self.tag = tag or uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.results: list[SendResult] = []
        self._threads: list[threading.Thread] = []

    def _next_id(self) -> str | None:
        n = next(self._counter)
        if self.total is not None and n >= self.total:
            return None
        return f"load-{self.tag}-{n}@client.example.test"

    def _record(self, r: SendResult) -> None:
        r.at = time.monotonic()
        with self._lock:
            self.results.append(r)

    def _session(self) -> bool:
        """One SMTP session with up to per_session messages. False when no more work."""
        mid = self._next_id()
        if mid is None:
            return False
        c = None
        try:
            c = smtp_client.SMTPClient(self.host, self.port, timeout=self.timeout, implicit_tls=self.implicit_tls)
            c.read_reply().expect(220)
            c.ehlo().expect(250)
            if self.starttls and not self.implicit_tls:
                c.starttls().expect(220)
                c.ehlo().expect(250)
            for i in range(self.per_session):
                if i > 0:
                    mid = self._next_id()
                    if mid is None or self._stop.is_set():
                        break
                body = ("x" * 70 + "\r\n") * max(1, self.body_size // 72)
                _, content = smtp_client.build_message(mid, subject=f"load {mid}", body=body,
                                                       sender=self.sender, to=self.rcpt)
                try:
                    r = c.send_mail(self.sender, [self.rcpt], content)
                except Exception as e:  # noqa: BLE001
                    self._record(SendResult(mid, False, error=repr(e)))
                    raise
                acked = r.code == 250 and "queued as" in r.text
                self._record(SendResult(mid, acked, str(r), smtp_client.queue_id(r)))
                if r.code >= 400:
                    # a 4xx/5xx after data: go on with the next message on a clean state
                    c.command("RSET")
            c.quit()
        except Exception:  # noqa: BLE001 - the server went away: that is what these tests do
            time.sleep(self.pause_on_error)
        finally:
            if c is not None:
                c.close()
        return True

    def _worker(self) -> None:
        while not self._stop.is_set():
            if not self._session():
                return

    def start(self) -> "LoadSender":
        for i in range(self.threads_n):
            t = threading.Thread(target=self._worker, name=f"loadsend-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def acked(self) -> list[str]:
        with self._lock:
            return [r.message_id for r in self.results if r.acked]

    def refused(self) -> list[SendResult]:
        with self._lock:
            return [r for r in self.results if not r.acked and r.reply]

    def errors(self) -> list[SendResult]:
        with self._lock:
            return [r for r in self.results if r.error]
