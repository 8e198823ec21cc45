"""What the three command-line programs share: one-line errors, logging set-up, the
terminal's width, and undoing a half-made directory.

Every error a user can cause ends as one readable line on stderr and a non-zero exit
code; only a genuine bug shows a traceback, and then with a request to report it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click

from .concurrency import first_error
from .errors import DSClusterError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Third-party loggers and the least level they show unless --log-level debug. py-libp2p
# logs every stream state change at INFO and a failed dial or a peer hanging up (which
# our own layer reports in one line) at ERROR.
THIRD_PARTY_LOGGERS = {
    "libp2p": logging.CRITICAL, "multiaddr": logging.WARNING, "aioquic": logging.WARNING,
    "hypercorn": logging.WARNING, "asyncio": logging.WARNING, "trio": logging.WARNING,
    "pymongo": logging.WARNING, "urllib3": logging.WARNING,
}


class _Stderr(logging.Handler):
    """Writes to the sys.stderr of the moment, not of set-up (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging's contract: handleError reports it on stderr
            self.handleError(record)


def setup_logging(level: str) -> None:
    debug = level == "debug"
    if debug:
        # importing py-libp2p resets its logger (level WARNING, not propagated): import
        # it before setting levels, so that debugging sees all of it
        import libp2p  # noqa: F401
    logging.basicConfig(level=getattr(logging, level.upper()), format=LOG_FORMAT,
                        handlers=[_Stderr()])
    for name, least in THIRD_PARTY_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.DEBUG if debug else least)
    logging.getLogger("libp2p").propagate = True
    # Otherwise the reset comes later, when a libp2p connection is first needed; its
    # records then fall through to logging.lastResort, which would print them
    # unformatted: make that one ours, behind libp2p's level.
    last = _Stderr()
    last.setFormatter(logging.Formatter(LOG_FORMAT))
    last.setLevel(logging.DEBUG if debug else THIRD_PARTY_LOGGERS["libp2p"])
    logging.lastResort = last


def run_cli(group: click.Command, prog: str, obj: object = None) -> NoReturn:
    """Run a click command; ``obj`` pre-sets ``ctx.obj`` (tests pass a fake app)."""
    try:
        try:
            group.main(prog_name=prog, standalone_mode=False, obj=obj)
        except BaseExceptionGroup as eg:
            err = first_error(eg)
            if err is None:
                raise
            raise err from None
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.NoArgsIsHelpError as e:
        # the program (or a group) given nothing to do: what it can do is the answer
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else prog
        click.echo(f"{prog}: error: {e.format_message()} (see '{where} --help')", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort as e:
        # click turns a KeyboardInterrupt into Abort (after a newline that ends the
        # terminal's "^C"); Ctrl-C is still an interrupt to the shell
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo(f"{prog}: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        click.echo(f"{prog}: aborted", err=True)
        sys.exit(EXIT_ERROR)
    except DSClusterError as e:
        click.echo(f"{prog}: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # the reader went away (`dsclient cat CID | head`): Python would complain again
        # while flushing stdout at exit, so point stdout at /dev/null first
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"{prog}: error: {where}{e.strerror or e}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(0)


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def terminal_width() -> int | None:
    """The width to wrap stdout's lines at; None when stdout is not a terminal, whose
    reader (a script, grep) wants one line per record."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


@contextmanager
def undone_on_failure(d: Path) -> Iterator[None]:
    """Around a step that creates directory ``d`` or files in it: if the step fails
    (Ctrl-C too), remove what it created, and nothing that was there before, so that
    running the same command again finds things as they were."""
    created = next((p for p in (*reversed(d.parents), d) if not p.exists()), None)
    before = set(os.listdir(d)) if created is None and d.is_dir() else None
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif before is not None:
            for name in set(os.listdir(d)) - before:
                path = d / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise
