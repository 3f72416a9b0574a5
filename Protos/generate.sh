#!/usr/bin/env bash
# Regenerates Shared/RapportProtos from Protos/ with protoc, protoc-gen-swift and protoc-gen-grpc-swift-2.
#   Protos/generate.sh           regenerate in place (commit the result)
#   Protos/generate.sh --check   fail if the committed code differs from what the protos generate
# The plugins are built once from grpc-swift-protobuf (the version Package.swift uses) in a scratch folder
# outside the package ($RAPPORT_CODEGEN_DIR, default ~/.cache/rapport-codegen); protoc comes from Debian's
# protobuf-compiler.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=2.4.1
scratch=${RAPPORT_CODEGEN_DIR:-$HOME/.cache/rapport-codegen}/grpc-swift-protobuf-$version
out=$root/Shared/RapportProtos

if ! command -v protoc >/dev/null; then
  echo "protoc is missing: apt-get install -y protobuf-compiler" >&2
  exit 1
fi
bin=$scratch/.build/release
if [ ! -x "$bin/protoc-gen-grpc-swift-2" ] || [ ! -x "$bin/protoc-gen-swift" ]; then
  echo "building protoc plugins in $scratch (about 2 minutes, once)" >&2
  rm -rf "$scratch"
  mkdir -p "$(dirname "$scratch")"
  git -c advice.detachedHead=false clone -q --branch "$version" \
    https://github.com/grpc/grpc-swift-protobuf.git "$scratch"
  (cd "$scratch" && swift build -c release --product protoc-gen-grpc-swift-2 >&2 \
    && swift build -c release --product protoc-gen-swift >&2)
fi

protos=$(cd "$here" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
target=$out
if [ "${1:-}" = "--check" ]; then
  target=$(mktemp -d)
  trap 'rm -rf "$target"' EXIT
fi
mkdir -p "$target"
find "$target" -name '*.swift' -delete
(cd "$here" && protoc -I . \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$target" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out="$target" \
  --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores \
  $protos)
# The checksum of the contracts the code was generated from; a unit test compares it with Protos/.
(cd "$here" && cat $protos | sha256sum | cut -d' ' -f1) > "$target/protos.sha256"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" "$target" >/dev/null; then
    diff -r "$out" "$target" | head -40 >&2
    echo "Shared/RapportProtos is stale: run Protos/generate.sh and commit the result." >&2
    exit 1
  fi
  echo "generated code is current"
fi
