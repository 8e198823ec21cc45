"""The parsers behind `python -m bench --profile` and the verdicts `make bench` prints."""

from __future__ import annotations

from pathlib import Path

from bench.kv import verdict
from bench.profile import ROOT, grouped, hot, syscalls

# strace -c -f's summary, with and without an errors column
STRACE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.004000          40       100           fdatasync
 20.00    0.002000          10       200         3 sendto
 10.00    0.001000           5       200        50 openat
  5.00    0.000500           5       100           renameat2
  5.00    0.000500           1       400           recvfrom
  1.00    0.000100           1        10           fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           9      1010        53 total
"""

# py-spy record -f raw: one collapsed stack per line, with its sample count
FLATFS = ROOT / "dscluster" / "store" / "flatfs.py"
PYSPY = (f"<module> (/x/a.py:1);run (/v/lib/python3.11/site-packages/trio/_core/_run.py:10);"
         f"put ({FLATFS}:5) 30\n"
         f"<module> (/x/a.py:1);put ({FLATFS}:7) 10\n"
         "<module> (/x/a.py:1);write (/v/lib/python3.11/ssl.py:3) 60\n")


def test_syscalls_groups_strace_counts(tmp_path: Path) -> None:
    f = tmp_path / "s.txt"
    f.write_text(STRACE)
    assert syscalls(f)["openat"] == 200
    got = grouped(syscalls(f))
    assert got["fsync"] == 110
    assert got["send"] == 200
    assert got["recv"] == 400
    assert got["open"] == 200
    assert got["rename"] == 100
    assert got["all"] == 1010


def test_hot_counts_self_time_by_file_and_function(tmp_path: Path) -> None:
    f = tmp_path / "raw.txt"
    f.write_text(PYSPY)
    files, funcs, total = hot([f])
    assert total == 100
    # the leaf frame only, lines of one function merged, paths shortened
    assert files == {"ssl.py": 60, "dscluster/store/flatfs.py": 40}
    assert funcs["put (dscluster/store/flatfs.py)"] == 40
    assert "run (trio/_core/_run.py)" not in funcs


def test_verdict() -> None:
    assert verdict(0.5, None) == ""
    assert verdict(1.0, 1.0) == " (target >= 1.00: met)"
    assert verdict(0.99, 1.0) == " (target >= 1.00: NOT met)"
    assert verdict(6.0, 5.0, at_most=True) == " (target <= 5.00: NOT met)"
    assert verdict(4.0, 5.0, at_most=True) == " (target <= 5.00: met)"
