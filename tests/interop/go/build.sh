#!/usr/bin/env bash
# Build the Go interop binaries into BUILD_DIR:
#   BUILD_DIR/bin/dkron-executor-gointerop         Dkron >= 4.0.9 executor plugin
#   BUILD_DIR/bin/dkron-executor-gointerop-legacy  Dkron <= 4.0.8 names only
#   BUILD_DIR/bin/gointerop-host                   a Dkron-like go-plugin host
#
#   build.sh BUILD_DIR   build
#   build.sh --check     only check the prerequisites (what .ci/install-go-interop.sh asks)
#
# Uses only Debian's Go packages, in GOPATH mode (no module proxy). The Go code for
# our .proto files is generated here, never committed, by whichever protoc-gen-go the
# machine has: golang/protobuf's (Debian protoc-gen-go-1-3, protoc-gen-go-1-5,
# golang-goprotobuf-dev), which still takes plugins=grpc, or google.golang.org/protobuf's
# (Debian protoc-gen-go), which needs protoc-gen-go-grpc for the services.
# GOCACHE defaults to BUILD_DIR/gocache; set INTEROP_GOCACHE to reuse a cache.
#
# Exit status 77 (the automake/meson "skipped" code): a prerequisite is missing, and
# the message names it. Any other failure is a build that should have worked.
set -euo pipefail

SKIPPED=77

die() {
    echo "go interop build: $*" >&2
    exit 1
}

missing() {
    echo "go interop build: missing $*; run .ci/install-go-interop.sh" >&2
    exit "$SKIPPED"
}

CHECK_ONLY=false
if [ $# -eq 1 ] && [ "$1" = "--check" ]; then
    CHECK_ONLY=true
    BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/go-interop-check.XXXXXX") || die "no temp dir"
    trap 'rm -rf "$BUILD_DIR"' EXIT
else
    [ $# -eq 1 ] || die "usage: $0 BUILD_DIR | --check"
    BUILD_DIR=$(mkdir -p "$1" && cd "$1" && pwd) || die "cannot create build dir $1"
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PROTO_DIR="$REPO/proto"
SYSTEM_GOPATH=/usr/share/gocode

for tool in go protoc protoc-gen-go; do
    command -v "$tool" >/dev/null 2>&1 || missing "$tool"
done
[ -d "$SYSTEM_GOPATH/src/github.com/hashicorp/go-plugin" ] \
    || missing "go-plugin sources under $SYSTEM_GOPATH/src/github.com/hashicorp/go-plugin"

GOPATH_DIR="$BUILD_DIR/gopath"
SRC="$GOPATH_DIR/src/dkroninterop"
rm -rf "$SRC"
mkdir -p "$SRC/types/v1" "$SRC/types/legacy" "$SRC/cmd/plugin" "$SRC/cmd/host" \
    "$BUILD_DIR/bin" "$BUILD_DIR/tools"

export GO111MODULE=off
export GOPATH="$GOPATH_DIR:$SYSTEM_GOPATH"
export GOCACHE="${INTEROP_GOCACHE:-$BUILD_DIR/gocache}"
export GOFLAGS=""
export GOPROXY=off
export CGO_ENABLED=0

# Import paths that the given packages need and that are not under $GOPATH. Should
# go list itself fail, the build after it says why.
absent_go_packages() {
    { go list -e -deps -f '{{if .Error}}{{.ImportPath}}{{end}}' "$@" 2>/dev/null || true; } \
        | sort -u
}

# No go_package in our protos: map each file to its Go import path explicitly.
MAPPING="Mtypes/v1/executor.proto=dkroninterop/types/v1"
MAPPING+=",Mtypes/legacy/executor_legacy.proto=dkroninterop/types/legacy"
PROTOS=(types/v1/executor.proto types/legacy/executor_legacy.proto)

# google.golang.org/protobuf's protoc-gen-go (every release since v1.20.0) answers
# --version and rejects plugins=grpc; golang/protobuf's does not know --version (1.3
# reads the empty stdin and finds no files, 1.4+ refuses the argument).
GEN_VERSION=$(protoc-gen-go --version </dev/null 2>/dev/null || true)
case "$GEN_VERSION" in
    "protoc-gen-go v"*)
        if GRPC_GEN=$(command -v protoc-gen-go-grpc); then
            GEN_STYLE="$GEN_VERSION with $GRPC_GEN"
        else
            # golang-google-grpc-dev ships the generator's sources; building them needs
            # google.golang.org/protobuf's compiler packages (golang-google-protobuf-dev).
            GRPC_GEN_PKG=google.golang.org/grpc/cmd/protoc-gen-go-grpc
            NO_GRPC_GEN="protoc-gen-go-grpc ($GEN_VERSION generates no gRPC code)"
            [ -d "$SYSTEM_GOPATH/src/$GRPC_GEN_PKG" ] \
                || missing "$NO_GRPC_GEN, and its sources $SYSTEM_GOPATH/src/$GRPC_GEN_PKG"
            absent=$(absent_go_packages "$GRPC_GEN_PKG")
            [ -z "$absent" ] || missing "$NO_GRPC_GEN, and to build it from its sources:" $absent
            GRPC_GEN="$BUILD_DIR/tools/protoc-gen-go-grpc"
            GEN_STYLE="$GEN_VERSION with protoc-gen-go-grpc built from $GRPC_GEN_PKG"
            go build -o "$GRPC_GEN" "$GRPC_GEN_PKG" \
                || die "building protoc-gen-go-grpc from $SYSTEM_GOPATH/src/$GRPC_GEN_PKG failed"
        fi
        # Our servers implement every method, so they need no Unimplemented*Server
        # embedded (protoc-gen-go-grpc 1.0 requires it by default).
        protoc -I "$PROTO_DIR" \
            --go_out="paths=source_relative,$MAPPING:$SRC" \
            --plugin=protoc-gen-go-grpc="$GRPC_GEN" \
            --go-grpc_out="paths=source_relative,require_unimplemented_servers=false,$MAPPING:$SRC" \
            "${PROTOS[@]/#/$PROTO_DIR/}" \
            || die "protoc ($GEN_STYLE) failed to generate Go code from $PROTO_DIR"
        ;;
    *)
        GEN_STYLE="golang/protobuf protoc-gen-go with plugins=grpc"
        # protoc-gen-go 1.3 wants one Go package per invocation.
        for proto in "${PROTOS[@]}"; do
            protoc -I "$PROTO_DIR" --go_out="plugins=grpc,paths=source_relative,$MAPPING:$SRC" \
                "$PROTO_DIR/$proto" || die "protoc failed to generate Go code from $PROTO_DIR/$proto"
        done
        ;;
