"""Run the mxedge gateway (mxedge-dataplane) with a YAML config written by the lab.

    gw = Gateway(workdir, pki, next_hop_port=sink.port)            # two listeners by default:
    gw.start()                                                      #   smtp (starttls), smtps (implicit)
    gw.smtp_port, gw.smtps_port, gw.address("smtp") -> ("127.0.0.1", port)
    gw.client("smtp") -> lab.smtp_client.SMTPClient (connected, greeting not read)
    gw.wait_log(r"event=message.relayed .*qid=X", timeout=10)
    gw.events("message.accepted")                                   # parsed logfmt lines
    gw.reload()  gw.restart()  gw.kill9()  gw.stop() -> exit status

Configuration: `config` (a dict) is deep-merged over the lab defaults (lists are replaced); it uses the
YAML schema of policy/proto/mxedge/config/v1/config.proto (field names as in the proto, enums lower
case without prefix, durations "300s"/"500ms", sizes as integers or "50MiB"). Listener entries
without an address get "127.0.0.1:<free port>" ("[::1]:<free port>" with ipv6=True), entries
without certificates get the lab ECDSA and RSA certificates (unless tls_mode is none).

The binary is $MXEDGE_BUILD_DIR/dataplane/mxedge-dataplane (MXEDGE_BUILD_DIR defaults to
<repo>/build); `missing_binary_reason()` says why it cannot run, for pytest.skip.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import time

from . import ports, smtp_client, util

READY_EVENT = "event=dataplane.ready"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir() -> str:
    return os.environ.get("MXEDGE_BUILD_DIR") or os.path.join(REPO_ROOT, "build")


def binary_path() -> str:
    return os.path.join(build_dir(), "dataplane", "mxedge-dataplane")


def missing_binary_reason() -> str | None:
    path = binary_path()
    if not os.path.exists(path):
        return f"gateway binary not built: {path} does not exist (set MXEDGE_BUILD_DIR or build it)"
    if not os.access(path, os.X_OK):
        return f"gateway binary {path} is not executable"
    return None


# --------------------------------------------------------------------------------------------------
# YAML (block style; strings double-quoted JSON-style, which is valid YAML)


def _scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)


def to_yaml(obj, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = []
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, list) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, list):
                out.append(f"{pad}{k}: []\n")
            elif isinstance(v, dict):
                out.append(f"{pad}{k}: {{}}\n")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}\n")
        return "".join(out)
    if isinstance(obj, list):
        out = []
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 2)
                out.append(f"{pad}- {inner[indent + 2:]}")
            else:
                out.append(f"{pad}- {_scalar(item) if not isinstance(item, (dict, list)) else ('{}' if isinstance(item, dict) else '[]')}\n")
        return "".join(out)
    return pad + _scalar(obj) + "\n"


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --------------------------------------------------------------------------------------------------


class GatewayError(AssertionError):
    pass


class Gateway:
    def __init__(self, workdir: str, pki, next_hop_port: int, next_hop_host: str = "127.0.0.1",
                 hostname: str = "mx.lab.test", accepted_domains: list[str] | None = None,
                 listeners: list[dict] | None = None, config: dict | None = None, ipv6: bool = False,
                 binary: str | None = None, spool_dir: str | None = None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.pki = pki
        self.binary = binary or binary_path()
        self.listen_host = "::1" if ipv6 else "127.0.0.1"
        self.config_path = os.path.join(workdir, "mxedge.yaml")
        self.log_path = os.path.join(workdir, "mxedge.log")
        self.spool_dir = spool_dir or os.path.join(workdir, "spool")
        if listeners is None:
            listeners = [{"name": "smtp", "tls_mode": "starttls"}, {"name": "smtps", "tls_mode": "implicit"}]
        base = {
            "hostname": hostname,
            "listeners": [self._complete_listener(l) for l in listeners],
            "accepted_domains": list(accepted_domains or ["lab.test"]),
            "next_hop": {"host": next_hop_host, "port": next_hop_port, "tls": "opportunistic",
                         "retry_min": "1s", "retry_max": "3s", "connect_timeout": "5s",
                         "command_timeout": "30s"},
            "limits": {"command_timeout": "30s", "data_timeout": "30s"},
            "spool": {"directory": self.spool_dir},
            "logging": {"format": "logfmt", "level": "info"},
            # The data plane's management socket (the control plane forwards to it); per gateway.
            "management": {"socket": os.path.join(workdir, "mgmt-unused.sock"),
                           "dataplane_socket": os.path.join(workdir, "dataplane.sock")},
        }
        self.config = deep_merge(base, config or {})
        self.config["listeners"] = [self._complete_listener(l) for l in self.config["listeners"]]
        self.proc: util.ManagedProcess | None = None
        # Extra environment for the daemon (e.g. NOTIFY_SOCKET / WATCHDOG_USEC as systemd sets them).
        self.env: dict[str, str] = {}
        self.run_offset = 0          # log offset where the current run started
        self.runs = 0
        self.last_stop_forced = False

    # ---------------------------------------------------------------------------------------------
    def _complete_listener(self, l: dict) -> dict:
        l = dict(l)
        if not l.get("address"):
            port = ports.free_port(self.listen_host)
            l["address"] = f"[{self.listen_host}]:{port}" if ":" in self.listen_host else f"{self.listen_host}:{port}"
        if l.get("tls_mode", "starttls") != "none" and "certificates" not in l:
            l["certificates"] = self.pki.gateway_certificates()
        return l

    @property
    def dataplane_socket(self) -> str:
        return self.config["management"]["dataplane_socket"]

    def tls_outcomes(self) -> dict:
        """The TLS-RPT outcome rows of every worker (<spool>/tlsrpt-w<k>.db), summed over workers, by
        (policy_domain, policy_type, result_type, receiving_mx_hostname, receiving_ip, sending_mta_ip)."""
        import glob
        import sqlite3
        rows = {}
        for path in glob.glob(os.path.join(self.spool_dir, "tlsrpt-w*.db")):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                for r in db.execute("SELECT policy_domain, policy_type, result_type, receiving_mx_hostname, receiving_ip,"
                                    " sending_mta_ip, policy_id, policy_strings, mx_hosts, sessions, day FROM outcomes"):
                    key = r[:6]
                    prev = rows.get(key)
                    rows[key] = {"policy_id": r[6], "policy_strings": r[7], "mx_hosts": r[8], "day": r[10],
                                 "sessions": r[9] + (prev["sessions"] if prev else 0)}
            finally:
                db.close()
        return rows

    @property
    def hostname(self) -> str:
        return self.config.get("hostname", "")

    def listener(self, name: str) -> dict:
        for l in self.config["listeners"]:
            if l.get("name") == name:
                return l
        raise KeyError(f"no listener {name}")

    def address(self, name: str = "smtp") -> tuple[str, int]:
        addr = self.listener(name)["address"]
        host, _, port = addr.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def smtp_port(self) -> int:
        return self.address("smtp")[1]

    @property
    def smtps_port(self) -> int:
        return self.address("smtps")[1]

    def write_config(self) -> None:
        os.makedirs(self.spool_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write("# written by tests/lab/gateway.py\n")
            f.write(to_yaml(self.config))

    def update_config(self, overrides: dict, write: bool = True) -> None:
        """Deep-merge `overrides` into the config (lists replaced) and rewrite the file."""
        self.config = deep_merge(self.config, overrides)
        self.config["listeners"] = [self._complete_listener(l) for l in self.config["listeners"]]
        if write:
            self.write_config()

    # ---------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 20.0) -> "Gateway":
        """Start and wait for event=dataplane.ready in this run's log; GatewayError with the log
        when the process exits or the timeout passes first."""
        if self.running:
            raise RuntimeError("gateway already running")
        reason = None if self.binary != binary_path() else missing_binary_reason()
        if reason:
            raise GatewayError(reason)
        self.write_config()
        self.runs += 1
        with open(self.log_path, "ab") as f:
            f.write(f"# lab: run {self.runs} of {self.binary} --config {self.config_path}\n".encode())
        self.run_offset = os.path.getsize(self.log_path)
        self.proc = util.ManagedProcess([self.binary, "--config", self.config_path], self.log_path,
                                        env={**os.environ, **self.env} if self.env else None,
                                        name="mxedge-dataplane")
        self.proc.start()
        deadline = time.monotonic() + timeout
        while True:
            if READY_EVENT in self.run_log():
                return self
            if not self.proc.running:
                raise GatewayError(f"mxedge-dataplane exited with status {self.proc.poll()} before "
                                   f"{READY_EVENT}; config {self.config_path}; log:\n{util.tail(self.run_log(), 80)}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise GatewayError(f"mxedge-dataplane not ready within {timeout}s; log:\n"
                                   f"{util.tail(self.run_log(), 80)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within `timeout` (then last_stop_forced)."""
        if self.proc is None:
            return None
        self.last_stop_forced = False
        if self.proc.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                self.last_stop_forced = True
        return self.proc.stop(timeout=1)

    def kill9(self) -> int | None:
        """kill -9: no chance to clean up, as in a crash or power loss of the process."""
        if self.proc is None:
            return None
        return self.proc.kill()

    def reload(self) -> None:
        """Rewrite the config file and send SIGHUP."""
        self.write_config()
        if not self.running:
            raise GatewayError("reload: gateway not running")
        self.proc.send_signal(signal.SIGHUP)

    def restart(self, timeout: float = 20.0) -> "Gateway":
        self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.running:
            self.stop(timeout=10)

    def __enter__(self) -> "Gateway":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ---------------------------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything the gateway wrote to stdout/stderr over all runs."""
        return util.read_text(self.log_path)

    def run_log(self) -> str:
        """The log of the current (or last) run only."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.run_offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def mark(self) -> int:
        """An offset into log_text(); pass it as `since` to look only at later lines."""
        return len(self.log_text())

    def wait_log(self, pattern: str, timeout: float = 10.0, since: int = 0, regex: bool | None = None) -> str:
        """Wait for a log line containing `pattern` (a substring; a regex when regex=True or when it
        looks like one). Returns the first matching line."""
        if regex is None:
            regex = any(ch in pattern for ch in "\\[]()*+?^$|")
        rx = re.compile(pattern) if regex else None

        def find() -> str | None:
            for line in self.log_text()[since:].splitlines():
                if (rx.search(line) if rx else pattern in line):
                    return line
            return None

        return util.wait_until(find, timeout, interval=0.05,
                               message=lambda: f"{pattern!r} in the gateway log; tail:\n"
                                               f"{util.tail(self.log_text()[since:], 40)}")

    def events(self, event: str | None = None, since: int = 0) -> list[dict]:
        return util.logfmt_events(self.log_text()[since:], event)

    # ---------------------------------------------------------------------------------------------
    def client(self, listener: str = "smtp", timeout: float = 10.0, **kw) -> smtp_client.SMTPClient:
        """A connected raw client (greeting not yet read); implicit TLS on implicit listeners."""
        host, port = self.address(listener)
        implicit = self.listener(listener).get("tls_mode") == "implicit"
        return smtp_client.SMTPClient(host, port, timeout=timeout, implicit_tls=implicit, **kw)
