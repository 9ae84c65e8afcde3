# TAP helpers shared by the shell tests (sourced): a temporary folder $T removed on exit, and checks that
# print "ok N - ..." / "not ok N - ..." (with the last command's output as comments on failure).
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fails=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$T/out" "$T/err" 2>/dev/null; }
# run CMD...: output in $T/out and $T/err, status in $rc
run () { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
expect_ok () { local what=$1; shift; run "$@"; if [ $rc -eq 0 ]; then ok "$what"; else not_ok "$what (exit $rc)"; fi; }
# expect_fail WHAT PATTERN CMD...: non-zero exit and stderr matching PATTERN (extended regex)
expect_fail () {
  local what=$1 pat=$2; shift 2; run "$@"
  if [ $rc -ne 0 ] && grep -Eq -- "$pat" "$T/err"; then ok "$what"; else not_ok "$what (exit $rc, wanted /$pat/)"; fi
}
# expect_out / expect_err WHAT PATTERN: the last run's stdout / stderr matches PATTERN
expect_out () { if grep -Eq -- "$2" "$T/out"; then ok "$1"; else not_ok "$1 (wanted /$2/)"; fi; }
expect_err () { if grep -Eq -- "$2" "$T/err"; then ok "$1"; else not_ok "$1 (wanted /$2/)"; fi; }
# the plan, and the exit status
finish () { echo "1..$n"; [ $fails -eq 0 ]; }
