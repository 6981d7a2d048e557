"""Resource limits for rendering, and the size arithmetic that enforces them.

``sandbox.py`` decides *where* sizes are checked; this module says how big things are.
"""

from __future__ import annotations

import dataclasses
import math
from collections import abc
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from datetime import time as clock_time
from decimal import Decimal
from typing import Any

from jinja2.filters import FILTERS
from jinja2.runtime import Undefined
from jinja2.utils import Namespace, pass_environment, pass_eval_context

# Python 3.11 refuses to print integers longer than this (sys.int_info.default_max_str_digits);
# refusing to *compute* them keeps ``**`` and ``*`` from spending seconds on a number nobody
# can print.
INTEGER_DIGITS = 4_300
INTEGER_BITS = math.ceil(INTEGER_DIGITS * math.log2(10))


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for rendering one field (each field of a message gets its own).

    ``output_bytes``: largest rendered field, in UTF-8 bytes; also the largest string (in
    characters) or structure (see ``text_size``) a template may build on the way.
    ``range_size``: most items ``range()`` may produce. ``repeat_size``: longest result of
    ``*`` repetition, in characters for strings and items for lists. ``seconds``: wall-clock
    time for one field's render.
    """

    output_bytes: int = 256 * 1024
    range_size: int = 1_000
    repeat_size: int = 10_000
    seconds: float = 0.2

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"Limits.{field.name} must be positive, got {value!r}")


class LimitExceeded(Exception):
    """A template went past one of its ``Limits`` (turned into a ``RenderError``)."""


def text_size(value: object, budget: int) -> int:
    """Roughly how many characters ``str(value)`` makes; stops counting once past ``budget``.

    A container counts each time it is referenced, so shared references cannot hide size.
    """
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        # Concrete types first: isinstance() against an ABC is several times slower.
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, int):
            size += 1 + item.bit_length() // 3
        elif isinstance(item, list | tuple):
            size += 2 + 2 * len(item)
            if size > budget:
                return size
            pending.extend(item)
        elif isinstance(item, dict):
            size += 2 + 4 * len(item)
            if size > budget:
                return size
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, float | Decimal | date | clock_time | Undefined | range):
            size += 8
        elif isinstance(item, Namespace):
            pending.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, abc.Collection):
            size += 2 + 2 * len(item)
            if size > budget:
                return size
            if isinstance(item, abc.Mapping):
                pending.extend(item.keys())
                pending.extend(item.values())
            else:
                pending.extend(item)
        else:
            size += 8
        if size > budget:
            return size
    return size


class CaptureBuffer(list[str]):
    """A capture buffer (``{% set %}`` block, macro body) that refuses to outgrow the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.size = 0
        self.limit = limit

    def append(self, item: str) -> None:
        self._grow(len(item))
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        items = list(items)
        self._grow(sum(map(len, items)))
        super().extend(items)

    def _grow(self, size: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise LimitExceeded(
                f"captured output would be longer than the limit of {self.limit} characters"
            )


# -- filters that can multiply their input are checked before they run


@pass_eval_context
def join_checked(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    limit = eval_ctx.environment.limits.output_bytes
    size = max(len(items) - 1, 0) * len(str(d))
    for item in items:
        size += text_size(item, limit)
        if size > limit:
            break
    if size > limit:
        raise LimitExceeded(f"join would make more than the limit of {limit} characters")
    return FILTERS["join"](eval_ctx, items, d, attribute)  # type: ignore[no-any-return]


@pass_eval_context
def replace_checked(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text = str(s), str(old)
    found = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    size = len(text) + found * (len(str(new)) - len(old_text))
    limit = eval_ctx.environment.limits.output_bytes
    if size > limit:
        raise LimitExceeded(f"replace would make {size} characters, over the limit of {limit}")
    return FILTERS["replace"](eval_ctx, s, old, new, count)  # type: ignore[no-any-return]


@pass_environment
def sum_checked(
    environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
) -> Any:
    # Summing lists (``start=[]``) is quadratic; only numbers add up.
    if not isinstance(start, int | float | Decimal):
        raise LimitExceeded("sum() only adds numbers")
    return FILTERS["sum"](environment, iterable, attribute, start)


CHECKED_FILTERS: Mapping[str, Callable[..., Any]] = {
    "join": join_checked,
    "replace": replace_checked,
    "sum": sum_checked,
}
