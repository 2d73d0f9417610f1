#!/usr/bin/env python3
"""The appliance's boot test: boots an image built by build.sh under qemu (KVM when it works,
software emulation otherwise) with OVMF, and checks what an operator would.

  boot_test.py --image out/mxedge-V.raw [--update out/mxedge-update-V2.tar] [--signing-key KEY]

1. A config drive (FAT, label MXCONFIG, written with mtools) gives the hostname, the accepted
   domain, the next hop (smtp-sink on the host's loopback, reached through a qemu guestfwd) and an
   SSH key made for this run.
2. The serial console must show mxedge-firstboot's configuration and mxedge-health's "healthy".
3. The SMTP banner answers through a forwarded port; `mxedgectl status` over SSH reports healthy;
   a message sent with swaks over STARTTLS arrives at the host's smtp-sink.
4. With --update: the bundle is served over HTTP on the host's loopback, `mxedge-update apply`
   installs it in slot B, the machine reboots into it (mxedge-health blesses it), a message is
   relayed again; `mxedge-update rollback` and a reboot bring the first version back; then a bundle
   whose root image is corrupt (signed with --signing-key, as a bad build would be) is applied
   with --tries 1: its boot fails, systemd-boot marks it bad, and the first version boots again.

The guest's network is qemu's user mode with restrict=on: it reaches nothing but the forwarded
host ports on 127.0.0.1. The image file is never written (a qcow2 overlay takes the writes).
Exit 0 when every check passed; each step prints what it saw.
"""
from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests"))
from lab import ports, swaks  # noqa: E402
from lab.smtp_sink import SmtpSink  # noqa: E402

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
GUEST_NEXT_HOP = "10.0.2.100"   # guestfwd: port 25 -> host smtp-sink, port 8080 -> host HTTP
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)
    say(f"ok: {what}")


