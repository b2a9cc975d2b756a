#!/usr/bin/env bash
# `make test`: every suite, even after one fails; the last line counts suites passed and failed.
set -uo pipefail
cd "$(dirname "$0")/.."

suites=(test-unit test-regress test-scripts)

passed=0 failed=0 failures=()
for suite in "${suites[@]}"; do
    echo "=== make $suite"
    if make --no-print-directory "$suite"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)) failures+=("$suite")
    fi
done
[ "$failed" = 0 ] || echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
