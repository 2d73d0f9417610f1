#!/usr/bin/env bash
# Installs every Debian 12 package mxedge needs to build, test, benchmark and demo.
# Idempotent: packages already present are skipped quickly. Run as root.
set -euo pipefail

packages=(
  # toolchain and build
  build-essential cmake ninja-build pkg-config clang llvm lld libclang-rt-14-dev
  clang-format clang-tidy
  # libraries (DESIGN.md: every dependency from Debian's archive)
  libssl-dev openssl protobuf-compiler libprotobuf-dev libyaml-cpp-dev libcli11-dev libfmt-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libbpf-dev bpftool libdpdk-dev libunbound-dev libldns-dev libcurl4-openssl-dev nlohmann-json3-dev libevent-dev libsqlite3-dev
  zlib1g-dev
  # the IANA root trust anchor and root hints: the resolver's defaults
  dns-root-data
  # lab peers and tools used by tests, the demo and the benchmarks
  postfix swaks libnet-ssleay-perl libio-socket-inet6-perl iproute2 ethtool procps psmisc python3 python3-pytest python3-protobuf ldnsutils nsd unbound xdp-tools
  # the MTA-STS policy host (tests/lab/mta_sts.py) and the client its self-tests use
  nginx-light curl
  # the DPDK fast path's peer in its benchmark (dpdk-testpmd) and the DPDK tools (dpdk-devbind.py)
  dpdk dpdk-dev
  # the load scenarios' plots (tests/load/scenarios) and trafgen, the packet generator mxedge-pktgen is
  # measured against (tests/load/pktgen)
  python3-matplotlib netsniff-ng python3-openssl libfaketime
  # the reference MTA-STS resolver of tests/load/mta_sts/bench_mta_sts.py (mta-sts-daemon)
  postfix-mta-sts-resolver
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix is only a lab peer: keep its package from configuring a system mailer.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The packaged daemons are lab peers started by the tests themselves; the system copies stay off.
for svc in postfix nsd unbound nginx postfix-mta-sts-resolver; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
echo "setup: all packages present"
