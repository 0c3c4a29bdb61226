"""The base of glasscnn's restricted unpicklers (torch checkpoints, data-set pickles).

``RestrictedUnpickler`` runs the opcodes of Python's own pure-Python unpickler, minus
everything a file of arrays does not need, so that a pickle can build containers, numbers,
strings and whatever its subclass's ``find_class`` admits, and nothing else:

- no instance-building opcodes (INST, OBJ, NEWOBJ, NEWOBJ_EX), no extension registry
  (EXT1/2/4), no sets;
- items are added only to dicts and lists the pickle itself made; BUILD (setting an
  object's state) goes to the subclass's ``build``, which refuses it by default, so no
  admitted global or object that other loads share can be changed by a file;
- the memo is a dict (a huge memo index costs nothing), reads are done in pieces (a huge
  declared length allocates only what the stream holds), and the number of opcodes is
  bounded by ``max_ops``, so memory stays in proportion to the input.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from typing import IO, Any

from glasscnn.io.errors import UnsafePickleError

_CHUNK = 1 << 16


class BoundedReader:
    """A binary stream that reads in pieces and refuses to read past ``limit`` bytes.

    Args:
        stream: the underlying binary file object.
        limit: the most bytes the pickle may take (None: no limit).
        where: the file's name, for messages.
    """

    def __init__(self, stream: IO[bytes], limit: int | None, where: str) -> None:
        self.stream = stream
        self.limit = limit
        self.where = where
        self.done = 0

    def _take(self, n: int) -> int:
        """How many of ``n`` wanted bytes may be read (0 at the end of the stream)."""
        if self.limit is not None and self.done + n > self.limit:
            n = max(self.limit - self.done, 0)
            if n == 0 and self.stream.read(1):
                raise UnsafePickleError(
                    f"{self.where}: the pickle goes on past {self.limit} bytes, more than "
                    "the file can hold (a compression bomb?)"
                )
        return n

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for ``n < 0``), read 64 KiB at a time."""
        if 0 <= n <= _CHUNK and (self.limit is None or self.done + n <= self.limit):
            data = self.stream.read(n)
            self.done += len(data)
            return data
        parts = []
        want = n if n >= 0 else float("inf")
        got = 0
        while got < want:
            piece = self.stream.read(self._take(int(min(_CHUNK, want - got))))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
            self.done += len(piece)
        return b"".join(parts)

    def readline(self) -> bytes:
        """One line, at most 1 MiB long."""
        line = self.stream.readline(self._take(_CHUNK))
        self.done += len(line)
        return line

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` as far as the stream allows; the number of bytes read."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _refuse(what: str) -> Any:
    def load(self: RestrictedUnpickler) -> None:
        raise UnsafePickleError(f"{self.where}: the pickle uses {what}, which is not allowed")
    return load


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with a reduced opcode set; see the module docstring.

    Args:
        stream: the pickle bytes, as a binary file object.
        where: the file's name, for messages.
        max_ops: the most opcodes the pickle may run.
        limit: the most bytes it may take from ``stream`` (None: no limit).
        **kwargs: passed to ``pickle._Unpickler`` (``encoding``...).
    """

    def __init__(self, stream: IO[bytes], where: str, max_ops: int, limit: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(BoundedReader(stream, limit, where), **kwargs)
        self.where = where
        self.ops_left = max_ops

    def build(self, inst: Any, state: Any) -> None:
        """Apply a BUILD opcode; subclasses admit the few cases their files need."""
        raise UnsafePickleError(
            f"{self.where}: the pickle tries to set the state of a {type(inst).__name__}, "
            "which is not allowed"
        )

    def _target(self, kinds: tuple[type, ...], what: str) -> Any:
        target = self.stack[-1] if self.stack else None
        if type(target) not in kinds:
            raise UnsafePickleError(
                f"{self.where}: the pickle adds {what} to a {type(target).__name__}, which "
                "is not allowed"
            )
        return target

    def load_build(self) -> None:
        state = self.stack.pop()
        self.build(self.stack[-1], state)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._target((dict, OrderedDict), "an item")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target((dict, OrderedDict), "items")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target((list,), "an item").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target((list,), "items").extend(items)

    def load_bytearray8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        data = self.read(length)
        if len(data) != length:
            raise pickle.UnpicklingError("pickle data was truncated")
        self.append(bytearray(data))

    def tick(self) -> None:
        """Count one opcode against ``max_ops``."""
        self.ops_left -= 1
        if self.ops_left < 0:
            raise UnsafePickleError(
                f"{self.where}: the pickle runs more opcodes than a file of its size can need"
            )

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global; subclasses admit their allow-list."""
        raise UnsafePickleError(f"{self.where}: the pickle asks for the global "
                                f"'{module}.{name}', which is not allowed")


def _counted(load: Any) -> Any:
    def counted(self: RestrictedUnpickler) -> None:
        self.tick()
        load(self)
    return counted


def _dispatch() -> dict[int, Any]:
    table = dict(pickle._Unpickler.dispatch)
    ours = RestrictedUnpickler
    table.update({
        pickle.BUILD[0]: ours.load_build, pickle.SETITEM[0]: ours.load_setitem,
        pickle.SETITEMS[0]: ours.load_setitems, pickle.APPEND[0]: ours.load_append,
        pickle.APPENDS[0]: ours.load_appends, pickle.BYTEARRAY8[0]: ours.load_bytearray8,
    })
    for op, what in ((pickle.INST, "INST"), (pickle.OBJ, "OBJ"), (pickle.NEWOBJ, "NEWOBJ"),
                     (pickle.NEWOBJ_EX, "NEWOBJ_EX"), (pickle.EXT1, "EXT1"),
                     (pickle.EXT2, "EXT2"), (pickle.EXT4, "EXT4"), (pickle.EMPTY_SET, "a set"),
                     (pickle.ADDITEMS, "a set"), (pickle.FROZENSET, "a set")):
        table[op[0]] = _refuse(what)
    return {key: _counted(load) for key, load in table.items()}


RestrictedUnpickler.dispatch = _dispatch()
