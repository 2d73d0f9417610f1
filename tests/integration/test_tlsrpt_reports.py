"""TLS-RPT daily aggregate reports (RFC 8460, issue #8), end to end: the data plane records the
outcome of every outbound TLS session to the delivery lab (DANE, MTA-STS, insecure, bogus
destinations); after the UTC day ends the control plane turns that day's outcomes into one report per
policy domain and sends it to the rua targets of `_smtp._tls.<domain>` (every delivery case
publishes `rua=mailto:tlsrpt@dane-ee.dlv.test,https://reports.dlv.test/v1/tlsrpt`):

- mailto: through the gateway's own outbound path (a submit to the data plane; the report mail is
  delivered under dane-ee's DANE policy to its Postfix receiver) and not itself reported on;
- https: a POST of application/tlsrpt+gzip to the lab's HTTPS collector (lab/tlsrpt_receiver.py),
  retried when the collector answers 503.

The day boundary: the control plane's report clock is moved (MXEDGE_TEST_CLOCK_OFFSET) to just past
the next UTC midnight, so the day the mail went out today is the day that has just closed.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import os
import subprocess
import time

import pytest

from lab import controlplane as cp_mod
from lab import ctl as ctl_mod
from lab import flows
from lab import gateway as gw_mod
from lab import smtp_sink as sink_mod
from lab import tlsrpt_receiver
from lab import util

INTAKE = [{"name": "intake", "tls_mode": "none", "role": "outbound", "allowed_networks": ["127.0.0.1/32", "::1"]}]
SUBMITTER = "gw.lab.test"
DOMAINS_DELIVERED = ["dane-ee", "insecure", "sts-ok"]
DOMAINS_DEFERRED = ["dane-fail", "sts-badcert", "bogus"]


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)
    ctl_mod.skip_unless_built()


def ctl(*args, socket_path: str) -> subprocess.CompletedProcess:
    return ctl_mod.run(socket_path, *args)


def today_utc() -> int:
    return int(time.time()) // 86400 * 86400


def rfc3339(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest.fixture(scope="module")
def lab(delivery_lab, dns_lab, mta_sts_server, lab_root, lab_pki):
    receiver = tlsrpt_receiver.TlsRptReceiver(lab_root.unique_sub("tlsrpt-rx"), dns_lab.tlsrpt_https_address, lab_pki)
    receiver.start()
    sink = sink_mod.SmtpSink(lab_root.unique_sub("rpt-sink"))
    sink.start()
    gw_dir = lab_root.unique_sub("rpt-gw")
    gw = gw_mod.Gateway(gw_dir, lab_pki, next_hop_port=sink.port, hostname=SUBMITTER, listeners=INTAKE,
                        config={"outbound": {"enabled": True, "policy_socket": os.path.join(gw_dir, "policy.sock"),
                                             "policy_state_file": os.path.join(gw_dir, "policy.state"),
                                             "ca_file": lab_pki.ca_pem, "retry_min": "1h", "retry_max": "2h",
                                             "connect_timeout": "3s", "command_timeout": "15s", "policy_wait": "15s"}})
    cp_dir = lab_root.unique_sub("rpt-cp")
    cp = cp_mod.ControlPlane(cp_dir, dns_lab, mta_sts_server,
                             config={"hostname": SUBMITTER,
                                     "outbound": {"enabled": True, "policy_socket": gw.config["outbound"]["policy_socket"]},
                                     "management": {"dataplane_socket": gw.dataplane_socket}})
    cp.start()
    try:
        gw.start()
        gw.wait_log(r"event=policy.link.connected", timeout=10)
        yield {"gw": gw, "cp": cp, "receiver": receiver, "delivery": delivery_lab, "state_dir": os.path.join(cp_dir, "tlsrpt"),
               "ca": lab_pki.ca_pem}
    finally:
        gw.stop()
        cp.stop()
        sink.stop()
        receiver.stop()
        gw.cleanup()


def enable_reports(lab, offset: int) -> None:
    """Restart the control plane with reports on and its report clock `offset` seconds ahead."""
    cp = lab["cp"]
    cp.stop()
    cp.config["tlsrpt"] = {"reports": {"enabled": True, "organization_name": "mxedge lab", "submitter": SUBMITTER,
                                       "from": "tlsrpt-noreply@lab.test", "contact_info": "mailto:postmaster@lab.test",
                                       "spread": "0s", "state_dir": lab["state_dir"], "ca_file": lab["ca"],
                                       "retry_min": "5s", "retry_max": "10s"}}
    cp.env = {"MXEDGE_TEST_CLOCK_OFFSET": str(offset)}
    cp.start()


def report_mails(delivery_lab) -> dict[str, email.message.EmailMessage]:
    """The TLS-RPT report mails in dane-ee's Maildir, by TLS-Report-Domain."""
    out = {}
    for m in delivery_lab.receiver("dane-ee").maildir_messages():
        msg = email.message_from_bytes(m.raw, policy=email.policy.default)
        if msg.get("TLS-Report-Domain"):
            out[str(msg["TLS-Report-Domain"])] = msg
    return out


def expected_counts(rows: dict, domain: str) -> tuple[int, int]:
    ok = sum(v["sessions"] for k, v in rows.items() if k[0] == domain and k[2] == "")
    failed = sum(v["sessions"] for k, v in rows.items() if k[0] == domain and k[2] != "")
    return ok, failed


def test_daily_reports_go_to_mailto_and_https_targets_after_the_utc_day_ends(lab):
    gw, cp, receiver, dl = lab["gw"], lab["cp"], lab["receiver"], lab["delivery"]
    day = today_utc()
    if int(time.time()) - day > 86400 - 300:
        pytest.skip("too close to a real UTC midnight for a stable day")

    # 1. Today's traffic: deliveries under each kind of policy, and deferrals that stop once deleted
    # (so that the day's counts no longer move while the report is made).
    qids = {}
    for i, case in enumerate(DOMAINS_DELIVERED + DOMAINS_DEFERRED):
        qids[case] = flows.submit(gw, [f"rpt{i}@{case}.dlv.test"], f"tlsrpt-{case}")
    for case in DOMAINS_DELIVERED:
        gw.wait_log(rf"event=message.delivered .*domain={case}.dlv.test ", timeout=30)
    for case in DOMAINS_DEFERRED:
        gw.wait_log(rf"event=message.deferred .*domain={case}.dlv.test ", timeout=30)
    for case in DOMAINS_DEFERRED:
        p = ctl("queue", "delete", qids[case], socket_path=gw.dataplane_socket)
        assert p.returncode == 0, (p.stdout, p.stderr)
    time.sleep(0.5)
    rows = gw.tls_outcomes()
    domains = sorted({k[0] for k in rows})
    assert set(domains) >= {f"{c}.dlv.test" for c in DOMAINS_DELIVERED + DOMAINS_DEFERRED}, domains

    # The same rows through the management API (what the control plane reports from), from the data
    # plane directly and forwarded by the control plane; and as an operator reads them.
    for sock in (gw.dataplane_socket, cp.mgmt_socket):
        p = ctl("--json", "tlsrpt", "outcomes", "--date", rfc3339(day)[:10], socket_path=sock)
        assert p.returncode == 0, (p.stdout, p.stderr)
        api = json.loads(p.stdout)["outcomes"]
        assert sum(int(o["sessions"]) for o in api) == sum(v["sessions"] for v in rows.values())
        assert {o["policy_domain"] for o in api} == set(domains)
    p = ctl("tlsrpt", "outcomes", "--domain", "dane-fail.dlv.test", socket_path=cp.mgmt_socket)
    assert p.returncode == 0 and "validation-failure" in p.stdout and "mx.dane-fail.dlv.test" in p.stdout, p.stdout
    p = ctl("tlsrpt", "outcomes", "--date", "yesterday", socket_path=cp.mgmt_socket)
    assert p.returncode == 2 and "YYYY-MM-DD" in p.stderr
    p = ctl("tlsrpt", "outcomes", "--date", "2001-01-01", socket_path=cp.mgmt_socket)
    assert p.returncode == 0 and "no outbound TLS sessions recorded on 2001-01-01" in p.stdout, p.stdout

    # Reports are still off in the control plane: pending says so (exit 3, how to turn them on).
    p = ctl("tlsrpt", "pending", socket_path=cp.mgmt_socket)
    assert p.returncode == 3 and "tlsrpt.reports.enabled" in p.stderr, (p.returncode, p.stdout, p.stderr)

    # 2. Midnight: the control plane's report clock is moved to 30 s after the next UTC midnight.
    receiver.fail_next(1)  # the first POST is refused: that report must be retried
    enable_reports(lab, day + 86400 + 30 - int(time.time()))
    cp.wait_log(rf"event=tlsrpt.day_closed day={rfc3339(day)} reports={len(domains)}", timeout=30)

    # While the refused POST waits for its retry, `mxedgectl tlsrpt pending` shows the report: the
    # mailto target took it, the https one waits with the collector's answer.
    def waiting():
        doc = ctl("--json", "tlsrpt", "pending", socket_path=cp.mgmt_socket)
        assert doc.returncode == 0, (doc.stdout, doc.stderr)
        out = [o for o in json.loads(doc.stdout).get("outgoing", []) if int(o.get("attempts", 0)) >= 1]
        return out or None
    [w] = util.wait_until(waiting, 4.5, interval=0.05, message="the refused report in tlsrpt pending")
    assert w["day"] == rfc3339(day)[:10] and "HTTP 503" in w["last_error"], w
    assert [(t["uri"], t["done"]) for t in w["targets"]] == [
        ("mailto:tlsrpt@dane-ee.dlv.test", True), ("https://reports.dlv.test/v1/tlsrpt", False)], w
    p = ctl("tlsrpt", "pending", socket_path=cp.mgmt_socket)
    assert p.returncode == 0 and "waiting  https://reports.dlv.test/v1/tlsrpt" in p.stdout, p.stdout

    # 3. https: one accepted POST per policy domain (and the refused one before it).
    posts = receiver.wait_posts(len(domains), timeout=60)
    assert len([p for p in receiver.posts if p.status == 503]) == 1
    cp.wait_log(r"event=tlsrpt.send_failed .*uri=https://reports.dlv.test/v1/tlsrpt .*error=\"?HTTP 503", timeout=5)
    by_domain = {}
    for post in posts:
        assert post.path == "/v1/tlsrpt" and post.content_type == "application/tlsrpt+gzip", post
        assert post.report is not None, post.error
        r = post.report
        assert list(r.keys())[:5] == ["organization-name", "date-range", "contact-info", "report-id", "policies"]
        assert r["organization-name"] == "mxedge lab" and r["contact-info"] == "mailto:postmaster@lab.test"
        assert r["date-range"] == {"start-datetime": rfc3339(day), "end-datetime": rfc3339(day + 86399)}
        [pol_domain] = {p["policy"]["policy-domain"] for p in r["policies"]}
        assert r["report-id"] == f"{rfc3339(day)}_{pol_domain}"
        assert pol_domain not in by_domain, "one report per domain"
        by_domain[pol_domain] = r
    assert sorted(by_domain) == domains
    print("sample report (dane-fail):", json.dumps(by_domain["dane-fail.dlv.test"], indent=2))

    # The counts are exactly the day's outcome rows, per domain.
    for domain, r in by_domain.items():
        ok = sum(p["summary"]["total-successful-session-count"] for p in r["policies"])
        failed = sum(p["summary"]["total-failure-session-count"] for p in r["policies"])
        assert (ok, failed) == expected_counts(rows, domain), (domain, r, rows)
        for p in r["policies"]:
            assert sum(f["failed-session-count"] for f in p.get("failure-details", [])) == p["summary"]["total-failure-session-count"]

    dane_ee = by_domain["dane-ee.dlv.test"]["policies"][0]
    assert dane_ee["policy"]["policy-type"] == "tlsa" and dane_ee["policy"]["policy-string"][0].startswith("3 1 1 ")
    assert dane_ee.get("failure-details", []) == []
    [fail] = by_domain["dane-fail.dlv.test"]["policies"][0]["failure-details"]
    assert fail["result-type"] == "validation-failure" and fail["receiving-mx-hostname"] == "mx.dane-fail.dlv.test"
    assert fail["receiving-ip"] == dl.address("mx.dane-fail.dlv.test") and fail["sending-mta-ip"] == "127.0.0.1"
    sts_ok = by_domain["sts-ok.dlv.test"]["policies"][0]["policy"]
    assert sts_ok["policy-type"] == "sts" and sts_ok["policy-string"][:2] == ["version: STSv1", "mode: enforce"]
    assert any(s.startswith("mx: ") for s in sts_ok["policy-string"]) and sts_ok["policy-string"][-1].startswith("max_age: ")
    assert sts_ok["mx-host"]
    badcert = by_domain["sts-badcert.dlv.test"]["policies"][0]
    assert badcert["failure-details"][0]["result-type"] == "certificate-host-mismatch"
    bogus = by_domain["bogus.dlv.test"]["policies"][0]
    assert bogus["policy"]["policy-type"] == "tlsa" and bogus["failure-details"][0]["result-type"] == "dnssec-invalid"
    assert "receiving-mx-hostname" not in bogus["failure-details"][0]  # no session began
    insecure = by_domain["insecure.dlv.test"]["policies"][0]["policy"]
    assert insecure["policy-type"] == "no-policy-found" and "policy-string" not in insecure

    # 4. mailto: the same reports as mail through the gateway's own outbound path, delivered to the
    # dane-ee receiver under its DANE policy.
    util.wait_until(lambda: len(report_mails(dl)) >= len(domains), 60, message="report mails in dane-ee's Maildir")
    mails = report_mails(dl)
    for domain in domains:
        msg = mails[domain]
        assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
        assert str(msg["TLS-Report-Submitter"]) == SUBMITTER
        assert str(msg["From"]) == "tlsrpt-noreply@lab.test" and str(msg["To"]) == "tlsrpt@dane-ee.dlv.test"
        assert f"Report Domain: {domain}" in str(msg["Subject"]) and f"Submitter: {SUBMITTER}" in str(msg["Subject"])
        [att] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"]
        assert att.get_filename().startswith(f"{SUBMITTER}!{domain}!{day}!{day + 86399}") and att.get_filename().endswith(".json.gz")
        assert json.loads(gzip.decompress(att.get_content())) == by_domain[domain]
    gw.wait_log(r"event=submit.queued .*origin=tlsrpt .*tlsrpt_exempt=(1|true)", timeout=5)

    # 5. The report mails' own sessions to dane-ee are not reported on: its counts did not move.
    time.sleep(0.5)
    after = gw.tls_outcomes()
    assert expected_counts(after, "dane-ee.dlv.test") == expected_counts(rows, "dane-ee.dlv.test"), (rows, after)

    # 6. Done: nothing left waiting, the day recorded; a restart sends nothing again.
    util.wait_until(lambda: not [f for f in os.listdir(lab["state_dir"]) if f.endswith(".job")], 20, message="jobs done")
    p = ctl("tlsrpt", "pending", socket_path=cp.mgmt_socket)
    assert p.returncode == 0 and p.stdout == "no TLS-RPT reports waiting to be sent\n", p.stdout
    with open(os.path.join(lab["state_dir"], "cursor")) as f:
        assert int(f.read()) == day
    n_posts, n_mails = len(receiver.posts), len(report_mails(dl))
    cp.stop()
    cp.start()
    time.sleep(3)
    assert len(receiver.posts) == n_posts and len(report_mails(dl)) == n_mails
    assert "event=tlsrpt.report_created" not in cp.run_log()


def test_reports_config_is_validated(lab, tmp_path):
    """A reports section that cannot work is refused at start with the field named."""
    cp = lab["cp"]
    bad = dict(cp.config)
    bad["tlsrpt"] = {"reports": {"enabled": True, "state_dir": "relative/dir", "from": "no-at-sign"}}
    path = tmp_path / "bad.yaml"
    path.write_text(gw_mod.to_yaml(bad))
    p = ctl_mod.run(None, "config", "validate", str(path))
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert "invalid (2 errors)" in out, out
    assert "state_dir must be an absolute path" in out and "from must be an email address, got 'no-at-sign'" in out, out
