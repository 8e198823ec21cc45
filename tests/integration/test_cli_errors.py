"""The programs' start-up refusals, run as real processes: one line on stderr, a
non-zero exit code, no traceback, and no third-party log noise around it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dscluster.localcluster import Cluster, NodeProc, tool

pytestmark = pytest.mark.timeout(120)
# a line of our own logging: "2026-01-01 12:00:00,000 INFO dscluster.node: ..."
OUR_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ dscluster[.\w]*: ")


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr of a process that failed."""
    assert p.returncode != 0, p.stderr
    lines = p.stderr.splitlines()
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    return lines[0]


def last_line_after_our_logs(p: subprocess.CompletedProcess[str]) -> str:
    """The error line of a node that failed after logging started: every line before it
    is our own log line, never a third party's."""
    assert p.returncode != 0, p.stderr
    *logs, last = p.stderr.splitlines()
    assert "Traceback" not in p.stderr, p.stderr
    assert all(OUR_LOG_LINE.match(line) for line in logs), p.stderr
    return last


def new_cluster(d: Path, nodes: int = 1) -> str:
    """dscfg cluster's directory (not started); its bootstrapper's multiaddr."""
    p = run(tool("dscfg"), "cluster", f"--cluster-node-number={nodes}", str(d))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


# -- config.json permissions ----------------------------------------------------------


def test_a_node_config_others_can_read_is_refused_and_a_private_one_starts(tmp_path):
    d = tmp_path / "srv01"
    new_cluster(d)
    (d / "config.json").chmod(0o644)
    line = one_line(run(tool("dscluster"), f"--conf={d}"))
    assert line == (f"dscluster: error: config file {d / 'config.json'} is accessible by "
                    f"other users (mode 0644); run: chmod 600 {d / 'config.json'}")
    (d / "config.json").chmod(0o600)
    node = NodeProc(0, d, tmp_path / "node.log")
    node.start([])
    try:
        node.wait_ready()
    finally:
        node.kill(signal.SIGTERM)


# -- a busy swarm port ----------------------------------------------------------------


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain", "another-node"])
def test_a_busy_listen_port_is_refused_by_name(tmp_path, reuseport):
    boot = new_cluster(tmp_path / "srv01", nodes=2)
    with socket.socket() as holder:
        # py-libp2p's own listeners set SO_REUSEPORT: a second node would share the port
        if reuseport:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        p = run(tool("dscluster"), f"--conf={tmp_path / 'srv02'}", f"--bootstrapper={boot}",
                "--identity=1", f"--token-file={tmp_path / 'srv01' / 'node.token'}",
                f"--listen=/ip4/127.0.0.1/tcp/{port}")
    assert last_line_after_our_logs(p) == (
        f"dscluster: error: cannot listen on /ip4/127.0.0.1/tcp/{port}: Address already in use")


# -- dscfg s3-key on a client directory -----------------------------------------------


def test_s3_key_add_on_a_client_directory_is_refused(tmp_path):
    boot = new_cluster(tmp_path / "srv01")
    cli = tmp_path / "cli"
    p = run(tool("dscfg"), "client", f"--bootstrapper={boot}",
            f"--token-file={tmp_path / 'srv01' / 'client.token'}", str(cli))
    assert p.returncode == 0, p.stderr
    before = (cli / "config.json").read_text()
    for command in ("add", "list"):
        line = one_line(run(tool("dscfg"), "s3-key", command, "--conf", str(cli)))
        assert line == f"dscfg: error: {cli} is a client's directory; give a node's directory"
    assert (cli / "config.json").read_text() == before


# -- --s3-listen ----------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["[::1:1", "::1:9000", "127.0.0.1:65536", "127.0.0.1:",
                                    "127.0.0.1", ":9000", "[127.0.0.1]:9000", "host:-1"])
def test_a_malformed_s3_listen_is_refused_when_parsing_arguments(tmp_path, listen):
    d = tmp_path / "srv01"
    new_cluster(d)
    before = json.loads((d / "config.json").read_text())
    p = run(tool("dscluster"), f"--conf={d}", f"--s3-listen={listen}")
    assert p.returncode == 2
    assert "--s3-listen" in one_line(p) and repr(listen) in one_line(p)
    assert json.loads((d / "config.json").read_text()) == before


# -- third-party logging --------------------------------------------------------------


def test_dsclient_shows_only_its_error_for_an_unreachable_bootstrapper(tmp_path):
    boot = new_cluster(tmp_path / "srv01")  # never started
    args = ["init", f"--bootstrapper={boot}",
            f"--token-file={tmp_path / 'srv01' / 'client.token'}"]
    line = one_line(run(tool("dsclient"), f"--conf={tmp_path / 'c1'}", *args))
    assert line.startswith("dsclient: error: cannot fetch the cluster map: ")
    # ...and the noise is held back, not lost: debugging shows it, formatted as ours
    debug = run(tool("dsclient"), "--log-level=debug", f"--conf={tmp_path / 'c2'}", *args)
    assert debug.returncode == 1 and re.search(r" ERROR libp2p[.\w]*: ", debug.stderr)


