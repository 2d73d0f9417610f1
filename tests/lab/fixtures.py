"""pytest fixtures for the lab. In a conftest.py: ``from lab.fixtures import *``.

Session scope:  lab_root (a 0755 temp dir, removed at the end), lab_pki (lab.certs.LabPKI)
Module scope:   dns_lab (lab.dns.DnsLab with unbound started; TLSA data from lab_pki's ECDSA leaf
                and CA; NSD/unbound log tails are printed when a test of the module failed),
                mta_sts_server (lab.mta_sts.StsHttpsServer, nginx on dns_lab.https_address:443 with
                certificates from lab_pki's CA; its error log tail is printed on failure),
                delivery_lab (lab.delivery.DeliveryLab: Postfix receivers on 127.53.X.N:25 and the
                STARTTLS-stripping proxy; in a module that uses it, dns_lab is built with
                delivery=True and mta_sts_server also serves the delivery lab's STS domains)
Function scope: lab_dir (fresh dir for one test, removed afterwards), smtp_sink (a started
                SmtpSink), sink_factory, postfix_factory, gateway_factory, gateway (a started
                gateway relaying to smtp_sink), tmpfs_factory.

Every fixture that starts something stops it in its finalizer, also when the test failed; on
failure the gateway's log tail is printed (pytest shows it with the failure report).
"""

from __future__ import annotations

import os

import pytest

from . import certs, delivery as delivery_mod, dns as dns_mod, gateway as gateway_mod
from . import mta_sts as mta_sts_mod, postfix as postfix_mod
from . import smtp_sink as sink_mod, util

__all__ = [
    "lab_root",
    "lab_pki",
    "lab_dir",
    "smtp_sink",
    "sink_factory",
    "postfix_factory",
    "gateway_binary",
    "gateway_factory",
    "gateway",
    "tmpfs_factory",
    "dns_lab",
    "mta_sts_server",
    "delivery_lab",
    "pytest_runtest_makereport",
]


@pytest.fixture(scope="session")
def lab_root():
    d = util.LabDir(prefix="mxedge-lab-")
    try:
        yield d
    finally:
        util.run_all_cleanups()  # anything a broken finalizer left running
        d.cleanup()


@pytest.fixture(scope="session")
def lab_pki(lab_root):
    return certs.get_pki(lab_root.sub("pki"))


@pytest.fixture
def lab_dir(lab_root, request):
    # short: Postfix puts UNIX sockets under it (sun_path is limited to 108 bytes)
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.replace("test_", ""))[:16]
    path = lab_root.unique_sub(name)
    yield path
    util.remove_tree(path)


@pytest.fixture
def sink_factory(lab_dir):
    started = []

    def make(name: str = "sink", start: bool = True, **kw) -> sink_mod.SmtpSink:
        s = sink_mod.SmtpSink(os.path.join(lab_dir, name), **kw)
        started.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in reversed(started):
        s.stop()


@pytest.fixture
def smtp_sink(sink_factory):
    return sink_factory("sink")


@pytest.fixture
def postfix_factory(lab_dir, lab_pki):
    """make(role, name=..., **kw): role "receiver" | "sender" | "relay" | "plain" (PostfixInstance
    kwargs); started, and stopped at teardown."""
    started = []

    def make(role: str, name: str | None = None, start: bool = True, **kw) -> postfix_mod.PostfixInstance:
        name = name or role
        workdir = os.path.join(lab_dir, f"pf-{name}")
        if role == "receiver":
            inst = postfix_mod.receiver(workdir, lab_pki, name=name, **kw)
        elif role == "sender":
            inst = postfix_mod.sender(workdir, lab_pki, name=name, **kw)
        elif role == "relay":
            inst = postfix_mod.benchmark_relay(workdir, lab_pki, name=name, **kw)
        elif role == "plain":
            inst = postfix_mod.PostfixInstance(workdir, name=name, **kw)
        else:
            raise ValueError(role)
        started.append(inst)
        if start:
            inst.start()
        return inst

    yield make
    for inst in reversed(started):
        inst.stop()


@pytest.fixture
def gateway_binary():
    reason = gateway_mod.missing_binary_reason()
    if reason:
        pytest.skip(reason)
    return gateway_mod.binary_path()


