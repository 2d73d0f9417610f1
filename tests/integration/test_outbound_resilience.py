"""Outbound delivery when things go away: the control plane down (unexpired policies keep working,
nothing new is delivered without a policy), for seconds and for minutes; DNS down for minutes under
load; a restart with a queue of deferred mail, and a policy change while mail waits. Each test runs
its own control plane(s) and gateway(s) against the delivery lab.
"""

from __future__ import annotations

import re
import smtplib
import threading
import time

import pytest

from lab import controlplane as cp_mod
from lab import dns as dns_mod
from lab import flows
from lab import gateway as gw_mod
from lab import ports
from lab import util


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)


@pytest.fixture
def stack(delivery_lab, dns_lab, mta_sts_server, tmp_path, lab_pki):
    """make_cp(config) / make_gw(cp, **outbound overrides): started instances, stopped afterwards."""
    made = []

    def make_cp(config: dict | None = None, name: str = "cp"):
        cp = cp_mod.ControlPlane(str(tmp_path / name), dns_lab, mta_sts_server, config=config)
        cp.start()
        made.append(cp)
        return cp

    def make_gw(cp, name: str = "gw", **over):
        ob = {"enabled": True, "policy_socket": cp.socket_path, "policy_state_file": str(tmp_path / f"{name}-policy.state"),
              "ca_file": lab_pki.ca_pem, "retry_min": "1s", "retry_max": "2s", "connect_timeout": "2s",
              "command_timeout": "10s", "policy_wait": "3s"}
        ob.update(over)
        gw = gw_mod.Gateway(str(tmp_path / name), lab_pki, next_hop_port=1, hostname="gw.lab.test",
                            listeners=[{"name": "intake", "tls_mode": "none", "role": "outbound",
                                        "allowed_networks": ["127.0.0.1/32"]}],
                            config={"outbound": ob})
        gw.start()
        made.append(gw)
        return gw

    yield make_cp, make_gw
    for x in reversed(made):
        x.stop()
    for x in made:
        if isinstance(x, gw_mod.Gateway):
            x.cleanup()


def test_control_plane_down_keeps_unexpired_policies_and_never_guesses(stack, delivery_lab):
    make_cp, make_gw = stack
    cp = make_cp()
    gw = make_gw(cp)
    gw.wait_log(r"event=policy.link.connected", timeout=10)
    first = flows.submit(gw, ["a@dane-ee.dlv.test"], "cpdown-1")
    gw.wait_log(rf"event=message.delivered .*qid={first} .*verified=dane", timeout=30)
    cp.stop()
    gw.wait_log(r"event=policy.link.lost", timeout=10)
    # The policy compiled before (TTL 300 s) still applies: delivered, DANE-verified as before.
    second = flows.submit(gw, ["b@dane-ee.dlv.test"], "cpdown-2")
    gw.wait_log(rf"event=message.delivered .*qid={second} .*verified=dane", timeout=30)
    # A destination without a policy waits for one and is deferred; it is never tried without one.
    delivery_lab.reset_connections()
    third = flows.submit(gw, ["c@dane-ta.dlv.test"], "cpdown-3")
    line = gw.wait_log(rf"event=message.deferred .*qid={third}", timeout=15)
    assert "no delivery policy for dane-ta.dlv.test" in line, line
    assert delivery_lab.connections("mx.dane-ta.dlv.test") == 0
    # The control plane returns: the deferred message gets its policy and goes out on the next retry.
    cp.start()
    gw.wait_log(rf"event=message.delivered .*qid={third} .*domain=dane-ta.dlv.test .*verified=dane", timeout=30)


def test_restart_with_deferred_mail_delivers_it_once_the_mx_is_back(stack, delivery_lab):
    make_cp, make_gw = stack
    cp = make_cp()
    gw = make_gw(cp)
    receiver = delivery_lab.receiver("insecure")
    before = len(receiver.maildir_messages())
    receiver.stop()
    try:
        qids = [flows.submit(gw, [f"r{i}@insecure.dlv.test"], f"restart-{i}") for i in range(5)]
        for q in qids:
            gw.wait_log(rf"event=message.deferred .*qid={q}", timeout=30)
        gw.stop()
        receiver.start()
        gw.start()
        gw.wait_log(r"event=worker.started .*spooled=", timeout=10)
        for q in qids:
            gw.wait_log(rf"event=message.delivered .*qid={q} .*domain=insecure.dlv.test", timeout=40)
    finally:
        if not receiver.running:
            receiver.start()
    util.wait_until(lambda: len(receiver.maildir_messages()) >= before + 5, 20, message="5 messages in the mailbox")
    assert len(receiver.maildir_messages()) == before + 5  # each exactly once