def kvm_usable() -> bool:
    """/dev/kvm can exist while guests die with "KVM internal error ... emulation failure" (and qemu
    then pauses rather than exits): only running the firmware for a few seconds tells."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        r = subprocess.run(["timeout", "8", "qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "256",
                            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}", "-display", "none",
                            "-serial", "null", "-monitor", "none", "-net", "none"],
                           capture_output=True, timeout=30)
        return b"KVM internal error" not in r.stderr and b"emulation failure" not in r.stderr and r.returncode in (0, 124)
    except (subprocess.TimeoutExpired, OSError):
        return False


class Guest:
    def __init__(self, work: str, image: str, config_drive: str, sink_port: int, http_port: int, accel: str):
        self.work = work
        self.serial = os.path.join(work, "serial.log")
        self.overlay = os.path.join(work, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.abspath(image), "-F", "raw", self.overlay],
                       check=True)
        self.vars = os.path.join(work, "OVMF_VARS.fd")
        shutil.copy(OVMF_VARS, self.vars)
        self.config_drive = config_drive
        self.ssh_port = ports.free_port()
        self.smtp_port = ports.free_port()
        self.sink_port = sink_port
        self.http_port = http_port
        self.accel = accel
        self.proc: subprocess.Popen | None = None
        self.key = os.path.join(work, "id_ed25519")

    def start(self) -> None:
        net = (f"user,id=n0,restrict=on,hostname=mxedge,"
               f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{self.smtp_port}-:25,"
               # cmd: one socat per guest connection (a tcp: chardev would be one connection, made at start)
               f"guestfwd=tcp:{GUEST_NEXT_HOP}:25-cmd:socat STDIO TCP:127.0.0.1:{self.sink_port},"
               f"guestfwd=tcp:{GUEST_NEXT_HOP}:8080-cmd:socat STDIO TCP:127.0.0.1:{self.http_port}")
        cpu = ["-cpu", "host"] if self.accel == "kvm" else ["-cpu", "max"]
        argv = ["qemu-system-x86_64", "-machine", f"q35,accel={self.accel}", *cpu, "-smp", "2", "-m", "2048",
                "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,file={self.vars}",
                "-drive", f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe",
                "-drive", f"file={self.config_drive},if=virtio,format=raw,readonly=on",
                "-netdev", net, "-device", "virtio-net-pci,netdev=n0",
                "-serial", f"file:{self.serial}", "-display", "none", "-monitor", "none"]
        say(f"qemu ({self.accel}): {' '.join(argv)}")
        self.proc = subprocess.Popen(argv, stdout=open(os.path.join(self.work, "qemu.log"), "ab"), stderr=subprocess.STDOUT)

    def console(self) -> str:
        try:
            with open(self.serial, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, pattern: str, timeout: float, since: int = 0, fail: str | None = None) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.console()[since:]
            m = re.search(pattern, text)
            if m:
                return m
            if fail and re.search(fail, text):
                raise Failure(f"the console shows /{fail}/ before /{pattern}/:\n" + tail(text))
            if self.proc and self.proc.poll() is not None:
                raise Failure(f"qemu exited ({self.proc.returncode}) before /{pattern}/:\n" + tail(text))
            time.sleep(1)
        raise Failure(f"no /{pattern}/ on the console within {timeout:.0f}s:\n" + tail(self.console()[since:]))

    def ssh(self, command: str, timeout: float = 120, check_rc: bool = True) -> subprocess.CompletedProcess:
        argv = ["ssh", "-i", self.key, "-p", str(self.ssh_port), "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={self.work}/known_hosts", "-o", "ConnectTimeout=20",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1", command]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check_rc and r.returncode != 0:
            raise Failure(f"ssh {command!r} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def wait_ssh(self, timeout: float = 300) -> None:
        """sshd starts after the first-boot configuration and makes its host keys on first start."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.ssh("true", timeout=60, check_rc=False)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise Failure(f"SSH did not answer within {timeout:.0f}s: {r.stderr.strip()}")
            time.sleep(3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tail(text: str, n: int = 40) -> str:
    return "\n".join("    " + l for l in text.splitlines()[-n:])


def make_config_drive(work: str, key_pub: str) -> str:
    d = os.path.join(work, "config")
    os.makedirs(d)
    with open(os.path.join(d, "mxedge.conf"), "w") as f:
        f.write("# boot test\nhostname=mx-boot.example.test\ndomains=example.test\n"
                f"next_hop={GUEST_NEXT_HOP}:25\nnext_hop_tls=none\nxdp_interfaces=auto\n")
    shutil.copy(key_pub, os.path.join(d, "authorized_keys"))
    img = os.path.join(work, "config.img")
    subprocess.run(["mkfs.vfat", "-C", "-n", "MXCONFIG", img, "4096"], check=True, capture_output=True)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    for name in sorted(os.listdir(d)):
        subprocess.run(["mcopy", "-i", img, os.path.join(d, name), "::/" + name], check=True, env=env)
    return img


def banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.settimeout(30)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        s.sendall(b"QUIT\r\n")
        return data.decode("ascii", "replace").strip()


def relay_one(guest: Guest, sink: SmtpSink, tag: str) -> None:
    mid = f"boot-test-{tag}-{os.getpid()}@example.test"
    r = swaks.send("127.0.0.1", guest.smtp_port, to="postmaster@example.test", message_id=mid, tls="starttls",
                   body=f"relayed through the appliance ({tag})")
    check(r.ok, f"swaks over STARTTLS accepted ({tag}): {r.last_reply()} [{' '.join(r.tls_cipher() or ())}]")
    m = sink.wait_for_message_id(mid, timeout=120)
    check(m.rcpt_to == ["postmaster@example.test"], f"the message {mid} arrived at the host's smtp-sink")


def serve(directory: str, port: int) -> http.server.ThreadingHTTPServer:
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=directory, **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def corrupt_bundle(good: str, key: str, out_dir: str) -> str:
    """A bundle as a broken build would make it: signed and consistent, but its root image is garbage."""
    d = tempfile.mkdtemp(dir=out_dir)
    with tarfile.open(good) as t:
        t.extractall(d)
    root = next(n for n in os.listdir(d) if n.endswith(".root.squashfs"))
    size = os.path.getsize(os.path.join(d, root))
    with open(os.path.join(d, root), "wb") as f:
        f.write(os.urandom(min(size, 8 << 20)))
    sums = ""
    for n in sorted(os.listdir(d)):
        if n.startswith("mxedge_"):
            sums += f"{hashlib.sha256(open(os.path.join(d, n), 'rb').read()).hexdigest()}  {n}\n"
    open(os.path.join(d, "SHA256SUMS"), "w").write(sums)
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, "-out", os.path.join(d, "SHA256SUMS.sig"),
                    os.path.join(d, "SHA256SUMS")], check=True)
    bad = os.path.join(out_dir, "bad-update.tar")
    with tarfile.open(bad, "w") as t:
        for n in sorted(os.listdir(d)):
            t.add(os.path.join(d, n), arcname=n)
    return bad


