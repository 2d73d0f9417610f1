"""mxedge test lab: real SMTP components on loopback, started and stopped by tests.

The lab is used by the pytest integration tests (tests/integration), the lab's own self-tests
(tests/lab/test_lab_selftest.py), benchmarks and the demo script. Everything binds to 127.0.0.0/8 or
::1 only and every helper can be used without pytest:

    from lab import certs, gateway, smtp_sink, util
    with util.LabDir() as d:
        pki = certs.get_pki(d.sub("pki"))
        with smtp_sink.SmtpSink(d.sub("sink")) as sink, \
             gateway.Gateway(d.sub("gw"), pki, next_hop_port=sink.port) as gw:
            ...   # gw.smtp_port, gw.smtps_port, sink.wait_for_message_id(...)

pytest users get fixtures from lab.fixtures (import them in a conftest.py:
``from lab.fixtures import *``).

Import path: add the repository's tests/ directory to sys.path and ``import lab``.
"""

from . import util, ports  # noqa: F401  (the light modules; the others are imported on demand)

__all__ = [
    "certs",
    "delivery",
    "gateway",
    "loadsend",
    "mta_sts",
    "ports",
    "postfix",
    "smtp_client",
    "smtp_sink",
    "swaks",
    "util",
]
