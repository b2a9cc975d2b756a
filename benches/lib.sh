# What the benchmark scripts share (sourced): installing a Debian package they need, and a Redis
# of their own on a loopback port, stopped when the script exits (stop_redis; a script with its
# own EXIT trap calls it there).

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# need COMMAND DEBIAN_PACKAGE: installs the package when the command is missing.
need() {
    command -v "$1" >/dev/null || as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$2" >/dev/null \
        || { as_root apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$2" >/dev/null; }
}

# start_redis PORT: a Redis without persistence on 127.0.0.1:PORT, its files in REDIS_DIR; returns
# once it answers.
start_redis() {
    REDIS_DIR=$(mktemp -d)
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log"
    for _ in $(seq 50); do redis-cli -p "$1" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# stop_redis: stops the Redis start_redis started, waiting for it to exit (it writes its log into
# REDIS_DIR until then), and removes its files.
stop_redis() {
    local pid
    [ -n "${REDIS_DIR:-}" ] || return 0
    pid=$(cat "$REDIS_DIR/redis.pid" 2>/dev/null) && kill "$pid" 2>/dev/null \
        && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -rf "$REDIS_DIR"
}
