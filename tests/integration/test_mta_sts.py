"""The MTA-STS client (controlplane/mta_sts, through mxedge-resolve --mta-sts) against the lab: nginx
serving each policy case over HTTPS with lab-CA certificates (tests/lab/mta_sts.py) and the signed
lab DNS holding the _mta-sts TXT records. Every case of the lab's table, fetched concurrently in one
process; then the persistent cache: restart, id change, failure with back-off, vanished TXT, purge.
"""

from __future__ import annotations

import pytest

from lab import mta_sts as sts_lab
from lab import resolve

# What the client must say for each fetch-fail case (reason substrings).
FETCH_FAIL_REASON = {
    "nomx": "mode enforce needs at least one mx",
    "badmaxage": "max_age must be 1 to 10 digits",
    "badmode": "mode must be enforce, testing or none",
    "noversion": "version: STSv1 is missing",
    "wrongtype": "Content-Type is 'text/html",
    "notfound": "HTTP status 404",
    "redirect": "HTTP status 301 (redirects are not followed)",
    "servererror": "HTTP status 500",
    "oversize": "policy larger than 65536 bytes (Content-Length)",
    "oversizechunked": "policy body larger than 65536 bytes",
    "slow": "timeout",
    "expiredcert": "certificate verification failed",
    "wrongsan": "certificate verification failed",
    "untrusted": "certificate verification failed",
}


@pytest.fixture(scope="module", autouse=True)
def _binary():
    reason = resolve.missing_binary_reason()
    if reason:
        pytest.skip(reason)


def sts_args(server, *extra: str) -> list[str]:
    return ["--mta-sts", "--ca-file", server.ca_file, "--fetch-timeout-ms", "3000", *extra]


def lookup(dns_lab, server, domains, *extra):
    return resolve.run(dns_lab, list(domains), extra=sts_args(server, *extra), timeout=120)


@pytest.fixture(scope="module")
def all_cases(dns_lab, mta_sts_server):
    """Every case of the lab table, resolved at once in one process (fetches in flight together)."""
    mta_sts_server.reset_requests()
    valid_before = mta_sts_server.requests("valid")
    run = lookup(dns_lab, mta_sts_server, [c.domain for c in sts_lab.STS_CASES.values()])
    return run, valid_before


@pytest.mark.parametrize("name", sorted(sts_lab.STS_CASES))
def test_each_lab_case(all_cases, mta_sts_server, name):
    run, _ = all_cases
    case = sts_lab.STS_CASES[name]
    r = run.by_name(case.domain)
    if case.outcome == "policy":
        assert r["kind"] == "policy", r
        assert r["mode"] == case.mode
        assert r["mx"] == list(case.mx)
        assert r["max_age"] == 86400
        assert r["id"]
    elif case.outcome == "no-policy":
        assert r["kind"] == "no-policy", r
        assert mta_sts_server.requests(name) == 0  # nothing fetched without one valid TXT record
    elif case.outcome == "fetch-fail":
        assert r["kind"] == "temporary-failure", r
        assert FETCH_FAIL_REASON[name] in r["reason"], r["reason"]
        assert r["reason"].startswith(f"https://mta-sts.{case.domain}/.well-known/mta-sts.txt: ")
    elif case.outcome == "dns-fail":
        assert r["kind"] == "temporary-failure", r
        assert f"_mta-sts.{case.domain} TXT: failure" in r["reason"], r["reason"]
        assert mta_sts_server.requests(name) == 0
    else:
        pytest.fail(f"unknown outcome {case.outcome}")


def test_tls_failures_name_the_certificate_problem(all_cases):
    run, _ = all_cases
    assert "expired" in run.by_name("expiredcert.sts.test")["reason"]
    assert "subject name" in run.by_name("wrongsan.sts.test")["reason"]
    untrusted = run.by_name("untrusted.sts.test")["reason"]
    assert "SSL certificate problem" in untrusted and "certificate chain" in untrusted, untrusted


def test_redirect_is_not_followed(all_cases, mta_sts_server):
    run, valid_before = all_cases
    assert run.by_name("redirect.sts.test")["kind"] == "temporary-failure"
    # The valid host was asked once for its own case, never because of the redirect.
    assert mta_sts_server.requests("valid") == valid_before + 1


def test_slow_server_is_cut_off_by_the_timeout(all_cases):
    run, _ = all_cases
    assert run.by_name("slow.sts.test")["elapsed_ms"] < 3000 + 1500


def test_policy_without_a_trusted_ca_file_fails(dns_lab, mta_sts_server):
    run = resolve.run(dns_lab, ["valid.sts.test"], extra=["--mta-sts", "--fetch-timeout-ms", "3000"])
    r = run.by_name("valid.sts.test")
    assert r["kind"] == "temporary-failure" and "certificate verification failed" in r["reason"]


# --------------------------------------------------------------------------------------------------
# the persistent cache


