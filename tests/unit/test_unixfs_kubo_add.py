"""`dsclient add --only-hash` with Kubo's options gives Kubo's output, line for line:
trickle, hash functions, inline CIDs, wrapping, standard input, --cid-base, the rabin and
buzhash chunkers and HAMT-sharded directories, against the output of a real Kubo recorded
in tests/data/kubo-add-options.json (see tests/unit/kubo_add_cases.py); and against the
Kubo the interop harness builds (.cache/go/bin/kubo), live, when it is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsclient.cli import main
from dscluster.cliutil import run_cli
from tests.unit.kubo_add_cases import CASES, FIXTURE, REPO, make_inputs

pytestmark = pytest.mark.timeout(300)

RECORDED = json.loads(FIXTURE.read_text())
EXPECTED = {c["name"]: c["output"] for c in RECORDED["cases"]}
LIVE_KUBO = REPO / ".cache" / "go" / "bin" / "kubo"


def dsclient_add(case: dict, root: Path) -> list[str]:
    """`dsclient add --only-hash ARGS INPUTS` in ``root``: its output lines, paths shown
    relative to ``root`` as the fixture shows them."""
    paths, stdin = make_inputs(case, root)
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with runner.isolation(input=stdin or b"") as (out, err, _):
            argv = sys.argv
            sys.argv = ["dsclient", "add", "--only-hash", *case["args"], *paths]
            try:
                run_cli(main, "dsclient", obj=None)
            except SystemExit as e:
                assert not e.code, err.getvalue().decode()
            finally:
                sys.argv = argv
            text = out.getvalue().decode()
    finally:
        os.chdir(cwd)
    return [line.replace(str(root) + "/", "") for line in text.splitlines()]


def test_fixture_covers_every_case() -> None:
    assert [c["name"] for c in CASES] == list(EXPECTED)


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c["name"], marks=[pytest.mark.soak] if c["slow"] else [])
    for c in CASES])
def test_same_output_as_kubo(case: dict, tmp_path: Path) -> None:
    assert dsclient_add(case, tmp_path) == EXPECTED[case["name"]]


@pytest.mark.skipif(not LIVE_KUBO.exists(),
                    reason=f"no Kubo at {LIVE_KUBO} (built by `make go-harnesses`)")
@pytest.mark.parametrize("name", ["trickle-1k/890881", "buzhash/4194304",
                                  "rabin-small/100000", "inline/24", "hamt/estimate-262145"])
def test_same_output_as_live_kubo(name: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c["name"] == name)
    (tmp_path / "ours").mkdir()
    (tmp_path / "kubo").mkdir()
    ours = dsclient_add(case, tmp_path / "ours")
    paths, stdin = make_inputs(case, tmp_path / "kubo")
    env = {**os.environ, "IPFS_PATH": str(tmp_path / "repo")}
    subprocess.run([LIVE_KUBO, "init", "--profile=test"], env=env, check=True,
                   capture_output=True, timeout=60)
    proc = subprocess.run([LIVE_KUBO, "add", "--only-hash", *case["args"], *paths], env=env,
                          input=stdin or b"", capture_output=True, check=True, timeout=120)
    assert [line.replace(str(tmp_path / "kubo") + "/", "")
            for line in proc.stdout.decode().splitlines()] == ours == EXPECTED[name]
