#!/bin/sh
# Builds the fuzz targets with clang in their own build folder and runs each
# for FUZZ_SECONDS (default 60) from the seed corpus in corpus/<target>/.
# Exits non-zero when a target crashes; the crashing input is kept under
# the build folder's fuzz-artifacts/. FUZZ_BUILD overrides the build folder,
# FUZZ_TARGETS the list of targets.
set -eu

cd "$(dirname "$0")/../.."

build=${FUZZ_BUILD:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-npy tuning cache}

if [ -d "$build/meson-private" ]; then
    meson setup --reconfigure "$build" -Dfuzz=true >/dev/null
else
    CC=clang meson setup "$build" -Dfuzz=true -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" $(for t in $targets; do echo "tests/fuzz/fuzz_$t"; done)

status=0
for t in $targets; do
    work="$build/fuzz-corpus/$t"
    artifacts="$build/fuzz-artifacts/$t/"
    mkdir -p "$work" "$artifacts"
    echo "fuzz_$t: $seconds s"
    # New inputs go to the first folder, so the committed seeds stay as they are.
    if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$artifacts" -rss_limit_mb=2048 -malloc_limit_mb=64 \
        "$work" "tests/fuzz/corpus/$t" \
        >"$build/fuzz-$t.log" 2>&1; then
        echo "fuzz_$t: crashed; see $build/fuzz-$t.log and $artifacts" >&2
        tail -n 40 "$build/fuzz-$t.log" >&2
        status=1
    fi
    grep -E "^stat::number_of_executed_units|^Done" "$build/fuzz-$t.log" || true
done
exit $status
