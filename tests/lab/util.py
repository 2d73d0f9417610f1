"""Shared helpers: lab directories, process management, waiting, logfmt parsing, tmpfs mounts.

Everything that starts something registers a cleanup with `register_cleanup`; pytest fixtures run
their own finalizers, and an atexit hook sweeps whatever is left (for scripts that do not use pytest,
and as a safety net when a finalizer itself failed).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Iterable

# --------------------------------------------------------------------------------------------------
# cleanup registry

_cleanups: dict[int, Callable[[], None]] = {}
_cleanup_lock = threading.Lock()
_next_token = 0


def register_cleanup(fn: Callable[[], None]) -> int:
    """Remember `fn` to run at interpreter exit unless `unregister_cleanup(token)` is called first."""
    global _next_token
    with _cleanup_lock:
        _next_token += 1
        _cleanups[_next_token] = fn
        return _next_token


def unregister_cleanup(token: int | None) -> None:
    if token is None:
        return
    with _cleanup_lock:
        _cleanups.pop(token, None)


def run_all_cleanups() -> None:
    """Run every registered cleanup, newest first (processes before the directories they use)."""
    while True:
        with _cleanup_lock:
            if not _cleanups:
                return
            token = max(_cleanups)
            fn = _cleanups.pop(token)
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(run_all_cleanups)

# --------------------------------------------------------------------------------------------------
# waiting


class LabTimeout(AssertionError):
    """A lab wait ran out of time (an AssertionError so pytest reports it as a test failure)."""


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
               message: str | Callable[[], str] = "condition") -> object:
    """Poll `predicate` until it returns a truthy value, which is returned; LabTimeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise LabTimeout(f"timed out after {timeout:.1f}s waiting for {text}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# directories

DEFAULT_TMP_PARENT = "/tmp"


def make_lab_dir(prefix: str = "mxedge-lab-", parent: str | None = None) -> str:
    """A fresh directory, mode 0755 so that daemons that drop privileges (Postfix, smtp-sink) can
    traverse it. Not registered for cleanup: callers own it (see LabDir)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent or DEFAULT_TMP_PARENT)
    os.chmod(path, 0o755)
    return path


def remove_tree(path: str) -> None:
    """rm -rf, refusing to descend into mount points (a tmpfs still mounted under `path` is
    unmounted first rather than emptied)."""
    if not path or not os.path.exists(path):
        return
    for mnt in sorted(mounts_under(path), key=len, reverse=True):
        umount(mnt)
    shutil.rmtree(path, ignore_errors=True)


class LabDir:
    """A temporary lab directory that removes itself (context manager or .cleanup())."""

    def __init__(self, prefix: str = "mxedge-lab-", parent: str | None = None):
        self.path = make_lab_dir(prefix, parent)
        self._token = register_cleanup(self.cleanup)

    def sub(self, name: str, mode: int = 0o755) -> str:
        p = os.path.join(self.path, name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        return p

    def unique_sub(self, prefix: str) -> str:
        p = tempfile.mkdtemp(prefix=prefix + "-", dir=self.path)
        os.chmod(p, 0o755)
        return p

    def cleanup(self) -> None:
        unregister_cleanup(self._token)
        self._token = None
        remove_tree(self.path)

    def __enter__(self) -> "LabDir":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


# --------------------------------------------------------------------------------------------------
# processes


class ManagedProcess:
    """A child process in its own session/process group, its stdout+stderr appended to a log file.

    stop() sends SIGTERM to the process, waits, then SIGKILLs the whole process group, so nothing it
    started survives. Registered for cleanup at exit while running.
    """

    def __init__(self, argv: list[str], log_path: str, env: dict | None = None, cwd: str | None = None,
                 name: str | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.name = name or os.path.basename(argv[0])
        self.proc: subprocess.Popen | None = None
        self._token: int | None = None
        self.returncode: int | None = None

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        logf = open(self.log_path, "ab", buffering=0)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                         start_new_session=True)
        finally:
            logf.close()
        self.returncode = None
        self._token = register_cleanup(self.kill)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> int | None:
        if self.proc is None:
            return self.returncode
        rc = self.proc.poll()
        if rc is not None:
            self.returncode = rc
        return rc

    def _kill_group(self) -> None:
        """SIGKILL the process group. Only while the leader is not reaped yet (returncode None):
        until then its PID, and so the group id, cannot belong to anybody else."""
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def send_signal(self, sig: int) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process (SIGTERM), wait up to `timeout`, then SIGKILL its process group.
        Returns the exit status (negative for a signal, as subprocess reports it)."""
        if self.proc is None:
            return self.returncode
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        unregister_cleanup(self._token)
        self._token = None
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL the process (kill -9) and its process group; wait for it."""
        if self.proc is None:
            return self.returncode
        self._kill_group()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        unregister_cleanup(self._token)
        self._token = None
        return self.returncode

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self.returncode = rc
        return rc


def as_service_user(directory, binary: str, caps: str, user: str = "nobody", group: str = "nogroup") -> str:
    """A wrapper script in `directory` that runs `binary` (with its arguments) as user:group with
    `caps` ("+bpf,+net_admin", or "" for none) as ambient capabilities, as systemd's User= and
    AmbientCapabilities= would. Returns its path."""
    import grp
    import pwd
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    wrapper = os.path.join(str(directory), f"as-{user}-{os.path.basename(binary)}.sh")
    caps_opts = f"--inh-caps={caps} --ambient-caps={caps} " if caps else ""
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec setpriv --reuid={uid} --regid={gid} --clear-groups {caps_opts}{binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper


def run(argv: list[str], timeout: float = 60, check: bool = True, input: bytes | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """subprocess.run with captured output; on failure the exception text carries stdout/stderr."""
    cp = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout, env=env)
    if check and cp.returncode != 0:
        raise RuntimeError(f"command failed ({cp.returncode}): {' '.join(argv)}\n"
                           f"stdout: {cp.stdout.decode(errors='replace')}\n"
                           f"stderr: {cp.stderr.decode(errors='replace')}")
    return cp


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# daemons that detach (Postfix's master) end up as children of PID 1; on these machines PID 1 does
# not reap, so they would stay zombies. The lab process makes itself a child subreaper instead and
# reaps the daemons it knows by name.

_subreaper = False

POSTFIX_PROCESS_NAMES = frozenset({
    "master", "pickup", "qmgr", "postlogd", "smtpd", "smtp", "cleanup", "trivial-rewrite", "proxymap",
    "tlsmgr", "virtual", "bounce", "anvil", "scache", "showq", "error", "discard", "flush", "verify",
    "postfix-script", "postqueue", "postdrop", "local", "lmtp", "postsuper",
})


def enable_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become our children (and we reap them)."""
    global _subreaper
    if _subreaper:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(36, 1, 0, 0, 0) == 0   # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001
        _subreaper = False
    return _subreaper


def proc_stats():
    """(pid, command name, fields after the name) of every process in /proc/<pid>/stat."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry), stat[stat.find("(") + 1:stat.rfind(")")], stat[stat.rfind(")") + 2:].split()


def reap_zombies(names: frozenset[str] = POSTFIX_PROCESS_NAMES) -> int:
    """waitpid() our zombie children whose command name is in `names` (never those of subprocess
    objects we manage: their status belongs to them). Returns how many were reaped."""
    me = os.getpid()
    reaped = 0
    for pid, comm, fields in proc_stats():
        if fields[0] != "Z" or int(fields[1]) != me or comm not in names:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
            reaped += 1
        except ChildProcessError:
            pass
    return reaped


# --------------------------------------------------------------------------------------------------
# logfmt

_LOGFMT_RE = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs of one logfmt line; quoted values are unescaped."""
    out: dict[str, str] = {}
    for key, value in _LOGFMT_RE.findall(line):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)),
                           value[1:-1])
        out[key] = value
    return out


