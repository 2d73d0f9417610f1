"""Throwaway Postfix 3.7 instances under a temporary directory.

Each instance is self-contained: DIR/etc (main.cf, master.cf), DIR/queue (queue_directory),
DIR/data (data_directory), DIR/mail (virtual Maildir base), DIR/maillog (maillog_file, written by
the instance's own postlogd). It is driven with ``postfix -c DIR/etc start|stop``,
``sendmail -C DIR/etc``, ``postqueue -c DIR/etc``, ``postcat -c DIR/etc`` and ``postsuper -c DIR/etc``.

What running several instances side by side as root needs (and what it does not):
  * Nothing in /etc/postfix. As root, `postfix -c`, `sendmail -C`, `postqueue -c` and `postsuper -c`
    accept any configuration directory; `alternate_config_directories` (in the default main.cf) is
    only consulted for unprivileged users of the set-gid commands, and postmulti is not needed.
    /etc/postfix/main.cf does not even exist on these machines.
  * Each instance has its own queue_directory, data_directory (holds master.lock), maillog_file and
    syslog_name; master.cf binds only HOST:PORT (default 127.0.0.1 and a free port; the delivery
    lab, lab/delivery.py, runs receivers on 127.53.X.N:25: master binds port 25 as root;
    inet_interfaces stays 127.0.0.1, since Postfix refuses an address that no interface has, and
    127.53.X.N is only routed to lo, not assigned).
  * maillog_file must match maillog_file_prefixes (default "/var, /dev/stdout"), otherwise the
    `postfix` command dies with a fatal error that goes nowhere visible: set it to the instance dir.
  * data_directory must be owned by mail_owner (postfix) before `postfix start` (master.lock).
  * No chroot (master.cf column 5 = n): a chroot would need copies of /etc files in the queue dir.
  * The instance dir and its parents must be traversable by the postfix user (mode 0755).
  * smtpd opens its TLS keys before dropping privileges; the lab's leaf keys are 0644 anyway.

Roles (factory functions below):
  receiver(...)        final destination for `domains`, STARTTLS with lab certs, virtual(8) Maildir
                       delivery into DIR/mail/mailbox/ (read with .maildir_messages()); hold=True keeps
                       accepted messages in the hold queue so a test can read their envelope
                       (.envelope(queue_id), e.g. DSN NOTIFY/ORCPT/RET/ENVID records); discard="smtpd"
                       or "transport" sinks them instead (benchmarks; DISCARDED_RE counts them).
  sender(...)          relays everything to relayhost [127.0.0.1]:PORT with smtp_tls_security_level
                       verify (lab CA, name mx.lab.test) or encrypt/may/none; inject with .sendmail()
                       or SMTP into its own smtpd; .wait_queue_empty().
  benchmark_relay(...) a Postfix doing the gateway's job for comparison: STARTTLS with the gateway's
                       certificates, relays `domains` to an smtp-sink next hop; tuned as documented
                       there; fsync is on (Postfix always fsyncs queue files before replying 250).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass

from . import ports, util

POSTFIX = "/usr/sbin/postfix"
SENDMAIL = "/usr/sbin/sendmail"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCAT = "/usr/sbin/postcat"
POSTSUPER = "/usr/sbin/postsuper"

# master.cf services (all unchrooted); the smtpd inet service is added per instance
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class MaildirMessage:
    path: str
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def message_id(self) -> str | None:
        v = self.message.get("Message-ID")
        return str(v).strip() if v is not None else None

    def headers(self, name: str) -> list[str]:
        return [str(v) for v in (self.message.get_all(name) or [])]


def _conf_value(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


class PostfixInstance:
    def __init__(self, workdir: str, name: str = "postfix", smtpd_port: int | None = None,
                 hostname: str | None = None, main_cf: dict | None = None, smtpd_options: dict | None = None,
                 extra_master_cf: str = "", host: str = "127.0.0.1", resolv_conf: str | None = None):
        """host: the IPv4 loopback address smtpd listens on (master.cf); smtpd_port: a
        fixed port (kept on "Address already in use", which is then an error), else a free one.
        resolv_conf: a file to bind-mount on /etc/resolv.conf in a private mount namespace that
        `postfix start` (and so the master and every daemon it spawns) runs in; nothing is
        mounted in the caller's namespace (see master_resolv_conf())."""
        self.dir = workdir
        self.name = name
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.etc = os.path.join(workdir, "etc")
        self.queue_dir = os.path.join(workdir, "queue")
        self.data_dir = os.path.join(workdir, "data")
        self.mail_dir = os.path.join(workdir, "mail")
        self.maillog = os.path.join(workdir, "maillog")
        if not host.startswith("127."):
            raise ValueError(f"the lab only listens on loopback, not {host!r}")
        self.host = host
        self._port_fixed = smtpd_port is not None
        self.smtpd_port = smtpd_port or ports.free_port(self.host)
        self.hostname = hostname or f"{name}.lab.test"
        self.smtpd_options = dict(smtpd_options or {})
        self.extra_master_cf = extra_master_cf
        self.resolv_conf = resolv_conf
        self.main_cf: dict[str, object] = self._base_main_cf()
        self.main_cf.update(main_cf or {})
        self._token: int | None = None
        self.started = False

    # ---------------------------------------------------------------------------------------------
    def _base_main_cf(self) -> dict:
        return {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            # must name an address of an interface: 127.53.X.N is routed to lo but not assigned
            # to it ("fatal: ... no local interface found"); master.cf binds HOST itself anyway
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": self.hostname,
            "mydomain": "lab.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "syslog_name": f"postfix-{self.name}",
            "alias_maps": "",
            "alias_database": "",
            "local_transport": "error:5.1.1 local delivery is disabled in the lab",
            "smtpd_banner": "$myhostname ESMTP Postfix (lab)",
            "biff": False,
            "append_dot_mydomain": False,
            "readme_directory": False,
            "smtp_dns_support_level": "disabled",    # never ask DNS; [IP] next hops only
            "smtpd_peername_lookup": False,
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "smtp_connect_timeout": "5s",
            "smtpd_tls_loglevel": 1,
            "smtp_tls_loglevel": 1,
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "virtual_mailbox_domains": "",
            "relay_domains": "",
        }

    def _write_config(self) -> None:
        os.makedirs(self.etc, exist_ok=True)
        os.chmod(self.etc, 0o755)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"# lab instance {self.name} (written by tests/lab/postfix.py)\n")
            for key, value in self.main_cf.items():
                f.write(f"{key} = {_conf_value(value)}\n")
        opts = "".join(f"\n  -o {k}={_conf_value(v)}" for k, v in self.smtpd_options.items())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(f"{self.host}:{self.smtpd_port} inet  n       -       n       -       -       smtpd{opts}\n")
            f.write(_MASTER_SERVICES)
            f.write(self.extra_master_cf)

    def _prepare_dirs(self) -> None:
        pw = pwd.getpwnam("postfix")
        for d in (self.queue_dir,):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.data_dir, exist_ok=True)
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data_dir, 0o700)
        os.makedirs(self.mail_dir, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail_dir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(self.mail_dir, 0o755)

    # ---------------------------------------------------------------------------------------------
    def _cmd(self, *argv: str, check: bool = True, timeout: float = 60,
             input: bytes | None = None) -> subprocess.CompletedProcess:
        return util.run(list(argv), timeout=timeout, check=check, input=input)

    def master_pid(self) -> int | None:
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if util.pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.master_pid() is not None

    def master_resolv_conf(self) -> dict:
        """What the running master sees: {"pid", "mnt_ns", "resolv_conf"} (its mount namespace
        and /etc/resolv.conf, read through /proc/PID/root), for checking resolv_conf took effect."""
        pid = self.master_pid()
        if pid is None:
            raise RuntimeError(f"postfix {self.name} is not running")
        return {"pid": pid, "mnt_ns": os.readlink(f"/proc/{pid}/ns/mnt"),
                "resolv_conf": util.read_text(f"/proc/{pid}/root/etc/resolv.conf")}

    def _smtpd_listening(self) -> bool:
        """A listening socket on host:smtpd_port (the address matters: several instances may use
        port 25 on different 127.x addresses)."""
        addr = "".join(f"{int(x):02X}" for x in reversed(self.host.split(".")))
        want = {f"{addr}:{self.smtpd_port:04X}", f"00000000:{self.smtpd_port:04X}"}
        try:
            with open("/proc/net/tcp") as f:
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A" and fields[1] in want:
                        return True
        except OSError:
            pass
        return False

    def start(self, timeout: float = 20.0) -> "PostfixInstance":
        util.enable_subreaper()
        longest = os.path.join(self.queue_dir, "private", "proxywrite")
        if len(longest) >= 100:
            raise ValueError(f"instance directory too deep for UNIX socket paths (sun_path is 108 bytes): {longest}")
        self._prepare_dirs()
        for attempt in range(5):
            self._write_config()
            log_offset = len(util.read_text(self.maillog))
            argv = [POSTFIX, "-c", self.etc, "start"]
            if self.resolv_conf:
                # the master daemonizes inside the namespace; it lives as long as the master does
                argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec "$@"', self.resolv_conf, *argv]
            cp = self._cmd(*argv, check=False)
            self._token = self._token or util.register_cleanup(self.stop)
            ok = cp.returncode == 0
            if ok:
                try:
                    util.wait_until(lambda: self._smtpd_listening() or not self.running, timeout,
                                    message=f"postfix {self.name} smtpd on port {self.smtpd_port}")
                    ok = self._smtpd_listening()
                except util.LabTimeout:
                    ok = False
            if ok:
                self.started = True
                return self
            log = util.read_text(self.maillog)[log_offset:]
            self._force_stop()
            if "Address already in use" in log and attempt < 4 and not self._port_fixed:
                self.smtpd_port = ports.free_port(self.host)
                continue
            raise RuntimeError(f"postfix {self.name} failed to start (rc={cp.returncode}):\n"
                               f"{cp.stdout.decode(errors='replace')}{cp.stderr.decode(errors='replace')}\n"
                               f"maillog:\n{util.tail(log)}")
        raise RuntimeError("unreachable")

    def _force_stop(self, members: dict[int, str] | None = None) -> None:
        """SIGKILL the master's process group while the master is alive, and any process that was
        in that group (identified by PID and start time, so a reused PID is never hit)."""
        pid = self.master_pid()
        if pid is not None:
            members = {**(members or {}), **_group_members(pid)}
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            util.wait_until(lambda: not util.pid_alive(pid), 10, message="postfix master to die")
        for member, start in (members or {}).items():
            if _start_time(member) == start:
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        util.reap_zombies()

    def stop(self, timeout: float = 15.0) -> None:
        """`postfix stop`, wait for the master and its children to exit, SIGKILL what lingers."""
        util.unregister_cleanup(self._token)
        self._token = None
        pid = self.master_pid()
        members = _group_members(pid) if pid is not None else {}
        if pid is not None:
            self._cmd(POSTFIX, "-c", self.etc, "stop", check=False, timeout=timeout + 5)
            try:
                util.wait_until(lambda: not util.pid_alive(pid), timeout, message="postfix master exit")
            except util.LabTimeout:
                pass
            # the master's children notice its exit within a moment; reap them as they go
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_start_time(m) == st and util.pid_alive(m)
                                                      for m, st in members.items()):
                util.reap_zombies()
                time.sleep(0.05)
        self._force_stop(members)
        self.started = False

    def cleanup(self) -> None:
        self.stop()

    def reload(self) -> None:
        self._write_config()
        self._cmd(POSTFIX, "-c", self.etc, "reload")

    def set(self, **params) -> None:
        """Change main.cf parameters (written immediately; `postfix reload` when running)."""
        self.main_cf.update(params)
        if self.running:
            self.reload()
        else:
            self._write_config()

    def __enter__(self) -> "PostfixInstance":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------
    def log_text(self) -> str:
        return util.read_text(self.maillog)

    def wait_log(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match:
        rx = re.compile(pattern)
        return util.wait_until(lambda: rx.search(self.log_text(), start), timeout, interval=0.1,
                               message=lambda: f"/{pattern}/ in {self.name} maillog; tail:\n"
                                               f"{util.tail(self.log_text()[start:], 30)}")

    def sendmail(self, message: bytes, sender: str, recipients: list[str], extra_args: list[str] | None = None
                 ) -> None:
        """Inject a message with `sendmail -C DIR/etc` (postdrop → pickup → cleanup → queue)."""
        self._cmd(SENDMAIL, "-C", self.etc, "-i", "-f", sender, *(extra_args or []), "--", *recipients,
                  input=message)

    def queue(self) -> list[dict]:
        """postqueue -j: one dict per queued message (all queues, including hold)."""
        cp = self._cmd(POSTQUEUE, "-c", self.etc, "-j", check=False)
        out = []
        for line in cp.stdout.decode(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def flush(self) -> None:
        self._cmd(POSTQUEUE, "-c", self.etc, "-f", check=False)

    def wait_queue_empty(self, timeout: float = 30.0, flush_every: float = 2.0) -> None:
        """Wait until nothing is queued (flushing deferred mail now and then)."""
        last_flush = [time.monotonic()]

        def empty() -> bool:
            q = self.queue()
            if q and time.monotonic() - last_flush[0] > flush_every:
                self.flush()
                last_flush[0] = time.monotonic()
            return not q

        util.wait_until(empty, timeout, interval=0.2,
                        message=lambda: f"empty queue at postfix {self.name}: {self.queue()}\n"
                                        f"maillog tail:\n{util.tail(self.log_text(), 30)}")

    def held_queue_ids(self) -> list[str]:
        return [m["queue_id"] for m in self.queue() if m.get("queue_name") == "hold"]

    def wait_held(self, n: int = 1, timeout: float = 20.0) -> list[str]:
        util.wait_until(lambda: len(self.held_queue_ids()) >= n, timeout, interval=0.2,
                        message=lambda: f"{n} held messages at postfix {self.name}")
        return self.held_queue_ids()

    def envelope(self, queue_id: str) -> str:
        """postcat -e -q: the envelope records of a queued message (DSN records included)."""
        return self._cmd(POSTCAT, "-c", self.etc, "-e", "-q", queue_id).stdout.decode(errors="replace")

    def dsn_envelope(self, queue_id: str) -> dict:
        """The DSN view of a queued message's envelope: {"envid": str|None, "ret": "FULL"|"HDRS"|None,
        "sender": str, "recipients": [{"address", "orcpt", "notify": set of SUCCESS/FAILURE/DELAY/NEVER}]}."""
        return parse_dsn_envelope(self.envelope(queue_id))

    def postcat(self, queue_id: str) -> str:
        return self._cmd(POSTCAT, "-c", self.etc, "-q", queue_id).stdout.decode(errors="replace")

    def release_held(self) -> None:
        self._cmd(POSTSUPER, "-c", self.etc, "-H", "ALL")

    def maildir_messages(self, mailbox: str = "mailbox") -> list[MaildirMessage]:
        """Messages delivered into DIR/mail/<mailbox>/new (and cur), oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mail_dir, mailbox, sub)
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                p = os.path.join(d, name)
                try:
                    with open(p, "rb") as f:
                        out.append((os.stat(p).st_mtime, MaildirMessage(p, f.read())))
                except OSError:
                    continue
        out.sort(key=lambda t: (t[0], t[1].path))
        return [m for _, m in out]

    def wait_maildir(self, n: int = 1, timeout: float = 30.0, mailbox: str = "mailbox") -> list[MaildirMessage]:
        util.wait_until(lambda: len(self.maildir_messages(mailbox)) >= n, timeout, interval=0.2,
                        message=lambda: f"{n} messages in {self.name}'s Maildir; maillog tail:\n"
                                        f"{util.tail(self.log_text(), 30)}")
        return self.maildir_messages(mailbox)

    def find_maildir(self, message_id: str, mailbox: str = "mailbox") -> list[MaildirMessage]:
        want = message_id.strip("<>")
        return [m for m in self.maildir_messages(mailbox) if (m.message_id or "").strip("<>") == want]


# one line per message a receiver(discard=...) sank: "smtpd" mode / "transport" mode
DISCARDED_RE = {"smtpd": re.compile(r"/smtpd\[\d+\]: \w+: discard: END-OF-MESSAGE "),
                "transport": re.compile(r"/discard\[\d+\]: \w+: to=.* status=sent ")}

_NOTIFY_BITS = {1: "NEVER", 2: "SUCCESS", 4: "FAILURE", 8: "DELAY"}   # Postfix dsn_mask.h


def parse_dsn_envelope(text: str) -> dict:
    """Parse `postcat -e` output (see PostfixInstance.dsn_envelope)."""
    out: dict = {"envid": None, "ret": None, "sender": None, "recipients": []}
    pending: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "named_attribute":
            name, _, val = value.partition("=")
            if name == "envelope_id":
                out["envid"] = val
            elif name == "ret_flags":
                out["ret"] = {1: "FULL", 2: "HDRS"}.get(int(val), val)
            elif name == "notify_flags":
                pending["notify"] = {n for bit, n in _NOTIFY_BITS.items() if int(val) & bit}
            elif name == "dsn_orig_rcpt":
                pending["orcpt"] = val
        elif key == "sender":
            out["sender"] = value
        elif key == "recipient":
            out["recipients"].append({"address": value, "orcpt": pending.get("orcpt"),
                                      "notify": pending.get("notify", set())})
            pending = {}
    return out


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def _group_members(pgid: int) -> dict[int, str]:
    """{pid: start time} of the processes in process group `pgid`."""
    return {pid: fields[19] for pid, _, fields in util.proc_stats() if int(fields[2]) == pgid}


# --------------------------------------------------------------------------------------------------
# roles


def _chain_files(certs: list) -> str:
    """smtpd_tls_chain_files: each key immediately followed by its chain (leaf first)."""
    files = []
    for c in certs:
        files += [c.key, c.chain]
    return ", ".join(files)


def receiver(workdir: str, pki, domains: list[str] | None = None, name: str = "receiver",
             tls: str = "may", certs: list | None = None, hold: bool = False,
             main_cf: dict | None = None, smtpd_port: int | None = None, host: str = "127.0.0.1",
             hostname: str | None = None, discard: str | None = None) -> PostfixInstance:
    """A final-destination Postfix for `domains` (default lab.test) with STARTTLS ("may", or
    "encrypt" to require it) using the lab ECDSA and RSA certificates (or `certs`: ServerCerts,
    each served with its chain file). Every recipient of those domains is delivered by virtual(8)
    into the Maildir DIR/mail/mailbox/ (Delivered-To: shows the envelope recipient). hold=True:
    accepted messages go to the hold queue instead (see envelope()). host/smtpd_port: where smtpd
    listens (default 127.0.0.1, a free port; lab/delivery.py uses 127.53.X.N:25); hostname:
    myhostname (default NAME.lab.test).
    discard: a fast sink instead of Maildir delivery (for benchmarks): "smtpd" = smtpd's DISCARD
    action at end of data (the client gets "250 ... queued as"; cleanup removes the queue file
    without fsync, no queue manager or delivery agent; maillog: one "discard: END-OF-MESSAGE" line
    per message, DISCARDED_RE), "transport" = accepted into the queue (fsync) and delivered by the
    discard(8) transport (maillog: "status=sent" per message). Both set in_flow_delay = 0 (a sink
    must not pace its clients; see the comment below)."""
    domains = domains or ["lab.test"]
    nobody = pwd.getpwnam("nobody")
    cf = {
        "virtual_mailbox_domains": domains,
        "virtual_mailbox_base": os.path.join(workdir, "mail"),
        "virtual_mailbox_maps": "static:mailbox/",
        "virtual_uid_maps": f"static:{nobody.pw_uid}",
        "virtual_gid_maps": f"static:{nobody.pw_gid}",
        "smtpd_tls_security_level": tls,
        "smtpd_tls_chain_files": _chain_files(certs or [pki.ecdsa, pki.rsa]),
        "smtpd_tls_received_header": True,
        "smtpd_tls_session_cache_database": "",
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "message_size_limit": 52428800,
        "virtual_mailbox_limit": 0,
    }
    if hold:
        cf["smtpd_recipient_restrictions"] = "check_client_access static:HOLD"
    if discard == "smtpd":
        cf["smtpd_end_of_data_restrictions"] = "check_client_access static:DISCARD"
    elif discard == "transport":
        cf["virtual_transport"] = "discard:"
    if discard in ("smtpd", "transport"):
        # no back-pressure: the queue manager refills smtpd's flow-control tokens only for mail it
        # picks up, which DISCARD never reaches; with in_flow_delay 1s (default) every smtpd pauses
        # 1 s at MAIL FROM once the tokens are used up (about every 100 messages)
        cf["in_flow_delay"] = "0s"
    elif discard is not None:
        raise ValueError(f"discard must be None, 'smtpd' or 'transport', not {discard!r}")
    cf.update(main_cf or {})
    return PostfixInstance(workdir, name=name, main_cf=cf, smtpd_port=smtpd_port,
                           hostname=hostname or f"{name}.lab.test", host=host)


def sender(workdir: str, pki, relay_port: int, relay_host: str = "127.0.0.1", name: str = "sender",
           tls_level: str = "verify", verify_name: str = "mx.lab.test", main_cf: dict | None = None
           ) -> PostfixInstance:
    """A Postfix relaying every message to [relay_host]:relay_port (the gateway). tls_level
    "verify"/"secure" check the certificate against the lab CA and `verify_name` (per-destination
    smtp_tls_policy_maps entry: the relayhost is an IP literal, so the name cannot come from it);
    "encrypt", "may" and "none" as in Postfix. Its own smtpd (plain) accepts any recipient from
    127.0.0.0/8 for relaying too."""
    nexthop = f"[{relay_host}]:{relay_port}"
    cf = {
        "relayhost": nexthop,
        "smtp_tls_security_level": tls_level if tls_level in ("none", "may", "encrypt") else "encrypt",
        "smtp_tls_CAfile": pki.ca_pem,
        "smtp_tls_session_cache_database": "",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "myorigin": "sender.lab.test",
    }
    if tls_level in ("verify", "secure"):
        cf["smtp_tls_policy_maps"] = f"inline:{{ {{{nexthop} = {tls_level} match={verify_name}}} }}"
    cf.update(main_cf or {})
    return PostfixInstance(workdir, name=name, main_cf=cf, hostname=f"{name}.lab.test")


# Tuning of the benchmark relay, chosen to compare like with like on a 2-core lab machine:
BENCHMARK_TUNING = {
    # one smtpd process per concurrent client session; the load generator opens hundreds
    "default_process_limit": 500,
    # all load comes from 127.0.0.1: anvil's per-client limits would throttle the benchmark itself
    "smtpd_client_connection_count_limit": 0,
    "smtpd_client_connection_rate_limit": 0,
    "smtpd_client_message_rate_limit": 0,
    "smtpd_client_recipient_rate_limit": 0,
    "smtpd_client_new_tls_session_rate_limit": 0,
    # parallel deliveries to the single next hop (the smtp-sink); connection reuse on demand (default)
    "default_destination_concurrency_limit": 64,
    "relay_destination_concurrency_limit": 64,
    "smtp_destination_concurrency_limit": 64,
    # no reverse DNS of clients (the gateway does none either)
    "smtpd_peername_lookup": False,
    # TLS session resumption cache, as a real deployment has
    "smtpd_tls_session_cache_database": "btree:${data_directory}/smtpd_scache",
    # same size limit as the gateway's default (50 MiB)
    "message_size_limit": 52428800,
    # left at Postfix defaults on purpose: in_flow_delay (1s back-pressure when the queue manager
    # falls behind), queue file fsync (always on), qmgr limits, smtpd timeouts.
}


def benchmark_relay(workdir: str, pki, sink_port: int, sink_host: str = "127.0.0.1",
                    domains: list[str] | None = None, name: str = "relay", certs: list | None = None,
                    main_cf: dict | None = None, smtpd_port: int | None = None) -> PostfixInstance:
    """Postfix doing the gateway's job: accepts mail for `domains` (default lab.test) on its smtpd
    port with STARTTLS offered using the gateway's certificates (ECDSA + RSA, as mxedge), relays it
    to the smtp-sink at [sink_host]:sink_port without TLS (smtp-sink has none). Refuses relaying to
    other domains. Tuning: BENCHMARK_TUNING (documented there). fsync: Postfix's default, on."""
    nexthop = f"[{sink_host}]:{sink_port}"
    cf = {
        "relay_domains": domains or ["lab.test"],
        "relayhost": nexthop,
        "relay_transport": f"relay:{nexthop}",
        "default_transport": "error:5.7.1 relaying only to the accepted domains",
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_chain_files": _chain_files(certs or [pki.ecdsa, pki.rsa]),
        "smtp_tls_security_level": "none",
    }
    cf.update(BENCHMARK_TUNING)
    cf.update(main_cf or {})
    return PostfixInstance(workdir, name=name, main_cf=cf, smtpd_port=smtpd_port, hostname="mx.lab.test")
