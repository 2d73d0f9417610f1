#!/usr/bin/env python3
"""The demo, in two parts, everything on loopback and removed at the end.

Inbound: one gateway, a lab CA, a Postfix receiver as the internal next hop, and swaks as the
Internet's sending MTAs. Prints how each message arrived (TLS version and cipher on both legs, queue
ids) and the gateway's log lines for it.

Outbound: a DNSSEC-signed lab DNS (NSD, unbound), an MTA-STS policy host (nginx), Postfix receivers
as the destinations' MX hosts (tests/lab/delivery.py), mxedge-controlplane compiling each
destination's policy, and the gateway's outbound intake. Four messages: to a DANE-secure domain
(delivered, DANE-verified), a domain whose MX answer is bogus (deferred, no connection), an MTA-STS
enforce domain whose MX certificate does not match (deferred), and an insecure domain (delivered with
opportunistic TLS); the trace of each is printed, then mxedgectl's view through the management API
(status, policies, the queue, the message trace).
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from lab import certs, gateway, postfix, swaks, util  # noqa: E402
from lab import controlplane, delivery, dns, flows, mta_sts  # noqa: E402


def banner(text):
    print(f"\n== {text}", flush=True)


def main() -> int:
    with util.LabDir(prefix="mxedge-demo-") as lab:
        banner("lab: a CA, ECDSA P-256 and RSA-2048 certificates for mx.lab.test")
        pki = certs.get_pki(lab.sub("certs"))
        print(f"   CA {pki.ca_pem}")

        banner("next hop: a Postfix 3.7 receiver for lab.test (STARTTLS, Maildir delivery)")
        receiver = postfix.receiver(lab.sub("receiver"), pki, domains=["lab.test"])
        receiver.start()
        try:
            print(f"   listening on 127.0.0.1:{receiver.smtpd_port}")
            banner("gateway: mxedge-dataplane, STARTTLS on 'smtp', implicit TLS on 'smtps', "
                   "next hop verified against the lab CA")
            gw = gateway.Gateway(lab.sub("gateway"), pki, next_hop_port=receiver.smtpd_port, config={
                "next_hop": {"tls": "verify", "ca_file": pki.ca_pem, "verify_name": "mx.lab.test"},
            })
            gw.start()
            try:
                print(f"   smtp  127.0.0.1:{gw.smtp_port} (STARTTLS)   smtps 127.0.0.1:{gw.smtps_port} (implicit TLS)")
                print(f"   spool {gw.spool_dir}   log {gw.log_path}")
                sends = [
                    ("STARTTLS on port 'smtp'", ["--server", f"127.0.0.1:{gw.smtp_port}", "--tls"]),
                    ("implicit TLS on port 'smtps'", ["--server", f"127.0.0.1:{gw.smtps_port}", "--tlsc"]),
                    ("STARTTLS, two recipients, TLS 1.2", ["--server", f"127.0.0.1:{gw.smtp_port}", "--tls",
                                                           "--tls-protocol", "tlsv1_2", "--to", "bob@lab.test,carol@lab.test"]),
                ]
                queued = []
                for i, (what, args) in enumerate(sends, 1):
                    banner(f"message {i}: swaks, {what}")
                    mid = f"<demo-{i}-{int(time.time())}@sender.example>"
                    argv = ["--from", "alice@sender.example", "--helo", "sender.example",
                            "--header", f"Message-Id: {mid}", "--header", f"Subject: mxedge demo {i}"] + args
                    if "--to" not in args:
                        argv += ["--to", "bob@lab.test"]
                    r = swaks.run(*argv)
                    print(f"   client TLS: {r.tls_cipher() or 'none'}")
                    print(f"   reply:      {r.replies()[-2] if len(r.replies()) >= 2 else r.replies()}")
                    if r.rc != 0 or not r.queue_id():
                        print(r.transcript)
                        print("demo: the gateway did not accept the message", file=sys.stderr)
                        return 1
                    queued.append((mid, r.queue_id()))

                banner("delivered to the next hop's mailbox")
                deadline = time.time() + 30
                while True:
                    msgs = receiver.maildir_messages()
                    if all(any(m.message_id == mid for m in msgs) for mid, _ in queued) or time.time() > deadline:
                        break
                    time.sleep(0.2)
                for mid, qid in queued:
                    found = [m for m in msgs if m.message_id == mid]
                    print(f"   {mid}  queued as {qid}  ->  {len(found)} mailbox cop{'y' if len(found) == 1 else 'ies'}")
                    if found:
                        for h in found[0].headers("Received")[:2]:
                            print("      Received: " + re.sub(r"\s+", " ", h).strip())

                banner("gateway log for these messages")
                for line in gw.log_text().splitlines():
                    if any(f"qid={qid}" in line for _, qid in queued):
                        print("   " + line)
                missing = [mid for mid, _ in queued if not any(m.message_id == mid for m in msgs)]
                if missing:
                    print(f"demo: not delivered: {missing}", file=sys.stderr)
                    return 1
                banner("inbound done: every message was acknowledged only after it was on disk, and relayed over verified TLS")
            finally:
                gw.stop()
            return outbound_demo(lab, pki)
        finally:
            receiver.stop()


OUTBOUND = [
    ("dane-ee.dlv.test", "a DANE-secure domain (TLSA 3 1 1)", "delivered"),
    ("bogus.dlv.test", "a domain whose MX answer fails DNSSEC validation", "deferred"),
    ("sts-badcert.dlv.test", "an MTA-STS enforce domain whose MX certificate names another host", "deferred"),
    ("insecure.dlv.test", "an unsigned (insecure) domain", "delivered"),
]


def outbound_demo(lab, pki) -> int:
    banner("outbound lab: signed DNS (NSD + unbound), MTA-STS host (nginx), Postfix receivers as MX hosts")
    dl = dns.DnsLab(lab.sub("dns"), leaf_cert=pki.ecdsa.cert, ca_cert=pki.ca_pem, bench_domains=0,
                    sts_bench_domains=0, delivery=True, pki=pki)
    dl.start()
    dl.start_unbound()
    sts = mta_sts.StsHttpsServer(lab.sub("sts"), dl, pki)
    sts.start()
    receivers = delivery.DeliveryLab(lab.sub("dlv"), dl, sts, pki)
    cp = None
    gw = None
    try:
        receivers.start()
        for domain, what, _ in OUTBOUND:
            c = receivers.case(domain)
            print(f"   {domain:<24} {what}; MX " + ", ".join(f"{m.host} ({m.address})" for m in c.mx))
        banner("mxedge-controlplane: DNSSEC validation from the lab's trust anchor, MTA-STS with the lab CA")
        cp = controlplane.ControlPlane(lab.sub("cp"), dl, sts)
        gw = gateway.Gateway(lab.sub("gateway-out"), pki, next_hop_port=1, hostname="gw.lab.test",
                             listeners=[{"name": "intake", "tls_mode": "none", "role": "outbound",
                                         "allowed_networks": ["127.0.0.1/32"]}],
                             config={"outbound": {"enabled": True, "policy_socket": cp.socket_path,
                                                  "policy_state_file": lab.sub("state") + "/policy.state",
                                                  "ca_file": pki.ca_pem, "connect_timeout": "5s", "retry_min": "5m"}})
        cp.config["management"]["dataplane_socket"] = gw.dataplane_socket  # mxedgectl reaches both planes
        cp.start()
        print(f"   policy socket {cp.socket_path}   management socket {cp.mgmt_socket}   log {cp.log_path}")
        banner("gateway: mxedge-dataplane with an outbound intake listener (127.0.0.1 only)")
        gw.start()
        gw.wait_log(r"event=policy.link.connected", timeout=10)
        queued = {}
        for i, (domain, what, _) in enumerate(OUTBOUND, 1):
            queued[domain] = flows.submit(gw, [f"someone@{domain}"], f"outbound-demo-{i}-{int(time.time())}", sender="alice@lab.test",
                                          body=f"to {what}\r\n")
            print(f"   message {i} to someone@{domain}: queued as {queued[domain]}")
        banner("waiting for each outcome")
        ok = True
        for domain, what, expect in OUTBOUND:
            pattern = (rf"event=message.delivered .*domain={domain} " if expect == "delivered"
                       else rf"event=message.deferred .*domain={domain} ")
            try:
                gw.wait_log(pattern, timeout=40)
            except util.LabTimeout:
                ok = False
        banner("trace (the gateway's log lines for each message; the control plane's policy for each domain)")
        for domain, what, expect in OUTBOUND:
            print(f"\n   {domain}: {what} -> expected {expect}")
            for line in cp.log_text().splitlines():
                if "event=policy.compiled" in line and f"domain={domain} " in line:
                    print("     cp: " + line.split("event=", 1)[1])
                    break
            for line in gw.log_text().splitlines():
                if f"qid={queued[domain]}" in line or ("event=delivery.attempt_failed" in line and f"domain={domain} " in line):
                    print("     gw: " + line.split("event=", 1)[1])
        for d, _, expect in OUTBOUND:
            if expect == "delivered":
                try:
                    receivers.receiver(receivers.case(d).name).wait_maildir(1, timeout=15)
                except Exception:  # reported below
                    pass
        got = {d: len(receivers.receiver(receivers.case(d).name).maildir_messages()) for d, _, _ in OUTBOUND}
        banner("mailboxes of the destinations: " + ", ".join(f"{d} {n}" for d, n in got.items()))
        if not ok or got["dane-ee.dlv.test"] != 1 or got["insecure.dlv.test"] != 1 or got["bogus.dlv.test"] or got["sts-badcert.dlv.test"]:
            print("demo: an outbound outcome was not the expected one", file=sys.stderr)
            return 1
        banner("mxedgectl: the operator's view through the management API")
        ctl = os.path.join(gateway.build_dir(), "controlplane", "mxedgectl")
        for args in (["status"], ["policy", "list"], ["queue", "list"], ["trace", queued["sts-badcert.dlv.test"]],
                     ["trace", queued["dane-ee.dlv.test"]]):
            print(f"\n   $ mxedgectl {' '.join(args)}")
            p = subprocess.run([ctl, "--socket", cp.mgmt_socket] + args, capture_output=True, text=True, timeout=60)
            for line in (p.stdout + p.stderr).rstrip().splitlines():
                print("     " + line)
        banner("outbound done: delivered only where the destination's policy was satisfied; never downgraded")
        return 0
    finally:
        if gw is not None:
            gw.stop()
        if cp is not None:
            cp.stop()
        receivers.cleanup()
        sts.stop()
        dl.stop()


if __name__ == "__main__":
    sys.exit(main())
