"""A lab certificate authority and server certificates, made with the openssl CLI.

    pki = get_pki("/some/dir")          # cached per directory (and per process when dir is None)
    pki.ca_pem                          # the lab CA certificate (trust anchor)
    pki.ecdsa.chain, pki.ecdsa.key      # P-256 leaf for mx.lab.test, chain PEM leaf first
    pki.rsa.chain, pki.rsa.key          # RSA-2048 leaf, same names
    pki.expired, pki.wrong_name         # ECDSA leaves that must fail verification (expired in 2021;
                                        # names only wrong.example.test)
    pki.untrusted                       # ECDSA leaf for the right names from a CA nobody trusts
    pki.issue("name", ["a.lab.test"], key_type="rsa")   # more on demand
    pki.issue_untrusted("name", ["a.lab.test"])         # more from the untrusted CA (pki.other_ca)
    pki.self_signed("name", ["a.lab.test"])             # a self-signed leaf (chain = the leaf)

Every ServerCert has: cert (leaf only), chain (leaf then CA), key, ca (the CA that signed it),
names, key_type. Private keys of leaves are mode 0644 (lab only: daemons that drop privileges before
reading keys must be able to read them); the CA key is 0600.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field

from . import util

LAB_NAMES = ["mx.lab.test", "smtp.lab.test", "localhost"]


@dataclass
class ServerCert:
    name: str
    cert: str
    chain: str
    key: str
    ca: str
    names: list[str] = field(default_factory=list)
    key_type: str = "ecdsa"

    def as_gateway_certificate(self) -> dict:
        return {"cert_file": self.chain, "key_file": self.key}


def _openssl(*args: str, cwd: str | None = None) -> None:
    cp = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                        timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {cp.stderr.decode(errors='replace')}")


def _keygen(path: str, key_type: str) -> None:
    if key_type == "ecdsa":
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    elif key_type == "rsa":
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    else:
        raise ValueError(f"unknown key type {key_type}")


class CertificateAuthority:
    """A self-signed CA in `directory`, able to sign leaves (validity in the past too)."""

    def __init__(self, directory: str, cn: str = "mxedge lab CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.key = os.path.join(directory, "ca.key")
        self.pem = os.path.join(directory, "ca.pem")
        self.cn = cn
        if not (os.path.exists(self.key) and os.path.exists(self.pem)):
            _keygen(self.key, "ecdsa")
            os.chmod(self.key, 0o600)
            _openssl("req", "-x509", "-new", "-key", self.key, "-out", self.pem, "-days", "3650",
                     "-subj", f"/O=mxedge lab/CN={cn}", "-sha256",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", "subjectKeyIdentifier=hash")
        # `openssl ca` bookkeeping (needed only for explicit start/end dates)
        self._cadir = os.path.join(directory, "ca-db")
        os.makedirs(self._cadir, exist_ok=True)
        for name, content in (("index.txt", ""), ("serial", "1000\n")):
            p = os.path.join(self._cadir, name)
            if not os.path.exists(p):
                with open(p, "w") as f:
                    f.write(content)
        self._lock = threading.Lock()                     # the CA's files (serial, index)
        self._name_locks: dict[str, threading.Lock] = {}

    def _ext_file(self, path: str, names: list[str], key_type: str) -> None:
        ku = "digitalSignature,keyEncipherment" if key_type == "rsa" else "digitalSignature"
        san = ",".join(f"DNS:{n}" for n in names)
        with open(path, "w") as f:
            f.write("[v3_leaf]\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    f"keyUsage=critical,{ku}\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n"
                    f"subjectAltName={san}\n")

    def issue(self, name: str, names: list[str], key_type: str = "ecdsa", days: int = 825,
              not_before: str | None = None, not_after: str | None = None) -> ServerCert:
        """A leaf `name` for DNS `names`. not_before/not_after as YYYYMMDDHHMMSSZ make an
        explicitly dated certificate (e.g. already expired). Thread-safe; leaves of different
        names are made in parallel (only the signing itself is serialized)."""
        with self._lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            base = os.path.join(self.dir, name)
            key, cert, chain = base + ".key", base + ".crt", base + "-chain.pem"
            if os.path.exists(chain) and os.path.exists(key):
                return ServerCert(name, cert, chain, key, self.pem, list(names), key_type)
            csr, ext = base + ".csr", base + ".ext"
            _keygen(key, key_type)
            os.chmod(key, 0o644)
            _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/O=mxedge lab/CN={names[0]}")
            self._ext_file(ext, names, key_type)
            with self._lock:
                self._sign(csr, ext, cert, days, not_before, not_after)
            with open(chain, "w") as out:
                for part in (cert, self.pem):
                    with open(part) as f:
                        out.write(f.read())
            return ServerCert(name, cert, chain, key, self.pem, list(names), key_type)

    def _sign(self, csr: str, ext: str, cert: str, days: int, not_before: str | None,
              not_after: str | None) -> None:
        if not_before or not_after:
            conf = os.path.join(self._cadir, "ca.cnf")
            with open(conf, "w") as f:
                f.write("[ca]\ndefault_ca=lab\n[lab]\n"
                        f"dir={self._cadir}\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
                        "new_certs_dir=$dir\ndefault_md=sha256\npolicy=any\n"
                        "unique_subject=no\ncopy_extensions=none\n"
                        "[any]\nO=optional\nCN=supplied\n")
            _openssl("ca", "-batch", "-config", conf, "-cert", self.pem, "-keyfile", self.key,
                     "-in", csr, "-out", cert, "-extfile", ext, "-extensions", "v3_leaf",
                     "-startdate", not_before or "20200101000000Z",
                     "-enddate", not_after or "20300101000000Z", "-notext")
        else:
            _openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key,
                     "-CAcreateserial", "-out", cert, "-days", str(days), "-sha256",
                     "-extfile", ext, "-extensions", "v3_leaf")


class LabPKI:
    """The lab CA plus the standard set of server certificates (see module docstring)."""

    def __init__(self, directory: str):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
        self.ca = CertificateAuthority(os.path.join(directory, "ca"))
        self.ca_pem = self.ca.pem
        self.ecdsa = self.ca.issue("ecdsa", LAB_NAMES, "ecdsa")
        self.rsa = self.ca.issue("rsa", LAB_NAMES, "rsa")
        self.expired = self.ca.issue("expired", LAB_NAMES, "ecdsa",
                                     not_before="20200101000000Z", not_after="20210101000000Z")
        self.wrong_name = self.ca.issue("wrong-name", ["wrong.example.test"], "ecdsa")
        self._other_ca = CertificateAuthority(os.path.join(directory, "other-ca"), "untrusted CA")
        self.other_ca = self._other_ca       # the CA nobody trusts
        self.untrusted = self._other_ca.issue("untrusted", LAB_NAMES, "ecdsa")

    def issue(self, name: str, names: list[str], key_type: str = "ecdsa", **kw) -> ServerCert:
        return self.ca.issue(name, names, key_type, **kw)

    def issue_untrusted(self, name: str, names: list[str], key_type: str = "ecdsa", **kw) -> ServerCert:
        """A leaf from the second CA (other_ca), which nobody trusts."""
        return self._other_ca.issue(name, names, key_type, **kw)

    def self_signed(self, name: str, names: list[str], key_type: str = "ecdsa") -> ServerCert:
        """A self-signed leaf (its own issuer; chain = the certificate alone) for DNS `names`,
        cached like the others (under DIR/self-signed/)."""
        d = os.path.join(self.dir, "self-signed")
        with self.ca._lock:
            os.makedirs(d, exist_ok=True)
            name_lock = self.ca._name_locks.setdefault("self-signed/" + name, threading.Lock())
        with name_lock:
            base = os.path.join(d, name)
            key, cert = base + ".key", base + ".crt"
            if not (os.path.exists(cert) and os.path.exists(key)):
                _keygen(key, key_type)
                os.chmod(key, 0o644)
                san = ",".join(f"DNS:{n}" for n in names)
                _openssl("req", "-x509", "-new", "-key", key, "-out", cert + ".tmp", "-days", "825",
                         "-subj", f"/O=mxedge lab/CN={names[0]}", "-sha256",
                         "-addext", "basicConstraints=critical,CA:FALSE",
                         "-addext", "extendedKeyUsage=serverAuth,clientAuth",
                         "-addext", f"subjectAltName={san}")
                os.replace(cert + ".tmp", cert)
            return ServerCert(name, cert, cert, key, cert, list(names), key_type)

    def gateway_certificates(self) -> list[dict]:
        """The listener `certificates:` list serving both the ECDSA and the RSA leaf."""
        return [self.ecdsa.as_gateway_certificate(), self.rsa.as_gateway_certificate()]


_cache: dict[str, LabPKI] = {}
_cache_lock = threading.Lock()
_default_dir: util.LabDir | None = None


def get_pki(directory: str | None = None) -> LabPKI:
    """The lab PKI in `directory`, created once and cached (per directory; the process-wide default
    lives in its own temporary directory, removed at exit)."""
    global _default_dir
    with _cache_lock:
        if directory is None:
            if _default_dir is None:
                _default_dir = util.LabDir(prefix="mxedge-pki-")
            directory = _default_dir.path
        directory = os.path.realpath(directory)
        if directory not in _cache:
            _cache[directory] = LabPKI(directory)
        return _cache[directory]
