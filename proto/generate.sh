#!/usr/bin/env bash
# Generates TypeScript (messages + grpc-js service definitions) from proto/*.proto with ts-proto.
# The output in proto/gen/ is never edited by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing (apt-get install protobuf-compiler)" >&2; exit 1; }
rm -f proto/gen/agent.ts && mkdir -p proto/gen
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out=proto/gen \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,importSuffix=.js,useOptionals=messages,forceLong=number,oneof=unions-value \
  -I proto proto/agent.proto
