#!/usr/bin/env bash
# Install what tests/interop/go/build.sh needs to build the Go interop binaries.
# Idempotent: does nothing when `build.sh --check` finds every prerequisite, whichever
# protoc-gen-go the machine already has. Only Debian packages are used (bookworm: Go
# 1.19, go-plugin 1.0.1, grpc-go 1.33 with its protoc-gen-go-grpc 1.0, protoc-gen-go
# 1.28 from google.golang.org/protobuf), because CI has no Go module proxy.
# Where golang-goprotobuf-dev (protoc-gen-go-1-3, golang/protobuf 1.3) is installed but
# something else is missing, apt replaces it: Debian's protoc-gen-go and golang/protobuf
# 1.5 conflict with it.
set -euo pipefail

BUILD_SH="$(cd "$(dirname "$0")/.." && pwd)/tests/interop/go/build.sh"
PACKAGES=(
    golang-go
    golang-github-hashicorp-go-plugin-dev
    golang-google-grpc-dev
    golang-google-protobuf-dev
    golang-github-golang-protobuf-1-5-dev
    protobuf-compiler
    protoc-gen-go
    protoc-gen-go-grpc
)

if bash "$BUILD_SH" --check; then
    echo "go interop toolchain already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        APT=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
    else
        echo "install-go-interop: need root (or sudo) to apt-get install ${PACKAGES[*]}" >&2
        exit 1
    fi
else
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get)
fi

install() {
    "${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}"
}

if ! install; then
    echo "install-go-interop: apt-get install failed; refreshing package lists and retrying" >&2
    "${APT[@]}" update
    if ! install; then
        echo "install-go-interop: cannot install ${PACKAGES[*]}" >&2
        exit 1
    fi
fi

if ! bash "$BUILD_SH" --check; then
    echo "install-go-interop: packages installed, but the interop build still lacks" \
        "what build.sh names above" >&2
    exit 1
fi
echo "go interop toolchain installed"
