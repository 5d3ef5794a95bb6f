#!/usr/bin/env bash
# Set-up on Debian 12, as root. Idempotent: a second run only checks.
#
#   bash scripts/setup.sh          the demo's needs alone: iproute2, ping, sysctl, python3-venv,
#                                  and a virtualenv in .venv with pyike and its dependencies
#   bash scripts/setup.sh --tests  also what the tests and benchmarks need (scripts/test.sh):
#                                  strongSwan, wireguard-go and wg, ike-scan, qemu and the
#                                  microVM's tools, tcpdump, iperf3, nftables, logrotate, groff,
#                                  and pyike's test extras
#
# Neither stops, starts or restarts a service of the host: packages are installed with service
# starts refused (policy-rc.d), since the tests start their daemons inside network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_PACKAGES=(iproute2 iputils-ping procps python3-venv)
TEST_PACKAGES=(
    iperf3 nftables tcpdump psmisc logrotate groff-base
    strongswan-charon strongswan-starter libcharon-extra-plugins libstrongswan-standard-plugins ike-scan
    wireguard-go wireguard-tools
    qemu-system-x86 busybox-static kmod cpio zstd xz-utils
)

tests=0
case "${1:-}" in
    "") ;;
    --tests) tests=1 ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
esac

packages=("${DEMO_PACKAGES[@]}")
extras=""
if ((tests)); then
    packages+=("${TEST_PACKAGES[@]}")
    extras="[test,bench]"
fi

POLICY_RC=/usr/sbin/policy-rc.d
own_policy=0
remove_own_policy() {
    if ((own_policy)); then rm -f "$POLICY_RC"; fi
}
trap remove_own_policy EXIT

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # invoke-rc.d(8): exit 101 refuses every service start a package's scripts ask for. A
    # policy the host already has is left as it is (and in force).
    if [[ ! -e "$POLICY_RC" ]]; then
        own_policy=1
        printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
        chmod +x "$POLICY_RC"
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    remove_own_policy
    own_policy=0
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e ".${extras}"
