#!/usr/bin/env bash
# Installs what powa-cluster's demo and tests need on Debian 12: PostgreSQL 15 with PoWA's archivist and
# stats extensions. Does nothing when they are already there. Needs root (or sudo).
set -euo pipefail

packages=(postgresql-15 postgresql-15-powa postgresql-15-pg-stat-kcache postgresql-15-pg-qualstats postgresql-15-pg-wait-sampling)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ! command -v dotnet >/dev/null 2>&1; then
  echo "install-deps: the .NET SDK 10 (dotnet) is required and was not found on PATH" >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps: missing packages (${missing[*]}) and not root: install them as root" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package creates and starts a default cluster on port 5432; the demo and the tests use
# their own throwaway instances and do not need it.
