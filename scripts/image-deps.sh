#!/usr/bin/env bash
# Install what `make images` and `make image-smoke` need, only when missing (Debian/Ubuntu, as root or
# with sudo): podman with runc (crun fails on kernels with a mixed cgroup set-up; docker/containers.conf
# selects runc), netavark and aardvark-dns (container networks where containers find each other by
# name), iptables (published ports), mmdebstrap (scripts/image-base.sh, the local base image).
set -euo pipefail
need=()
for pkg in podman runc netavark aardvark-dns iptables mmdebstrap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]}; install them with your package manager" >&2
  exit 1
fi
echo "installing ${need[*]} ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
