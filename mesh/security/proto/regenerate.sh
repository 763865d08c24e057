#!/usr/bin/env bash
# Regenerate ca_pb2.py and ca_pb2_grpc.py from ca.proto (run from anywhere; needs the dev extra:
# pip install -e '.[dev]', which brings grpcio-tools).
#
# The generated modules refuse to load on a runtime older than the generator: ca_pb2.py needs
# protobuf >= the protoc bundled in grpcio-tools, ca_pb2_grpc.py needs grpcio >= grpcio-tools'
# own version. After regenerating with a newer grpcio-tools, raise the lower bounds of grpcio and
# protobuf in pyproject.toml to match (tests/test_caserver.py checks that they do).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
protos="$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
"$python" -m grpc_tools.protoc -I . -I "$protos" \
  --python_out=. --grpc_python_out=. mesh/security/proto/ca.proto
