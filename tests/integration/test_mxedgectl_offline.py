"""mxedgectl's offline tools, run as the real binary ($MXEDGE_BUILD_DIR/controlplane/mxedgectl):
`dane verify` on chains from the lab PKI (tests/lab/certs.py) plus an intermediate CA made here with
the openssl CLI, `sts parse | match | txt`, `tlsa generate` (digests checked against the openssl CLI),
`config validate`, help and usage errors. Output text, the --json shape and exit codes are asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from lab import certs
from lab import gateway as gateway_mod


def binary() -> str:
    return os.path.join(gateway_mod.build_dir(), "controlplane", "mxedgectl")


@pytest.fixture(scope="module", autouse=True)
def _binary():
    if not os.path.exists(binary()):
        pytest.skip(f"mxedgectl not built: {binary()} does not exist (set MXEDGE_BUILD_DIR or build it)")


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def ctl_json(*args: str) -> tuple[int, dict]:
    cp = ctl("--json", *args)
    return cp.returncode, json.loads(cp.stdout)


def openssl(*args: str, input: bytes | None = None) -> bytes:
    cp = subprocess.run(["openssl", *args], input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode(errors="replace")
    return cp.stdout


def spki_sha256(cert_file: str) -> str:
    """openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256"""
    pub = openssl("x509", "-in", cert_file, "-noout", "-pubkey")
    return hashlib.sha256(openssl("pkey", "-pubin", "-outform", "DER", input=pub)).hexdigest()


def key_spki_sha256(key_file: str) -> str:
    return hashlib.sha256(openssl("pkey", "-in", key_file, "-pubout", "-outform", "DER")).hexdigest()


def cert_sha256(cert_file: str) -> str:
    return hashlib.sha256(openssl("x509", "-in", cert_file, "-outform", "DER")).hexdigest()


def spki_sha512(cert_file: str) -> str:
    pub = openssl("x509", "-in", cert_file, "-noout", "-pubkey")
    return hashlib.sha512(openssl("pkey", "-pubin", "-outform", "DER", input=pub)).hexdigest()


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


class Pki:
    """The lab PKI plus: an intermediate CA signed by the lab CA and a leaf for mx.lab.test from it;
    chain files leaf first."""

    def __init__(self, directory: str):
        self.dir = directory
        self.lab = certs.get_pki(os.path.join(directory, "lab"))
        ca = self.lab.ca
        d = os.path.join(directory, "inter")
        os.makedirs(d, exist_ok=True)
        self.inter_key, self.inter = os.path.join(d, "inter.key"), os.path.join(d, "inter.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.inter_key)
        openssl("req", "-new", "-key", self.inter_key, "-out", d + "/inter.csr", "-subj", "/O=mxedge lab/CN=lab intermediate")
        write(d + "/inter.ext", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        openssl("x509", "-req", "-in", d + "/inter.csr", "-CA", ca.pem, "-CAkey", ca.key, "-CAcreateserial",
                "-out", self.inter, "-days", "365", "-sha256", "-extfile", d + "/inter.ext")
        self.leaf_key, self.leaf = os.path.join(d, "leaf.key"), os.path.join(d, "leaf.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.leaf_key)
        openssl("req", "-new", "-key", self.leaf_key, "-out", d + "/leaf.csr", "-subj", "/O=mxedge lab/CN=mx.lab.test")
        write(d + "/leaf.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                               "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:mx.lab.test\n")
        openssl("x509", "-req", "-in", d + "/leaf.csr", "-CA", self.inter, "-CAkey", self.inter_key,
                "-CAcreateserial", "-out", self.leaf, "-days", "30", "-sha256", "-extfile", d + "/leaf.ext")
        self.chain = write(os.path.join(d, "chain.pem"), read(self.leaf) + read(self.inter))             # leaf, inter
        self.full_chain = write(os.path.join(d, "full.pem"), read(self.leaf) + read(self.inter) + read(ca.pem))
        self.root = ca.pem
        self.next_key = os.path.join(d, "next.key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self.next_key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp("ctl-pki")))


def first_line(cp: subprocess.CompletedProcess) -> str:
    return cp.stdout.splitlines()[0] if cp.stdout else ""


# --------------------------------------------------------------------------------------------------
# dane verify

def test_dane_ee_spki_sha256_verified(pki):
    chain = pki.lab.ecdsa.chain
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 1 1 {spki_sha256(chain)}", "--chain", chain)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert first_line(cp) == "verified: DANE-EE (3) selector SPKI (1) matching type SHA2-256 (1), match depth 0"
    assert "\n  matched certificate: depth 0 CN=mx.lab.test,O=mxedge lab\n" in cp.stdout

    rc, doc = ctl_json("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 1 1 {spki_sha256(chain)}",
                       "--chain", chain)
    assert rc == 0
    assert doc["result"] == "verified"
    assert "reason" not in doc
    assert doc["host"] == "mx.lab.test" and doc["names"] == ["mx.lab.test"]
    assert doc["chain_file"] == chain
    assert doc["match"] == {
        "usage": 3, "usage_name": "DANE-EE", "selector": 1, "selector_name": "SPKI", "mtype": 1,
        "mtype_name": "SHA2-256", "depth": 0, "record": f"3 1 1 {spki_sha256(chain)}",
        "certificate": doc["chain"][0]["subject"],
    }
    assert doc["x509_error"] is None
    assert doc["records"] == [{"record": f"3 1 1 {spki_sha256(chain)}", "usable": True}]
    assert [c["depth"] for c in doc["chain"]] == [0, 1]
    assert set(doc["chain"][0]) == {"depth", "subject", "issuer", "not_before", "not_after", "dns_names"}
    assert doc["chain"][0]["dns_names"] == certs.LAB_NAMES


def test_dane_ee_full_certificate_and_sha512(pki):
    chain = pki.lab.rsa.chain
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 0 1 {cert_sha256(chain).upper()}", "--chain", chain)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert first_line(cp).startswith("verified: DANE-EE (3) selector Cert (0) matching type SHA2-256 (1)")
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 1 2 {spki_sha512(chain)}", "--chain", chain)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "matching type SHA2-512 (2), match depth 0" in first_line(cp)


def test_dane_ee_ignores_dates_and_names(pki):
    for leaf in (pki.lab.expired, pki.lab.wrong_name, pki.lab.untrusted):
        cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 1 1 {spki_sha256(leaf.chain)}",
                 "--chain", leaf.chain)
        assert cp.returncode == 0, (leaf.name, cp.stdout, cp.stderr)
        assert first_line(cp).startswith("verified: DANE-EE")


def test_dane_ta_with_intermediates(pki):
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"2 1 1 {spki_sha256(pki.inter)}",
             "--chain", pki.chain)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert first_line(cp) == "verified: DANE-TA (2) selector SPKI (1) matching type SHA2-256 (1), match depth 1"
    # the trust anchor at the root, carried in the chain: depth 2
    rc, doc = ctl_json("dane", "verify", "--host", "MX.lab.test.", "--tlsa", f"2 1 1 {spki_sha256(pki.root)}",
                       "--chain", pki.full_chain)
    assert rc == 0, doc
    assert doc["match"]["depth"] == 2 and doc["match"]["usage_name"] == "DANE-TA"
    assert doc["match"]["certificate"] == doc["chain"][2]["subject"]
    # full-certificate digest of the intermediate
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"2 0 1 {cert_sha256(pki.inter)}",
             "--chain", pki.full_chain)
    assert cp.returncode == 0 and "match depth 1" in first_line(cp), cp.stdout
    # the lab's own chain (leaf, CA): the CA at depth 1
    cp = ctl("dane", "verify", "--host", "smtp.lab.test", "--tlsa", f"2 1 1 {spki_sha256(pki.lab.ca_pem)}",
             "--chain", pki.lab.ecdsa.chain)
    assert cp.returncode == 0 and "match depth 1" in first_line(cp), cp.stdout


def test_dane_ta_wrong_name_fails(pki):
    args = ["dane", "verify", "--host", "wrong.lab.test", "--tlsa", f"2 1 1 {spki_sha256(pki.inter)}", "--chain", pki.chain]
    cp = ctl(*args)
    assert cp.returncode == 1
    assert first_line(cp) == "failed: DANE-TA matched but the certificate does not name wrong.lab.test"
    rc, doc = ctl_json(*args)
    assert rc == 1
    assert doc["result"] == "failed"
    assert doc["reason"] == "DANE-TA matched but the certificate does not name wrong.lab.test"
    assert doc["match"]["depth"] == 1
    assert doc["x509_error"]["message"] == "hostname mismatch" and doc["x509_error"]["depth"] == 0
    # an extra reference identifier (--name) the leaf carries makes it verify
    cp = ctl(*args, "--name", "mx.lab.test")
    assert cp.returncode == 0 and first_line(cp).startswith("verified: DANE-TA"), cp.stdout


def test_dane_wrong_digest_fails(pki):
    digest = spki_sha256(pki.chain)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"3 1 1 {wrong}", "--tlsa",
             f"2 1 1 {spki_sha256(pki.root)}", "--chain", pki.chain)
    assert cp.returncode == 1
    assert first_line(cp) == "failed: no TLSA record matched the chain"
    assert "X509 error: no matching DANE TLSA records" in cp.stdout


def test_dane_pkix_usages_only_unusable(pki):
    args = ["dane", "verify", "--host", "mx.lab.test", "--tlsa", f"0 1 1 {spki_sha256(pki.inter)}",
            "--tlsa", f"1 1 1 {spki_sha256(pki.leaf)}", "--tlsa", "3 1 1 abcd", "--chain", pki.chain]
    cp = ctl(*args)
    assert cp.returncode == 1
    assert first_line(cp) == "unusable: no usable TLSA record (3 rejected)"
    assert cp.stdout.count("PKIX usage (0/1) is not usable with SMTP") == 2
    assert "digest length does not match the matching type" in cp.stdout
    rc, doc = ctl_json(*args)
    assert rc == 1 and doc["result"] == "unusable" and doc["match"] is None
    assert [r["usable"] for r in doc["records"]] == [False, False, False]
    assert all(r["reason"] for r in doc["records"])


def test_dane_mix_of_unusable_and_matching_verifies(pki):
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"1 1 1 {spki_sha256(pki.leaf)}",
             "--tlsa", f"3 1 1 {spki_sha256(pki.leaf)}", "--chain", pki.chain)
    assert cp.returncode == 0, cp.stdout
    assert "TLSA records: 1 usable, 1 unusable" in cp.stdout


def test_dane_record_openssl_rejects_is_unusable(pki):
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", "3 1 0 abcdef", "--chain", pki.chain)
    assert cp.returncode == 1
    assert first_line(cp) == "unusable: no usable TLSA record (1 rejected)"
    assert "unusable 3 1 0 abcdef: OpenSSL rejects the record (dane tlsa bad public key)" in cp.stdout


def test_dane_ta_bare_public_key(pki):
    der = openssl("pkey", "-pubin", "-outform", "DER", input=openssl("x509", "-in", pki.root, "-noout", "-pubkey"))
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", f"2 1 0 {der.hex()}", "--chain", pki.chain)
    assert cp.returncode == 0, cp.stdout
    assert first_line(cp) == "verified: DANE-TA (2) selector SPKI (1) matching type Full (0), match depth 1"
    assert "matched key: a trust anchor public key not in the chain" in cp.stdout


@pytest.mark.parametrize("tlsa, message", [
    ("3 1 x abcd", "TLSA matching type is not a number"),
    ("3 1 1 abcz", "not hex"),
    ("3 1 1 abc", "odd number of hex digits"),
    ("3 1 1", "association data is missing"),
    ("300 1 1 ab", "larger than 255"),
])
def test_dane_bad_tlsa_text_is_usage_error(pki, tlsa, message):
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", tlsa, "--chain", pki.chain)
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert cp.stderr.startswith("mxedgectl: --tlsa ") and message in cp.stderr
    rc, doc = ctl_json("dane", "verify", "--host", "mx.lab.test", "--tlsa", tlsa, "--chain", pki.chain)
    assert rc == 2 and doc["error"]["code"] == "usage" and message in doc["error"]["message"]


def test_dane_bad_chain_files(pki, tmp_path):
    tlsa = f"3 1 1 {spki_sha256(pki.leaf)}"
    cases = {
        str(tmp_path / "missing.pem"): "No such file or directory",
        write(str(tmp_path / "empty.pem"), ""): "no PEM certificate",
        pki.leaf_key: "no PEM certificate",
        str(tmp_path): "is a directory",
        write(str(tmp_path / "bad.pem"), "-----BEGIN CERTIFICATE-----\nMIIB!!\n-----END CERTIFICATE-----\n"): "does not parse",
    }
    for path, message in cases.items():
        cp = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", tlsa, "--chain", path)
        assert cp.returncode == 2, (path, cp.stdout, cp.stderr)
        assert message in cp.stderr, (path, cp.stderr)
    cp = ctl("dane", "verify", "--host", "not a host", "--tlsa", tlsa, "--chain", pki.chain)
    assert cp.returncode == 2 and "is not a host name" in cp.stderr
    cp = ctl("dane", "verify", "--host", "mx.lab.test", "--chain", pki.chain)  # --tlsa is required
    assert cp.returncode == 2


# --------------------------------------------------------------------------------------------------
# sts parse | match | txt

VALID_LF = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"


@pytest.mark.parametrize("body", [
    VALID_LF,
    VALID_LF.replace("\n", "\r\n"),
    VALID_LF.rstrip("\n"),                                        # no final line break
    VALID_LF + "x-ext: some value\n",                             # an ignored extension
    "version: STSv1\nmode: none\nmax_age: 0\n",                   # none needs no mx
    VALID_LF + "mode: testing\nversion: STSv2\n",                 # repeated fields: the first wins
])
def test_sts_parse_valid(tmp_path, body):
    path = write(str(tmp_path / "mta-sts.txt"), body)
    cp = ctl("sts", "parse", path)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert first_line(cp) == f"{path}: valid"
    rc, doc = ctl_json("sts", "parse", path)
    assert rc == 0 and doc["valid"] is True and doc["file"] == path
    assert doc["policy"]["version"] == "STSv1"
    if "mode: none" not in body:
        assert doc["policy"] == {"version": "STSv1", "mode": "enforce", "max_age": 604800,
                                 "mx": ["mail.example.com", "*.example.net"],
                                 "extensions": 1 if "x-ext" in body else 0}


@pytest.mark.parametrize("body, line, message", [
    ("mode: enforce\nmx: a.example\nmax_age: 1\n", 0, "version: STSv1 is missing"),
    ("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", 1, "version must be STSv1"),
    ("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", 2, "mode must be enforce, testing or none"),
    ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", 4, "exceeds 31557600"),
    ("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", 4, "max_age must be a number of seconds"),
    ("version: STSv1\nmode: enforce\nmx: a.example\n", 0, "max_age is missing"),
    ("version: STSv1\nmode: enforce\nmx: mx.*.example\nmax_age: 1\n", 3, "is not a domain name"),
    ("version: STSv1\nmode: enforce\nmx: *.example.com.\nmax_age: 1\n", 3, "is not a domain name"),
    ("version: STSv1\nmode: testing\nmax_age: 1\n", 0, "mode testing needs at least one mx"),
    ("version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 1\n", 2, "empty line"),
    ("version: STSv1\nmode: enforce\rmx: a.example\nmax_age: 1\n", 2, "stray carriage return"),
    ("version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n", 2, "expected 'key: value'"),
    ("", 0, "empty policy"),
])
def test_sts_parse_invalid(tmp_path, body, line, message):
    path = write(str(tmp_path / "mta-sts.txt"), body)
    cp = ctl("sts", "parse", path)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    prefix = f"invalid: line {line}: " if line else "invalid: "
    assert first_line(cp).startswith(prefix) and message in first_line(cp), cp.stdout
    rc, doc = ctl_json("sts", "parse", path)
    assert rc == 1 and doc["valid"] is False
    assert doc["error"]["line"] == line and message in doc["error"]["message"]


def test_sts_parse_unreadable(tmp_path):
    cp = ctl("sts", "parse", str(tmp_path / "missing.txt"))
    assert cp.returncode == 2 and "No such file or directory" in cp.stderr
    rc, doc = ctl_json("sts", "parse", str(tmp_path / "missing.txt"))
    assert rc == 2 and doc["error"]["code"] == "usage"


@pytest.mark.parametrize("pattern, host, rc, text", [
    ("mx.example.com", "MX.Example.COM.", 0, "match"),
    ("*.example.com", "mx1.example.com", 0, "match"),
    ("*.example.com", "example.com", 1, "no match: '*.' matches exactly one more leftmost label"),
    ("*.example.com", "a.b.example.com", 1, "no match: '*.' matches exactly one more leftmost label"),
    ("mx.example.com", "mx.example.net", 1, "no match"),
    ("mx.*.example.com", "mx.a.example.com", 1, "no match: invalid pattern 'mx.*.example.com': not a domain name"),
    ("*.exämple.com", "a.xn--exmple-cua.com", 1, "no match: invalid pattern"),
    ("mx.example.com", "bad host", 1, "no match: host 'bad host' is not a domain name"),
])
def test_sts_match(pattern, host, rc, text):
    cp = ctl("sts", "match", pattern, host)
    assert cp.returncode == rc
    assert cp.stdout.startswith(text + ("\n" if text in ("match", "no match") else "")), cp.stdout
    code, doc = ctl_json("sts", "match", pattern, host)
    assert code == rc and doc["match"] is (rc == 0) and doc["pattern"] == pattern and doc["host"] == host


def test_sts_txt():
    cp = ctl("sts", "txt", "v=STSv1; id=20240101T000000Z;")
    assert cp.returncode == 0 and cp.stdout == "valid: id=20240101T000000Z\n"
    rc, doc = ctl_json("sts", "txt", "v=STSv1;id=abc")
    assert rc == 0 and doc == {"valid": True, "id": "abc"}
    for record, message in [("v=STSv1;", "id is missing"), ("v=STSv1; id=a-b;", "id must be 1 to 32 letters"),
                            ("v=STSv1; id=1; id=2", "id appears twice"), ("v=spf1 -all", "not an MTA-STS record")]:
        cp = ctl("sts", "txt", record)
        assert cp.returncode == 1 and cp.stdout.startswith("invalid: ") and message in cp.stdout, (record, cp.stdout)
    rc, doc = ctl_json("sts", "txt", "v=STSv1; id=1", "v=STSv1; id=2")  # two records
    assert rc == 1 and doc["valid"] is False and doc["id"] is None and "more than one" in doc["error"]


# --------------------------------------------------------------------------------------------------
# tlsa generate

def gateway_config(tmp_path, pki: Pki) -> str:
    lab = pki.lab
    return write(str(tmp_path / "mxedge.yaml"), f"""\
