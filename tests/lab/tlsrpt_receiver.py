"""An HTTPS endpoint that takes TLS-RPT reports (RFC 8460 5.4) the way a report collector does:
POST with Content-Type application/tlsrpt+gzip (or +json), certificate from the lab CA for
reports.dlv.test, listening on the DNS lab's address for that name, port 443.

    rx = TlsRptReceiver(directory, dns_lab.tlsrpt_https_address, pki).start()
    rx.fail_next(1)          # answer the next POST with 503 (the sender must retry)
    rx.wait_posts(2)         # [Post(path, content_type, body, report)], report = the parsed JSON
    rx.stop()
"""

from __future__ import annotations

import gzip
import http.server
import json
import ssl
import threading
import time
from dataclasses import dataclass

from . import delivery as delivery_mod


@dataclass
class Post:
    path: str
    content_type: str
    body: bytes
    status: int
    report: dict | None  # the decoded JSON when the body was a well-formed report
    error: str = ""


class TlsRptReceiver:
    def __init__(self, directory: str, address: str, pki, port: int = 443):
        self.address = address
        self.port = port
        self.cert = pki.issue("tlsrpt-receiver", [delivery_mod.TLSRPT_HTTPS_HOST])
        self.posts: list[Post] = []
        self._fail = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._fail = n

    def start(self) -> "TlsRptReceiver":
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                with receiver._lock:
                    status = 503 if receiver._fail > 0 else 200
                    if receiver._fail > 0:
                        receiver._fail -= 1
                report, error = None, ""
                try:
                    raw = gzip.decompress(body) if ctype == "application/tlsrpt+gzip" else body
                    report = json.loads(raw)
                except Exception as e:  # a malformed report is recorded, not fatal
                    error = str(e)
                if status == 200 and self.path != delivery_mod.TLSRPT_HTTPS_PATH:
                    status = 404
                with receiver._lock:
                    receiver.posts.append(Post(self.path, ctype, body, status, report, error))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert.chain, self.cert.key)
        self._server = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="tlsrpt-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.status == 200]

    def wait_posts(self, n: int, timeout: float = 30.0, accepted_only: bool = True) -> list[Post]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                got = [p for p in self.posts if p.status == 200 or not accepted_only]
            if len(got) >= n:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} TLS-RPT POSTs after {timeout}s, wanted {n}: {self.posts}")
            time.sleep(0.1)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
