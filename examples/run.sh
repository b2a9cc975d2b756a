#!/usr/bin/env bash
# `make examples`: installs each example's pinned dependency from the registries this machine
# reaches, then runs the Python (and its two-process L1 cache test), Node.js, Java and Rust
# examples against PG_CACHE_URL (default: the cluster `make run` starts). Exits non-zero when any
# example fails.
set -uo pipefail
cd "$(dirname "$0")"
export PG_CACHE_URL=${PG_CACHE_URL:-postgresql://postgres@127.0.0.1:5499/pg_cache}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    dpkg -s "$@" >/dev/null 2>&1 && return 0
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null \
        || { as_root apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null \
             && as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null; }
}

python_example() {
    python3 -m venv python/.venv && python/.venv/bin/pip install -q -r python/requirements.txt \
        && python/.venv/bin/python python/example.py \
        && python/.venv/bin/python python/l1_cache_test.py
}
node_example() {
    command -v npm >/dev/null || apt_install nodejs npm
    (cd node && npm ci --no-audit --no-fund --loglevel=error && node example.js)
}
java_example() {
    apt_install libpostgresql-jdbc-java
    command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
    local jar=/usr/share/java/postgresql.jar
    mkdir -p java/build && javac -d java/build java/Example.java && java -cp "java/build:$jar" Example
}
rust_example() {
    (cd rust && cargo run --quiet --release --locked)
}

passed=0 failed=0 failures=()
for language in python node java rust; do
    echo "=== $language"
    if "${language}_example"; then passed=$((passed + 1)); else failed=$((failed + 1)) failures+=("$language"); fi
done
[ "$failed" = 0 ] || echo "failed examples: ${failures[*]}"
echo "examples: $passed passed, $failed failed"
[ "$failed" = 0 ]
