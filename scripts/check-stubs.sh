#!/usr/bin/env bash
# Regenerate the Python stubs into a temporary tree and fail if the committed ones differ.
set -euo pipefail
python="${1:-python3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t protos < <(find proto -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${protos[@]}"
status=0
while IFS= read -r f; do
  rel=${f#"$tmp"/}
  if ! cmp -s "$f" "$rel"; then echo "stale generated stub: $rel (run 'make proto')" >&2; status=1; fi
done < <(find "$tmp" -type f)
[ $status -eq 0 ] && echo "generated stubs are up to date"
exit $status
