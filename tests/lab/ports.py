"""Free-port discovery on loopback and listening-port discovery for processes bound to port 0."""

from __future__ import annotations

import os
import socket
import threading

_handed_out: set[tuple[str, int]] = set()
_lock = threading.Lock()


def _check_loopback(host: str) -> None:
    if host == "::1" or host.startswith("127."):
        return
    raise ValueError(f"the lab only binds loopback addresses (127.0.0.0/8, ::1), not {host!r}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now and was not handed out before in this process.

    The kernel picks it (bind to port 0); the socket is closed before returning, so a small race
    remains for programs that cannot bind port 0 themselves (Postfix, the gateway's config file).
    Ports already handed out by this process are never returned twice.
    """
    _check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(64):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        with _lock:
            if (host, port) in _handed_out:
                continue
            _handed_out.add((host, port))
        return port
    raise RuntimeError("no free port found")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _decode_addr(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 prints four host-order 32-bit words
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    return socket.inet_ntop(socket.AF_INET6, b"".join(words))


def tcp_sockets():
    """(local "ADDR:PORT" in /proc hex, state hex, inode) of every IPv4 and IPv6 TCP socket."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                rows = [line.split() for line in f]
        except OSError:
            continue
        for fields in rows:
            yield fields[1], fields[3], fields[9]


def listening_ports(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by process `pid`."""
    inodes = _socket_inodes(pid)
    found = []
    for local, state, inode in tcp_sockets():
        if state == "0A" and inode in inodes:
            addr, port = local.split(":")
            found.append((_decode_addr(addr), int(port, 16)))
    return found


def established_to(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server side of sessions)."""
    want = f":{port:04X}"
    return sum(1 for local, state, _ in tcp_sockets() if state == "01" and local.endswith(want))


def port_is_listening(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False
