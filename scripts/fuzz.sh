#!/bin/bash
# Fuzzes the job-line parser and the reading of providers' answers (both dialects) for a while.
#
#   scripts/fuzz.sh [SECONDS]               seeded mutation of Tests/fuzz-corpus (default 300 s, split over the targets)
#   scripts/fuzz.sh --libfuzzer [SECONDS]   coverage-guided with libFuzzer (from the Swift toolchain), SECONDS per target;
#                                           the grown corpus stays in .build/libfuzzer-corpus, crashes in .build/fuzz-findings
#
# Developer tool: the test suite runs a fixed number of mutations of the same corpus on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--libfuzzer" ]; then
    seconds="${2:-300}"
    # gold cannot link the instrumented build; the toolchain's lld can.
    swift build -c release --product purser-fuzz --build-path .build/libfuzzer \
        -Xswiftc -sanitize=fuzzer -Xswiftc -DLIBFUZZER -Xswiftc -use-ld=lld
    mkdir -p .build/fuzz-findings
    for target in job-line openai-response anthropic-response openai-batch-line anthropic-batch-line; do
        corpus=.build/libfuzzer-corpus/$target
        mkdir -p "$corpus"
        cp -n Tests/fuzz-corpus/$target/* "$corpus"/
        echo "== $target: $seconds s"
        PURSER_PRICING=pricing SWIFT_BACKTRACE=enable=no .build/libfuzzer/release/purser-fuzz "$target" -max_total_time="$seconds" -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix=.build/fuzz-findings/$target- "$corpus" 2>&1 \
            | grep -E "^(#[0-9]+ +(INITED|DONE)|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|wrong answer|SUMMARY)" || true
        echo "corpus: $(ls "$corpus" | wc -l) inputs"
    done
else
    swift build -c release --product purser-fuzz
    .build/release/purser-fuzz --seconds "${1:-300}"
fi
