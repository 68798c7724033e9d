#!/usr/bin/env bash
# buf breaking against main's proto/ (skipped when there is no main to compare with, e.g. the first commit).
set -euo pipefail
buf="$1"
if ! git rev-parse --verify -q main >/dev/null || [ -z "$(git ls-tree -r --name-only main -- proto)" ]; then
  echo "buf breaking: no proto/ on main to compare with; skipped"
  exit 0
fi
"$buf" breaking --against ".git#branch=main"
echo "buf breaking: no breaking changes against main"
