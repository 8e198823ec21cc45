"""The `ipfs add` options checked against a real Kubo: the inputs and command lines, and
the program that records Kubo's output into tests/data/kubo-add-options.json.

    GOBIN=/some/dir go install github.com/ipfs/kubo/cmd/ipfs@vX   (or build it)
    .venv/bin/python -m tests.unit.kubo_add_cases /some/dir/ipfs

runs ``ipfs add --only-hash ARGS INPUTS`` (offline, in a fresh `ipfs init --profile=test`
repo) for every case and writes each case's output lines. tests/unit/test_unixfs_kubo_add
runs `dsclient add --only-hash` with the same arguments on the same inputs and compares.
Inputs are made here, deterministically: random.Random(seed).randbytes(size) files,
runs of zeros (no content-defined cut points in them), directories sized to land on
Kubo's HAMT threshold.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "kubo-add-options.json"
KIB = 1024
MIB = 1024 * KIB
C = 256 * KIB  # the default chunk
THRESHOLD = 256 * KIB  # Kubo's HAMTShardingSize
EMPTY_CIDV0_LEN = 34  # every entry of the threshold directories is the (CIDv0) empty file

Case = dict[str, Any]


def _files(prefix: str, sizes: list[int], seed: int = 7) -> list[dict[str, Any]]:
    return [{"kind": "file", "name": f"{prefix}-{s}.bin", "seed": seed + s, "size": s}
            for s in sizes]


def _case(name: str, args: list[str], inputs: list[dict[str, Any]], *,
          slow: bool = False) -> Case:
    """``slow``: run only with `make soak`."""
    return {"name": name, "args": args, "inputs": inputs, "slow": slow}


def _one_per_size(name: str, args: list[str], sizes: list[int]) -> list[Case]:
    return [_case(f"{name}/{s}", args, _files(name, [s])) for s in sizes]


CASES: list[Case] = [
    *_one_per_size("trickle", ["--trickle"], [0, 1, C, C + 1, 3 * MIB]),
    # 1 KiB chunks: a full first layer, one more leaf, the first depth-1 subtrees filled,
    # and 2048 leaves (depth 3 subtrees)
    *_one_per_size("trickle-1k", ["--trickle", "-s", "size-1024"],
                   [174 * KIB, 174 * KIB + 1, (174 + 4 * 174) * KIB + 1, 2 * MIB]),
    *_one_per_size("trickle-raw", ["--trickle", "--raw-leaves"], [1, C + 1]),
    *_one_per_size("trickle-v1", ["--trickle", "--cid-version=1", "-s", "size-4096"],
                   [MIB + 1]),
    *_one_per_size("blake2b-256", ["--hash", "blake2b-256"], [0, 1, C + 1]),
    *_one_per_size("sha3-256", ["--hash", "sha3-256"], [0, 1, C + 1]),
    *_one_per_size("sha2-512", ["--hash", "sha2-512"], [1, C + 1]),
    *_one_per_size("sha3-256-no-raw", ["--hash", "sha3-256", "--raw-leaves=false"], [C + 1]),
    *_one_per_size("cidv1", ["--cid-version", "1"], [0, 1, C + 1]),
    # a leaf's block is its data plus 6-8 bytes of UnixFS and dag-pb around it
    *_one_per_size("inline", ["--inline"], [0, 1, 20, 23, 24, 25, 26, 32, C + 1]),
    *_one_per_size("inline-100", ["--inline", "--inline-limit", "100"],
                   [88, 90, 91, 92, 93, 100, C + 1]),
    *_one_per_size("inline-raw", ["--inline", "--cid-version", "1"], [0, 1, 32, 33, C + 1]),
    *_one_per_size("inline-blake2b", ["--inline", "--hash", "blake2b-256"], [1, 40]),
    *_one_per_size("buzhash", ["--chunker", "buzhash"],
                   [0, 1, 128 * KIB - 1, 128 * KIB, 128 * KIB + 1, 512 * KIB + 1, 4 * MIB]),
    _case("buzhash/zeros", ["--chunker=buzhash"],
          [{"kind": "zeros", "name": "zeros.bin", "size": 2 * MIB + 5}]),
    *_one_per_size("rabin", ["--chunker", "rabin"], [0, 1, C, 4 * MIB]),
    _case("rabin/zeros", ["--chunker=rabin"],
          [{"kind": "zeros", "name": "zeros.bin", "size": 2 * MIB + 5}]),
    *_one_per_size("rabin-avg", ["--chunker", "rabin-65536"], [2 * MIB]),
    *_one_per_size("rabin-small", ["--chunker", "rabin-16-64-256"], [100_000]),
    *_one_per_size("rabin-labelled", ["--chunker", "rabin-min:1024-avg:4096-max:16384"],
                   [MIB]),
    *_one_per_size("rabin-trickle", ["--chunker", "rabin-16-64-256", "--trickle"], [100_000]),
    *_one_per_size("buzhash-raw", ["--chunker", "buzhash", "--raw-leaves"], [MIB]),
    *_one_per_size("cid-base-32", ["--cid-base", "base32"], [1, C + 1]),
    *_one_per_size("cid-base-36-v1", ["--cid-base", "base36", "--cid-version", "1"], [C + 1]),
    *_one_per_size("cid-base-z-v1", ["--cid-base", "z", "--cid-version", "1"], [1]),
    *_one_per_size("cid-base-16", ["--cid-base", "base16"], [C + 1]),
    _case("wrap/files", ["-w"], _files("w", [1, C + 1])),
    _case("wrap/tree", ["-w", "-r"], [{"kind": "tree", "name": "tree"}]),
    _case("wrap/tree-and-file", ["-w", "-r"],
          [{"kind": "tree", "name": "tree"}, *_files("w", [5])]),
    _case("stdin/plain", [], [{"kind": "stdin", "seed": 1, "size": 1}]),
    _case("stdin/dash", ["-"], [{"kind": "stdin", "seed": 2, "size": C + 1}]),
    _case("stdin/name", ["--stdin-name", "foo.txt"], [{"kind": "stdin", "seed": 3, "size": 9}]),
    _case("stdin/wrap-name", ["-w", "--stdin-name", "foo.txt"],
          [{"kind": "stdin", "seed": 4, "size": 9}]),
    _case("stdin/wrap", ["-w"], [{"kind": "stdin", "seed": 5, "size": 9}]),
    *[_case(f"hamt/estimate-{e}", ["-r", "-Q"], [{"kind": "sized_dir", "name": "d", "estimate": e}])
      for e in (THRESHOLD - 1, THRESHOLD, THRESHOLD + 1)],
    _case("hamt/10000", ["-r", "-Q"], [{"kind": "many", "name": "big", "count": 10_000}]),
    _case("hamt/10000-v1-blake2b", ["-r", "-Q", "--cid-version=1", "--hash=blake2b-256"],
          [{"kind": "many", "name": "big", "count": 10_000}], slow=True),
    _case("hamt/nested", ["-r"], [{"kind": "nested", "name": "top"}]),
]


def sized_dir_names(estimate: int) -> list[str]:
    """Names of empty files whose directory has exactly this size estimate (name
    lengths + 34 per entry), about 1000 entries, every name unique."""
    count = 1000
    total = estimate - count * EMPTY_CIDV0_LEN
    base, extra = divmod(total, count)
    return [f"{i:04d}".ljust(base + (1 if i < extra else 0), "x") for i in range(count)]


def make_inputs(case: Case, root: Path) -> tuple[list[str], bytes | None]:
    """Create the case's inputs under ``root``: (path arguments, standard input)."""
    paths: list[str] = []
    stdin = None
    for spec in case["inputs"]:
        kind = spec["kind"]
        if kind == "stdin":
            stdin = random.Random(spec["seed"]).randbytes(spec["size"])
            continue
        path = root / spec["name"]
        paths.append(str(path))
        if kind == "file":
            path.write_bytes(random.Random(spec["seed"]).randbytes(spec["size"]))
        elif kind == "zeros":
            path.write_bytes(bytes(spec["size"]))
        elif kind == "tree":
            (path / "sub").mkdir(parents=True)
            (path / "a.txt").write_bytes(b"a")
            (path / "sub" / "b.bin").write_bytes(random.Random(9).randbytes(C + 7))
            (path / "empty").mkdir()
        elif kind == "sized_dir":
            path.mkdir()
            for name in sized_dir_names(spec["estimate"]):
                (path / name).write_bytes(b"")
        elif kind == "many":
            path.mkdir()
            for i in range(spec["count"]):
                (path / f"file-{i:05d}.txt").write_bytes(f"{i}\n".encode())
        elif kind == "nested":
            # a sharded directory inside a plain one, holding a plain one and files
            shard = path / "shard"
            (shard / "inner").mkdir(parents=True)
            (shard / "inner" / "deep.txt").write_bytes(b"deep\n")
            for i in range(3000):  # 3000 x (66 + 34) bytes: past the threshold
                name = f"entry-with-a-name-long-enough-for-3000-of-them-to-be-sharded-{i:05d}"
                (shard / name).write_bytes(f"{i}".encode())
            (path / "readme.txt").write_bytes(b"hello\n")
        else:
            raise ValueError(f"unknown input kind {kind}")
    return paths, stdin


