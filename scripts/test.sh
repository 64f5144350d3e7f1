#!/usr/bin/env bash
# Runs the whole test suite (unit, actor and integration tests against throwaway PostgreSQL 15 instances),
# installing what it needs first. Ends with the runner's summary, then one line: N passed, N failed[, N skipped].
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || exit 1

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
results="artifacts/test-results"
rm -rf "$results"
dotnet restore PowaCluster.sln --nologo -v q || exit 1
dotnet build PowaCluster.sln -c Release --no-restore --nologo -v q -clp:ErrorsOnly || exit 1
log="$results/console.log"
mkdir -p "$results"
dotnet test PowaCluster.sln -c Release --no-build --nologo \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

trx=$(find "$results" -name '*.trx' 2>/dev/null | head -n 1)
if [ -z "$trx" ]; then
  echo "0 passed, 0 failed"
  exit $(( status == 0 ? 1 : status ))
fi
counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
errors=$(get error); timeout=$(get timeout); aborted=$(get aborted)
failed=$(( ${failed:-0} + ${errors:-0} + ${timeout:-0} + ${aborted:-0} ))
skipped=$(( ${total:-0} - ${executed:-0} ))
# The failed tests by name, then the runner's summary again: the end of a long log is what a CI page shows.
if [ "$failed" -gt 0 ]; then
  echo
  echo "Failed tests:"
  if command -v python3 >/dev/null; then
    python3 - "$trx" <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for r in ET.parse(sys.argv[1]).getroot().iterfind(".//t:UnitTestResult", ns):
    if r.get("outcome") in ("Failed", "Error", "Timeout", "Aborted"):
        m = r.find(".//t:ErrorInfo/t:Message", ns)
        lines = (m.text or "").strip().splitlines() if m is not None else []
        print("  " + r.get("testName", "?"))
        for l in lines[:3]: print("      " + l[:300])
PY
  else
    grep -o '<UnitTestResult [^>]*outcome="\(Failed\|Error\|Timeout\|Aborted\)"[^>]*>' "$trx" \
      | grep -o 'testName="[^"]*"' | sed 's/^testName="/  /; s/"$//; s/&quot;/"/g; s/&amp;/\&/g'
  fi
  echo
  sed -n '/^Test Run \(Successful\|Failed\|Aborted\)/,$p' "$log"
fi
line="${passed:-0} passed, ${failed} failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
if [ "${executed:-0}" -eq 0 ]; then exit 1; fi
exit $status
