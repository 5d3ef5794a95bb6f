#!/usr/bin/env bash
# Installs everything pyike's demo, tests and benchmarks need on a fresh Debian 12 machine:
# the Debian packages (apt) and a virtualenv in .venv with pyike and its test extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
    iproute2 iputils-ping iperf3 nftables tcpdump procps psmisc
    strongswan-charon strongswan-starter libcharon-extra-plugins libstrongswan-standard-plugins ike-scan
    qemu-system-x86 busybox-static kmod cpio zstd xz-utils
)

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The daemons are started by the tests inside network namespaces, never as system services.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
# A packaged charon may have been started by its postinst elsewhere; pyike's tests want port 500.
systemctl stop strongswan-starter strongswan ipsec 2>/dev/null || true

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test,bench]'
