"""Postfix's smtp-sink as a recording next hop.

smtp-sink is started with ``-d DIR/run-N/%Y%m%d%H%M%S.`` so that it writes every mail transaction to a
file of its own (name = template + random hex). The file carries smtp-sink's envelope records
(X-Client-Addr, X-Helo-Args, X-Mail-Args, X-Rcpt-Args), a 3-line Received: header of its own, then
the message as received (dot-unstuffed, CRLF turned into LF) and one empty line. A file is complete
when smtp-sink no longer holds it open (checked through /proc/PID/fd); a transaction the client
aborts is removed by smtp-sink itself.

Behaviour knobs (smtp-sink options):
    hard_reject=["RCPT"]   -f  reject those commands with 5xx ("." = end of data)
    soft_reject=["MAIL"]   -r  reject with 4xx
    disconnect=["DATA"]    -q  drop the connection without a reply
    reply_421=["MAIL"]     -Q  reply 421 and drop
    data_delay=3           -w  wait before answering DATA
and stop()/start() (same port) to simulate the next hop being down. When "." is rejected, the
transactions of that run are recorded but flagged rejected=True and left out of messages().

smtp-sink announces PIPELINING, 8BITMIME, DSN, ENHANCEDSTATUSCODES (not STARTTLS, not CHUNKING, not
SMTPUTF8). It must not run as root: it switches to `user` (default nobody) after binding.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from . import ports, util

SINK_BINARY = "/usr/sbin/smtp-sink"


@dataclass
class SinkMessage:
    path: str
    run: int
    client_addr: str = ""
    client_proto: str = ""
    helo: str = ""
    mail_args: str = ""          # full MAIL FROM arguments, e.g. "<a@b> RET=HDRS ENVID=x"
    rcpt_args: list[str] = field(default_factory=list)
    raw: bytes = b""             # the message as received (LF line ends, dot-unstuffed)
    rejected: bool = False       # recorded during a run that rejected "."
    mtime: float = 0.0

    @property
    def mail_from(self) -> str:
        """The reverse path without brackets and parameters."""
        return _strip_path(self.mail_args)

    @property
    def rcpt_to(self) -> list[str]:
        return [_strip_path(a) for a in self.rcpt_args]

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def message_id(self) -> str | None:
        return self.header("Message-ID")

    def header(self, name: str) -> str | None:
        """First header `name` (unfolded, raw text), None when absent."""
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        """All values of header `name` in order, unfolded (continuation lines joined with a space)."""
        head = self.raw.split(b"\n\n", 1)[0].decode("utf-8", errors="replace")
        fields: list[list[str]] = []          # [name, value, continuation...]
        for line in head.split("\n"):
            if line[:1] in (" ", "\t") and fields:
                fields[-1].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                fields.append([key.strip(), value.strip()])
        return [" ".join(f[1:]) for f in fields if f[0].lower() == name.lower()]

    @property
    def body(self) -> bytes:
        parts = self.raw.split(b"\n\n", 1)
        return parts[1] if len(parts) == 2 else b""

    def __repr__(self) -> str:
        return (f"SinkMessage(from={self.mail_args!r}, rcpt={self.rcpt_args!r}, "
                f"message_id={self.message_id!r}, {len(self.raw)} bytes)")


def _strip_path(args: str) -> str:
    args = args.strip()
    if args.startswith("<"):
        end = args.find(">")
        if end >= 0:
            return args[1:end]
    return args.split(" ", 1)[0]


def parse_dump(data: bytes) -> dict:
    """Split an smtp-sink dump file into its envelope records and the message."""
    lines = data.split(b"\n")
    rec: dict = {"rcpt_args": []}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"X-Client-Addr: "):
            rec["client_addr"] = line[15:].decode(errors="replace")
        elif line.startswith(b"X-Client-Proto: "):
            rec["client_proto"] = line[16:].decode(errors="replace")
        elif line.startswith(b"X-Helo-Args: "):
            rec["helo"] = line[13:].decode(errors="replace")
        elif line.startswith(b"X-Mail-Args: "):
            rec["mail_args"] = line[13:].decode("utf-8", errors="replace")
        elif line.startswith(b"X-Rcpt-Args: "):
            rec["rcpt_args"].append(line[13:].decode("utf-8", errors="replace"))
        elif line.startswith(b"Received: "):
            i += 3  # smtp-sink's own Received: is exactly three lines
            break
        else:
            break
        i += 1
    body = b"\n".join(lines[i:])
    if body.endswith(b"\n\n"):
        body = body[:-1]  # the empty line smtp-sink appends
    rec["raw"] = body
    return rec


class SmtpSink:
    """smtp-sink on 127.0.0.1 (or ::1) recording every message; see the module docstring."""

    def __init__(self, workdir: str, host: str = "127.0.0.1", port: int = 0, hostname: str = "sink.lab.test",
                 hard_reject: list[str] | None = None, soft_reject: list[str] | None = None,
                 disconnect: list[str] | None = None, reply_421: list[str] | None = None,
                 data_delay: int | None = None, max_concurrency: int = 256, backlog: int = 256,
                 command_timeout: int = 100, user: str = "nobody", extra_args: list[str] | None = None):
        if not (host.startswith("127.") or host == "::1"):
            raise ValueError("smtp-sink binds loopback only")
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.host = host
        self.port = port
        self.hostname = hostname
        self.options = dict(hard_reject=hard_reject, soft_reject=soft_reject, disconnect=disconnect,
                            reply_421=reply_421, data_delay=data_delay)
        self.max_concurrency = max_concurrency
        self.backlog = backlog
        self.command_timeout = command_timeout
        self.user = user
        self.extra_args = list(extra_args or [])
        self.log_path = os.path.join(workdir, "smtp-sink.log")
        self.proc: util.ManagedProcess | None = None
        self.run_number = 0
        self._rejecting_runs: set[int] = set()
        self._lock = threading.Lock()
        self._cache: dict[str, SinkMessage] = {}

    # ---------------------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _run_dir(self, run: int) -> str:
        return os.path.join(self.workdir, f"run-{run}")

    def _argv(self, port: int) -> list[str]:
        argv = [SINK_BINARY, "-u", self.user, "-h", self.hostname, "-m", str(self.max_concurrency),
                "-t", str(self.command_timeout), "-d", self._run_dir(self.run_number) + "/%Y%m%d%H%M%S."]
        flags = {"hard_reject": "-f", "soft_reject": "-r", "disconnect": "-q", "reply_421": "-Q"}
        for key, flag in flags.items():
            cmds = self.options.get(key)
            if cmds:
                argv += [flag, ",".join(cmds)]
        if self.options.get("data_delay"):
            argv += ["-w", str(self.options["data_delay"])]
        argv += self.extra_args
        listen = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        argv += [listen, str(self.backlog)]
        return argv

    def start(self, timeout: float = 10.0, **options) -> "SmtpSink":
        """Start (again, on the same port once one was chosen). Keyword options replace the
        behaviour knobs for this run (hard_reject=..., soft_reject=..., ...)."""
        if self.running:
            raise RuntimeError("smtp-sink already running")
        for key in options:
            if key not in self.options:
                raise TypeError(f"unknown smtp-sink option {key}")
        self.options.update(options)
        self.run_number += 1
        run_dir = self._run_dir(self.run_number)
        os.makedirs(run_dir, exist_ok=True)
        os.chown(run_dir, *_uid_gid(self.user))
        hard = self.options.get("hard_reject") or []
        soft = self.options.get("soft_reject") or []
        if "." in hard or "." in soft:
            self._rejecting_runs.add(self.run_number)
        deadline = time.monotonic() + timeout
        while True:
            self.proc = util.ManagedProcess(self._argv(self.port), self.log_path, name="smtp-sink")
            self.proc.start()
            try:
                util.wait_until(lambda: not self.proc.running or ports.listening_ports(self.proc.pid),
                                timeout=max(0.5, deadline - time.monotonic()), message="smtp-sink to listen")
            except util.LabTimeout:
                self.proc.kill()
                raise
            if self.proc.running:
                if self.port == 0:
                    self.port = ports.listening_ports(self.proc.pid)[0][1]
                return self
            # bind failed: the same port may be in use a moment longer after a restart
            if time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink failed to start: {util.tail(util.read_text(self.log_path))}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def _open_files(self) -> set[str]:
        if not self.running:
            return set()
        out = set()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        try:
            for name in os.listdir(fd_dir):
                try:
                    out.add(os.readlink(os.path.join(fd_dir, name)))
                except OSError:
                    pass
        except OSError:
            pass
        return out

    def stop(self) -> None:
        """Stop smtp-sink (the next hop is then down: connections are refused). Transactions in
        progress are lost, as with a crashing server; their partial dump files are removed."""
        if self.proc is None:
            return
        if self.running:
            try:
                os.kill(self.proc.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            partial = {p for p in self._open_files() if p.startswith(self.workdir)}
            self.proc.kill()
            for p in partial:
                try:
                    os.unlink(p)
                except OSError:
                    pass
        else:
            self.proc.kill()

    def restart(self, **options) -> "SmtpSink":
        self.stop()
        return self.start(**options)

    def cleanup(self) -> None:
        self.stop()

    def __enter__(self) -> "SmtpSink":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------
    def _dump_files(self) -> list[tuple[int, str]]:
        out = []
        for run in range(1, self.run_number + 1):
            d = self._run_dir(run)
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                out.append((run, os.path.join(d, name)))
        return out

    def all_messages(self, include_rejected: bool = False) -> list[SinkMessage]:
        """Every completely received transaction, oldest first."""
        # List the dump files first, then ask which are still open: a file listed and not open by
        # then is complete. (The other order reads a file smtp-sink created after the open-file
        # snapshot as if it were complete: a message cut short, cached for good.)
        dump_files = self._dump_files()
        open_files = self._open_files()
        found = []
        with self._lock:
            for run, path in dump_files:
                if path in open_files:
                    continue  # still being received
                msg = self._cache.get(path)
                if msg is None:
                    try:
                        with open(path, "rb") as f:
                            data = f.read()
                        mtime = os.stat(path).st_mtime
                    except OSError:
                        continue
                    if not data:
                        continue
                    rec = parse_dump(data)
                    msg = SinkMessage(path=path, run=run, mtime=mtime,
                                      rejected=run in self._rejecting_runs, **rec)
                    self._cache[path] = msg
                if msg.rejected and not include_rejected:
                    continue
                found.append(msg)
        found.sort(key=lambda m: (m.mtime, m.path))
        return found

    def messages(self) -> list[SinkMessage]:
        """Messages smtp-sink accepted (runs that rejected "." excluded)."""
        return self.all_messages(include_rejected=False)

    def count(self) -> int:
        return len(self.messages())

    def wait_for_messages(self, n: int, timeout: float = 20.0) -> list[SinkMessage]:
        """Wait until at least `n` messages were received; returns all of them."""
        util.wait_until(lambda: len(self.messages()) >= n, timeout, interval=0.1,
                        message=lambda: f"{n} messages at smtp-sink (have {len(self.messages())})")
        return self.messages()

    def find(self, message_id: str) -> list[SinkMessage]:
        """Messages whose Message-ID header equals `message_id` (with or without <>)."""
        want = message_id.strip().strip("<>")
        return [m for m in self.messages() if (m.message_id or "").strip().strip("<>") == want]

    def wait_for_message_id(self, message_id: str, timeout: float = 20.0) -> SinkMessage:
        found = util.wait_until(lambda: self.find(message_id), timeout, interval=0.1,
                                message=f"Message-ID {message_id} at smtp-sink")
        return found[0]  # type: ignore[index]

    def message_ids(self) -> list[str]:
        return [(m.message_id or "").strip().strip("<>") for m in self.messages()]

    def clear(self) -> None:
        """Forget the messages received so far (removes completed dump files)."""
        open_files = self._open_files()
        with self._lock:
            for _run, path in self._dump_files():
                if path not in open_files:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            self._cache.clear()

    def log_text(self) -> str:
        return util.read_text(self.log_path)


def _uid_gid(user: str) -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid
