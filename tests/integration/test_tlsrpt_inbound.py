"""Inbound TLS-RPT reports (issue #8, part 3): mail to tlsrpt.inbound.mailboxes is parsed by the data
plane after it is accepted, stored per worker (<spool>/tlsrpt-inbound-w<k>.db) and shown by
`mxedgectl tlsrpt list|show`, through the control plane (which forwards the request) and directly
with --socket. Report mails are built with Python's email package the way RFC 8460 5.3 describes
them (multipart/report; report-type="tlsrpt", an application/tlsrpt+gzip base64 attachment).

Checked: every report mail still reaches the next hop unchanged; the parsed fields of RFC 8460
Appendix B's example exactly (list and show, text and --json, both paths); a json attachment; mail
to another recipient is not parsed; broken reports (truncated gzip, a bad JSON member, no attachment,
over max_message_size) are listed with their error; --domain and --limit; NOT_FOUND (exit 5); the
store surviving a data-plane restart; the feature off (exit 3, saying how to turn it on).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import uuid
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
import email.policy

import pytest

from lab import controlplane as cp_mod
from lab import ctl as ctl_mod
from lab import flows
from lab import gateway as gw_mod
from lab import smtp_client
from lab import smtp_sink as sink_mod

MAILBOX = "tlsrpt@lab.test"
MAX_MESSAGE = 64 * 1024

# RFC 8460 Appendix B (additional-information as the one-line URI it stands for).
RFC_REPORT = {
    "organization-name": "Company-X",
    "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
    "contact-info": "sts-reporting@company-x.example",
    "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    "policies": [{
        "policy": {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
            "policy-domain": "company-y.example",
            "mx-host": ["*.mail.company-y.example"],
        },
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [
            {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1",
             "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
            {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1",
             "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56",
             "failed-session-count": 200,
             "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"},
            {"result-type": "validation-failure", "sending-mta-ip": "198.51.100.62", "receiving-ip": "203.0.113.58",
             "receiving-mx-hostname": "mx-backup.mail.company-y.example", "failed-session-count": 3,
             "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"},
        ],
    }],
}


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for reason in (cp_mod.missing_binary_reason(), gw_mod.missing_binary_reason()):
        if reason:
            pytest.skip(reason)
    ctl_mod.skip_unless_built()


@pytest.fixture(scope="module")
def planes(dns_lab, lab_root, lab_pki):
    sink = sink_mod.SmtpSink(lab_root.unique_sub("rpt-sink"))
    sink.start()
    gw_dir = lab_root.unique_sub("rpt-gw")
    gw = gw_mod.Gateway(gw_dir, lab_pki, next_hop_port=sink.port,
                        listeners=[{"name": "smtp", "tls_mode": "starttls"}],
                        config={"tlsrpt": {"inbound": {"mailboxes": ["TLSRPT@lab.test"],  # lower-cased by the loader
                                                       "max_message_size": MAX_MESSAGE}}})
    cp = cp_mod.ControlPlane(lab_root.unique_sub("rpt-cp"), dns_lab,
                             config={"management": {"dataplane_socket": gw.dataplane_socket}})
    cp.start()
    try:
        gw.start()
        gw.sink = sink
        yield gw, cp
    finally:
        gw.stop()
        cp.stop()
        sink.stop()
        gw.cleanup()


def ctl(socket_path: str, *args, json_out: bool = False) -> subprocess.CompletedProcess:
    return ctl_mod.run(socket_path, *args, json_out=json_out)


def ok_json(socket_path: str, *args) -> dict:
    return ctl_mod.ok_json(socket_path, *args)


def report_mail(attachment: bytes | None, subtype: str = "tlsrpt+gzip", to: str = MAILBOX,
                domain: str = "company-y.example", extra: bytes = b"") -> tuple[str, bytes]:
    """An RFC 8460 5.3 report mail: multipart/report with a text part and the attachment (base64)."""
    m = MIMEMultipart("report", report_type="tlsrpt")
    mid = f"{uuid.uuid4().hex}@mx.company-x.example"
    m["From"] = "tlsrpt-noreply@mx.company-x.example"
    m["To"] = to
    m["Subject"] = f"Report Domain: {domain} Submitter: company-x.example Report-ID: <{mid}>"
    m["Message-ID"] = f"<{mid}>"
    m["TLS-Report-Domain"] = domain
    m["TLS-Report-Submitter"] = "company-x.example"
    m.attach(MIMEText("This is an aggregate TLS report from company-x.example\n" + extra.decode()))
    if attachment is not None:
        part = MIMEApplication(attachment, subtype)
        part.add_header("Content-Disposition", "attachment",
                        filename="company-x.example!company-y.example!1459468800!1459555199.json.gz")
        m.attach(part)
    return mid, m.as_bytes(policy=email.policy.SMTP)


def send(gw, content: bytes, rcpts=(MAILBOX,)) -> str:
    c = flows.open_session(gw, "smtp")
    try:
        r = c.send_mail("tlsrpt-noreply@mx.company-x.example", list(rcpts), content)
        r.expect(250)
        c.quit()
    finally:
        c.close()
    qid = smtp_client.queue_id(r)
    assert qid, r.text
    return qid


def delivered_unchanged(gw, mid: str, content: bytes) -> None:
    got = gw.sink.wait_for_message_id(mid, timeout=20)
    assert got.raw.endswith(content.replace(b"\r\n", b"\n")), got.raw[:400]


def inbound_event(gw, qid: str) -> dict:
    gw.wait_log(f"event=tlsrpt.inbound .*qid={qid}", timeout=10, regex=True)
    [e] = [e for e in gw.events("tlsrpt.inbound") if e.get("qid") == qid]
    return e


def listed(sock: str, qid: str) -> dict:
    reports = ok_json(sock, "tlsrpt", "list", "--limit", "1000")["reports"]
    match = [r for r in reports if r["id"] == qid]
    assert len(match) == 1, reports
    return match[0]


# ---- a good report --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rfc_qid(planes):
    gw, _ = planes
    mid, content = report_mail(gzip.compress(json.dumps(RFC_REPORT).encode()))
    qid = send(gw, content)
    delivered_unchanged(gw, mid, content)
    return qid


def test_rfc_example_parsed_and_delivered(planes, rfc_qid):
    gw, cp = planes
    e = inbound_event(gw, rfc_qid)
    assert (e["organization"], e["report_id"], e["domain"], e["successes"], e["failures"]) == (
        "Company-X", "5065427c-23d3-47ca-b6e0-946ea0e8c4be", "company-y.example", "5326", "303"), e
    assert os.path.exists(os.path.join(gw.spool_dir, "tlsrpt-inbound-w0.db")) or any(
        n.startswith("tlsrpt-inbound-w") for n in os.listdir(gw.spool_dir))
    for sock in (cp.mgmt_socket, gw.dataplane_socket):
        r = listed(sock, rfc_qid)
        assert r["organization_name"] == "Company-X"
        assert r["report_id"] == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
        assert r["contact_info"] == "sts-reporting@company-x.example"
        assert (r["start_datetime"], r["end_datetime"]) == ("2016-04-01T00:00:00Z", "2016-04-01T23:59:59Z")
        assert r["policy_domains"] == ["company-y.example"]
        assert (r["successful_sessions"], r["failed_sessions"]) == ("5326", "303")  # uint64: strings in JSON
        assert r["error"] == "" and r["from"] == "tlsrpt-noreply@mx.company-x.example"
        assert (r["report_domain"], r["submitter"]) == ("company-y.example", "company-x.example")
        assert r["policies"] == [] and r["report_json"] == ""  # list carries summaries only


def test_rfc_example_show(planes, rfc_qid):
    gw, cp = planes
    shown = [ok_json(sock, "tlsrpt", "show", rfc_qid) for sock in (cp.mgmt_socket, gw.dataplane_socket)]
    assert shown[0] == shown[1]
    [r] = shown[0]["reports"]
    assert json.loads(r["report_json"]) == RFC_REPORT  # canonical JSON, same content
    [p] = r["policies"]
    assert (p["policy_type"], p["policy_domain"]) == ("sts", "company-y.example")
    assert p["policy_strings"] == RFC_REPORT["policies"][0]["policy"]["policy-string"]
    assert p["mx_hosts"] == ["*.mail.company-y.example"]
    assert (p["successful_sessions"], p["failed_sessions"]) == ("5326", "303")
    want = [{"result_type": f["result-type"], "sending_mta_ip": f.get("sending-mta-ip", ""),
             "receiving_mx_hostname": f.get("receiving-mx-hostname", ""), "receiving_mx_helo": "",
             "receiving_ip": f.get("receiving-ip", ""), "failed_session_count": str(f["failed-session-count"]),
             "additional_information": f.get("additional-information", ""),
             "failure_reason_code": f.get("failure-reason-code", "")}
            for f in RFC_REPORT["policies"][0]["failure-details"]]
    assert p["failures"] == want

    text = ctl(cp.mgmt_socket, "tlsrpt", "show", rfc_qid)
    assert text.returncode == 0, text.stderr
    for needle in (f"id              {rfc_qid} (received ", "organization    Company-X",
                   "report id       5065427c-23d3-47ca-b6e0-946ea0e8c4be",
                   "date range      2016-04-01T00:00:00Z to 2016-04-01T23:59:59Z",
                   "sessions        5326 successful, 303 failed", "policy 1: sts company-y.example",
                   "  policy-string   version: STSv1", "                  mode: testing",
                   "  mx-host         *.mail.company-y.example",
                   "  failure         certificate-expired: 100 sessions, sending MTA 2001:db8:abcd:0012::1, "
                   "receiving MX mx1.mail.company-y.example",
                   "  failure         starttls-not-supported: 200 sessions, sending MTA 2001:db8:abcd:0013::1, "
                   "receiving MX mx2.mail.company-y.example [203.0.113.56]",
                   "reason code X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                   "see https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"):
        assert needle in text.stdout, text.stdout
    assert ctl(gw.dataplane_socket, "tlsrpt", "show", rfc_qid).stdout == text.stdout


def test_rfc_example_list_text(planes, rfc_qid):
    gw, cp = planes
    text = ctl(cp.mgmt_socket, "tlsrpt", "list")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("RECEIVED"), text.stdout
    [row] = [l for l in text.stdout.splitlines() if l.endswith(rfc_qid)]
    cols = row.split()
    assert cols[1:] == ["Company-X", "company-y.example", "2016-04-01T00:00:00Z..2016-04-01T23:59:59Z", "5326", "303",
                        rfc_qid], row


def test_json_attachment_and_other_recipient(planes):
    gw, cp = planes
    report = copy.deepcopy(RFC_REPORT)
    report["report-id"] = "json-attachment-1"
    report["policies"][0]["policy"]["policy-domain"] = "json.example"
    mid, content = report_mail(json.dumps(report).encode(), subtype="tlsrpt+json", domain="json.example")
    # Also to an ordinary mailbox: one report, both recipients get the mail.
    qid = send(gw, content, rcpts=(MAILBOX, "user@lab.test"))
    delivered_unchanged(gw, mid, content)
    r = listed(gw.dataplane_socket, qid)
    assert (r["report_id"], r["policy_domains"], r["error"]) == ("json-attachment-1", ["json.example"], "")

    # The same report to someone else: delivered, not parsed.
    mid2, content2 = report_mail(gzip.compress(json.dumps(RFC_REPORT).encode()), to="user@lab.test")
    qid2 = send(gw, content2, rcpts=("user@lab.test",))
    delivered_unchanged(gw, mid2, content2)  # intake runs before delivery: had it run, it would be logged now
    assert not [e for e in gw.events("tlsrpt.inbound") if e.get("qid") == qid2]
    assert qid2 not in {r["id"] for r in ok_json(gw.dataplane_socket, "tlsrpt", "list")["reports"]}


# ---- broken reports -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broken(planes):
    gw, _ = planes
    good = gzip.compress(json.dumps(RFC_REPORT).encode())
    bad_member = copy.deepcopy(RFC_REPORT)
    bad_member["policies"][0]["summary"]["total-failure-session-count"] = -1
    cases = {
        "truncated": (report_mail(good[: len(good) // 2], domain="broken.example"), "gzip: truncated gzip data"),
        "bad-json": (report_mail(gzip.compress(json.dumps(bad_member).encode()), domain="broken.example"),
                     "policies[0].summary.total-failure-session-count: not a non-negative integer"),
        "no-attachment": (report_mail(None, domain="broken.example"),
                          "no application/tlsrpt part (top-level type multipart/report)"),
        "too-big": (report_mail(good, domain="broken.example", extra=(b"y" * 76 + b"\n") * (MAX_MESSAGE // 76 + 100)),
                    None),
    }
    out = {}
    for name, ((mid, content), error) in cases.items():
        qid = send(gw, content)
        delivered_unchanged(gw, mid, content)
        out[name] = (qid, error, len(content))
    return out


def test_broken_reports_listed_with_error(planes, broken):
    gw, cp = planes
    for name, (qid, error, size) in broken.items():
        e = inbound_event(gw, qid)
        r = listed(cp.mgmt_socket, qid)
        if name == "too-big":
            assert r["error"].startswith("message too large to parse ("), r
            assert r["error"].endswith(f" bytes; tlsrpt.inbound.max_message_size is {MAX_MESSAGE})"), r
            assert int(r["size"]) > MAX_MESSAGE
        else:
            assert r["error"] == error, (name, r)
        assert e["error"] == r["error"]
        assert r["organization_name"] == "" and r["policy_domains"] == [] and r["report_domain"] == "broken.example"
        assert r["from"] == "tlsrpt-noreply@mx.company-x.example"
    text = ctl(cp.mgmt_socket, "tlsrpt", "list", "--domain", "broken.example")
    assert text.returncode == 0, text.stderr
    for name, (qid, error, _) in broken.items():
        [row] = [l for l in text.stdout.splitlines() if l.endswith(qid)]
        assert row.split()[1:6] == ["(rejected)", "broken.example", "-", "-", "-"], row
        if error:
            assert f"    error: {error} (from tlsrpt-noreply@mx.company-x.example)" in text.stdout, text.stdout
    shown = ctl(cp.mgmt_socket, "tlsrpt", "show", broken["bad-json"][0])
    assert shown.returncode == 0 and "REJECTED        policies[0].summary.total-failure-session-count" in shown.stdout, shown.stdout


def test_filters_counters_and_not_found(planes, rfc_qid, broken):
    gw, cp = planes
    only = ok_json(cp.mgmt_socket, "tlsrpt", "list", "--domain", "COMPANY-Y.example")["reports"]
    assert rfc_qid in {r["id"] for r in only}
    assert all(r["policy_domains"] == ["company-y.example"] for r in only), only
    lim = ok_json(cp.mgmt_socket, "tlsrpt", "list", "--limit", "1")
    assert len(lim["reports"]) == 1 and lim["total"] >= 5
    newest = max(ok_json(cp.mgmt_socket, "tlsrpt", "list")["reports"], key=lambda r: int(r["received_at"]))
    assert int(lim["reports"][0]["received_at"]) == int(newest["received_at"])

    missing = ctl(cp.mgmt_socket, "tlsrpt", "show", "QNOSUCHID")
    assert missing.returncode == 5, (missing.stdout, missing.stderr)
    assert "no received TLS-RPT report QNOSUCHID" in missing.stderr
    mj = ctl(cp.mgmt_socket, "tlsrpt", "show", "QNOSUCHID", json_out=True)
    assert mj.returncode == 5 and json.loads(mj.stdout)["error"]["code"] == "NOT_FOUND"

    totals = ok_json(gw.dataplane_socket, "stats")["totals"]
    assert int(totals["tlsrpt_reports_parsed"]) >= 2 and int(totals["tlsrpt_reports_rejected"]) >= 4, totals


def test_store_survives_restart(planes, rfc_qid, broken):
    gw, cp = planes
    before = ok_json(gw.dataplane_socket, "tlsrpt", "list", "--limit", "1000")
    shown = ok_json(gw.dataplane_socket, "tlsrpt", "show", rfc_qid)
    mark = gw.mark()
    gw.restart()
    assert ok_json(gw.dataplane_socket, "tlsrpt", "list", "--limit", "1000") == before
    assert ok_json(cp.mgmt_socket, "tlsrpt", "show", rfc_qid) == shown
    # Nothing recovered from the spool is parsed again.
    assert not gw.events("tlsrpt.inbound", since=mark)


def test_feature_off(dns_lab, lab_root, lab_pki):
    sink = sink_mod.SmtpSink(lab_root.unique_sub("rpt-off-sink"))
    sink.start()
    gw = gw_mod.Gateway(lab_root.unique_sub("rpt-off-gw"), lab_pki, next_hop_port=sink.port,
                        listeners=[{"name": "smtp", "tls_mode": "starttls"}])
    try:
        gw.start()
        gw.sink = sink
        mid, content = report_mail(gzip.compress(json.dumps(RFC_REPORT).encode()))
        qid = send(gw, content)
        delivered_unchanged(gw, mid, content)
        assert not gw.events("tlsrpt.inbound")
        for args in (("list",), ("show", qid)):
            p = ctl(gw.dataplane_socket, "tlsrpt", *args)
            assert p.returncode == 3, (p.stdout, p.stderr)
            assert "inbound TLS-RPT reports are off" in p.stderr and "tlsrpt.inbound.mailboxes" in p.stderr, p.stderr
        pj = ctl(gw.dataplane_socket, "tlsrpt", "list", json_out=True)
        assert pj.returncode == 3 and json.loads(pj.stdout)["error"]["code"] == "UNAVAILABLE"
        assert not [n for n in os.listdir(gw.spool_dir) if n.startswith("tlsrpt-inbound-w")]
    finally:
        gw.stop()
        sink.stop()
        gw.cleanup()