hostname: MX.lab.test
listeners:
  - name: smtp
    address: "127.0.0.1:2525"
    tls_mode: starttls
    certificates:
      - cert_file: {pki.chain}
        key_file: {pki.leaf_key}
      - cert_file: {lab.rsa.chain}
        key_file: {lab.rsa.key}
  - name: submissions
    address: "127.0.0.1:4650"
    tls_mode: implicit
    certificates:
      - cert_file: {pki.chain}
        key_file: {pki.leaf_key}
accepted_domains: [lab.test]
next_hop:
  host: 127.0.0.1
  port: 2526
spool:
  directory: {tmp_path}/spool
""")


def test_tlsa_generate_from_config(tmp_path, pki):
    config = gateway_config(tmp_path, pki)
    cp = ctl("--config", config, "tlsa", "generate", "--next-key", pki.next_key)
    assert cp.returncode == 0, cp.stderr
    owner = "_25._tcp.mx.lab.test."
    expected = [
        f"{owner} IN TLSA 3 1 1 {spki_sha256(pki.leaf)}",
        f"{owner} IN TLSA 2 1 1 {spki_sha256(pki.inter)}",
        f"{owner} IN TLSA 3 1 1 {spki_sha256(pki.lab.rsa.cert)}",
        f"{owner} IN TLSA 2 1 1 {spki_sha256(pki.lab.ca_pem)}",
        f"{owner} IN TLSA 3 1 1 {key_spki_sha256(pki.next_key)}",
    ]
    rrs = [line for line in cp.stdout.splitlines() if not line.startswith(";")]
    assert rrs == expected
    assert "Wait at least two TTLs" in cp.stdout and "usage 0/1" in cp.stdout
    # the records verify the chains the gateway serves
    v = ctl("dane", "verify", "--host", "mx.lab.test", "--tlsa", expected[1].split(" TLSA ")[1], "--chain", pki.chain)
    assert v.returncode == 0, v.stdout

    rc, doc = ctl_json("--config", config, "tlsa", "generate", "--next-key", pki.next_key, "--port", "465")
    assert rc == 0
    assert doc["mx"] == "mx.lab.test" and doc["port"] == 465 and doc["owner"] == "_465._tcp.mx.lab.test."
    assert [r["role"] for r in doc["records"]] == ["current", "issuer", "current", "issuer", "next"]
    assert [r["data"] for r in doc["records"]] == [e.rsplit(" ", 1)[1] for e in expected]
    first = doc["records"][0]
    assert set(first) == {"role", "usage", "selector", "mtype", "data", "rdata", "rr", "source", "subject", "not_after"}
    assert (first["usage"], first["selector"], first["mtype"]) == (3, 1, 1) and first["source"] == pki.chain
    assert first["rr"] == f"_465._tcp.mx.lab.test. IN TLSA 3 1 1 {first['data']}"
    assert doc["guidance"] and isinstance(doc["notes"], list)


def test_tlsa_generate_explicit_files(pki):
    cp = ctl("tlsa", "generate", "--cert", pki.leaf, "--chain", pki.inter, "--next-cert", pki.lab.ecdsa.chain,
             "--mx", "mx.lab.test", "--config", "/nonexistent.yaml")
    assert cp.returncode == 0, cp.stderr
    rrs = [line for line in cp.stdout.splitlines() if not line.startswith(";")]
    assert rrs == [
        f"_25._tcp.mx.lab.test. IN TLSA 3 1 1 {spki_sha256(pki.leaf)}",
        f"_25._tcp.mx.lab.test. IN TLSA 2 1 1 {spki_sha256(pki.inter)}",
        f"_25._tcp.mx.lab.test. IN TLSA 3 1 1 {spki_sha256(pki.lab.ecdsa.cert)}",
        f"_25._tcp.mx.lab.test. IN TLSA 2 1 1 {spki_sha256(pki.lab.ca_pem)}",
    ]
    rc, doc = ctl_json("tlsa", "generate", "--cert", pki.leaf, "--chain", pki.inter, "--mx", "mx.lab.test")
    assert rc == 0
    # leaf.pem alone is served without its CA: 2 1 1 would not verify
    assert any("does not carry the issuing CA certificate" in n for n in doc["notes"]), doc["notes"]


def test_tlsa_generate_errors(tmp_path, pki):
    cases = [
        (["--cert", pki.leaf, "--chain", pki.root, "--mx", "mx.lab.test"], "issued"),      # wrong CA
        (["--cert", str(tmp_path / "missing.pem"), "--mx", "mx.lab.test"], "No such file"),
        (["--cert", pki.leaf, "--mx", "not_a_host"], "is not a host name"),
        (["--cert", pki.leaf, "--mx", "mx.lab.test", "--next-key", pki.leaf], "holds a certificate, not a key"),
        (["--cert", pki.leaf, "--mx", "mx.lab.test", "--next-cert", pki.chain, "--next-key", pki.next_key],
         "is not the key of --next-cert"),
        (["--config", str(tmp_path / "missing.yaml")], "cannot open the configuration file"),
        (["--cert", pki.leaf, "--mx", "mx.lab.test", "--port", "0"], "not in range"),
    ]
    for args, message in cases:
        cp = ctl("tlsa", "generate", *args)
        assert cp.returncode == 2, (args, cp.stdout, cp.stderr)
        assert message in cp.stderr, (args, cp.stderr)


# --------------------------------------------------------------------------------------------------
# config validate

def test_config_validate(tmp_path, pki):
    good = gateway_config(tmp_path, pki)
    cp = ctl("config", "validate", good)
    assert cp.returncode == 0 and cp.stdout == f"{good}: valid\n"
    rc, doc = ctl_json("config", "validate", good)
    assert rc == 0 and doc == {"file": good, "valid": True, "errors": []}
    cp = ctl("--config", good, "config", "validate")  # default: the --config file
    assert cp.returncode == 0 and cp.stdout == f"{good}: valid\n"

    bad = write(str(tmp_path / "bad.yaml"), read(good).replace('"127.0.0.1:4650"', '"127.0.0.1:99999"')
                .replace("accepted_domains: [lab.test]", 'accepted_domains: ["bad..domain"]'))
    cp = ctl("config", "validate", bad)
    assert cp.returncode == 1
    lines = cp.stdout.splitlines()
    assert lines == [
        f"{bad}: invalid (2 errors)",
        f"{bad}:12:14: invalid listen address '127.0.0.1:99999' (expected IP:PORT or [IPv6]:PORT)",
        f"{bad}:17:20: invalid domain name 'bad..domain'",
    ]
    rc, doc = ctl_json("config", "validate", bad)
    assert rc == 1 and doc["valid"] is False and len(doc["errors"]) == 2
    assert doc["errors"][1] == {"file": bad, "line": 17, "column": 20, "message": "invalid domain name 'bad..domain'"}

    unknown = write(str(tmp_path / "unknown.yaml"), read(good).replace("hostname: MX.lab.test\n", "hostname: x\nbogus: 1\n"))
    cp = ctl("config", "validate", unknown)
    assert cp.returncode == 1 and f"{unknown}:2:1: unknown key 'bogus'" in cp.stdout

    cp = ctl("config", "validate", str(tmp_path))
    assert cp.returncode == 1 and cp.stdout == f"{tmp_path}: is a directory\n"
    cp = ctl("config", "validate", str(tmp_path / "missing.yaml"))
    assert cp.returncode == 1 and "cannot open the configuration file: No such file or directory" in cp.stdout


# --------------------------------------------------------------------------------------------------
# help and usage

@pytest.mark.parametrize("args", [
    [], ["dane"], ["dane", "verify"], ["sts"], ["sts", "parse"], ["sts", "match"], ["sts", "txt"],
    ["tlsa"], ["tlsa", "generate"], ["config"], ["config", "validate"],
])
def test_help_at_every_level(args):
    cp = ctl(*args, "--help")
    assert cp.returncode == 0, cp.stderr
    assert "Usage" in cp.stdout or "usage" in cp.stdout.lower()


def test_help_documents_json_shape():
    assert '"result": "verified"|"unusable"|"failed"' in ctl("dane", "verify", "--help").stdout
    assert '"valid": true, "policy"' in ctl("sts", "parse", "--help").stdout


@pytest.mark.parametrize("args", [
    [], ["dane"], ["sts"], ["tlsa"], ["config"], ["--bogus-option"], ["dane", "verify", "--bogus"],
    ["no-such-command"], ["sts", "match", "only-one-argument"],
])
def test_usage_errors_exit_2(args):
    cp = ctl(*args)
    assert cp.returncode == 2, (args, cp.stdout, cp.stderr)
    assert cp.stderr
