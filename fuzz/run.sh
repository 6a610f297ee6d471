#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS each, one after the other, on one core, and prints
# per target the executions, the corpus and what was found. Used by `make fuzz`.
#
#   FUZZ_SECONDS   seconds per target (default 600)
#   FUZZ_TARGETS   targets to run (default: every [[bin]] of fuzz/Cargo.toml, in its order)
#   FUZZ_SANITIZER address (default) or none
#
# New corpus units go to fuzz/corpus-work/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are only read. Crashes, timeouts and OOMs land in fuzz/artifacts/<target>.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-600}
all_targets=$(awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name *=/ { gsub(/[" ]/, "", $0); sub(/^name=/, "", $0); print; bin = 0 }' fuzz/Cargo.toml | tr '\n' ' ')
FUZZ_TARGETS=${FUZZ_TARGETS:-$all_targets}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
# cargo fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module); this is a stable
# toolchain, which takes them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1

mkdir -p fuzz/logs
summary=()
found_any=0
for t in $FUZZ_TARGETS; do
    mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | sort)
    echo "== $t: ${FUZZ_SECONDS}s (sanitizer $FUZZ_SANITIZER)"
    start=$(date +%s)
    nice -n 10 cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -jobs=1 -workers=1 -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        > "fuzz/logs/$t.run.log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    # With -jobs, libFuzzer's own log is fuzz-0.log in the working directory.
    if [ -f fuzz-0.log ]; then mv fuzz-0.log "fuzz/logs/$t.log"; else cp "fuzz/logs/$t.run.log" "fuzz/logs/$t.log"; fi
    execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -ao 'stat::average_exec_per_sec: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    if [ -z "$execs" ]; then
        # A crash ends the run before the final stats: take the last status line.
        last=$(grep -aE '^#[0-9]+' "fuzz/logs/$t.log" | tail -1)
        execs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")
        rate=$(grep -o 'exec/s: [0-9]*' <<<"$last" | grep -o '[0-9]*$')
    fi
    corpus=$(ls "fuzz/corpus-work/$t" "fuzz/corpus/$t" | grep -vc -e '^$' -e ':$')
    new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$t" | sort) | grep -v '^$' || true)
    if [ -n "$new" ]; then
        found_any=1
        findings=$(tr '\n' ' ' <<<"$new")
    elif [ "$rc" -ne 0 ]; then
        found_any=1
        findings="run failed (exit $rc): see fuzz/logs/$t.log"
    else
        findings="none"
    fi
    line=$(printf '%-8s %12s execs  %7s exec/s  %5ss  corpus %6s  findings: %s' "$t" "${execs:-?}" "${rate:-?}" "$elapsed" "$corpus" "$findings")
    echo "$line"
    summary+=("$line")
done
echo
echo "== fuzzing summary (${FUZZ_SECONDS}s per target, logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit $found_any
