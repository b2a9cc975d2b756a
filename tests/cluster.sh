#!/usr/bin/env bash
# A PostgreSQL cluster of the project's own (the version of $PG_CONFIG), with pg_cache preloaded.
# Postgres refuses to run as root, so as root the cluster belongs to (and runs as) the postgres
# OS user; otherwise it runs as the invoking user. The superuser is always "postgres".
#
#   tests/cluster.sh start DATADIR PORT [postgres.conf lines...]   initdb if needed, then start
#   tests/cluster.sh stop DATADIR
#   tests/cluster.sh destroy DATADIR                              stop and delete
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
SOCKET_DIR=${PG_CACHE_SOCKET_DIR:-/tmp}

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

major_version() { "$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'; }

is_running() {
    [ -f "$1/PG_VERSION" ] && as_owner "$PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

start() {
    local datadir=$1 port=$2
    shift 2
    if [ -f "$datadir/PG_VERSION" ] && [ "$(cat "$datadir/PG_VERSION")" != "$(major_version)" ]; then
        echo "$datadir holds a PostgreSQL $(cat "$datadir/PG_VERSION") cluster, not $(major_version) ($PG_CONFIG)" >&2
        exit 1
    fi
    if [ ! -f "$datadir/PG_VERSION" ]; then
        mkdir -p "$datadir"
        [ "$(id -u)" = 0 ] && chown postgres: "$datadir"
        chmod 700 "$datadir"
        as_owner "$PGBIN/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
        {
            echo "port = $port"
            echo "unix_socket_directories = '$SOCKET_DIR'"
            echo "listen_addresses = '127.0.0.1'"
            echo "shared_preload_libraries = 'pg_cache'"
            echo "fsync = off"
            for line in "$@"; do echo "$line"; done
        } | as_owner tee -a "$datadir/postgresql.conf" >/dev/null
    fi
    if ! is_running "$datadir"; then
        as_owner "$PGBIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 start >/dev/null
    fi
}

stop() {
    if is_running "$1"; then
        as_owner "$PGBIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop "$2" ;;
    destroy) stop "$2"; rm -rf "$2" ;;
    *) echo "usage: $0 start DATADIR PORT [conf...] | stop DATADIR | destroy DATADIR" >&2; exit 2 ;;
esac
