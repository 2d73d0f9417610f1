"""The Debian package (cmake/Packaging.cmake): built with cpack from the test build, then inspected
as dpkg sees it: the files an operator relies on, the dependencies dpkg-shlibdeps found, maintainer
scripts that parse, units that systemd-analyze verifies against the package's own files, sysctl
keys this kernel knows, and binaries from the package that run."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

BUILD = os.environ.get("MXEDGE_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    if not os.path.exists(os.path.join(BUILD, "CPackConfig.cmake")):
        pytest.skip(f"no CPack configuration in {BUILD}")
    out = str(tmp_path_factory.mktemp("deb"))
    r = subprocess.run(["cpack", "-G", "DEB", "-B", out], cwd=BUILD, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = glob.glob(os.path.join(out, "mxedge_*_amd64.deb"))
    assert len(debs) == 1, os.listdir(out)
    root = os.path.join(out, "root")
    subprocess.run(["dpkg-deb", "-x", debs[0], root], check=True)
    control = os.path.join(out, "control")
    subprocess.run(["dpkg-deb", "-e", debs[0], control], check=True)
    return debs[0], root, control


def test_the_package_holds_what_an_operator_needs(package):
    deb, root, _ = package
    for f in ("usr/sbin/mxedge-dataplane", "usr/sbin/mxedge-controlplane", "usr/sbin/mxedgectl", "usr/sbin/mxedge-trace",
              "usr/sbin/mxedge-resolve", "usr/lib/systemd/system/mxedge-dataplane.service",
              "usr/lib/systemd/system/mxedge-controlplane.service", "usr/lib/systemd/system/mxedge-tune.service",
              "usr/lib/tmpfiles.d/mxedge.conf", "usr/lib/sysctl.d/60-mxedge.conf", "usr/libexec/mxedge/mxedge-tune",
              "usr/libexec/mxedge/mxedge-prepare-dataplane", "usr/share/doc/mxedge/examples/mxedge.yaml",
              "usr/share/doc/mxedge/README.md"):
        assert os.path.exists(os.path.join(root, f)), f
    for exe in ("usr/sbin/mxedge-dataplane", "usr/libexec/mxedge/mxedge-tune"):
        assert os.access(os.path.join(root, exe), os.X_OK), exe
    # Stripped: no DWARF in the package (it stays in the build tree).
    sections = subprocess.run(["objdump", "-h", os.path.join(root, "usr/sbin/mxedge-dataplane")], capture_output=True, text=True).stdout
    assert ".debug_info" not in sections
    info = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends", "Section"], capture_output=True, text=True, check=True).stdout
    assert "Package: mxedge" in info and "Section: mail" in info
    for dep in ("adduser", "dns-root-data", "libbpf1", "libunbound8", "libssl3", "libprotobuf32"):
        assert dep in info, f"{dep} missing from Depends: {info}"


def test_maintainer_scripts_parse_and_create_the_service_users(package):
    _, _, control = package
    for s in ("postinst", "prerm", "postrm"):
        path = os.path.join(control, s)
        assert os.access(path, os.X_OK), s
        r = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
        assert r.returncode == 0, f"{s}: {r.stderr}"
    text = open(os.path.join(control, "postinst")).read()
    for user in ("mxedge-dp", "mxedge-cp"):
        assert "adduser --system" in text and user in text
    assert "addgroup --system mxadmin" in text


def test_units_verify_against_the_packaged_files(package, tmp_path):
    """systemd-analyze verify with the package's tree as the root (plus the host's targets and the
    two helpers the units call), so unknown keys and missing executables fail."""
    _, root, _ = package
    r2 = str(tmp_path / "root")
    shutil.copytree(root, r2, symlinks=True)
    unitdir = os.path.join(r2, "usr/lib/systemd/system")
    for t in glob.glob("/lib/systemd/system/*.target") + glob.glob("/lib/systemd/system/systemd-*.service"):
        shutil.copy(t, unitdir)
    os.makedirs(os.path.join(r2, "bin"), exist_ok=True)
    for b in ("/bin/kill", "/bin/sh"):
        shutil.copy(b, os.path.join(r2, "bin"))
    units = [os.path.join(unitdir, u) for u in ("mxedge-dataplane.service", "mxedge-controlplane.service", "mxedge-tune.service")]
    r = subprocess.run(["systemd-analyze", "verify", f"--root={r2}", *units], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stdout + r.stderr
    for u in units:
        text = open(u).read()
        if "mxedge-tune" in u:
            continue
        assert "Type=notify" in text and "WatchdogSec=" in text and "User=mxedge-" in text and "NoNewPrivileges=yes" in text, u


def test_sysctl_keys_exist_on_this_kernel(package):
    _, root, _ = package
    for line in open(os.path.join(root, "usr/lib/sysctl.d/60-mxedge.conf")):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0].strip()
        assert os.path.exists("/proc/sys/" + key.replace(".", "/")), f"unknown sysctl {key}"


def test_packaged_binaries_run(package):
    _, root, _ = package
    r = subprocess.run([os.path.join(root, "usr/sbin/mxedge-dataplane"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "mxedge-dataplane" in r.stdout
    r = subprocess.run([os.path.join(root, "usr/sbin/mxedgectl"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    r = subprocess.run(["bash", os.path.join(root, "usr/libexec/mxedge/mxedge-tune"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "IRQ" in r.stdout