def test_a_node_keeps_libp2p_quiet_while_the_bootstrapper_is_down(tmp_path):
    c = Cluster(tmp_path, nodes=2).start()
    try:
        for node in c.nodes:
            node.kill(signal.SIGTERM)
        log = c.nodes[1].log
        start = len(log.read_text())
        c.restart(1)  # serves from its cached map, re-announces itself in the background
        deadline = time.monotonic() + 20
        while "cannot reach the bootstrapper" not in log.read_text()[start:]:
            assert time.monotonic() < deadline, log.read_text()[start:]
            time.sleep(0.2)
        lines = log.read_text()[start:].splitlines()
        assert all(OUR_LOG_LINE.match(line) for line in lines), "\n".join(lines)
    finally:
        c.stop()


def test_a_busy_s3_listen_port_is_refused_by_name(tmp_path):
    d = tmp_path / "srv01"
    new_cluster(d)
    before = json.loads((d / "config.json").read_text())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        p = run(tool("dscluster"), f"--conf={d}", f"--s3-listen=127.0.0.1:{port}")
    assert one_line(p) == (f"dscluster: error: the S3 gateway cannot listen on "
                           f"127.0.0.1:{port}: Address already in use")
    assert json.loads((d / "config.json").read_text()) == before


def test_a_busy_bootstrapper_port_is_refused_by_name(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        p = run(tool("dscfg"), "cluster", "--cluster-node-number=1", f"--port={port}",
                str(tmp_path / "srv01"))
        assert p.returncode == 0, p.stderr
        p = run(tool("dscluster"), f"--conf={tmp_path / 'srv01'}")
    assert last_line_after_our_logs(p) == (
        f"dscluster: error: cannot listen on /ip4/127.0.0.1/tcp/{port}: Address already in use")


# -- dsclient init leaves nothing behind ------------------------------------------------


def test_a_failed_init_leaves_no_directory_and_keeps_what_was_there(tmp_path):
    boot = new_cluster(tmp_path / "srv01")  # never started: the map cannot be fetched
    token = f"--token-file={tmp_path / 'srv01' / 'client.token'}"
    new = tmp_path / "new" / "cli"
    one_line(run(tool("dsclient"), f"--conf={new}", "init", f"--bootstrapper={boot}", token))
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    one_line(run(tool("dsclient"), "init", f"--conf={mine}", f"--bootstrapper={boot}", token))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# -- Ctrl-C ---------------------------------------------------------------------------


def interrupted_while_dialling(argv: list[str], port_holder: socket.socket
                               ) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, which dials ``port_holder``'s address; press Ctrl-C once it has
    connected (so the program is past its imports, inside its work)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port_holder.settimeout(30)
        conn, _ = port_holder.accept()
        with conn:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def silent_peer(boot: str, holder: socket.socket) -> str:
    """``boot``'s peer id at ``holder``'s address, which accepts and never answers."""
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return f"/ip4/127.0.0.1/tcp/{holder.getsockname()[1]}/p2p/{boot.split('/p2p/')[1]}"


def test_ctrl_c_in_dsclient_exits_130_with_one_line(tmp_path):
    boot = new_cluster(tmp_path / "srv01")
    with socket.socket() as holder:
        p = interrupted_while_dialling(
            [tool("dsclient"), f"--conf={tmp_path / 'cli'}", "init",
             f"--bootstrapper={silent_peer(boot, holder)}",
             f"--token-file={tmp_path / 'srv01' / 'client.token'}"], holder)
    assert p.returncode == 130, p.stderr
    assert p.stderr == "\ndsclient: interrupted\n"  # a newline first, after the "^C"
    assert not (tmp_path / "cli").exists()


def test_ctrl_c_in_a_joining_dscluster_exits_130(tmp_path):
    boot = new_cluster(tmp_path / "srv01", nodes=2)
    with socket.socket() as holder:
        p = interrupted_while_dialling(
            [tool("dscluster"), f"--conf={tmp_path / 'srv02'}",
             f"--bootstrapper={silent_peer(boot, holder)}", "--identity=1",
             f"--token-file={tmp_path / 'srv01' / 'node.token'}"], holder)
    assert p.returncode == 130 and "Traceback" not in p.stderr, p.stderr
    # click ends the terminal's "^C" line before the message
    logs, _, message = p.stderr.rpartition("\n\n")
    assert message == "dscluster: interrupted\n", p.stderr
    assert all(OUR_LOG_LINE.match(line) for line in logs.splitlines()), p.stderr


def test_a_serving_dscluster_stops_cleanly_with_130_on_ctrl_c_and_0_on_sigterm(tmp_path):
    c = Cluster(tmp_path, nodes=2, replication=1).start()
    try:
        assert c.nodes[1].kill(signal.SIGINT) == 130
        assert c.nodes[0].kill(signal.SIGTERM) == 0
    finally:
        c.stop()
    for n in c.nodes:
        log = n.log.read_text()
        assert "stopped" in log and "Traceback" not in log, log[-2000:]
