#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Eddy and builds it: installs the Debian
# packages that are missing (apt-get update first), then configures and builds a
# Release build into build/. Idempotent: a second run installs nothing and only
# rebuilds what changed.
#   scripts/setup.sh            # packages + Release build in build/
#   BUILD_DIR=out scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler
  libdnnl-dev ocl-icd-opencl-dev  # dnnl-config.cmake needs OpenCL (a Recommends of libdnnl-dev)
  libopenmpi-dev openmpi-bin
  libgflags-dev libgoogle-glog-dev
  libcpp-httplib-dev nlohmann-json3-dev  # HTTP/JSON front end and /metrics (docs/http.md)
  wrk  # bench/http_bench.sh
  librdkafka-dev  # Kafka input (worker/data/kafka.h), found with pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev clang-format
  ccache  # optional: CMake uses it when present (cheap rebuilds and sanitizer builds)
  maven openjdk-17-jre-headless python3  # scripts/kafka.sh: Kafka's jars from Maven Central, the broker's JVM, free ports
  python3-zmq python3-protobuf python3-numpy python3-pandas python3-pytest  # python/ (the eddy package and its tests)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "setup: Release build ready in $BUILD_DIR/ (binaries in $BUILD_DIR/bin)"