@pytest.fixture
def gateway_factory(gateway_binary, lab_dir, lab_pki, request):
    """make(next_hop_port, start=True, name="gw", **Gateway kwargs) -> started Gateway."""
    made = []

    def make(next_hop_port: int, start: bool = True, name: str = "gw", **kw) -> gateway_mod.Gateway:
        gw = gateway_mod.Gateway(os.path.join(lab_dir, name), lab_pki, next_hop_port, **kw)
        made.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    for gw in reversed(made):
        try:
            gw.cleanup()
        finally:
            if gw.proc is not None and gw.proc.running:
                gw.kill9()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for gw in made:
            print(f"\n----- gateway log ({gw.log_path}), last lines -----\n{util.tail(gw.log_text(), 60)}")


@pytest.fixture
def gateway(gateway_factory, smtp_sink):
    """A started gateway (smtp: starttls, smtps: implicit) relaying to the smtp_sink fixture."""
    return gateway_factory(smtp_sink.port)


@pytest.fixture
def tmpfs_factory(lab_dir):
    mounted = []

    def make(path: str, size: str | int) -> util.Tmpfs:
        t = util.Tmpfs(path, size).mount()
        mounted.append(t)
        return t

    yield make
    for t in reversed(mounted):
        t.unmount()


def _module_uses(request, fixture: str) -> bool:
    """Whether a selected test of the requesting module uses `fixture` (directly or indirectly)."""
    module = getattr(request, "module", None)
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items
               if getattr(item, "module", None) is module)


@pytest.fixture(scope="module")
def dns_lab(lab_root, lab_pki, request):
    """A started DnsLab (lab/dns.py) plus unbound, shared by the tests of one module. Tests that
    call proxy.stop_answering() must resume_answering() themselves. Built with delivery=True (the
    dlv.test zones of lab/delivery.py) when a test of the module uses delivery_lab."""
    failed_before = request.session.testsfailed
    lab = dns_mod.DnsLab(lab_root.unique_sub("dns"), leaf_cert=lab_pki.ecdsa.cert, ca_cert=lab_pki.ca_pem,
                         delivery=_module_uses(request, "delivery_lab"), pki=lab_pki)
    try:
        lab.start()
        lab.start_unbound()
        yield lab
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n----- DNS lab {lab.prefix}.0/24: NSD log -----\n{util.tail(lab.nsd_log(), 30)}"
                  f"\n----- unbound log -----\n{util.tail(lab.unbound_log(), 60)}")
        lab.cleanup()


@pytest.fixture(scope="module")
def mta_sts_server(dns_lab, lab_root, lab_pki, request):
    """A started StsHttpsServer (lab/mta_sts.py) for dns_lab's MTA-STS domains, shared by the tests
    of one module. Tests that change a policy (set_policy/set_down) or a TXT record (dns_lab.set_sts_*)
    restore it themselves."""
    failed_before = request.session.testsfailed
    srv = mta_sts_mod.StsHttpsServer(lab_root.unique_sub("sts"), dns_lab, lab_pki)
    try:
        srv.start()
        yield srv
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n----- MTA-STS nginx at {srv.address}:443: error log -----\n{srv.log_tail(40)}")
        srv.stop()


@pytest.fixture(scope="module")
def delivery_lab(dns_lab, mta_sts_server, lab_root, lab_pki, request):
    """A started DeliveryLab (lab/delivery.py): a Postfix receiver per delivery MX host on
    127.53.X.N:25 and the STARTTLS-stripping proxy, shared by the tests of one module (start-up:
    the receivers start in parallel, a few seconds). Connection counters run from the start: tests
    that assert "no connection" call reset_connections() first. Maillog tails are printed when a
    test of the module failed."""
    if not dns_lab.delivery:
        raise RuntimeError("dns_lab was built without delivery=True (request delivery_lab as a fixture "
                           "argument, not through getfixturevalue, so that dns_lab sees it)")
    failed_before = request.session.testsfailed
    dl = delivery_mod.DeliveryLab(lab_root.unique_sub("dlv"), dns_lab, mta_sts_server, lab_pki)
    try:
        dl.start()
        yield dl
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n----- delivery lab receivers -----\n{dl.log_tails(15)}")
        dl.cleanup()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose the call phase's report on the item (for fixtures that print logs on failure)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
