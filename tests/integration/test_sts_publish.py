"""The gateway's own MTA-STS policy (issue #7, controlplane/sts_publish): mxedge-controlplane serves the
policy generated from `mta_sts_publish:` at https://mta-sts.<accepted domain>/.well-known/mta-sts.txt.

The control plane runs on the signed DNS lab (tests/lab/dns.py) without the lab's nginx policy host, and
its policy host listens where the lab's `mta-sts.*.sts.test` A records point (dns_lab.https_address,
port 443), so the project's own MTA-STS client (mxedge-resolve --mta-sts) can discover and fetch the
served policy for valid.sts.test through real, validated DNS. Certificates come from the lab PKI: one
for mta-sts.valid.sts.test and mta-sts.lab.test, a second for mta-sts.other.test (chosen by SNI).

Checked: 200 text/plain with a policy the strict parser (mxedgectl sts parse) accepts, listing the
configured mx; id = sha256(body)[:20] and the TXT record --print-mta-sts prints carries it; Host checks
(wrong host, wrong path: 404; port and case ignored); SNI picks the certificate; TLS 1.1 refused, TLS 1.2
and 1.3 served; a config reload through the management API changes the served policy and its id; every
request logged; bad settings refused with their reasons.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import warnings

import pytest

from lab import controlplane as cp_mod
from lab import ctl as ctl_mod
from lab import resolve

POLICY_PATH = "/.well-known/mta-sts.txt"
DOMAINS = ["valid.sts.test", "lab.test", "other.test"]
MX = ["mx.valid.sts.test", "*.lab.test"]


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), resolve.missing_binary_reason()):
        if reason:
            pytest.skip(reason)
    ctl_mod.skip_unless_built()


@pytest.fixture(scope="module")
def certs(lab_pki):
    main = lab_pki.issue("sts-publish-main", ["mta-sts.valid.sts.test", "mta-sts.lab.test"])
    other = lab_pki.issue("sts-publish-other", ["mta-sts.other.test"], key_type="rsa")
    return main, other


def publish_config(dns_lab, certs, **over) -> dict:
    main, other = certs
    section = {"listen": f"{dns_lab.https_address}:443",
               "certificates": [main.as_gateway_certificate(), other.as_gateway_certificate()],
               "mx": list(MX)}
    section.update(over)
    return {"hostname": "mx.lab.test", "accepted_domains": list(DOMAINS), "mta_sts_publish": section}


@pytest.fixture(scope="module")
def cp(dns_lab, certs, lab_root):
    plane = cp_mod.ControlPlane(lab_root.unique_sub("sts-publish-cp"), dns_lab, config=publish_config(dns_lab, certs))
    plane.start()
    try:
        plane.wait_log("event=mta_sts.publish.started")
        yield plane
    finally:
        plane.stop()


class _Conn(http.client.HTTPSConnection):
    """HTTPS to an address with our own SNI name (http.client would send the address)."""

    def __init__(self, address: str, port: int, sni: str, context: ssl.SSLContext):
        super().__init__(address, port, context=context, timeout=10)
        self._sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._sni)


def client_context(ca: str, tls_max: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if tls_max is not None:
        ctx.maximum_version = tls_max
    return ctx


def fetch(dns_lab, ca: str, sni: str, host: str | None = None, path: str = POLICY_PATH, method: str = "GET",
          ctx: ssl.SSLContext | None = None):
    """(status, content type, body, peer certificate, TLS version)."""
    conn = _Conn(dns_lab.https_address, 443, sni, ctx or client_context(ca))
    try:
        conn.request(method, path, headers={"Host": host or sni})
        r = conn.getresponse()
        body = r.read()
        return r.status, r.getheader("Content-Type"), body, conn.sock.getpeercert(), conn.sock.version()
    finally:
        conn.close()


def strict_parse(body: bytes, tmp_path) -> dict:
    f = tmp_path / "policy.txt"
    f.write_bytes(body)
    p = ctl_mod.run(None, "--json", "sts", "parse", str(f))
    assert p.returncode == 0, (p.stdout, p.stderr)
    out = json.loads(p.stdout)
    assert out["valid"] is True, out
    return out["policy"]


def printed(cp_plane) -> dict[str, dict]:
    """--print-mta-sts per domain: {"id": ..., "txt": ..., "url": ..., "policy": [lines]}."""
    p = subprocess.run([cp_mod.binary_path(), "--config", cp_plane.config_path, "--print-mta-sts"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (p.stdout, p.stderr)
    out: dict[str, dict] = {}
    cur: dict | None = None
    for line in p.stdout.splitlines():
        if line.startswith("domain: "):
            cur = out.setdefault(line[8:], {"policy": []})
        elif line.startswith("  ") and cur is not None:
            cur["policy"].append(line[2:])
        elif ": " in line and cur is not None:
            k, v = line.split(": ", 1)
            cur[k] = v
    return out


def test_policy_served_for_each_accepted_domain(cp, dns_lab, lab_pki, tmp_path):
    for d in DOMAINS:
        status, ctype, body, cert, _ = fetch(dns_lab, lab_pki.ca_pem, f"mta-sts.{d}")
        assert status == 200, (d, status, body)
        assert ctype == "text/plain"
        assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")  # CRLF lines
        pol = strict_parse(body, tmp_path)
        assert pol == {"version": "STSv1", "mode": "testing", "max_age": 86400, "mx": MX, "extensions": 0}
        # SNI chose the certificate naming the host (ssl's hostname check passed too).
        names = [v for k, v in cert["subjectAltName"] if k == "DNS"]
        assert f"mta-sts.{d}" in names, names
    cp.wait_log(r"event=mta_sts\.publish\.request .*host=mta-sts\.other\.test .*status=200")


def test_id_is_the_sha256_of_the_body_and_the_printed_txt_carries_it(cp, dns_lab, lab_pki, tmp_path):
    _, _, body, _, _ = fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test")
    want = hashlib.sha256(body).hexdigest()[:20]
    out = printed(cp)
    assert sorted(out) == sorted(DOMAINS)
    for d in DOMAINS:
        assert out[d]["id"] == want
        assert out[d]["txt"] == f'_mta-sts.{d}. IN TXT "v=STSv1; id={want};"'
        assert out[d]["url"] == f"https://mta-sts.{d}{POLICY_PATH}"
        assert "\r\n".join(out[d]["policy"]) + "\r\n" == body.decode()
    # The TXT value passes the strict TXT parser.
    txt = out["lab.test"]["txt"].split('"')[1]
    p = ctl_mod.run(None, "--json", "sts", "txt", txt)
    assert p.returncode == 0 and json.loads(p.stdout)["id"] == want, (p.stdout, p.stderr)
    cp.wait_log(rf"event=mta_sts\.publish\.started .*id={want}")


def test_wrong_host_or_path_is_404_and_port_and_case_are_ignored(cp, dns_lab, lab_pki):
    ca = lab_pki.ca_pem
    assert fetch(dns_lab, ca, "mta-sts.lab.test", host="mta-sts.elsewhere.test")[0] == 404
    assert fetch(dns_lab, ca, "mta-sts.lab.test", host="lab.test")[0] == 404
    assert fetch(dns_lab, ca, "mta-sts.lab.test", host="www.lab.test")[0] == 404
    assert fetch(dns_lab, ca, "mta-sts.lab.test", path="/.well-known/other.txt")[0] == 404
    assert fetch(dns_lab, ca, "mta-sts.lab.test", path="/")[0] == 404
    assert fetch(dns_lab, ca, "mta-sts.lab.test", method="POST")[0] in (404, 405)
    assert fetch(dns_lab, ca, "mta-sts.lab.test", host="MTA-STS.Lab.Test:443")[0] == 200
    line = cp.wait_log(r"event=mta_sts\.publish\.request .*host=mta-sts\.elsewhere\.test")
    assert "status=404" in line and "peer=127." in line


def test_tls_1_1_is_refused_and_1_2_and_1_3_served(cp, dns_lab, lab_pki):
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(lab_pki.ca_pem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with pytest.raises(ssl.SSLError) as e:
        fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test", ctx=old)
    # Refused by the server (protocol_version alert), not by our own client.
    assert "PROTOCOL_VERSION" in str(e.value).upper() or "UNSUPPORTED_PROTOCOL" in str(e.value).upper(), e.value
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        status, _, _, _, version = fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test",
                                         ctx=client_context(lab_pki.ca_pem, tls_max=v))
        assert status == 200 and version == name


def test_the_project_mta_sts_client_accepts_the_served_policy(cp, dns_lab, lab_pki):
    # valid.sts.test: _mta-sts TXT (the lab's own id) and mta-sts A -> this control plane's listener.
    run = resolve.run(dns_lab, ["valid.sts.test"],
                      extra=["--mta-sts", "--ca-file", lab_pki.ca_pem, "--fetch-timeout-ms", "5000"])
    r = run.by_name("valid.sts.test")
    assert r["kind"] == "policy", r
    assert r["mode"] == "testing" and r["mx"] == MX and r["max_age"] == 86400, r
    cp.wait_log(r"event=mta_sts\.publish\.request .*host=mta-sts\.valid\.sts\.test.* status=200")


def test_reload_changes_the_served_policy_and_its_id(cp, dns_lab, lab_pki, tmp_path):
    _, _, before, _, _ = fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test")
    old_id = hashlib.sha256(before).hexdigest()[:20]
    saved = json.loads(json.dumps(cp.config))
    try:
        cp.config["mta_sts_publish"]["mode"] = "enforce"
        cp.write_config()
        # No data plane runs here: the command reports it unreachable, the control plane reloads.
        p = ctl_mod.run(cp.mgmt_socket, "config", "reload")
        assert "control plane: reloaded" in p.stdout, (p.returncode, p.stdout, p.stderr)
        _, _, after, _, _ = fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test")
        pol = strict_parse(after, tmp_path)
        assert pol["mode"] == "enforce" and pol["max_age"] == 604800 and pol["mx"] == MX
        new_id = hashlib.sha256(after).hexdigest()[:20]
        assert new_id != old_id
        assert printed(cp)["lab.test"]["id"] == new_id
        cp.wait_log(rf"event=mta_sts\.publish\.reloaded id={new_id}")
    finally:
        cp.config = saved
        cp.write_config()
        ctl_mod.run(cp.mgmt_socket, "config", "reload")
    _, _, restored, _, _ = fetch(dns_lab, lab_pki.ca_pem, "mta-sts.lab.test")
    assert restored == before


@pytest.mark.parametrize("over, message", [
    ({"certificates": []}, "mta_sts_publish.listen needs at least one certificate"),
    ({"mode": "strict"}, "'mta_sts_publish.mode': invalid value 'strict' (expected one of: enforce, testing, none)"),
    ({"max_age": "400d"}, "max_age must be between 1s and 31557600s"),
    ({"listen": "mta-sts:443"}, "invalid listen address 'mta-sts:443'"),
    ({"mx": ["mx_1.lab.test"]}, "invalid mx 'mx_1.lab.test'"),
])
def test_bad_settings_are_refused(dns_lab, certs, tmp_path, over, message):
    bad = cp_mod.ControlPlane(str(tmp_path / "bad"), dns_lab, config=publish_config(dns_lab, certs, **over))
    bad.write_config()
    p = subprocess.run([cp_mod.binary_path(), "--config", bad.config_path, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert message in p.stderr, p.stderr
    assert re.search(r"controlplane\.yaml:\d+:\d+: ", p.stderr), p.stderr  # file:line:column
