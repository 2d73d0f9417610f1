#!/usr/bin/env python3
"""The inbound demo: one gateway, a lab CA, a Postfix receiver as the internal next hop, and swaks as
the Internet's sending MTAs. Prints how each message arrived (TLS version and cipher on both legs,
queue ids) and the gateway's log lines for it. Everything runs on loopback and is removed at the end.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from lab import certs, gateway, postfix, swaks, util  # noqa: E402


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
                banner("done: every message was acknowledged only after it was on disk, and relayed over verified TLS")
                return 0
            finally:
                gw.stop()
        finally:
            receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
