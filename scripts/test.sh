#!/usr/bin/env bash
# Runs every test: sets the machine up if needed (scripts/setup.sh), starts a
# local Kafka broker (scripts/kafka.sh, stopped on exit) for the tests labelled
# "kafka", runs the suite on the Release build, then builds and runs it under
# ASan+UBSan, and the concurrency tests under TSan (without the Kafka tests:
# librdkafka is not TSan-instrumented), and checks the lock annotations with clang.
#   scripts/test.sh             # everything (~15 min on 2 cores from scratch)
#   QUICK=1 scripts/test.sh     # Release suite only
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

scripts/setup.sh

# The Kafka tests need a broker. A broker someone else started (KAFKA_BOOTSTRAP
# set, or running in KAFKA_STATE_DIR) is used and left running; otherwise one is
# started here and stopped on exit.
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  if ! scripts/kafka.sh status >/dev/null 2>&1; then
    trap 'scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
  fi
  eval "$(scripts/kafka.sh start)"
  export KAFKA_BOOTSTRAP
fi
echo "=== Kafka broker at $KAFKA_BOOTSTRAP"

echo "=== Release suite"
(cd build && ctest --output-on-failure -j "$JOBS" --timeout 600)

if [ "${QUICK:-0}" = "1" ]; then exit 0; fi

export LSAN_OPTIONS="suppressions=$PWD/tests/testing/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"
echo "=== ASan+UBSan suite"
if [ ! -f build-asan/build.ninja ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDDY_SANITIZE=address,undefined \
    -DEDDY_BUILD_BENCH=OFF
fi
cmake --build build-asan -j "$JOBS"
(cd build-asan && ctest --output-on-failure -j "$JOBS" --timeout 900 -LE no_sanitizer)

echo "=== TSan concurrency suite"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$PWD/tests/testing/tsan.supp"
if [ ! -f build-tsan/build.ninja ]; then
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDDY_SANITIZE=thread -DEDDY_BUILD_BENCH=OFF
fi
cmake --build build-tsan -j "$JOBS" --target eddy_concurrency_tests
(cd build-tsan && ctest --output-on-failure -j "$JOBS" --timeout 900 -L concurrency -LE 'no_sanitizer|kafka')
echo "=== clang -Wthread-safety check of the libraries"
if [ ! -f build-clang/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-Wthread-safety -Werror=thread-safety"
fi
cmake --build build-clang -j "$JOBS" --target eddy_scheduler eddy_job eddy_testing eddy_serving eddy_kafka
echo "=== all suites passed"
