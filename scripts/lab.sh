#!/usr/bin/env bash
# powa-lab with what its comparisons need: the dependencies (scripts/install-deps.sh), Debian's powa-collector
# (the reference 1.2.0, and python3-psycopg2 for 1.3.1's sources from ../shared/vendor), a Release build.
# Used by bench.sh and outage.sh: scripts/lab.sh COMMAND [OPTIONS].
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if ! dpkg-query -W -f='${Status}' powa-collector 2>/dev/null | grep -q "install ok installed"; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends powa-collector >/dev/null
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build src/PowaCluster.Lab -c Release --nologo -v q -clp:ErrorsOnly
exec dotnet src/PowaCluster.Lab/bin/Release/net10.0/powa-lab.dll "$@"
