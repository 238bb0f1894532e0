#!/bin/sh
# Builds clattn and its tests with AddressSanitizer and
# UndefinedBehaviorSanitizer (LeakSanitizer included) in a folder of their
# own, and runs the whole test suite under them. Leaks inside the OpenCL
# stack are suppressed by tests/lsan.supp, which says why; anything else
# fails the run. SANITIZE_BUILD overrides the build folder; arguments are
# passed to meson test.
set -eu

cd "$(dirname "$0")/.."

build=${SANITIZE_BUILD:-build-sanitize}

if [ -d "$build/meson-private" ]; then
    meson setup --reconfigure "$build" >/dev/null
else
    meson setup "$build" -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
meson test -C "$build" --print-errorlogs --timeout-multiplier=3 "$@"
