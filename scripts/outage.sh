#!/usr/bin/env bash
# A repository outage: powa-cluster (with its spool) and the reference powa-collector (1.3.1 from
# ../shared/vendor when present, else Debian's 1.2.0) side by side on the same throwaway remotes, each into a
# repository database of its own on one repository instance, which is stopped for --seconds (300) and
# started again; one table at the end (due, spooled, replayed, stored, lost, drain time, live delay during
# the drain, peak memory). Options go to "powa-lab outage": --servers N (20), --frequency S (5),
# --seconds N (300), --warmup N (60), --pool-size N, --remotes N (2). The defaults take about 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/lab.sh outage "$@"