def test_a_policy_change_applies_to_queued_mail(stack, delivery_lab):
    make_cp, make_gw = stack
    cp = make_cp()
    gw = make_gw(cp)
    qid = flows.submit(gw, ["z@dane-fail.dlv.test"], "policy-change-1")
    gw.wait_log(rf"event=message.deferred .*qid={qid} .*domain=dane-fail.dlv.test", timeout=30)
    # The operator turns DANE off for this destination (connector dane_mode none) and restarts the
    # control plane: the data plane's next snapshot has no policy for it, the retry asks again and
    # gets the new one.
    cp.stop()
    cp.config["connectors"] = [{"name": "nodane", "domains": ["dane-fail.dlv.test"], "dane_mode": "none"}]
    cp.start()
    line = gw.wait_log(rf"event=message.delivered .*qid={qid} .*domain=dane-fail.dlv.test", timeout=40)
    assert "requirement=may" in line and "dane_mode=none" in line, line
    assert delivery_lab.receiver("dane-fail").wait_maildir(1, timeout=15)


def test_mandatory_modes_and_no_cleartext_defer_instead_of_downgrading(stack, delivery_lab):
    make_cp, make_gw = stack
    cp = make_cp({"connectors": [
        {"name": "dane-required", "domains": ["insecure.dlv.test"], "dane_mode": "mandatory"},
        {"name": "sts-required", "domains": ["dane-ee.dlv.test"], "mta_sts_mode": "mandatory"},
        {"name": "tls-required", "domains": ["stripped.dlv.test"], "allow_cleartext": False},
    ]})
    gw = make_gw(cp)
    delivery_lab.reset_connections()
    q1 = flows.submit(gw, ["m1@insecure.dlv.test"], "mandatory-dane-1")
    q2 = flows.submit(gw, ["m2@dane-ee.dlv.test"], "mandatory-sts-1")
    q3 = flows.submit(gw, ["m3@stripped.dlv.test"], "no-cleartext-1")
    l1 = gw.wait_log(rf"event=message.deferred .*qid={q1}", timeout=30)
    assert "DANE is mandatory" in l1 and "dane-required" in l1, l1
    l2 = gw.wait_log(rf"event=message.deferred .*qid={q2}", timeout=30)
    assert "MTA-STS is mandatory" in l2 and "publishes no MTA-STS policy" in l2, l2
    l3 = gw.wait_log(rf"event=message.deferred .*qid={q3}", timeout=30)
    assert "starttls-not-supported" in l3, l3
    # Policy-level deferrals never open a connection.
    assert delivery_lab.connections("mx.insecure.dlv.test") == 0
    assert delivery_lab.connections("mx.dane-ee.dlv.test") == 0


def test_smart_host_routes_by_connector_by_name_with_dane_and_by_address(stack, delivery_lab):
    make_cp, make_gw = stack
    fail_addr = delivery_lab.address("mx.dane-fail.dlv.test")
    cp = make_cp({"connectors": [
        # By name: no MX lookup; the host's addresses and TLSA are resolved and validated, so DANE applies.
        {"name": "via-name", "domains": ["dane-ta.dlv.test"], "smart_host": "mx.dane-ta.dlv.test:25"},
        # By address: no DNS at all and so no DANE; the destination's own (mismatching) TLSA is not used.
        {"name": "via-address", "domains": ["dane-fail.dlv.test"], "smart_host": f"{fail_addr}:25"},
    ]})
    gw = make_gw(cp)
    q1 = flows.submit(gw, ["s1@dane-ta.dlv.test"], "smarthost-name-1")
    l1 = gw.wait_log(rf"event=message.delivered .*qid={q1}", timeout=30)
    assert "host=mx.dane-ta.dlv.test" in l1 and "verified=dane" in l1 and "dane_usage=2" in l1, l1
    q2 = flows.submit(gw, ["s2@dane-fail.dlv.test"], "smarthost-address-1")
    l2 = gw.wait_log(rf"event=message.delivered .*qid={q2}", timeout=30)
    assert f"host={fail_addr}" in l2 and "requirement=may" in l2, l2
    cp.wait_log(r"event=policy.compiled .*domain=dane-fail.dlv.test .*connector=via-address")


