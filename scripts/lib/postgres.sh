# shellcheck shell=bash
# A local PostgreSQL for the test suite (the backend runs on SQLite by default; production
# points KUMULUS_DATABASE_URL at its own server). Sourced by scripts/setup.sh.

postgres_start() {
  if ! command -v pg_lsclusters >/dev/null; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local version cluster=main
  version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
  if [ -z "$version" ]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
    pg_createcluster "$version" "$cluster" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $4=="online"' | grep -q .; then
    log "starting PostgreSQL $version (listening on 127.0.0.1 only)"
    pg_ctlcluster "$version" "$cluster" start -- -o "-c listen_addresses=127.0.0.1"
  fi
  local pwfile="$KUMULUS_STATE_DIR/postgres-test-password"
  mkdir -p "$KUMULUS_STATE_DIR"
  if [ ! -s "$pwfile" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pwfile")
  fi
  local pw port
  pw=$(cat "$pwfile")
  port=$(pg_lsclusters -h | awk -v v="$version" '$1==v {print $3; exit}')
  # The password goes to psql on stdin, never on a command line.
  # (pw is alphanumeric: generated above.)
  runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
\set pw '$pw'
SELECT 'CREATE ROLE kumulus_test LOGIN' WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = 'kumulus_test') \gexec
ALTER ROLE kumulus_test PASSWORD :'pw';
SELECT 'CREATE DATABASE kumulus_test OWNER kumulus_test' WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = 'kumulus_test') \gexec
SQL
  export KUMULUS_TEST_POSTGRES_URL="postgresql://kumulus_test:$pw@127.0.0.1:$port/kumulus_test"
}
