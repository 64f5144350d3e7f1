#!/usr/bin/env bash
# The fault table of issue 9: a cluster of three powa-cluster processes (mutual TLS) on throwaway PostgreSQL
# instances, put through faults one after the other (repository stopped and frozen, a remote frozen, a NOTIFY
# flood, hostile powa_servers rows, strangers trying to join, an isolated seed, a frozen node), measured from
# the repository. About 12 minutes; --long-freeze 600 adds the repository frozen for 10 minutes; --only
# FAULT,... runs some of them. Options go to "powa-lab faults".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll faults "$@"