esac

cd "$SRC"
absent=$(absent_go_packages ./types/... github.com/hashicorp/go-plugin)
[ -z "$absent" ] || missing "Go packages that go-plugin or the code from $GEN_STYLE needs:" $absent
# grpc-go 1.33 marshals with github.com/golang/protobuf/proto, and 1.3 of that panics on
# messages from google.golang.org/protobuf's generator ("protobuf tag not enough fields
# in ExecuteRequest.state") the first time one goes over the wire.
# (Each list is read whole first: grep -q quitting early would fail the pipe under pipefail.)
GENERATED_DEPS=$(go list -deps ./types/...) || die "go list cannot read the generated packages"
APIV1_DEPS=$(go list -deps github.com/golang/protobuf/proto) \
    || die "go list cannot read github.com/golang/protobuf/proto"
if grep -q '^google.golang.org/protobuf/' <<<"$GENERATED_DEPS" \
    && ! grep -q '^google.golang.org/protobuf/' <<<"$APIV1_DEPS"; then
    missing "github.com/golang/protobuf >= 1.4 (Debian golang-github-golang-protobuf-1-5-dev):" \
        "the code from $GEN_STYLE needs it, and the one under $SYSTEM_GOPATH is older"
fi
if $CHECK_ONLY; then
    echo "go interop build: prerequisites present ($(go version | cut -d' ' -f3), $GEN_STYLE)"
    exit 0
fi

cp "$HERE/plugin/main.go" "$SRC/cmd/plugin/main.go"
cp "$HERE/host/main.go" "$SRC/cmd/host/main.go"
go build -o "$BUILD_DIR/bin/dkron-executor-gointerop" ./cmd/plugin \
    || die "building the Go plugin failed"
go build -ldflags "-X main.generation=legacy" \
    -o "$BUILD_DIR/bin/dkron-executor-gointerop-legacy" ./cmd/plugin \
    || die "building the legacy Go plugin failed"
go build -o "$BUILD_DIR/bin/gointerop-host" ./cmd/host || die "building the Go host failed"
echo "go interop binaries in $BUILD_DIR/bin ($GEN_STYLE)"
