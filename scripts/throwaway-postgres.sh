#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 on a free loopback port in a temporary directory and prints
# `export COUNTERMAND_TEST_PG_URL=...` and `export COUNTERMAND_TEST_PG_DIR=...`. Stop it with
# scripts/throwaway-postgres.sh stop "$COUNTERMAND_TEST_PG_DIR". Runs the server as the
# `postgres` user when started as root (PostgreSQL refuses to run as root).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
  dir=$2
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

dir=$(mktemp -d /tmp/countermand-pg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
as_pg "$PGBIN/initdb" -D "$dir/data" -U countermand --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1
as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U countermand countermand
echo "export COUNTERMAND_TEST_PG_URL=postgres://countermand@127.0.0.1:$port/countermand"
echo "export COUNTERMAND_TEST_PG_DIR=$dir"
