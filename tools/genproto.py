"""Generate clients/echosearch/v1 from proto/ — or, with --check, fail if it is stale."""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "clients"
GENERATED = OUT_ROOT / "echosearch" / "v1"


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpcio-tools) over every .proto file; return the files made."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / "echosearch" / "v1").glob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the checked-in code is stale")
    check = parser.parse_args().check
    if not check:
        made = generate(OUT_ROOT)
        print("generated:", ", ".join(str(p.relative_to(ROOT)) for p in made))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        made = generate(Path(tmp))
        stale = []
        for fresh in made:
            current = GENERATED / fresh.name
            if not current.exists() or not filecmp.cmp(fresh, current, shallow=False):
                stale.append(current.relative_to(ROOT))
        if stale:
            print("generated code is stale, run `make proto`:", *stale, file=sys.stderr)
            return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
