#!/usr/bin/env bash
# TAP: every seed (made by make-seeds.py from the golden folder) and every saved crash input in
# regressions/<target>/ run once through replay-<target>; a crash, sanitizer report or timeout fails.
# Usage: replay.sh BUILD_DIR SOURCE_DIR TARGET...
set -u
build=$1 src=$2; shift 2
golden=${OFT_GOLDEN_DIR:-$src/../../../shared/golden}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
declare -a lines
for t in "$@"; do
  python3 "$src/make-seeds.py" "$t" "$tmp/$t" "$golden" || { lines+=("not ok - $t: seeds"); continue; }
  for f in "$tmp/$t"/* "$src/regressions/$t"/*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    name=${f#"$tmp/"}; name=${name#"$src/"}
    if out=$(timeout 60 "$build/replay-$t" "$f" 2>&1) && ! grep -q "AddressSanitizer\|runtime error\|LeakSanitizer" <<<"$out"; then
      echo "ok $n - $t: $name"
    else
      echo "not ok $n - $t: $name"
      tail -20 <<<"$out" | sed 's/^/# /'
    fi
  done
done
echo "1..$n"
