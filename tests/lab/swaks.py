"""Run swaks (one SMTP session per call) and pick its transcript apart.

    r = swaks.run("--server", "127.0.0.1:2525", "--to", "a@lab.test", "-tls")
    r.rc, r.transcript, r.last_code(), r.codes(), r.queue_id(), r.tls_cipher()

swaks transcript markers: "->"/"~>" client lines (plain/TLS), "<-"/"<~" server lines, "<**"/"<~*"
server replies swaks treats as errors, "***" swaks errors, "===" info (e.g. "=== TLS started with
cipher TLSv1.3:TLS_AES_256_GCM_SHA384:256").
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

SWAKS = "/usr/bin/swaks"

_REPLY_RE = re.compile(r"^<(?:-|~|\*\*|~\*)\s+(\d{3})([ -])(.*)$")


@dataclass
class SwaksResult:
    argv: list[str]
    rc: int
    transcript: str

    def reply_lines(self) -> list[tuple[int, bool, str]]:
        """(code, is_last_line, text) of every server reply line in order."""
        out = []
        for line in self.transcript.splitlines():
            m = _REPLY_RE.match(line)
            if m:
                out.append((int(m.group(1)), m.group(2) == " ", m.group(3)))
        return out

    def replies(self) -> list[tuple[int, str]]:
        """Complete replies: (code, text of the last line)."""
        return [(code, text) for code, last, text in self.reply_lines() if last]

    def codes(self) -> list[int]:
        return [code for code, _ in self.replies()]

    def last_code(self) -> int | None:
        """Code of the last reply before QUIT's (or the last reply at all when there was no QUIT)."""
        replies = self.replies()
        if not replies:
            return None
        if replies[-1][0] == 221 and len(replies) > 1:
            return replies[-2][0]
        return replies[-1][0]

    def last_reply(self) -> str | None:
        replies = self.replies()
        if not replies:
            return None
        if replies[-1][0] == 221 and len(replies) > 1:
            return f"{replies[-2][0]} {replies[-2][1]}"
        return f"{replies[-1][0]} {replies[-1][1]}"

    def queue_id(self) -> str | None:
        """The id from "250 ... queued as ID"."""
        for code, text in self.replies():
            m = re.search(r"queued as (\S+)", text)
            if code == 250 and m:
                return m.group(1)
        return None

    def tls_cipher(self) -> tuple[str, str] | None:
        """(protocol, cipher) swaks reported, e.g. ("TLSv1.3", "TLS_AES_256_GCM_SHA384")."""
        m = re.search(r"=== TLS started with cipher ([^:\s]+):([^:\s]+)", self.transcript)
        return (m.group(1), m.group(2)) if m else None

    @property
    def ok(self) -> bool:
        return self.rc == 0


def run(*args: str, timeout: float = 60, input: bytes | None = None) -> SwaksResult:
    """swaks with `args`; never raises on an SMTP failure (inspect .rc and the transcript)."""
    argv = [SWAKS, *args]
    cp = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        timeout=timeout)
    text = cp.stdout.decode("utf-8", errors="replace")
    if "not available: requires Net::SSLeay" in text:
        # Debian's swaks only Recommends libnet-ssleay-perl; --no-install-recommends leaves it out
        raise SwaksUnusable("swaks cannot do TLS here: Net::SSLeay is missing "
                            "(apt-get install libnet-ssleay-perl; scripts/setup.sh must list it)")
    return SwaksResult(argv, cp.returncode, text)


class SwaksUnusable(AssertionError):
    """swaks lacks a Perl module the test needs (an environment problem, reported as a failure)."""


def send(server: str, port: int, to: str = "user@lab.test", sender: str = "sender@example.test",
         message_id: str | None = None, tls: str | None = "starttls", body: str | None = None,
         extra: list[str] | None = None, timeout: float = 60) -> SwaksResult:
    """One message. tls: "starttls" (-tls, required), "implicit" (-tlsc), "optional" (-tlso) or None."""
    host = f"[{server}]" if ":" in server else server
    args = ["--server", f"{host}:{port}", "--to", to, "--from", sender, "--helo", "client.example.test",
            "--timeout", "20"]
    if message_id:
        args += ["--header", f"Message-Id: <{message_id.strip('<>')}>"]
    if body is not None:
        args += ["--body", body]
    if tls == "starttls":
        args.append("-tls")
    elif tls == "implicit":
        args.append("-tlsc")
    elif tls == "optional":
        args.append("-tlso")
    args += list(extra or [])
    return run(*args, timeout=timeout)
