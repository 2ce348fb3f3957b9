#!/bin/sh
# run-libfuzzer.sh TARGET CORPUS REGRESSIONS RUNS: the `meson test` entry
# of a fuzz target built with -Dfuzzing=true.  libFuzzer replays the
# corpus and the regressions, then runs RUNS more inputs; what it finds
# new goes to a scratch directory, never into the source tree.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
set -eu
target=$1 corpus=$2 regressions=$3 runs=$4
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/new"
cd "$scratch"
"$target" -runs="$runs" -max_len=65536 -seed=1 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$scratch/new" "$corpus" "$regressions"
