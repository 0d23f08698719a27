#!/usr/bin/env python3
"""Generates python/eddy/proto/*_pb2.py from common/proto/*.proto with protoc.

    python3 python/scripts/gen_proto.py            # into python/eddy/proto/
    python3 python/scripts/gen_proto.py OUT_DIR    # elsewhere (e.g. a build tree)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eddy import _protogen  # noqa: E402  (eddy/__init__ does not need the modules yet)

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else _protogen.PACKAGE_DIR
    for path in _protogen.generate(out):
        print(f"gen_proto: wrote {path}")
