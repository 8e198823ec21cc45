"""What `dsclient status` prints: a header, one aligned row per member, the slot summary.

The rows come from ``ClusterDatastore.status``: the map's view of each member, updated
with the Stats the member answered (its own epoch among them). Lines longer than the
terminal are wrapped under the row they belong to; output that is not a terminal is
not wrapped, so that scripts can grep one line per member.
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

from .progress import human_bytes

_REPAIR = "  repair: "


def cluster_epoch(rows: list[dict[str, Any]], client_epoch: int) -> int:
    """The newest map epoch a member answered with; the client's own while none
    answers. A member's map is the cluster's: the client's is only its cached copy."""
    return max(_reported_epochs(rows).values(), default=client_epoch)


def _reported_epochs(rows: list[dict[str, Any]]) -> dict[int, int]:
    return {r["index"]: r["epoch"] for r in rows if r.get("reachable") and "epoch" in r}


def status_lines(client_epoch: int, rows: list[dict[str, Any]], slots: dict[str, int],
                 width: int | None) -> list[str]:
    lines = [_header(client_epoch, rows)]
    # the columns every row starts with, aligned across rows
    cells = [[f"node {r['index']}", r["peer_id"] or "(not joined)",
              r["addrs"][0] if r["addrs"] else "-", _slots(r)] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))] if cells else []
    keys_width = max((len(str(r["keys"])) for r in rows if r.get("reachable")), default=0)
    indent = " " * (widths[0] + 2) if widths else ""
    for r, row_cells in zip(rows, cells, strict=True):
        fixed = "  ".join(c.ljust(w) for c, w in zip(row_cells, widths, strict=True))
        if r.get("reachable"):
            health = f"up  keys={r['keys']:<{keys_width}} disk={human_bytes(r['disk_usage'])}"
            lines += _wrap(f"{fixed}  {health}", width, "", indent)
        elif r.get("state") == "retired":
            lines += _wrap(f"{fixed}  retired (removed; owns nothing)", width, "", indent)
        else:
            seen = r["seen_down_by"]
            by = f" (seen down by node {', '.join(map(str, seen))})" if seen else ""
            lines += _wrap(f"{fixed}  DOWN{by}", width, "", indent)
            if r.get("error"):
                # under the row, not after it: errors are long and the row is wide already
                lines += _wrap(r["error"], width, indent, indent)
        if r.get("repair"):
            lines += _wrap(f"{_REPAIR}{_repair_progress(r['repair'])}", width, "",
                           " " * len(_REPAIR))
    disagree = (f" ({slots['disagreeing']} with owners that disagree)"
                if slots["disagreeing"] else "")
    lines.append(f"slots: {slots['ok']} ok, {slots['under_replicated']} under-replicated"
                 f"{disagree}, {slots['unavailable']} unavailable")
    return lines


def _slots(r: dict[str, Any]) -> str:
    ranges = r["slots"].split(",")
    # after a rebalance a member is primary for many short runs: count them instead
    primary = (r["slots"] if len(ranges) <= 3 else
               f"{sum(_range_len(x) for x in ranges)} in {len(ranges)} ranges")
    held = f", holds {r['slots_held']}" if "slots_held" in r else ""
    return f"slots {primary}{held}"


def _range_len(text: str) -> int:
    first, _, last = text.partition("-")
    return int(last or first) - int(first) + 1


def _header(client_epoch: int, rows: list[dict[str, Any]]) -> str:
    nodes = f"{len(rows)} nodes"
    reported = _reported_epochs(rows)
    if not reported:
        return f"cluster map epoch {client_epoch} (this client's copy: no member answered), " \
               + nodes
    epoch = max(reported.values())
    notes = [f"node {i} still at epoch {e}" for i, e in reported.items() if e < epoch]
    if client_epoch != epoch:
        notes.append(f"this client's copy is at epoch {client_epoch}")
    note = f" ({'; '.join(notes)})" if notes else ""
    return f"cluster map epoch {epoch}{note}, {nodes}"


def _wrap(text: str, width: int | None, first: str, rest: str) -> list[str]:
    if width is None:
        return [first + text]
    # words longer than a line (multiaddrs, peer ids) are cut rather than overflow it
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False) or [first]


def _repair_progress(p: dict[str, Any]) -> str:
    state = (f"running, {p['slots_done']}/{p['slots_total']} slots" if p["running"]
             else "idle")
    last = p["last_pass_finished"]
    when = (f"last full pass {max(0, time.time() - last):.0f}s ago" if last is not None
            else "no full pass yet")
    return (f"{state}; {p['pulled']} keys ({human_bytes(p['bytes'])}) pulled since start; "
            f"{when}; {p['hints_pending']} hints pending")