def test_intake_can_require_a_client_certificate(stack, lab_pki, tmp_path):
    """With require_client_certificate, MAIL needs a certificate that verifies against client_ca_file;
    without one (or from another CA) it is 530 5.7.0. The accepted message logs the client's subject."""
    import ssl
    make_cp, make_gw = stack
    cp = make_cp()
    gw = gw_mod.Gateway(str(tmp_path / "gw-cert"), lab_pki, next_hop_port=1, hostname="gw.lab.test",
                        listeners=[{"name": "intake", "tls_mode": "starttls", "role": "outbound",
                                    "allowed_networks": ["127.0.0.1/32"], "client_ca_file": lab_pki.ca_pem,
                                    "require_client_certificate": True}],
                        config={"outbound": {"enabled": True, "policy_socket": cp.socket_path,
                                             "policy_state_file": str(tmp_path / "cert.state")}})
    gw.start()
    try:
        host, port = gw.address("intake")
        good = lab_pki.issue("internal-server", ["app1.lab.test"])
        rogue = lab_pki.issue_untrusted("rogue-server", ["app1.lab.test"])

        def mail(cert):
            ctx = ssl.create_default_context(cafile=lab_pki.ca_pem)
            ctx.check_hostname = False
            if cert is not None:
                ctx.load_cert_chain(cert.chain, cert.key)
            with smtplib.SMTP(host, port, timeout=20) as s:
                s.ehlo("app1.lab.test")
                s.starttls(context=ctx)
                s.ehlo("app1.lab.test")
                return s.mail("sender@lab.test")
        assert mail(None)[0] == 530
        code, text = mail(rogue)
        assert code == 530 and b"client certificate" in text, text
        assert mail(good)[0] == 250
        with smtplib.SMTP(host, port, timeout=20) as s:  # no STARTTLS at all
            s.ehlo("app1.lab.test")
            assert s.mail("sender@lab.test")[0] == 530
    finally:
        gw.stop()
        gw.cleanup()


def test_kill9_of_each_daemon_under_outbound_load_loses_nothing_acknowledged(stack, delivery_lab):
    """Messages are submitted one after another while the control plane and then the data plane
    are killed with SIGKILL and restarted. Every message that got its 250 is delivered afterwards
    (at least once: a kill between the receiver's 250 and the spool's record may repeat one)."""
    make_cp, make_gw = stack
    cp = make_cp()
    gw = make_gw(cp)
    gw.wait_log(r"event=policy.link.connected", timeout=10)
    domains = ["dane-ee.dlv.test", "dane-ta.dlv.test", "insecure.dlv.test"]
    acknowledged = []
    for i in range(24):
        if i == 8:
            cp.proc.kill()                       # SIGKILL
            cp.proc.wait(10)
            cp.start()
        if i == 16:
            gw.kill9()
            gw.start()
        try:
            acknowledged.append(flows.submit(gw, [f"k{i}@{domains[i % len(domains)]}"], f"kill9-{i}"))
        except (AssertionError, OSError):
            pass                                 # refused or cut while a daemon was down: not acknowledged
    assert len(acknowledged) >= 20, f"only {len(acknowledged)} of 24 submissions acknowledged"
    for qid in acknowledged:
        util.wait_until(lambda: f"qid={qid} " in " ".join(l for l in gw.log_text().splitlines() if "event=message.delivered" in l),
                        60, message=f"delivery of {qid}")


OUTAGE_S = 120      # "for minutes": four policy lifetimes and dozens of retry rounds
POLICY_TTL_S = 30   # resolver.max_ttl: every policy compiled here expires 30 s after compilation
LOAD_DOMAINS = ["dane-ee.dlv.test", "dane-ta.dlv.test", "insecure.dlv.test"]


class _Load:
    """Submits one message every `interval` seconds to the next of LOAD_DOMAINS until stopped;
    remembers when each acknowledged one was accepted."""

    def __init__(self, gw, tag: str, interval: float = 2.0):
        self.gw, self.tag, self.interval = gw, tag, interval
        self.acknowledged: list[tuple[float, str, str]] = []   # (time, qid, domain)
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{tag}", daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            domain = LOAD_DOMAINS[i % len(LOAD_DOMAINS)]
            try:
                qid = flows.submit(self.gw, [f"{self.tag}{i}@{domain}"], f"{self.tag}-{i}")
                self.acknowledged.append((time.monotonic(), qid, domain))
            except (AssertionError, OSError, smtplib.SMTPException):
                self.refused += 1
            i += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def _deliveries(gw) -> dict[str, str]:
    """qid -> its (first) message.delivered line."""
    out = {}
    for line in gw.log_text().splitlines():
        if "event=message.delivered" in line:
            m = re.search(r" qid=(\S+)", line)
            if m and m.group(1) not in out:
                out[m.group(1)] = line
    return out


