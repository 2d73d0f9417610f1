"""mxedge-tune (firmware-image/tuning/mxedge-tune), the appliance's host tuning, against a fake /sys
and /proc tree (MXEDGE_TUNE_SYSFS) and a real configuration read by mxedge-dataplane --print-tuning:
IRQ affinity per RX queue round robin over workers.cores, RPS off where IRQs are pinned (or spread
over the workers when the NIC has no per-queue IRQs), XPS one worker core per TX queue, irqbalance
banned from the worker cores and the control plane moved to the other cores."""

from __future__ import annotations

import os
import subprocess

import pytest

from lab import gateway as gateway_mod

TUNE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "firmware-image", "tuning", "mxedge-tune")


def fake_tree(root: str, irqs: bool = True) -> None:
    """eth9: a virtio NIC (virtio3) with 2 RX and 2 TX queues, IRQs 24 (input.0) and 26 (input.1)."""
    dev = os.path.join(root, "sys/devices/pci0000:00/0000:00:02.0/virtio3")
    os.makedirs(dev)
    net = os.path.join(root, "sys/class/net/eth9")
    for q in ("rx-0", "rx-1"):
        os.makedirs(os.path.join(net, "queues", q))
        open(os.path.join(net, "queues", q, "rps_cpus"), "w").write("0\n")
    for q in ("tx-0", "tx-1"):
        os.makedirs(os.path.join(net, "queues", q))
        open(os.path.join(net, "queues", q, "xps_cpus"), "w").write("0\n")
    os.symlink(dev, os.path.join(net, "device"))
    os.makedirs(os.path.join(root, "sys/class/net/lo/queues/rx-0"))   # no device: not a NIC
    os.makedirs(os.path.join(root, "proc"))
    lines = ["           CPU0       CPU1\n", "  1:          9          0   IO-APIC   1-edge      i8042\n"]
    if irqs:
        lines += [" 24:        100          0  PCI-MSIX-0000:00:02.0   1-edge      virtio3-input.0\n",
                  " 25:          5          0  PCI-MSIX-0000:00:02.0   2-edge      virtio3-output.0\n",
                  " 26:         80          0  PCI-MSIX-0000:00:02.0   3-edge      virtio3-input.1\n"]
    open(os.path.join(root, "proc/interrupts"), "w").writelines(lines)
    for irq in (1, 24, 25, 26):
        os.makedirs(os.path.join(root, f"proc/irq/{irq}"))
        open(os.path.join(root, f"proc/irq/{irq}/smp_affinity_list"), "w").write("0-1\n")
    os.makedirs(os.path.join(root, "proc/sys/vm"))
    open(os.path.join(root, "proc/sys/vm/nr_hugepages"), "w").write("0\n")


def read(root: str, path: str) -> str:
    with open(os.path.join(root, path)) as f:
        return f.read().strip()


def run_tune(root: str, config: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MXEDGE_TUNE_SYSFS=root, MXEDGE_DATAPLANE=gateway_mod.binary_path())
    return subprocess.run(["bash", TUNE, "--config", config, *extra], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def config_for(gateway_binary, lab_pki, tmp_path):
    def make(cores: list[int], interfaces: list[str] | None = None) -> str:
        cfg = {"workers": {"cores": cores}}
        if interfaces is not None:
            cfg["xdp"] = {"interfaces": interfaces}
        gw = gateway_mod.Gateway(str(tmp_path / f"gw-{'-'.join(map(str, cores))}"), lab_pki, 2525, config=cfg)
        gw.write_config()
        return gw.config_path
    return make


def test_one_worker_core_gets_every_queue_and_the_control_plane_the_rest(config_for, tmp_path):
    root = str(tmp_path / "sysfs")
    fake_tree(root)
    r = run_tune(root, config_for([1], ["eth9"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert read(root, "proc/irq/24/smp_affinity_list") == "1"
    assert read(root, "proc/irq/26/smp_affinity_list") == "1"
    assert read(root, "proc/irq/25/smp_affinity_list") == "0-1", "TX completion IRQs are left alone"
    assert read(root, "proc/irq/1/smp_affinity_list") == "0-1"
    assert read(root, "sys/class/net/eth9/queues/rx-0/rps_cpus") == "0"
    assert read(root, "sys/class/net/eth9/queues/tx-0/xps_cpus") == "2"    # CPU 1
    assert read(root, "sys/class/net/eth9/queues/tx-1/xps_cpus") == "0"
    assert "IRQBALANCE_BANNED_CPULIST=1" in read(root, "run/systemd/system/irqbalance.service.d/50-mxedge-tune.conf")
    assert "CPUAffinity=0" in read(root, "run/systemd/system/mxedge-controlplane.service.d/50-mxedge-tune.conf")
    assert read(root, "proc/sys/vm/nr_hugepages") == "0", "no hugepages without DPDK"
    assert f"{root}/proc/irq/24/smp_affinity_list = 1" in r.stdout, r.stdout


def test_queues_round_robin_over_two_worker_cores(config_for, tmp_path):
    root = str(tmp_path / "sysfs")
    fake_tree(root)
    r = run_tune(root, config_for([0, 1], ["eth9"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert read(root, "proc/irq/24/smp_affinity_list") == "0"
    assert read(root, "proc/irq/26/smp_affinity_list") == "1"
    assert read(root, "sys/class/net/eth9/queues/tx-0/xps_cpus") == "1"
    assert read(root, "sys/class/net/eth9/queues/tx-1/xps_cpus") == "2"
    ncpu = os.cpu_count()
    if ncpu == 2:
        assert not os.path.exists(os.path.join(root, "run/systemd/system/mxedge-controlplane.service.d")), \
            "every CPU is a worker core: the control plane is not confined"
        assert "every CPU is a worker core" in r.stdout


def test_without_per_queue_irqs_rps_spreads_over_the_workers(config_for, tmp_path):
    root = str(tmp_path / "sysfs")
    fake_tree(root, irqs=False)
    r = run_tune(root, config_for([0, 1]))        # no xdp.interfaces: every interface with a device
    assert r.returncode == 0, r.stdout + r.stderr
    assert "eth9: no per-queue IRQs found" in r.stdout
    assert read(root, "sys/class/net/eth9/queues/rx-0/rps_cpus") == "3"
    assert read(root, "sys/class/net/eth9/queues/rx-1/rps_cpus") == "3"
    assert not os.path.exists(os.path.join(root, "sys/class/net/lo/queues/rx-0/rps_cpus")), "lo is not a NIC"


def test_dry_run_changes_nothing_and_an_invalid_configuration_tunes_nothing(config_for, tmp_path):
    root = str(tmp_path / "sysfs")
    fake_tree(root)
    r = run_tune(root, config_for([1], ["eth9"]), "--dry-run")
    assert r.returncode == 0
    assert "would write 1 to" in r.stdout
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: [\n")
    r = run_tune(root, str(bad))
    assert r.returncode == 1
    assert "is invalid; nothing tuned" in r.stdout
    assert read(root, "proc/irq/24/smp_affinity_list") == "0-1"
