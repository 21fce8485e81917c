"""Fast constructors for frozen, slotted dataclasses: the one home of the slot trick.

A frozen dataclass's ``__init__`` routes every field through ``object.__setattr__``
(to get past its own frozenness), which makes building one about twice as slow as
filling its slots directly. Replay, reads and the log build millions of events, fact
records and log records, so they use a constructor made here: it fills each slot
through its descriptor and returns an ordinary instance, equal to what ``__init__``
would have built. It takes the fields positionally, in declaration order, and has no
``__post_init__`` to run (a class with one keeps its ``__init__``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def slot_builder(cls: type[T]) -> Callable[..., T]:
    """A positional constructor of the frozen, slotted dataclass ``cls``.

    It takes the fields in declaration order; a field with a default may be left out
    (a ``default_factory`` gives each instance a fresh value, as ``__init__`` does).
    Generated source, as ``dataclasses`` itself generates ``__init__``: the slot
    descriptors, defaults and ``object.__new__`` are closure cells of the constructor,
    which reads them as fast as locals and copies nothing per call.

    :raises TypeError: ``cls`` is not a slotted dataclass, or has a ``__post_init__``.
    """
    if not dataclasses.is_dataclass(cls) or not hasattr(cls, "__slots__"):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} checks its fields in __post_init__")
    fields = dataclasses.fields(cls)
    if any(f.name.startswith("_") for f in fields):
        raise TypeError(f"{cls.__name__} has a private field")
    cells: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_unset": _UNSET}
    params: list[str] = []
    body = ["        obj = _new(_cls)"]
    for f in fields:
        name = f.name
        cells[f"_set_{name}"] = getattr(cls, name).__set__
        if f.default_factory is not dataclasses.MISSING:
            cells[f"_make_{name}"] = f.default_factory
            params.append(f"{name}=_unset")
            body.append(f"        if {name} is _unset:")
            body.append(f"            {name} = _make_{name}()")
        elif f.default is not dataclasses.MISSING:
            cells[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
        else:
            params.append(name)
        body.append(f"        _set_{name}(obj, {name})")
    lines = [
        f"def make({', '.join(cells)}):",
        f"    def build({', '.join(params)}):",
        *body,
        "        return obj",
        "    return build",
    ]
    namespace: dict[str, Any] = {}
    # the source is made of field names only (checked above: no private names)
    exec("\n".join(lines), namespace)  # noqa: S102
    build: Callable[..., T] = namespace["make"](**cells)
    build.__qualname__ = f"slot_builder({cls.__qualname__})"
    build.__doc__ = f"``{cls.__name__}(...)`` without ``object.__setattr__`` per field."
    return build


_UNSET: Any = object()
