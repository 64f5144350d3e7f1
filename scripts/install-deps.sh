#!/usr/bin/env bash
# Installs what powa-cluster's demo and tests need on Debian 12: PostgreSQL 15 with PoWA's archivist 4.1.4
# and stats extensions (Debian's packages), and, when ../shared/vendor/powa-archivist-5.1.2.tar.gz is there,
# archivist 5.1.2 built into a relocated copy of PostgreSQL 15's tree (POWA5_ROOT, default
# /opt/powa-cluster/pg15-powa5) so that instances of PoWA 4 and PoWA 5 run side by side. Does nothing that
# is already done. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-15-powa postgresql-15-pg-stat-kcache postgresql-15-pg-qualstats postgresql-15-pg-wait-sampling
  prometheus systemd)  # prometheus and promtool: the metrics tests; systemd-analyze: the unit file test
tarball="$(cd .. && pwd)/shared/vendor/powa-archivist-5.1.2.tar.gz"
powa5_root="${POWA5_ROOT:-/opt/powa-cluster/pg15-powa5}"
# Building archivist 5 needs PostgreSQL's server headers (and make and gcc, which the machine has).
[ -f "$tarball" ] && packages+=(postgresql-server-dev-15 make gcc)

if ! command -v dotnet >/dev/null 2>&1; then
  echo "install-deps: the .NET SDK 10 (dotnet) is required and was not found on PATH" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    [ ${#missing[@]} -eq 0 ] || { echo "install-deps: missing packages (${missing[*]}) and not root: install them as root" >&2; exit 1; }
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # postgresql-15 goes with them, so that the server and its headers are of the same minor release.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" postgresql-15 >/dev/null
  # The Debian package creates and starts a default cluster on port 5432; the demo and the tests use
  # their own throwaway instances and do not need it.
  # Debian's prometheus package starts a server on :9090 where services may start (no policy-rc.d): the
  # tests start their own on free ports, so the one this install started is stopped.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -x /etc/init.d/prometheus ]; then
    $sudo /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
fi

[ -f "$tarball" ] || exit 0
if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "install-deps: not root and no sudo: archivist 5.1.2 not built, the PoWA 5 tests will be skipped" >&2
  exit 0
fi

# Archivist 5.1.2 in a copy of Debian's PostgreSQL 15 tree: PostgreSQL finds share/ and lib/ relative to the
# binary it runs, so an instance started from the copy's bin/ sees PoWA 5 (the stats extensions come with
# the copy). Rebuilt when PostgreSQL's package or the tarball changes.
stamp="$(dpkg-query -W -f='${Version}' postgresql-15) $(sha256sum "$tarball" | cut -d' ' -f1)"
if [ -f "$powa5_root/.stamp" ] && [ "$(cat "$powa5_root/.stamp")" = "$stamp" ]; then
  exit 0
fi
echo "install-deps: building powa-archivist 5.1.2 into $powa5_root"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
build_powa5() {
  $sudo rm -rf "$powa5_root" &&
  $sudo mkdir -p "$powa5_root/usr/lib/postgresql" "$powa5_root/usr/share/postgresql" &&
  $sudo cp -a /usr/lib/postgresql/15 "$powa5_root/usr/lib/postgresql/" &&
  $sudo cp -a /usr/share/postgresql/15 "$powa5_root/usr/share/postgresql/" &&
  tar -xzf "$tarball" -C "$build" &&
  make -s -C "$build/powa-archivist-5.1.2" PG_CONFIG=/usr/bin/pg_config >/dev/null &&
  $sudo make -s -C "$build/powa-archivist-5.1.2" install PG_CONFIG=/usr/bin/pg_config DESTDIR="$powa5_root" >/dev/null &&
  # The copy's bin/ runs as the postgres OS user: it must be able to read it (bits are only added, and
  # nothing above the copy is touched: its parent directories must already be readable by everyone).
  $sudo chmod -R a+rX "$powa5_root" &&
  echo "$stamp" | $sudo tee "$powa5_root/.stamp" >/dev/null
}
# A failed build does not stop the tests: without the stamp the PoWA 5 tests count as skipped, visibly.
if build_powa5; then
  echo "install-deps: PoWA 5 binaries in $powa5_root/usr/lib/postgresql/15/bin"
else
  echo "install-deps: building archivist 5.1.2 failed (see above): the PoWA 5 tests will be skipped" >&2
  $sudo rm -f "$powa5_root/.stamp"
fi
