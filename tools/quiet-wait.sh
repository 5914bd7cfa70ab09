#!/usr/bin/env bash
# Waits until the machine is quiet before a benchmark run, as the peer benchmarks do
# (../shared/peers/RESULTS.md, "Noise"): until all processes together use less than
# LIMIT % of one core over 2 s, for at most MAX seconds; then runs anyway.
#   tools/quiet-wait.sh [MAX=60] [LIMIT=25]
# Call it when none of the benchmark's own processes run: everything counted is someone
# else's. Prints one line to stderr: how long it waited and how busy the machine was.
set -euo pipefail
max=${1:-60}
limit=${2:-25}
cores=$(nproc)

# busy and total jiffies of all cores, from the first line of /proc/stat
sample() { awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

started=$SECONDS
while :; do
    read -r busy0 total0 < <(sample)
    sleep 2
    read -r busy1 total1 < <(sample)
    # 100 = one core busy
    percent=$(( 100 * cores * (busy1 - busy0) / ((total1 - total0) > 0 ? (total1 - total0) : 1) ))
    waited=$(( SECONDS - started ))
    if (( percent < limit )); then
        echo "quiet-wait: quiet after ${waited} s (others used ${percent} % of a core)" >&2
        exit 0
    fi
    if (( waited >= max )); then
        echo "quiet-wait: still busy after ${waited} s (others used ${percent} % of a core); running anyway" >&2
        exit 0
    fi
done
