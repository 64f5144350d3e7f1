#!/bin/sh
# Honours what Testcontainers' PostgreSqlBuilder sets: POSTGRES_USER, POSTGRES_PASSWORD.
set -e
PGDATA=/var/lib/postgresql/data
BIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" > /tmp/pwfile
  "$BIN/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile=/tmp/pwfile \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql \
  -c shared_preload_libraries=pg_stat_statements,pg_stat_kcache,pg_qualstats,pg_wait_sampling \
  -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c pg_stat_statements.track=all -c pg_qualstats.sample_rate=1 -c track_functions=all "$@"
