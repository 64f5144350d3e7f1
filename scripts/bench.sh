#!/usr/bin/env bash
# The benchmark: powa-cluster and the reference powa-collector (1.3.1 from ../shared/vendor when present,
# Debian's 1.2.0) one after the other on the same throwaway servers, then the repository's own limit, a
# saturating load and a frozen remote; one table at the end. Options go to "powa-lab bench":
# --servers N (20), --frequency S (5), --seconds N (window, 30), --warmup N (15), --frozen N (45),
# --loads N,N (extra loads for powa-cluster), --pool-size N, --remotes N (2), --idle N (10).
# The defaults take about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The references: Debian's powa-collector (1.2.0), and its python3-psycopg2 for 1.3.1's sources.
if ! dpkg-query -W -f='${Status}' powa-collector 2>/dev/null | grep -q "install ok installed"; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends powa-collector >/dev/null
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll bench "$@"
