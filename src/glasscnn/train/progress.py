"""Progress bars for the training loop: tqdm when installed, a plain line printer otherwise.

A *progress factory* is what ``Trainer(progress=...)`` takes: a callable
``factory(loader, epoch, epochs)`` returning an iterable over the loader's batches that
also has ``set_postfix(dict)`` (loss, accuracy, images/s) and ``close()``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO


class PlainProgress:
    """Iterate over ``batches``, printing a status line every ``every`` seconds and at the end.

    Used when tqdm is absent (or ``plain=True``): one line per update, no carriage returns,
    so logs stay readable.

    Args:
        batches: the loader.
        desc: the line prefix, e.g. ``"epoch 2/10"``.
        total: the number of batches, or ``None``.
        stream: where lines go (default ``sys.stderr``).
        every: seconds between intermediate lines.
    """

    def __init__(self, batches: Iterable, desc: str, total: int | None,
                 stream: TextIO | None = None, every: float = 10.0) -> None:
        self.batches, self.desc, self.total = batches, desc, total
        self.stream = stream or sys.stderr
        self.every = every
        self.postfix: dict[str, Any] = {}
        self.count = 0
        self.closed = False

    def set_postfix(self, values: dict[str, Any]) -> None:
        """Remember the values shown after the counter (printed on the next line)."""
        self.postfix = dict(values)

    def _line(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {self.count}{total} batches {extra}".rstrip()

    def __iter__(self) -> Iterator[Any]:
        last = time.perf_counter()
        for item in self.batches:
            yield item
            self.count += 1
            now = time.perf_counter()
            if now - last >= self.every:
                print(self._line(), file=self.stream, flush=True)
                last = now
        self.close()

    def close(self) -> None:
        """Print the final line (once)."""
        if not self.closed:
            print(self._line(), file=self.stream, flush=True)
            self.closed = True


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm.auto draws a widget bar)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and get() is not None and "ipykernel" in sys.modules


def progress_factory(enabled: bool = True, plain: bool = False, stream: TextIO | None = None
                     ) -> Callable[[Any, int, int], Any] | None:
    """A progress factory for ``Trainer``: tqdm bars on a terminal or in a notebook, else
    ``PlainProgress``.

    tqdm is used when it is installed and ``stream`` is a terminal, or in a Jupyter
    notebook (``tqdm.auto``: a widget bar, or tqdm's text bar without ipywidgets); logs
    and pipes get ``PlainProgress`` lines (a status line every 10 s and one at the end of
    each epoch).

    Args:
        enabled: ``False`` returns ``None`` (no progress output).
        plain: use ``PlainProgress`` even on a terminal.
        stream: output stream (default ``sys.stderr``).

    Returns:
        ``factory(loader, epoch, epochs)`` → an iterable with ``set_postfix``, or ``None``.
    """
    if not enabled:
        return None
    tqdm = None
    out = stream or sys.stderr
    if not plain and in_notebook() and stream is None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
    elif not plain and getattr(out, "isatty", lambda: False)():
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None

    def factory(loader: Any, epoch: int, epochs: int) -> Any:
        desc = f"epoch {epoch + 1}/{epochs}"
        total = len(loader) if hasattr(loader, "__len__") else None
        if tqdm is None:
            return PlainProgress(loader, desc, total, out)
        return tqdm(loader, desc=desc, total=total, unit="batch", file=out,
                    dynamic_ncols=True, mininterval=0.5, leave=True)

    return factory