def _check_never_downgraded(gw, tag: str):
    for qid, line in _deliveries(gw).items():
        if "domain=dane-" in line:
            assert "verified=dane" in line, f"{tag}: {qid} delivered without DANE: {line}"


def test_control_plane_and_dns_down_for_minutes_under_outbound_load(stack, delivery_lab, dns_lab):
    """Two gateways under the same steady outbound load, side by side (so that the minutes are spent
    once). On one the control plane is killed for OUTAGE_S; on the other, DNS stops answering the
    control plane for OUTAGE_S (a proxy in front of the lab's resolver drops every query). Policies
    live POLICY_TTL_S. Both keep delivering on unexpired policies, then defer (never deliver to a
    DANE destination unverified, never guess), keep accepting mail, and deliver every acknowledged
    message once the outage ends."""
    make_cp, make_gw = stack
    proxy = dns_mod.DnsProxy("127.0.0.1", dns_lab.unbound_address, port=ports.free_port("127.0.0.1"))
    proxy.start()
    try:
        resolver_ttl = {"resolver": {"max_ttl": f"{POLICY_TTL_S}s", "failure_ttl": "5s"}}
        cp_a = make_cp(resolver_ttl, name="cp-down")
        via_proxy = gw_mod.deep_merge(resolver_ttl, {"resolver": {
            "root_servers": [], "forwarders": [f"127.0.0.1@{proxy.port}"]}})
        cp_b = make_cp(via_proxy, name="dns-down")
        gw_a = make_gw(cp_a, name="gw-cp-down")
        gw_b = make_gw(cp_b, name="gw-dns-down")
        for gw in (gw_a, gw_b):
            gw.wait_log(r"event=policy.link.connected", timeout=10)
        reason = {"cp-down": "4.4.3 no delivery policy for", "dns-down": "4.4.3 the MX lookup failed"}
        with _Load(gw_a, "cpdownlong") as load_a, _Load(gw_b, "dnsdownlong") as load_b:
            time.sleep(8)                       # policies for every load domain compiled and used
            outage_start = time.monotonic()
            cp_a.proc.kill()                    # SIGKILL: the control plane is gone
            cp_a.proc.wait(10)
            proxy.stop_answering(every_zone=True)
            time.sleep(OUTAGE_S)
            outage_end = time.monotonic()
            during = {"cp-down": _deliveries(gw_a), "dns-down": _deliveries(gw_b)}
            deferred_text = {"cp-down": gw_a.log_text(), "dns-down": gw_b.log_text()}
            assert cp_b.running, "the control plane survived minutes without DNS"
            cp_a.start()
            proxy.resume_answering()
            time.sleep(6)                       # a little load after the outage too
        for tag, gw, load in (("cp-down", gw_a, load_a), ("dns-down", gw_b, load_b)):
            # Mail was accepted all along: about one per interval, during the outage too.
            in_outage = [a for a in load.acknowledged if outage_start <= a[0] <= outage_end]
            assert len(in_outage) >= OUTAGE_S / load.interval * 0.8, (tag, len(in_outage), load.refused)
            # Unexpired policies kept working: some mail accepted during the outage went out during it.
            early = {qid for t, qid, _ in in_outage if t < outage_start + POLICY_TTL_S - 10}
            assert early & set(during[tag]), f"{tag}: nothing accepted in the outage's first seconds was delivered in it"
            # After expiry, mail waited instead of going out unverified. The last policy compiled
            # before the outage lives POLICY_TTL_S; without DNS, one more may be compiled from the
            # resolver's cache (its answers live POLICY_TTL_S too), hence two lifetimes at most.
            late = [qid for t, qid, d in in_outage if t > outage_start + 2 * POLICY_TTL_S + 10 and d.startswith("dane-")]
            assert late and not set(late) & set(during[tag]), f"{tag}: mail accepted after the policies expired went out"
            settled = [qid for t, qid, d in in_outage
                       if outage_start + 2 * POLICY_TTL_S + 10 < t < outage_end - 10 and d.startswith("dane-")]
            assert settled, tag
            for qid in settled:  # tried (and deferred) by the end of the outage, with the reason
                line = re.search(rf"event=message.deferred .*qid={qid} .*", deferred_text[tag])
                assert line and reason[tag] in line.group(0), (tag, qid, line and line.group(0))
            # Everything acknowledged is delivered once the outage ends; DANE destinations only verified.
            for _, qid, _ in load.acknowledged:
                util.wait_until(lambda: qid in _deliveries(gw), 90, message=f"{tag}: delivery of {qid}")
            _check_never_downgraded(gw, tag)
        assert cp_b.running and cp_b.proc.poll() is None
    finally:
        proxy.stop()
