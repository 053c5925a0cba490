"""Generate the Python code for ``protos/`` (our own API) with grpcio-tools: ``python -m tokenlabs.protogen``.

The generated modules are committed under ``tokenlabs/v1/``; a test regenerates them into a temporary folder and
requires identical files, so the checked-in code never drifts from the .proto sources.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(output: Path) -> None:
    from grpc_tools import protoc  # dev dependency: imported only when generating

    well_known = resources.files("grpc_tools") / "_proto"
    output.mkdir(parents=True, exist_ok=True)
    arguments = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={output}",
        f"--pyi_out={output}",
        f"--grpc_python_out={output}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(arguments) != 0:
        raise RuntimeError("protoc failed; see its messages above")


def main() -> int:
    generate(REPO)
    print(f"generated Python code for {len(proto_files())} proto file(s) under {REPO / 'tokenlabs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
