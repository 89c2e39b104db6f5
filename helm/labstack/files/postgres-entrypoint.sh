#!/bin/bash
# labstack PostgreSQL entrypoint (chart ConfigMap; image labstack/postgres).
# First start: initdb. Every start: a socket-only bootstrap server (trust
# over a private socket) converges roles, passwords and databases to the
# values and Secrets, then the real server is exec'd as PID 1.
# Secrets arrive as environment variables and never appear in arguments.
set -euo pipefail
: "${PGDATA:?}" "${POSTGRES_PASSWORD:?}" "${APP_USER:?}" "${APP_PASSWORD:?}" "${APP_DATABASES:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "initdb: empty data directory $PGDATA"
  initdb --username=postgres --pwfile=<(printf '%s' "$POSTGRES_PASSWORD") \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null
fi

boot_dir=$(mktemp -d "${TMPDIR:-/tmp}/pgboot.XXXXXX")
chmod 700 "$boot_dir"
printf 'local all postgres trust\n' > "$boot_dir/pg_hba.conf"
pg_ctl -D "$PGDATA" -w -l "$boot_dir/log" start -o \
  "-c listen_addresses='' -c unix_socket_directories=$boot_dir -c hba_file=$boot_dir/pg_hba.conf"

{
  echo '\getenv pg_password POSTGRES_PASSWORD'
  echo '\getenv app_user APP_USER'
  echo '\getenv app_password APP_PASSWORD'
  echo "ALTER ROLE postgres WITH PASSWORD :'pg_password';"
  echo "SELECT format('CREATE ROLE %I LOGIN', :'app_user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \\gexec"
  echo "ALTER ROLE :\"app_user\" WITH LOGIN PASSWORD :'app_password';"
  for db in $APP_DATABASES; do
    echo "SELECT format('CREATE DATABASE %I OWNER %I', '$db', :'app_user') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \\gexec"
    echo "ALTER DATABASE \"$db\" OWNER TO :\"app_user\";"
  done
} | psql -X -q -v ON_ERROR_STOP=1 -h "$boot_dir" -U postgres -d postgres

pg_ctl -D "$PGDATA" -w -m fast stop
rm -rf "$boot_dir"
echo "bootstrap converged: role $APP_USER, databases: $APP_DATABASES"
exec postgres -D "$PGDATA" "$@"