def cached_run(dns_lab, server, db, *extra):
    return lookup(dns_lab, server, ["changing.sts.test"], "--sts-cache", str(db), *extra).by_name("changing.sts.test")


@pytest.fixture
def changing(dns_lab, mta_sts_server):
    """The mutable case, restored afterwards."""
    original = mta_sts_server.policy("changing")
    yield sts_lab.STS_CASES["changing"]
    mta_sts_server.set_down("changing", False)
    mta_sts_server.set_policy("changing", original)
    dns_lab.set_sts_txt("changing", None)


def test_cache_survives_a_restart_and_is_not_refetched(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    before = mta_sts_server.requests("changing")
    first = cached_run(dns_lab, mta_sts_server, db)
    assert first["kind"] == "policy" and first["from_cache"] is False
    assert mta_sts_server.requests("changing") == before + 1
    second = cached_run(dns_lab, mta_sts_server, db)  # a new process: the policy comes from disk
    assert second["kind"] == "policy" and second["from_cache"] is True
    assert second["mx"] == first["mx"] and second["id"] == first["id"]
    # TXT re-checked (recheck 0) with the same id: still no fetch.
    third = cached_run(dns_lab, mta_sts_server, db, "--sts-txt-recheck", "0")
    assert third["from_cache"] is True
    assert mta_sts_server.requests("changing") == before + 1


def test_id_change_triggers_a_refetch(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    first = cached_run(dns_lab, mta_sts_server, db)
    before = mta_sts_server.requests("changing")
    new_body = sts_lab.policy_text("enforce", ["mx2.changing.sts.test"], max_age=3600)
    mta_sts_server.set_policy("changing", new_body, new_id="changed2")
    # Served from the cache at once; the re-check sees the new id and fetches in the background.
    during = cached_run(dns_lab, mta_sts_server, db, "--sts-txt-recheck", "0")
    assert during["from_cache"] is True and during["mx"] == first["mx"]
    assert mta_sts_server.requests("changing") == before + 1
    after = cached_run(dns_lab, mta_sts_server, db)
    assert after["from_cache"] is True
    assert (after["id"], after["mx"], after["max_age"]) == ("changed2", ["mx2.changing.sts.test"], 3600)


def test_failed_refetch_keeps_the_cached_policy_and_backs_off(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    first = cached_run(dns_lab, mta_sts_server, db)
    mta_sts_server.set_down("changing", True)
    dns_lab.set_sts_id("changing", "changed3")
    before = mta_sts_server.requests("changing")
    during = cached_run(dns_lab, mta_sts_server, db, "--sts-txt-recheck", "0")
    assert during["kind"] == "policy" and during["id"] == first["id"]  # the cached policy still applies
    assert mta_sts_server.requests("changing") == before + 1  # one attempt, answered 503
    again = cached_run(dns_lab, mta_sts_server, db, "--sts-txt-recheck", "0")
    assert again["kind"] == "policy" and again["id"] == first["id"]
    assert mta_sts_server.requests("changing") == before + 1  # backing off: not asked again


def test_vanished_txt_does_not_evict_and_purge_does(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    first = cached_run(dns_lab, mta_sts_server, db)
    dns_lab.remove_sts_txt("changing")
    kept = cached_run(dns_lab, mta_sts_server, db, "--sts-txt-recheck", "0")
    assert kept["kind"] == "policy" and kept["id"] == first["id"] and kept["from_cache"] is True
    p = resolve.run(dns_lab, [], extra=["--sts-cache", str(db), "--sts-purge", "changing.sts.test"])
    assert p.results == [{"purged": "changing.sts.test", "was_cached": True}]
    gone = cached_run(dns_lab, mta_sts_server, db)
    assert gone["kind"] == "no-policy" and gone["from_cache"] is False


def test_unusable_cache_file_is_a_clear_error(dns_lab, mta_sts_server, tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not an SQLite database" * 100)
    run = resolve.run(dns_lab, ["valid.sts.test"], extra=sts_args(mta_sts_server, "--sts-cache", str(bad)), check=False)
    assert run.returncode == 1 and "MTA-STS policy cache" in run.stderr, run.stderr


def test_policy_in_use_is_refreshed_before_it_expires(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    first = cached_run(dns_lab, mta_sts_server, db)
    assert first["max_age"] == 86400
    before = mta_sts_server.requests("changing")
    # An hour before expiry (inside max_age/4) a lookup is served from the cache and re-fetches,
    # although the id did not change.
    near = cached_run(dns_lab, mta_sts_server, db, "--sts-clock-offset", str(86400 - 3600))
    assert near["from_cache"] is True and near["kind"] == "policy"
    assert mta_sts_server.requests("changing") == before + 1
    # Past the first fetch's expiry the refreshed policy is still cached: no fetch, no gap.
    later = cached_run(dns_lab, mta_sts_server, db, "--sts-clock-offset", str(86400 + 600))
    assert later["from_cache"] is True and later["kind"] == "policy"
    assert mta_sts_server.requests("changing") == before + 1


def test_maintenance_refreshes_a_policy_before_it_expires_without_a_lookup(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    assert cached_run(dns_lab, mta_sts_server, db)["max_age"] == 86400
    before = mta_sts_server.requests("changing")

    def maintain(offset):
        run = resolve.run(dns_lab, [], extra=sts_args(mta_sts_server, "--sts-cache", str(db), "--sts-maintain",
                                                      "--sts-clock-offset", str(offset)))
        return run.results[0]
    # Mid-life and unused since its TXT check: nothing to do, no DNS or HTTPS traffic.
    assert maintain(3600) == {"swept": 0, "refreshes_started": 0, "refreshed": 0, "fetch_failures": 0, "entries": 1}
    assert mta_sts_server.requests("changing") == before
    # An hour before expiry the periodic work re-fetches it, though nobody looked it up.
    assert maintain(86400 - 3600) == {"swept": 0, "refreshes_started": 1, "refreshed": 1, "fetch_failures": 0, "entries": 1}
    assert mta_sts_server.wait_requests("changing", before + 1) == before + 1
    # So past the first fetch's expiry the policy is still there, from the cache.
    later = cached_run(dns_lab, mta_sts_server, db, "--sts-clock-offset", str(86400 + 600))
    assert later["from_cache"] is True and later["kind"] == "policy"
    # With the policy host down the refresh fails, the policy is kept, and the next run backs off.
    mta_sts_server.set_down("changing", True)
    refreshed_at = 86400 - 3600
    failed = maintain(refreshed_at + 86400 - 3000)
    assert failed["refreshes_started"] == 1 and failed["fetch_failures"] == 1 and failed["entries"] == 1
    backed_off = maintain(refreshed_at + 86400 - 2900)
    assert backed_off["refreshes_started"] == 0 and backed_off["entries"] == 1


def test_sweep_evicts_long_unused_and_expired_policies(dns_lab, mta_sts_server, changing, tmp_path):
    db = tmp_path / "sts.db"
    year = sts_lab.policy_text("enforce", ["mx.changing.sts.test"], max_age=31557600)
    mta_sts_server.set_policy("changing", year, new_id="longlived1")
    assert cached_run(dns_lab, mta_sts_server, db)["max_age"] == 31557600
    lookup(dns_lab, mta_sts_server, ["valid.sts.test"], "--sts-cache", str(db))  # max_age one day
    def sweep(offset):
        return resolve.run(dns_lab, [], extra=["--sts-cache", str(db), "--sts-sweep", "--sts-clock-offset", str(offset)]).results[0]
    assert sweep(0) == {"swept": 0, "entries": 2}
    assert sweep(2 * 86400) == {"swept": 1, "entries": 1}  # valid.sts.test expired
    assert sweep(31 * 86400) == {"swept": 1, "entries": 0}  # unused for 30 days, though not expired


def test_configured_proxy_is_used(dns_lab, mta_sts_server):
    from lab import ports
    dead = ports.free_port()  # nothing listens there: every fetch must go through it and fail
    before = mta_sts_server.requests("valid")
    run = resolve.run(dns_lab, ["valid.sts.test"], extra=sts_args(mta_sts_server, "--proxy", f"http://127.0.0.1:{dead}"))
    r = run.by_name("valid.sts.test")
    assert r["kind"] == "temporary-failure" and "connect" in r["reason"].lower(), r["reason"]
    assert mta_sts_server.requests("valid") == before


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that sends every tunnel to the lab's policy host and
    records the CONNECT targets."""

    def __init__(self, upstream: str):
        import socket
        import threading
        self.upstream = upstream
        self.targets: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        import threading
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(c, socket), daemon=True).start()

    def _tunnel(self, c, socket):
        import select
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            method, target, _ = line.split(" ", 2)
            if method != "CONNECT":
                c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            self.targets.append(target)
            u = socket.create_connection((self.upstream, 443), timeout=5)
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pair = {c: u, u: c}
            while True:
                ready, _, _ = select.select(list(pair), [], [], 5)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pair[s].sendall(data)
        except OSError:
            return
        finally:
            c.close()

    def close(self):
        self.sock.close()


def test_policy_fetched_through_a_proxy(dns_lab, mta_sts_server):
    proxy = ConnectProxy(dns_lab.https_address)
    try:
        before = mta_sts_server.requests("valid")
        run = resolve.run(dns_lab, ["valid.sts.test"], extra=sts_args(mta_sts_server, "--proxy", f"http://127.0.0.1:{proxy.port}"))
        r = run.by_name("valid.sts.test")
        assert r["kind"] == "policy", r
        assert proxy.targets == ["mta-sts.valid.sts.test:443"]  # the proxy was asked by name
        assert mta_sts_server.requests("valid") == before + 1
    finally:
        proxy.close()
