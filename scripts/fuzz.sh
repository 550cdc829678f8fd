#!/bin/bash
# Fuzzes the job-line parser, the reading of providers' answers (both dialects) and of batch results lines.
#
#   scripts/fuzz.sh [SECONDS]               seeded mutation of Tests/fuzz-corpus (default 300 s, split over the targets)
#   scripts/fuzz.sh --libfuzzer [SECONDS]   coverage-guided with libFuzzer (from the Swift toolchain), SECONDS per target;
#                                           the grown corpus stays in .build/libfuzzer-corpus, findings in .build/fuzz-findings
#   scripts/fuzz.sh --keep                  minimizes the grown corpus and keeps its inputs of up to 600 bytes in
#                                           Tests/fuzz-corpus/TARGET.corpus (one base64 line each), which the suite runs
#
# Developer tool: the test suite runs the kept corpus and a fixed number of mutations of it on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
targets="job-line openai-response anthropic-response openai-batch-line anthropic-batch-line"
fuzzer=.build/libfuzzer/release/purser-fuzz
build_libfuzzer() {
    # gold cannot link the instrumented build; the toolchain's lld can.
    swift build -c release --product purser-fuzz --build-path .build/libfuzzer \
        -Xswiftc -sanitize=fuzzer -Xswiftc -DLIBFUZZER -Xswiftc -use-ld=lld
}
case "${1:-}" in
--libfuzzer)
    seconds="${2:-300}"
    build_libfuzzer
    mkdir -p .build/fuzz-findings
    for target in $targets; do
        corpus=.build/libfuzzer-corpus/$target
        mkdir -p "$corpus"
        cp -n Tests/fuzz-corpus/$target/* "$corpus"/
        if [ -f Tests/fuzz-corpus/$target.corpus ]; then
            n=0
            while read -r line; do n=$((n + 1)); printf '%s' "$line" | base64 -d > "$corpus/kept-$n"; done < Tests/fuzz-corpus/$target.corpus
        fi
        echo "== $target: $seconds s"
        PURSER_PRICING=pricing PURSER_FUZZ_TARGET="$target" SWIFT_BACKTRACE=enable=no $fuzzer -max_total_time="$seconds" -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix=.build/fuzz-findings/$target- "$corpus" 2>&1 \
            | grep -E "^(#[0-9]+ +(INITED|DONE)|Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|wrong answer|SUMMARY)" || true
        echo "corpus: $(ls "$corpus" | wc -l) inputs"
    done
    ;;
--keep)
    build_libfuzzer
    for target in $targets; do
        merged=.build/libfuzzer-merged/$target
        rm -rf "$merged" && mkdir -p "$merged"
        PURSER_PRICING=pricing PURSER_FUZZ_TARGET="$target" SWIFT_BACKTRACE=enable=no $fuzzer -merge=1 "$merged" .build/libfuzzer-corpus/$target > /dev/null 2>&1
        : > Tests/fuzz-corpus/$target.corpus
        for file in $(find "$merged" -type f -size -601c | sort); do base64 -w 0 "$file" >> Tests/fuzz-corpus/$target.corpus; echo >> Tests/fuzz-corpus/$target.corpus; done
        echo "$target: $(wc -l < Tests/fuzz-corpus/$target.corpus) inputs kept of $(ls "$merged" | wc -l)"
    done
    ;;
*)
    swift build -c release --product purser-fuzz
    .build/release/purser-fuzz --seconds "${1:-300}"
    ;;
esac
