"""Incremental reading of big JSON files whose top level is an array (or an object holding arrays).

Visual Genome's ``region_descriptions.json`` or COCO's ``instances_train2014.json`` are hundreds of megabytes of
one JSON value; ``json.load`` needs several times that in memory. :func:`iter_array` yields the elements of a
top-level array one at a time from a buffered file, decoding each with ``json.JSONDecoder.raw_decode`` on a sliding
buffer, so memory stays bounded by the largest element, not the file. :func:`iter_object` walks a top-level
object the same way and can stream chosen array members (e.g. ``"annotations"``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

CHUNK = 1 << 16
_WHITESPACE = " \t\n\r"
_NUMBER = frozenset("0123456789+-.eE")


class JsonStreamError(ValueError):
    """Malformed JSON, or a layout other than the one expected (with the character offset)."""


class _Reader:
    def __init__(self, fp: IO[str], chunk: int = CHUNK, name: str = "<stream>"):
        self.fp, self.chunk, self.name = fp, chunk, name
        self.buf, self.pos, self.consumed, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def _fill(self, at_least: int) -> bool:
        """Drop the consumed prefix and read at least ``at_least`` more characters; False at end of file."""
        if self.eof:
            return False
        if self.pos:
            self.consumed += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        data = self.fp.read(max(at_least, self.chunk))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def error(self, message: str) -> JsonStreamError:
        return JsonStreamError(f"{self.name}: {message} at character {self.consumed + self.pos}")

    def peek(self) -> str:
        """The next non-whitespace character without consuming it ("" at end of file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill(self.chunk):
                return ""

    def expect(self, chars: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            raise self.error(f"expected one of {chars!r}, found {char or 'end of file'!r}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode the next complete JSON value, reading more (doubling) until it is whole."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if not self._fill(len(self.buf)):
                    raise self.error(f"invalid JSON ({err.msg})") from None
                continue
            if self._may_continue(value, end) and self._fill(self.chunk):
                continue  # a number that reaches the end of the buffer may go on in the next chunk
            self.pos = end
            return value

    def _may_continue(self, value: Any, end: int) -> bool:
        if self.eof or not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return all(c in _NUMBER for c in self.buf[end:end + 32])

    def array(self) -> Iterator[Any]:
        """Yield the elements of the array starting here."""
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.expect(",]") == "]":
                return


@contextmanager
def _reader(source: str | os.PathLike | IO[str], chunk: int):
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8-sig") as fp:  # -sig: a byte-order mark is skipped
            yield _Reader(fp, chunk, os.fspath(source))
    else:
        yield _Reader(source, chunk, getattr(source, "name", "<stream>"))


def iter_array(source: str | os.PathLike | IO[str], chunk: int = CHUNK) -> Iterator[Any]:
    """Yield the elements of the top-level JSON array in ``source`` (a path or a text file) one by one."""
    with _reader(source, chunk) as reader:
        yield from reader.array()
        if reader.peek():
            raise reader.error("unexpected data after the array")


def iter_object(source: str | os.PathLike | IO[str], stream: frozenset[str] | set[str] = frozenset(),
                chunk: int = CHUNK) -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` for each member of the top-level JSON object in ``source``.

    Members named in ``stream`` whose value is an array are given as an iterator over its elements, which the
    caller must exhaust before asking for the next member; every other value is decoded whole.
    """
    with _reader(source, chunk) as reader:
        reader.expect("{")
        if reader.peek() == "}":
            return
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise reader.error("expected a member name")
            reader.expect(":")
            if key in stream and reader.peek() == "[":
                elements = reader.array()
                yield key, elements
                for _ in elements:  # whatever the caller left unread
                    pass
            else:
                yield key, reader.value()
            if reader.expect(",}") == "}":
                return