def logfmt_events(text: str, event: str | None = None) -> list[dict[str, str]]:
    """Parsed lines of `text` (only those with event=`event` when given)."""
    events = []
    for line in text.splitlines():
        if "=" not in line:
            continue
        kv = parse_logfmt(line)
        if event is None or kv.get("event") == event:
            kv["_line"] = line
            events.append(kv)
    return events


# --------------------------------------------------------------------------------------------------
# tmpfs


def mounts_under(path: str) -> list[str]:
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                mnt = line.split()[1].replace("\\040", " ")
                if mnt == path or mnt.startswith(path.rstrip("/") + "/"):
                    found.append(mnt)
    except OSError:
        pass
    return found


def umount(path: str) -> None:
    for _ in range(20):
        if os.path.realpath(path) not in mounts_under(path):
            return
        cp = subprocess.run(["umount", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode == 0:
            return
        time.sleep(0.2)
    subprocess.run(["umount", "-l", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Tmpfs:
    """A size-limited tmpfs mounted at `path` (created if missing); unmount() or context manager.
    Registered for cleanup at exit while mounted."""

    def __init__(self, path: str, size: str | int, mode: int = 0o755):
        self.path = os.path.realpath(path)
        self.size = size
        self.mode = mode
        self._token: int | None = None

    def mount(self) -> "Tmpfs":
        os.makedirs(self.path, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode={self.mode:o}", "tmpfs", self.path])
        self._token = register_cleanup(self.unmount)
        return self

    def unmount(self) -> None:
        umount(self.path)
        unregister_cleanup(self._token)
        self._token = None

    def usage(self) -> tuple[int, int]:
        """(used bytes, total bytes)."""
        st = os.statvfs(self.path)
        total = st.f_blocks * st.f_frsize
        return total - st.f_bfree * st.f_frsize, total

    def __enter__(self) -> "Tmpfs":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.unmount()


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def first(items: Iterable, default=None):
    for item in items:
        return item
    return default
