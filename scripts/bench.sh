#!/usr/bin/env bash
# The benchmark: powa-cluster and the reference powa-collector (1.3.1 from ../shared/vendor when present,
# Debian's 1.2.0) one after the other on the same throwaway servers, then the repository's own limit, a
# saturating load and a frozen remote; one table at the end. Options go to "powa-lab bench":
# --servers N (20), --frequency S (5), --seconds N (window, 30), --warmup N (15), --frozen N (45),
# --loads N,N (extra loads for powa-cluster), --pool-size N, --remotes N (2), --idle N (10).
# The defaults take about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/lab.sh bench "$@"
