#!/usr/bin/env bash
# Build the images with podman (what `make images` runs; docs/deploy.md, "Container images"):
#   scripts/build-images.sh VERSION PYTHON_IMAGE [CA_BUNDLE]
# ferryman/scorer:VERSION and ferryman/gateway:VERSION on PYTHON_IMAGE (a localhost/ base is made
# first by scripts/image-base.sh when missing), then ferryman/fake-provider:VERSION (the smoke
# test's provider: the gateway image plus harness/fake_provider.py). CA_BUNDLE, when given, is the
# build secret ca_bundle that pip trusts. Each build's full output goes to build/images/NAME.log.
set -euo pipefail
version=${1:?usage: scripts/build-images.sh VERSION PYTHON_IMAGE [CA_BUNDLE]}
base=${2:?usage: scripts/build-images.sh VERSION PYTHON_IMAGE [CA_BUNDLE]}
ca=${3:-}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
mkdir -p build/images
case "$base" in localhost/*) bash scripts/image-base.sh "$base" ;; esac

build() {  # NAME [podman build flags...]
  local name=$1 start=$SECONDS
  shift
  echo "building ferryman/$name:$version ..."
  if ! podman build --format docker --ignorefile "docker/$name.Dockerfile.dockerignore" \
      -f "docker/$name.Dockerfile" -t "ferryman/$name:$version" "$@" . > "build/images/$name.log" 2>&1; then
    tail -n 40 "build/images/$name.log" >&2
    echo "building ferryman/$name:$version failed (full output: build/images/$name.log)" >&2
    return 1
  fi
  echo "built ferryman/$name:$version in $((SECONDS - start)) s: $(podman image inspect --format '{{.Size}}' \
    "ferryman/$name:$version" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

secret=()
if [ -n "$ca" ]; then secret=(--secret "id=ca_bundle,src=$ca"); fi
build scorer --build-arg "PYTHON_IMAGE=$base" "${secret[@]}"
build gateway --build-arg "PYTHON_IMAGE=$base" "${secret[@]}"
build fake-provider --build-arg "GATEWAY_IMAGE=localhost/ferryman/gateway:$version"
