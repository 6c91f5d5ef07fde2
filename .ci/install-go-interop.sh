#!/usr/bin/env bash
# Install the Go toolchain and go-plugin sources the Go interop tests build against.
# Idempotent: does nothing when go and go-plugin 1.0.1's sources are already present.
# Only Debian packages are used (bookworm: Go 1.19, go-plugin 1.0.1, grpc-go 1.33,
# goprotobuf 1.3.5), because CI has no Go module proxy.
set -euo pipefail

GOPLUGIN_SRC=/usr/share/gocode/src/github.com/hashicorp/go-plugin
PACKAGES=(
    golang-go
    golang-github-hashicorp-go-plugin-dev
    golang-google-grpc-dev
    golang-goprotobuf-dev
    protobuf-compiler
)

have_everything() {
    command -v go >/dev/null 2>&1 \
        && command -v protoc >/dev/null 2>&1 \
        && command -v protoc-gen-go >/dev/null 2>&1 \
        && [ -f "$GOPLUGIN_SRC/server.go" ]
}

if have_everything; then
    echo "go interop toolchain already installed ($(go version))"
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

if ! have_everything; then
    echo "install-go-interop: packages installed but go, protoc, protoc-gen-go or" \
        "$GOPLUGIN_SRC is still missing" >&2
    exit 1
fi
echo "go interop toolchain installed ($(go version))"
