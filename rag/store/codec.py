"""The JSON form of rag's frozen dataclasses (cache records, snapshot rows, reports): pydantic walks them, so
nested dataclasses, tuples, paths and literals round-trip without hand-written code."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _adapter(cls):
    """One adapter per class, built on first use (a few ms each, not paid by a process that never needs one)."""
    from pydantic import TypeAdapter  # pydantic loads when first needed: `rag --help` never pays for it

    return TypeAdapter(cls)


def to_jsonable(obj):
    """A dataclass (or a list or tuple of them) as plain JSON types: tuples become lists, paths strings."""
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    return _adapter(type(obj)).dump_python(obj, mode="json")


def from_jsonable(cls, data):
    """Rebuild a dataclass (nested dataclasses and tuples included) from `to_jsonable` output.

    Raises ValueError (pydantic's ValidationError) when the data does not fit the class.
    """
    return _adapter(cls).validate_python(data)
