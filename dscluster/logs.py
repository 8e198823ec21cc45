"""Logging that an attacker cannot turn into a flood.

Under a connection flood a node refused tens of thousands of connections and logged a
line for each, and trio's accept loop logged a full traceback for every EMFILE. Here:

- ``RateLimitedLog`` writes at most one line per key per interval (10 s); the first line
  after a quiet spell says how many it held back ("… (N more in the last 12 s)"). Keys
  name a kind of event ("lane refused"), never a peer or an address, so their number
  stays small.
- ``quiet_resource_errors`` filters the loggers of accept loops (trio's
  ``serve_listeners``, which py-libp2p's TCP listener uses too): a record of an expected
  resource shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM) loses its traceback, which says
  nothing new, and is rate-limited the same way. py-libp2p's own per-connection logging
  is below the level cliutil.setup_logging lets through, except when debugging.

``use_format`` picks the line format of the handlers cliutil.setup_logging installed:
``text`` (``time LEVEL logger: message``) or ``json`` (one object per line: time, level,
logger, message and the record's extra fields). Both add the id of the S3 request a
line was logged for (``request_id``, set by s3/observe.py), so one request's lines can
be found together.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from datetime import UTC, datetime

INTERVAL = 10.0
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_LOGGERS = ("trio.serve_listeners",)
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the id of the S3 request being served, for every line logged while serving it
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# what every LogRecord has; the rest of its attributes are a call's extra fields
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id"}


class RateLimiter:
    """Decides which events of a key get a line: sans-IO, with an injectable clock."""

    def __init__(self, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        # key -> (when its last line was written, events held back since)
        self._state: dict[Hashable, tuple[float, int]] = {}

    def allow(self, key: Hashable) -> tuple[int, float] | None:
        """None to hold this event back; otherwise how many were held back before it and
        over how many seconds."""
        now = self._clock()
        last = self._state.get(key)
        if last is not None and now - last[0] < self.interval:
            self._state[key] = (last[0], last[1] + 1)
            return None
        self._state[key] = (now, 0)
        return (last[1], now - last[0]) if last is not None else (0, 0.0)


def _held_back(held: int, seconds: float) -> str:
    return f" ({held} more in the last {seconds:.0f} s)" if held else ""


class RateLimitedLog:
    """A logger's ``log`` with at most one line per key per interval."""

    def __init__(self, logger: logging.Logger, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.limiter = RateLimiter(interval, clock)

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> None:
        if not self.logger.isEnabledFor(level):
            return
        allowed = self.limiter.allow(key)
        if allowed is not None:
            self.logger.log(level, msg + _held_back(*allowed), *args)

    def warning(self, key: Hashable, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: object) -> None:
        self.log(logging.INFO, key, msg, *args)


class ResourceErrorFilter(logging.Filter):
    """Drops the traceback of an expected resource shortage and rate-limits its lines."""

    def __init__(self, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limiter = RateLimiter(interval, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS):
            return True
        allowed = self.limiter.allow((record.name, exc.errno))
        if allowed is None:
            return False
        record.msg, record.args = record.getMessage() + _held_back(*allowed), None
        record.exc_info = record.exc_text = None
        return True


def quiet_resource_errors(names: tuple[str, ...] = ACCEPT_LOGGERS) -> None:
    """Install ResourceErrorFilter on ``names`` (once per logger)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ResourceErrorFilter) for f in logger.filters):
            logger.addFilter(ResourceErrorFilter())


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} request_id={rid}" if rid else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            obj["request_id"] = rid
        obj.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        # default=str: an extra field of any type must not lose the line
        return json.dumps(obj, default=str)


def use_format(kind: str) -> None:
    """Format the root logger's handlers (and logging's last resort) as ``kind``."""
    formatter = JsonFormatter() if kind == "json" else TextFormatter()
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler is None:
            continue
        handler.setFormatter(formatter)
        if not any(isinstance(f, _RequestId) for f in handler.filters):
            handler.addFilter(_RequestId())
