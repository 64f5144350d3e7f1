#!/usr/bin/env bash
# Installs what powa-cluster's demo and tests need on Debian 12: PostgreSQL 15 with PoWA's archivist 4.1.4
# and stats extensions (Debian's packages), and, for each ../shared/vendor/powa-archivist-X.Y.Z.tar.gz, that
# archivist built into a relocated copy of PostgreSQL 15's tree of its own (POWA_TREES/pg15-powa-X.Y.Z,
# POWA_TREES defaulting to /opt/powa-cluster) so that instances of PoWA 4 and of each PoWA 5 release run side
# by side; with Debian's python3 packages powa-web needs, when ../shared/vendor has powa-web. Does nothing
# that is already done. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-15-powa postgresql-15-pg-stat-kcache postgresql-15-pg-qualstats postgresql-15-pg-wait-sampling
  prometheus systemd libfaketime)  # prometheus and promtool: the metrics tests; systemd-analyze: the unit file test;
  # libfaketime: a node whose clock is minutes off (the clock tests)
vendor="$(cd .. && pwd)/shared/vendor"
trees="${POWA_TREES:-/opt/powa-cluster}"
# Oldest first: a tree also gets the SQL of the older releases of its major, for ALTER EXTENSION powa UPDATE.
mapfile -t tarballs < <(ls "$vendor"/powa-archivist-*.tar.gz 2>/dev/null | sort -V)
# Building an archivist needs PostgreSQL's server headers (and make and gcc, which the machine has).
[ ${#tarballs[@]} -gt 0 ] && packages+=(postgresql-server-dev-15 make gcc)
# powa-web (the tests that read what we store as powa-web does) runs on Debian's python3 packages.
ls "$vendor"/powa-web-*.tar.gz >/dev/null 2>&1 && packages+=(python3 python3-tornado python3-psycopg2 python3-sqlalchemy)

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

[ ${#tarballs[@]} -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "install-deps: not root and no sudo: the archivists of $vendor not built, the PoWA 5 tests will be skipped" >&2
  exit 0
fi

# Each archivist release in a copy of Debian's PostgreSQL 15 tree: PostgreSQL finds share/ and lib/ relative to
# the binary it runs, so an instance started from the copy's bin/ sees that release (the stats extensions come
# with the copy). Rebuilt when PostgreSQL's package or a tarball it holds changes.
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
version_of() { basename "$1" .tar.gz | sed 's/^powa-archivist-//'; }
build_tree() { # root, tarballs (oldest first; the last one is the tree's release)
  local root="$1"; shift
  $sudo rm -rf "$root" &&
  $sudo mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql" &&
  $sudo cp -a /usr/lib/postgresql/15 "$root/usr/lib/postgresql/" &&
  $sudo cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/" &&
  for t in "$@"; do
    local v; v="$(version_of "$t")"
    rm -rf "$build/powa-archivist-$v" &&
    tar -xzf "$t" -C "$build" &&
    make -s -C "$build/powa-archivist-$v" PG_CONFIG=/usr/bin/pg_config >/dev/null &&
    $sudo make -s -C "$build/powa-archivist-$v" install PG_CONFIG=/usr/bin/pg_config DESTDIR="$root" >/dev/null || return 1
  done &&
  # The copy's bin/ runs as the postgres OS user: it must be able to read it (bits are only added, and
  # nothing above the copy is touched: its parent directories must already be readable by everyone).
  $sudo chmod -R a+rX "$root"
}
for ((i = 0; i < ${#tarballs[@]}; i++)); do
  tarball="${tarballs[$i]}"; version="$(version_of "$tarball")"; major="${version%%.*}"
  root="$trees/pg15-powa-$version"
  own=()
  for ((j = 0; j <= i; j++)); do
    [ "$(version_of "${tarballs[$j]}" | cut -d. -f1)" = "$major" ] && own+=("${tarballs[$j]}")
  done
  stamp="$(dpkg-query -W -f='${Version}' postgresql-15) $(cat "${own[@]}" | sha256sum | cut -d' ' -f1)"
  if [ -f "$root/.stamp" ] && [ "$(cat "$root/.stamp")" = "$stamp" ]; then continue; fi
  echo "install-deps: building powa-archivist $version into $root"
  # A failed build does not stop the tests: without the stamp the tests of that release count as skipped, visibly.
  if build_tree "$root" "${own[@]}"; then
    echo "$stamp" | $sudo tee "$root/.stamp" >/dev/null
    echo "install-deps: PoWA $version binaries in $root/usr/lib/postgresql/15/bin"
  else
    echo "install-deps: building archivist $version failed (see above): its tests will be skipped" >&2
    $sudo rm -f "$root/.stamp"
  fi
done
