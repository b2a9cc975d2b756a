#!/usr/bin/env bash
# Two `make bench` runs side by side (say PostgreSQL 15 and 18, run one after the other on the
# same machine): for each case, the ratio to SELECT 1 at 1 and 8 clients in each run. Compare
# ratios, not ops/s: the runs are minutes apart on a machine whose speed drifts.
#   benches/side_by_side.sh results/bench-A.csv "15" results/bench-B.csv "18"
set -euo pipefail
[ $# = 4 ] || { echo "usage: $0 FIRST.csv FIRST_NAME SECOND.csv SECOND_NAME" >&2; exit 2; }
echo "| case | payload | $2: × SELECT 1, 1 client | 8 clients | $4: × SELECT 1, 1 client | 8 clients |"
echo "|---|---:|---:|---:|---:|---:|"
awk -F, 'FNR == 1 { run++; next }
         { key = $1 "," $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }; ratio[run "," key "," $3] = $5 }
         END { for (i = 1; i <= n; i++) { split(order[i], p, ",")
                   printf "| %s | %s | %s | %s | %s | %s |\n", p[1], p[2],
                          ratio["1," order[i] ",1"], ratio["1," order[i] ",8"], ratio["2," order[i] ",1"], ratio["2," order[i] ",8"] } }' "$1" "$3" \
    | sed 's/|  |/| – |/g; s/|  |/| – |/g'
