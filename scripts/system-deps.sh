#!/usr/bin/env bash
# Install the OS packages the test-suite needs, only when missing (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
pkgs=()
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
# Go client (clients/go, built offline in GOPATH mode) and its buf plugins: Debian's packages.
pkgs+=(golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev)
exec bash "$(dirname "$0")/apt-install.sh" "${pkgs[@]}"