def _record(ipfs: str) -> None:
    version = subprocess.run([ipfs, "version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IPFS_PATH": f"{tmp}/repo"}
        subprocess.run([ipfs, "init", "--profile=test"], env=env, check=True,
                       capture_output=True)
        for i, case in enumerate(CASES):
            root = Path(tmp) / f"case{i}"
            root.mkdir()
            paths, stdin = make_inputs(case, root)
            argv = ["add", "--only-hash", *case["args"], *paths]
            proc = subprocess.run([ipfs, *argv], env=env, input=stdin or b"", cwd=root,
                                  capture_output=True, check=True)
            lines = proc.stdout.decode().splitlines()
            shown = [line.replace(str(root) + "/", "") for line in lines]
            results.append({"name": case["name"], "command": " ".join(["ipfs", *argv]).replace(
                str(root) + "/", ""), "output": shown})
            print(case["name"], shown[-1], file=sys.stderr)
    FIXTURE.write_text(json.dumps({
        "about": "Output of `ipfs add --only-hash` of a real Kubo, offline in a fresh "
                 "`ipfs init --profile=test` repo, for the cases of "
                 "tests/unit/kubo_add_cases.py (inputs made there; paths shown relative "
                 "to the case's directory, which is the working directory). Regenerate "
                 "with: python -m tests.unit.kubo_add_cases PATH/TO/ipfs",
        "kubo": version,
        "cases": results,
    }, indent=1) + "\n")


if __name__ == "__main__":
    _record(sys.argv[1])
