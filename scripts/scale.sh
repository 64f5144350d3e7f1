#!/usr/bin/env bash
# A fleet from a cold start (issue 10): N powa-cluster processes started together (static seeds, mutual TLS)
# against throwaway remotes on loopback (60 servers per PostgreSQL instance), M servers, for a while; prints per
# node the servers held, remote connections, resident memory and CPU, and for the fleet the servers not
# snapshotted within their first two intervals, the interval error p50/p99 after them, connect timeouts and nodes
# downed; --kill then SIGKILLs the oldest node and measures how long its servers take to resume. Defaults:
# 3 nodes, 1,000 servers at 60 s, 300 s (about 10 minutes in all with --kill). Options go to "powa-lab scale".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll scale "$@"
