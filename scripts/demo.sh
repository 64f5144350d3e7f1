#!/usr/bin/env bash
# The main job on an embedded default: installs what is missing, starts a throwaway repository and two
# throwaway remote PostgreSQL 15 instances on loopback, registers servers, runs the collector and prints
# what it collected. Options go to "powa-lab demo": --seconds N (default: until Ctrl-C), --servers N,
# --frequency S, --remotes N, --pool-size N, --debug, --powa 5 (the newest archivist 5 built from ../shared/vendor:
# 5.3.0; --powa 5.1 for 5.1.2),
# --reference (the reference powa-collector instead: 1.2.0 on PoWA 4, 1.3.1 on PoWA 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll demo "$@"
