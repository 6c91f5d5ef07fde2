#!/usr/bin/env bash
# Build the Go interop binaries into BUILD_DIR:
#   BUILD_DIR/bin/dkron-executor-gointerop         Dkron >= 4.0.9 executor plugin
#   BUILD_DIR/bin/dkron-executor-gointerop-legacy  Dkron <= 4.0.8 names only
#   BUILD_DIR/bin/gointerop-host                   a Dkron-like go-plugin host
# Uses only Debian's Go packages, in GOPATH mode (no module proxy). The Go code for
# our .proto files is generated here, never committed.
# GOCACHE defaults to BUILD_DIR/gocache; set INTEROP_GOCACHE to reuse a cache.
set -euo pipefail

die() {
    echo "go interop build: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
BUILD_DIR=$(mkdir -p "$1" && cd "$1" && pwd) || die "cannot create build dir $1"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PROTO_DIR="$REPO/proto"
SYSTEM_GOPATH=/usr/share/gocode

for tool in go protoc protoc-gen-go; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run .ci/install-go-interop.sh"
done
[ -d "$SYSTEM_GOPATH/src/github.com/hashicorp/go-plugin" ] \
    || die "go-plugin sources missing under $SYSTEM_GOPATH; run .ci/install-go-interop.sh"

GOPATH_DIR="$BUILD_DIR/gopath"
SRC="$GOPATH_DIR/src/dkroninterop"
rm -rf "$SRC"
mkdir -p "$SRC/types/v1" "$SRC/types/legacy" "$SRC/cmd/plugin" "$SRC/cmd/host" "$BUILD_DIR/bin"

# No go_package in our protos: map each file to its Go import path explicitly.
MAPPING="Mtypes/v1/executor.proto=dkroninterop/types/v1"
MAPPING+=",Mtypes/legacy/executor_legacy.proto=dkroninterop/types/legacy"
# protoc-gen-go 1.3 wants one Go package per invocation.
for proto in types/v1/executor.proto types/legacy/executor_legacy.proto; do
    protoc -I "$PROTO_DIR" --go_out="plugins=grpc,paths=source_relative,$MAPPING:$SRC" \
        "$PROTO_DIR/$proto" || die "protoc failed to generate Go code from $PROTO_DIR/$proto"
done

cp "$HERE/plugin/main.go" "$SRC/cmd/plugin/main.go"
cp "$HERE/host/main.go" "$SRC/cmd/host/main.go"

export GO111MODULE=off
export GOPATH="$GOPATH_DIR:$SYSTEM_GOPATH"
export GOCACHE="${INTEROP_GOCACHE:-$BUILD_DIR/gocache}"
export GOFLAGS=""
export GOPROXY=off
export CGO_ENABLED=0

cd "$SRC"
go build -o "$BUILD_DIR/bin/dkron-executor-gointerop" ./cmd/plugin \
    || die "building the Go plugin failed"
go build -ldflags "-X main.generation=legacy" \
    -o "$BUILD_DIR/bin/dkron-executor-gointerop-legacy" ./cmd/plugin \
    || die "building the legacy Go plugin failed"
go build -o "$BUILD_DIR/bin/gointerop-host" ./cmd/host || die "building the Go host failed"
echo "go interop binaries in $BUILD_DIR/bin"
