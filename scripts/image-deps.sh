#!/usr/bin/env bash
# What `make images` and `make image-smoke` need, installed only when missing: podman with runc
# (crun fails on kernels with a mixed cgroup set-up; docker/containers.conf selects runc), netavark
# and aardvark-dns (container networks where containers find each other by name), iptables
# (published ports), mmdebstrap (scripts/image-base.sh, the local base image).
exec bash "$(dirname "$0")/apt-install.sh" podman runc netavark aardvark-dns iptables mmdebstrap
