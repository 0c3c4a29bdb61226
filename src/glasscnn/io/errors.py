"""The error every glasscnn file reader raises, and the size rules that decide it.

Every loader (weights, training checkpoints, data sets) reports a file it cannot read
safely as one ``CheckpointError`` (a ``ValueError``) whose message names the file and
what is wrong; a missing file stays ``FileNotFoundError``. Sizes that a file declares
(shapes, zip member sizes, gzip lengths) are checked against what the file holds before
any memory is allocated for them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

MAX_INFLATION = 32
INFLATION_SLACK = 1 << 20
MAX_ARRAY_BYTES = 1 << 62


class CheckpointError(ValueError):
    """A file cannot be read safely: wrong format, truncated, corrupt, unsafe or oversized.

    The message names the file and says what is wrong with it.
    """


class UnsafePickleError(CheckpointError):
    """A pickle names a global, or asks for an operation, outside the reader's allow-list.

    Raised before the global is looked up or called, so nothing in the file has run.
    """


def inflation_limit(stored_bytes: int) -> int:
    """The most bytes that ``stored_bytes`` of compressed data may expand to when read.

    Real weights deflate by a factor of about 1.1 and images by about 5; ``MAX_INFLATION``
    (32) times the stored size plus 1 MiB leaves room for both and refuses zip bombs.
    """
    return MAX_INFLATION * stored_bytes + INFLATION_SLACK


def shape_nbytes(shape: tuple[int, ...], itemsize: int) -> int | None:
    """Bytes an array of ``shape`` and ``itemsize`` takes, or None if NumPy cannot make it.

    Computed with Python integers, so that no product overflows; an empty array whose
    other dimensions are absurd (``[0, 2**62, 2**62]``) is refused too.
    """
    if any(n < 0 for n in shape) or itemsize <= 0:
        return None
    if math.prod(n for n in shape if n) * itemsize > MAX_ARRAY_BYTES:
        return None
    return math.prod(shape) * itemsize


@contextlib.contextmanager
def file_errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn any failure while reading ``path`` into one ``CheckpointError`` naming it.

    ``CheckpointError`` and ``FileNotFoundError`` pass through; any other ``OSError``
    (a folder, no permission) is reported with its reason. Anything else means the
    reader met a case it does not check for; it is reported as an "unexpected error",
    still as a ``CheckpointError`` that names the file.

    Args:
        path: the file being read.
        what: what it was read as, e.g. ``".npz"`` or ``"IDX file"``.
    """
    try:
        yield
    except (CheckpointError, FileNotFoundError):
        raise
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot read it as a {what}: unexpected error "
            f"{type(exc).__name__}: {exc!s:.300}"
        ) from exc
