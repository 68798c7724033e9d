#!/usr/bin/env bash
# Build the local Python base image that the Dockerfiles' PYTHON_IMAGE argument takes where no
# registry is reachable: Debian bookworm (mmdebstrap, minbase, no recommends) with Debian's python3
# (3.11), its venv module and ca-certificates, without what python:3.11-slim-bookworm leaves out
# too (docs, man pages, translations, apt lists and caches). Skips the build when the image exists
# and was made by this same script.
#   scripts/image-base.sh IMAGE [MIRROR]     (root; needs mmdebstrap and podman: scripts/image-deps.sh)
set -euo pipefail
image=${1:?usage: scripts/image-base.sh IMAGE [MIRROR]}
# the Debian mirror apt uses on this machine (deb822 or one-line sources), else Debian's own
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -r "$f" ] && sed -n -E 's/^URIs: *([^ ]+).*/\1/p; s/^deb +(\[[^]]*\] +)?(http[^ ]+) +bookworm .*/\2/p' "$f"
  done | grep -v security | head -n1 || true
}
mirror=${2:-$(debian_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
recipe=$(sha256sum "$0" | cut -c1-16)
if [ "$(podman image inspect --format '{{index .Labels "ferryman.base.recipe"}}' "$image" 2>/dev/null)" = "$recipe" ]; then
  echo "base image $image is up to date (recipe $recipe)"
  exit 0
fi
echo "building base image $image: Debian bookworm + python3 from $mirror ..."
start=$SECONDS
work=$(mktemp -d /var/tmp/ferryman-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
dpkgopts=(--dpkgopt=force-unsafe-io)
for path in '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/locale/*'; do
  dpkgopts+=("--dpkgopt=path-exclude=$path")
done
dpkgopts+=('--dpkgopt=path-include=/usr/share/doc/*/copyright')
if ! mmdebstrap --mode=root --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${dpkgopts[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/tmp/*' \
    bookworm "$work/rootfs.tar" "$mirror" > "$work/log" 2>&1; then
  tail -n 30 "$work/log" >&2
  echo "building base image $image failed" >&2
  exit 1
fi
podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
  --change "LABEL ferryman.base.recipe=$recipe" --change "LABEL ferryman.base.mirror=$mirror" \
  "$work/rootfs.tar" "$image" > /dev/null
echo "base image $image built in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' "$image" \
  | awk '{printf "%.0f MB", $1 / 1e6}'), $(podman run --rm "$image" python3 --version)"