def version_of(path: str) -> str:
    m = re.search(r"mxedge(?:-update)?-([0-9A-Za-z.~-]+?)\.(raw|qcow2|tar)$", os.path.basename(path))
    if not m:
        raise SystemExit(f"cannot tell the version from {path}")
    return m.group(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", required=True, help="mxedge-V.raw from build.sh")
    ap.add_argument("--update", help="mxedge-update-V2.tar: also test the A/B update, rollback and a failed update")
    ap.add_argument("--signing-key", help="the key the images were built with (for the corrupt bundle); default out/keys/update-signing.key")
    ap.add_argument("--boot-timeout", type=float, default=900, help="seconds for one boot to reach 'healthy'")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="auto: KVM when a probe shows it works, software emulation (tcg) otherwise")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (serial log, overlay)")
    ap.add_argument("--hold", action="store_true", help="on failure, leave the guest running for a look over SSH (prints how)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("boot_test.py: run as root (smtp-sink drops privileges after binding)")
    v1 = version_of(args.image)
    work = tempfile.mkdtemp(prefix="mxedge-boot-")
    os.chmod(work, 0o755)  # smtp-sink writes its dump files as nobody below it
    # SIGTERM/SIGHUP (a CI timeout, a killed run) still clean up: the guest, smtp-sink, the HTTP server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    say(f"work directory {work}")
    accel = args.accel if args.accel != "auto" else ("kvm" if kvm_usable() else "tcg")
    say(f"acceleration: {accel}" + ("" if accel == "kvm" else " (KVM absent or unusable here: software emulation)"))
    sink = SmtpSink(os.path.join(work, "sink"), hostname="mailstore.example.test")
    os.makedirs(sink.workdir, exist_ok=True)
    sink.start()
    http_port = ports.free_port()
    guest = None
    srv = None
    try:
        key = os.path.join(work, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        drive = make_config_drive(work, key + ".pub")
        guest = Guest(work, args.image, drive, sink.port, http_port, accel)
        guest.start()

        m = guest.wait_console(r"mxedge-firstboot: configuration written to /etc/mxedge/mxedge.yaml", args.boot_timeout,
                               fail=r"mxedge-firstboot: ERROR")
        check(bool(m), "first boot: the config drive's settings became /etc/mxedge/mxedge.yaml")
        guest.wait_console(rf"mxedge {re.escape(v1)}: healthy", args.boot_timeout, fail=r"NOT HEALTHY|NOT CONFIGURED|Kernel panic")
        say(f"ok: mxedge {v1} reports healthy on the serial console")
        b = banner(guest.smtp_port)
        check(b.startswith("220 mx-boot.example.test"), f"SMTP banner through the forwarded port: {b!r}")
        guest.wait_ssh()
        st = guest.ssh("mxedgectl status")
        check("healthy" in st.stdout, "mxedgectl status over SSH: healthy")
        print(tail(st.stdout, 30))
        units = guest.ssh("systemctl is-active mxedge-dataplane mxedge-controlplane mxedge-tune mxedge-health; "
                          "ps -o user:20=,comm= -C mxedge-dataplane,mxedge-controlplane", check_rc=False).stdout
        print(tail(units))
        check(re.search(r"mxedge-dp\s+mxedge-datapl", units) is not None and re.search(r"mxedge-cp\s+mxedge-contro", units) is not None,
              "the daemons run as their service users mxedge-dp and mxedge-cp")
        caps = guest.ssh("grep -E '^Cap(Eff|Amb)' /proc/$(pidof mxedge-dataplane)/status; "
                         "grep -E '^CapEff' /proc/$(pidof mxedge-controlplane)/status", check_rc=False).stdout.split()
        # After start-up the data plane keeps CAP_BPF (39) only (XDP hangs on a BPF link, which it
        # detaches without CAP_NET_ADMIN); the control plane keeps nothing once port 443 would be bound.
        check(caps[1:2] == [f"{1 << 39:016x}"] and caps[3:4] == ["0000000000000000"]
              and caps[5:6] == ["0000000000000000"], f"capabilities after start-up: {' '.join(caps)}")
        sec = guest.ssh("for d in mxedge-dataplane mxedge-controlplane; do grep -E '^(Seccomp|NoNewPrivs):' /proc/$(pidof $d)/status; done",
                        check_rc=False).stdout.split()
        check(sec == ["NoNewPrivs:", "1", "Seccomp:", "2"] * 2, f"both daemons under a seccomp filter, no new privileges: {' '.join(sec)}")
        # The worker sandbox: each worker thread has one filter more than the data plane's main thread.
        filters = guest.ssh("p=$(pidof mxedge-dataplane); grep -h Seccomp_filters /proc/$p/status; "
                            "for t in /proc/$p/task/*; do case $(cat $t/comm) in mxedge-w*) grep -h Seccomp_filters $t/status;; esac; done",
                            check_rc=False).stdout.split()
        counts = [int(v) for v in filters[1::2]]
        check(len(counts) >= 2 and all(c == counts[0] + 1 for c in counts[1:]),
              f"the workers run under their own seccomp filter too (main thread, then workers): {counts}")
        ro = guest.ssh("touch /usr/mxedge-ro-test 2>&1; findmnt -no FSTYPE,OPTIONS /; findmnt -no SOURCE,FSTYPE /var", check_rc=False).stdout
        check("Read-only file system" in ro and "squashfs" in ro and "ext4" in ro,
              "the root is a read-only squashfs, /var is ext4: " + " | ".join(ro.split("\n")[1:3]))
        relay_one(guest, sink, v1)

        if args.update:
            v2 = version_of(args.update)
            keyfile = args.signing_key or os.path.join(os.path.dirname(os.path.abspath(args.image)), "keys", "update-signing.key")
            served = os.path.join(work, "served")
            os.makedirs(served)
            shutil.copy(args.update, served)
            shutil.copy(corrupt_bundle(args.update, keyfile, work), os.path.join(served, "bad-update.tar"))
            srv = serve(served, http_port)
            url = f"http://{GUEST_NEXT_HOP}:8080/{os.path.basename(args.update)}"
            r = guest.ssh(f"mxedge-update apply {url}", timeout=600)
            print(tail(r.stdout + r.stderr))
            check(f"mxedge {v2} is installed" in r.stdout, f"mxedge-update apply installed {v2} into the other slot")
            print(tail(guest.ssh("mxedge-update status").stdout))

            mark = len(guest.console())
            guest.ssh("systemctl reboot", check_rc=False)
            guest.wait_console(rf"mxedge {re.escape(v2)}: healthy", args.boot_timeout, since=mark, fail=r"NOT HEALTHY|Kernel panic")
            say(f"ok: after the reboot mxedge {v2} is healthy")
            guest.wait_ssh()
            time.sleep(5)  # systemd-bless-boot runs after boot-complete.target
            st = guest.ssh("mxedge-update status").stdout
            print(tail(st))
            check(f"running: mxedge {v2}" in st and f"mxedge_{v2}.efi" in st, f"{v2} runs and its boot entry is blessed (no tries counter)")
            relay_one(guest, sink, v2)

            r = guest.ssh("mxedge-update rollback")
            check(f"next boot runs {v1}" in r.stdout, f"mxedge-update rollback: {r.stdout.strip()}")
            mark = len(guest.console())
            guest.ssh("systemctl reboot", check_rc=False)
            guest.wait_console(rf"mxedge {re.escape(v1)}: healthy", args.boot_timeout, since=mark, fail=r"NOT HEALTHY|Kernel panic")
            guest.wait_ssh()
            check(f"running: mxedge {v1}" in guest.ssh("mxedge-update status").stdout, f"after rollback mxedge {v1} runs again")

            r = guest.ssh(f"mxedge-update apply --tries 1 http://{GUEST_NEXT_HOP}:8080/bad-update.tar", timeout=600)
            check(f"mxedge {v2} is installed" in r.stdout, "a bundle with a corrupt root image (consistently signed) was installed with 1 try")
            mark = len(guest.console())
            guest.ssh("systemctl reboot", check_rc=False)
            guest.wait_console(r"Kernel panic|ALERT!|Gave up waiting|[Ff]ailed to mount|unable to mount|can't find", args.boot_timeout, since=mark)
            say("ok: the corrupt update's boot failed (its root does not mount)")
            guest.wait_console(rf"mxedge {re.escape(v1)}: healthy", args.boot_timeout, since=mark)
            guest.wait_ssh()
            st = guest.ssh("mxedge-update status").stdout
            print(tail(st))
            check(f"running: mxedge {v1}" in st and re.search(rf"mxedge_{re.escape(v2)}\+0-1\.efi", st) is not None,
                  f"systemd-boot marked the failed {v2} entry bad (+0-1) and booted {v1} again by itself")
            relay_one(guest, sink, f"{v1}-after-failed-update")
        say("PASS")
        return 0
    except (Failure, subprocess.TimeoutExpired, AssertionError) as e:
        say(f"FAIL: {e}")
        if guest:
            say(f"serial console: {guest.serial}")
            if args.hold:
                say(f"guest left running (pid {guest.proc.pid}): ssh -i {guest.key} -p {guest.ssh_port} "
                    f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1")
                guest.proc = None
        args.keep = True
        return 1
    finally:
        if guest:
            guest.stop()
        if srv:
            srv.shutdown()
        sink.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
