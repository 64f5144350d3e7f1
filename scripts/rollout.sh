#!/usr/bin/env bash
# A rolling upgrade measured (issue 24): N powa-cluster nodes of the build of --from GIT-REF replaced one at a
# time by this build, as a StatefulSet's rolling update does, on throwaway PostgreSQL instances; per server the
# intervals lost and the doubles, the longest gap, where the singletons ran. --outage keeps the repository down
# through the roll. Options go to "powa-lab rollout" (defaults: 3 nodes, 300 servers at 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll rollout "$@"
