"""Generates the protobuf modules of ``eddy.proto`` from the repository's .proto files.

The repository never contains generated ``*_pb2.py`` files. They are produced
from ``common/proto/*.proto`` with ``protoc --python_out`` (Debian package
``protobuf-compiler``) into the ``eddy/proto/`` package directory, with the
generated ``from common.proto import x_pb2`` lines rewritten to relative imports.
This runs from ``python/scripts/gen_proto.py`` (what ``scripts/test.sh`` calls),
from ``setup.py`` when the package is built, and on the first ``import eddy``
of a source checkout when the modules are missing or older than the .proto files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PROTO_FILES = ("model.proto", "eddy.proto", "serving.proto")
PACKAGE_DIR = Path(__file__).resolve().parent / "proto"


def repo_root() -> Path | None:
    """The Eddy checkout this package sits in (python/eddy/ -> ../..), if any."""
    root = Path(__file__).resolve().parent.parent.parent
    return root if (root / "common" / "proto" / "model.proto").is_file() else None


def _generated_name(proto: str) -> str:
    return proto.replace(".proto", "_pb2.py")


def is_stale(out_dir: Path = PACKAGE_DIR, root: Path | None = None) -> bool:
    """True when a generated module is missing or older than its .proto file."""
    root = root or repo_root()
    for proto in PROTO_FILES:
        gen = out_dir / _generated_name(proto)
        if not gen.is_file():
            return True
        if root is not None:
            src = root / "common" / "proto" / proto
            if src.is_file() and src.stat().st_mtime > gen.stat().st_mtime:
                return True
    return False


def generate(out_dir: Path = PACKAGE_DIR, root: Path | None = None,
             protoc: str | None = None) -> list[Path]:
    """Runs protoc on common/proto/*.proto; writes the *_pb2.py modules into `out_dir`.

    Raises RuntimeError, saying what to install or set, when protoc or the .proto
    files cannot be found or protoc fails.
    """
    root = root or repo_root()
    if root is None:
        raise RuntimeError(
            "cannot find common/proto/*.proto: generate eddy.proto from an Eddy checkout "
            "(python3 python/scripts/gen_proto.py) or install the built package")
    protoc = protoc or os.environ.get("PROTOC") or shutil.which("protoc")
    if protoc is None:
        raise RuntimeError("protoc not found: install it (apt-get install protobuf-compiler) "
                           "or set PROTOC=/path/to/protoc")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eddy_protoc_") as tmp:
        cmd = [protoc, f"-I{root}", f"--python_out={tmp}"]
        cmd += [str(root / "common" / "proto" / p) for p in PROTO_FILES]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"protoc failed ({' '.join(cmd)}):\n{result.stderr}")
        written = []
        for proto in PROTO_FILES:
            name = _generated_name(proto)
            text = (Path(tmp) / "common" / "proto" / name).read_text()
            # protoc names imported files by their path from -I: make them package-relative.
            text = re.sub(r"^from common\.proto import ", "from . import ", text, flags=re.M)
            target = out_dir / name
            partial = target.with_suffix(f".tmp{os.getpid()}")
            partial.write_text(text)
            os.replace(partial, target)  # atomic: concurrent importers see whole files
            written.append(target)
    return written
