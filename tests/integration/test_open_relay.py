"""mxedge is never an open relay: only recipients in accepted_domains (exact, case-insensitive)."""

from __future__ import annotations

import pytest

from lab import flows

FOREIGN = [
    "user@foreign.test",
    "user@lab.test.evil.test",      # accepted domain as a prefix
    "user@evillab.test",            # accepted domain as a suffix without the dot
    "user@sub.lab.test",            # subdomains are not accepted domains (exact match)
]

# (address as sent inside <>, why it is refused)
ROUTING_TRICKS = [
    ("user%foreign.test@lab.test", "percent hack"),
    ("foreign.test!user@lab.test", "bang path"),
    ('"user@foreign.test"@lab.test', "quoted local part with @"),
    ("user@[127.0.0.1]", "IP literal"),
    ("user@[IPv6:::1]", "IPv6 literal"),
    ("@lab.test:user@foreign.test", "source route"),
    ("@foreign.test:user@lab.test", "source route to an accepted domain"),
    ("@a.test,@b.test:user@lab.test", "multi-hop source route"),
]


@pytest.fixture
def relay_session(gateway, session):
    c = session(gateway)
    c.mail("sender@example.test").expect(250, "2.1.0")
    return c


@pytest.mark.parametrize("rcpt", FOREIGN)
def test_foreign_domain_refused(relay_session, rcpt):
    r = relay_session.command(f"RCPT TO:<{rcpt}>")
    assert r.startswith(f"554 5.7.1 <{rcpt}>: Relay access denied"), r.raw


@pytest.mark.parametrize("rcpt,why", ROUTING_TRICKS, ids=[w for _, w in ROUTING_TRICKS])
def test_routing_tricks_refused(relay_session, rcpt, why):
    r = relay_session.command(f"RCPT TO:<{rcpt}>")
    assert r.code == 550 and r.enhanced == "5.7.1" and "Relay access denied" in r.text, f"{why}: {r.raw!r}"


@pytest.mark.parametrize("rcpt", ["user@lab.test", "User@LAB.TEST", "user@Lab.Test", "postmaster@lab.test",
                                  "first.last+tag@lab.test", '"quoted local"@lab.test'])
def test_accepted_domain_case_insensitive(relay_session, rcpt):
    relay_session.command(f"RCPT TO:<{rcpt}>").expect(250, "2.1.5")


def test_nothing_relayed_for_refused_recipients(gateway, smtp_sink, session):
    c = session(gateway)
    c.mail("sender@example.test").expect(250)
    for rcpt in FOREIGN:
        assert c.command(f"RCPT TO:<{rcpt}>").code == 554
    for rcpt, _ in ROUTING_TRICKS:
        assert c.command(f"RCPT TO:<{rcpt}>").code == 550
    c.command("DATA").expect(554, "5.5.1", contains="no valid recipients")
    # a message with a mix: only the accepted recipient gets it
    c.command("RSET").expect(250)
    mid, r = flows.send_message(c, rcpts=("user%foreign.test@lab.test", "ok@lab.test", "x@foreign.test"))
    r.expect(250)
    m = smtp_sink.wait_for_message_id(mid)
    assert m.rcpt_to == ["ok@lab.test"]
    flows.send_control_message(gateway, smtp_sink)
    for m in smtp_sink.messages():
        assert all(r.lower().endswith("@lab.test") and "%" not in r and "!" not in r for r in m.rcpt_to), m
