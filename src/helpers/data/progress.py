"""Progress of long work (cache build, import, review packs, benchmark): a tqdm bar on a terminal, plain lines
when the output is not one (a log, CI, a pipe), at most one every ``LINE_SECONDS``.

Only the ``revops`` command turns it on (``enable()``); in notebooks, tests and library use it stays silent.
Work that ends within ``delay`` seconds shows nothing."""

from __future__ import annotations

import sys

LINE_SECONDS = 10.0  # plain-line mode: at most one line per this many seconds
DELAY = 2.0  # nothing is shown for work that ends sooner
_enabled = False


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


class _Lines:
    """A file for tqdm that writes each of its in-place updates as a line of its own."""

    def __init__(self, stream):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress(
    iterable=None, *, total=None, desc: str = "", unit: str = "it", unit_scale=False, delay=None, stream=None
):
    """``tqdm(iterable, ...)``: elapsed time, rate and estimate; usable as a context manager with ``update(n)``."""
    from tqdm.std import tqdm  # not tqdm.auto: no widget bar in a kernel

    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        disable=not _enabled,
        delay=DELAY if delay is None else delay,
        file=stream if tty else _Lines(stream),
        mininterval=0.2 if tty else LINE_SECONDS,
        maxinterval=LINE_SECONDS * 3,
        dynamic_ncols=tty,
        # a log gets words, not a bar: "reading sample: 3/5 tables (60%), 00:12 elapsed, about 00:08 left"
        bar_format=None if tty else "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, "
        "about {remaining} left{postfix}",
    )


def weighted(items, weight, *, postfix=str, **kwargs):
    """Yield ``items``, counting ``weight(item)`` done once the loop's body for it is over (``continue``
    included); the bar's postfix names the item under way (``postfix(item)``)."""
    items = list(items)
    with progress(total=sum(weight(i) for i in items), **kwargs) as bar:
        for item in items:
            bar.set_postfix_str(postfix(item), refresh=False)
            yield item
            bar.update(weight(item))
