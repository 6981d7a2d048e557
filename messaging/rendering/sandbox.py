"""The Jinja2 sandbox message templates run in, and the limits that bound a render.

Jinja's ``SandboxedEnvironment`` stops templates from reaching Python internals but not from
burning CPU or memory, so this environment adds:

- **What a template can reach.** Only the filters in ``SAFE_FILTERS`` and the globals
  ``range`` (bounded), ``dict``, ``cycler``, ``joiner`` and ``namespace``; ``lipsum`` is gone
  (it builds arbitrarily long text). Attributes starting with ``_`` are refused (Jinja's
  rule), and so is every *method* that is not in ``SAFE_METHODS``: read-only string, mapping,
  sequence and date methods that cannot grow their output, plus ``loop.cycle``/``changed``
  and ``cycler.next``/``reset``. That leaves out ``str.format``/``format_map`` (attribute
  walks, and ``{:>999999999}`` padding), ``center``/``ljust``/``zfill``/``expandtabs``
  (padding), ``join``/``replace`` (use the bounded filters) and every mutating method.
- **Size.** No string or structure a template builds may exceed ``Limits.output_bytes``
  characters: ``*``, ``**``, ``+`` and ``%`` are intercepted (repetition past
  ``repeat_size`` and integers past Python's own 4,300-digit ``int``/``str`` limit are
  refused *before* they are computed; ``%`` widths are summed first), and the code
  generator routes ``~``, list/tuple/dict literals and capture buffers (``{% set %}``
  blocks, macros) through the same check. A structure's size counts every reference, so
  ``[[s] * 10] * 10`` weighs 100 ``s``: that is what printing, comparing or hashing it costs,
  and it keeps every C-level operation (``==``, ``in``, ``sort``) linear in the limit.
  Calls are checked on their arguments too (a macro's ``varargs`` are built from them).
  The rendered output is counted in UTF-8 bytes as it streams, so an over-long template
  stops as soon as it passes the limit. Sources longer than ``SOURCE_CHARACTERS`` are not
  compiled, and ``extends``/``include``/``import`` are refused when compiling (there is no
  loader, and a message is one self-contained template per field).
- **Time.** The code generator makes every ``{% for %}`` loop tick once per item it takes
  from its iterable (items an inline ``if`` skips included), and every call (macros,
  ``caller()``, ``loop()`` recursion, methods) ticks too; every 16th tick reads the clock
  and refuses the template past its deadline. In Jinja those are the only ways to repeat
  work: straight-line code is as long as the template, each C-level operation is bounded
  by the size rules, and there is no ``while``. So nested loops over small strings and
  exponential macro recursion are stopped as surely as a loop that prints.

  We first built the suggested ``sys.settrace`` tracer (tracing only frames whose
  ``co_filename`` is the template's, checking the clock every 64 line events) and measured
  it on a typical email: the HTML field rendered at ~3,000/s with it and ~8,500/s without,
  because with tracing on, *every* Python call in the thread (the sandbox's own getattr,
  escape, filters: ~540 per render) goes through a Python callback before it can be told
  "not a template frame". Ticks cost one cheap method call per loop item or call: 2.8% on
  the same HTML field (~9,100 renders/s against ~9,300/s without ticks, best of 7 x 500),
  0.9% on the whole email. They also do not depend on owning ``sys.settrace``, which debuggers,
  profilers and coverage also want (and which a tracer must chain to and restore).
  ``signal.setitimer`` works only in the main thread, a thread cannot be killed, and a
  subprocess per render costs milliseconds. Run the sending worker with a hard time limit
  anyway, as the last line of defence.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
import traceback
from collections import abc
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from datetime import time as clock_time
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.filters import FILTERS
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

from messaging.rendering.errors import RenderError
from messaging.rendering.limits import (
    CHECKED_FILTERS,
    INTEGER_BITS,
    INTEGER_DIGITS,
    CaptureBuffer,
    LimitExceeded,
    Limits,
    text_size,
)

_NO_LOADING = "a message template cannot extend, include or import other templates"

# Longest template source we compile (Gmail clips emails at 102 KB already).
SOURCE_CHARACTERS = 512 * 1024

# Every Nth tick reads the clock: reading it is the dearest part of a tick.
_CLOCK_EVERY = 16

# strftime lets the C library pad fields (``%1000000Y`` on glibc); a short format cannot.
_STRFTIME_FORMAT_CHARS = 200

SAFE_FILTERS: tuple[str, ...] = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "groupby",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "striptags",
    "sum",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
)

SAFE_METHODS: tuple[tuple[type | tuple[type, ...], frozenset[str]], ...] = (
    (
        str,
        frozenset(
            {
                "capitalize",
                "casefold",
                "count",
                "endswith",
                "find",
                "index",
                "isalnum",
                "isalpha",
                "isdecimal",
                "isdigit",
                "islower",
                "isnumeric",
                "isspace",
                "istitle",
                "isupper",
                "lower",
                "lstrip",
                "partition",
                "removeprefix",
                "removesuffix",
                "rfind",
                "rindex",
                "rpartition",
                "rsplit",
                "rstrip",
                "split",
                "splitlines",
                "startswith",
                "strip",
                "swapcase",
                "title",
                "upper",
            }
        ),
    ),
    (abc.Mapping, frozenset({"get", "items", "keys", "values"})),
    ((list, tuple), frozenset({"count", "index"})),
    (date, frozenset({"date", "isoformat", "isoweekday", "strftime", "time", "weekday"})),
    (clock_time, frozenset({"isoformat", "strftime"})),
    (LoopContext, frozenset({"changed", "cycle"})),
    (Cycler, frozenset({"next", "reset"})),
)

# Callable values a template may read from an attribute: a macro or joiner kept in a namespace,
# and Jinja's undefined (``loop.previtem`` on the first iteration).
_CALLABLE_VALUES = (Macro, Joiner, Undefined)

# %-format width and precision: ``%(key)-10.2f``; ``*`` takes them from the arguments.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class _CodeGenerator(CodeGenerator):
    """Makes loops tick, and sends ``~``, literals and capture buffers through size checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop_iterables: set[int] = set()

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Jinja allows no custom node types, so mark the iterable and wrap it in visit().
        self.loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self.loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("context.ticked(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Extends(self, node: nodes.Extends, frame: Frame) -> None:
        self.fail(_NO_LOADING, node.lineno)

    def visit_Include(self, node: nodes.Include, frame: Frame) -> None:
        self.fail(_NO_LOADING, node.lineno)

    def visit_Import(self, node: nodes.Import, frame: Frame) -> None:
        self.fail(_NO_LOADING, node.lineno)

    def visit_FromImport(self, node: nodes.FromImport, frame: Frame) -> None:
        self.fail(_NO_LOADING, node.lineno)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        # Tuples are also assignment targets (``{% for k, v in ... %}``); only check values.
        if node.ctx != "load":
            super().visit_Tuple(node, frame)
            return
        self.write("environment.bounded(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Dict(node, frame)
        self.write(")")

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.buffer()")


class _Context(Context):
    """A render's context; it also carries the render's deadline."""

    # A context that was never given a deadline is already past it.
    deadline = 0.0
    seconds = 0.0
    ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _CLOCK_EVERY == 0 and time.perf_counter() > self.deadline:
            raise LimitExceeded(f"rendering took longer than the limit of {self.seconds} seconds")

    def ticked(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.tick()
            yield item

    def deadline_set(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def derived(self, locals: dict[str, Any] | None = None) -> Context:
        # ``{% block ... scoped %}`` runs in a derived context: it keeps the deadline.
        context = super().derived(locals)
        if isinstance(context, _Context):
            context.seconds, context.deadline = self.seconds, self.deadline
        return context


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    context_class = _Context
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: Limits, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_finalize,
            auto_reload=False,
        )
        self.limits = limits
        self.concat = self._concat  # type: ignore[method-assign]
        self.filters = {name: self._guarded(_filter(name)) for name in SAFE_FILTERS}
        self.globals = {
            "range": self._range,
            "dict": dict,
            "cycler": Cycler,
            "joiner": Joiner,
            "namespace": Namespace,
        }

    # -- what a template can reach

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value) or isinstance(value, _CALLABLE_VALUES):
            return True
        return any(isinstance(obj, kind) and attr in names for kind, names in SAFE_METHODS)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja hands out a sandboxed ``str.format`` before asking is_safe_attribute; we
        # refuse it instead (it pads without bound).
        return None

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(context, _Context):
            context.tick()
        self.check_size_all([*args, *kwargs.values()], "a call's arguments")
        strftime = getattr(obj, "__name__", None) == "strftime"
        if strftime and args and len(str(args[0])) > _STRFTIME_FORMAT_CHARS:
            raise LimitExceeded(
                f"a strftime format may have at most {_STRFTIME_FORMAT_CHARS} characters"
            )
        return self.bounded(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            self._product_check(left, right)
        elif operator == "**":
            self._power_check(left, right)
        elif operator == "%" and isinstance(left, str):
            self._percent_check(left)
        return self.bounded(super().call_binop(context, operator, left, right))

    # -- size checks (called from compiled template code, hence public names)

    def bounded(self, value: Any) -> Any:
        limit = self.limits.output_bytes
        if isinstance(value, str):
            if len(value) > limit:
                raise LimitExceeded(f"a text would be longer than the limit of {limit} characters")
        elif isinstance(value, int):
            if value.bit_length() > INTEGER_BITS:
                raise LimitExceeded(f"an integer would have more than {INTEGER_DIGITS} digits")
        elif isinstance(value, list | tuple | dict):
            self.check_size(value, "a value")
        elif isinstance(value, Undefined | range):
            pass  # printing these is short; a strict undefined must not be touched
        elif isinstance(value, abc.Iterator):
            return self._bounded_items(value)
        elif isinstance(value, abc.Collection):
            self.check_size(value, "a value")
        return value

    def check_size(self, value: Any, what: str) -> None:
        limit = self.limits.output_bytes
        if text_size(value, limit) > limit:
            raise LimitExceeded(f"{what} would be longer than the limit of {limit} characters")

    def check_size_all(self, values: Iterable[Any], what: str) -> None:
        limit = self.limits.output_bytes
        size = 0
        for value in values:
            size += text_size(value, limit - size)
            if size > limit:
                raise LimitExceeded(f"{what} would be longer than the limit of {limit} characters")

    def buffer(self) -> CaptureBuffer:
        return CaptureBuffer(self.limits.output_bytes)

    def _concat(self, parts: Iterable[str]) -> str:
        parts = list(parts)
        if sum(map(len, parts)) > self.limits.output_bytes:
            raise LimitExceeded(
                f"captured output would be longer than the limit of {self.limits.output_bytes} "
                "characters"
            )
        return "".join(parts)

    def _bounded_items(self, items: Iterator[Any]) -> Iterator[Any]:
        limit = self.limits.output_bytes
        size = 0
        for item in items:
            size += text_size(item, limit - size)
            if size > limit:
                raise LimitExceeded(
                    f"a sequence would be longer than the limit of {limit} characters"
                )
            yield item

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        try:
            length = len(numbers)
        except OverflowError:  # past sys.maxsize; the count is only for the message
            length = (numbers.stop - numbers.start) // numbers.step
        if length > self.limits.range_size:
            raise LimitExceeded(
                f"range() would make {length} numbers, over the limit of {self.limits.range_size}"
            )
        return numbers

    def _product_check(self, left: Any, right: Any) -> None:
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > INTEGER_BITS:
                raise LimitExceeded(f"a product would have more than {INTEGER_DIGITS} digits")
            return
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            length = len(sequence) * times
            if length > self.limits.repeat_size:
                raise LimitExceeded(
                    f"repeating makes {length} items, over the limit of {self.limits.repeat_size}"
                )

    def _power_check(self, base: Any, exponent: Any) -> None:
        if not (isinstance(base, int) and isinstance(exponent, int)):
            return
        if exponent > 0 and abs(base) > 1 and math.log2(abs(base)) * exponent >= INTEGER_BITS:
            raise LimitExceeded(f"a power would have more than {INTEGER_DIGITS} digits")

    def _percent_check(self, template: str) -> None:
        padding = 0
        for spec in _PERCENT_SPEC.finditer(template):
            for number in spec.groups():
                if number == "*":
                    raise LimitExceeded("'*' widths are not allowed in % formatting")
                if number:
                    padding += int(number) if len(number) < 10 else sys.maxsize
        if padding > self.limits.output_bytes:
            raise LimitExceeded(
                f"% formatting pads to {padding} characters, over the limit of "
                f"{self.limits.output_bytes}"
            )

    def _guarded(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.bounded(function(*args, **kwargs))

        return guarded


def _finalize(value: Any) -> Any:
    # ``{{ customer.company }}`` with a null company prints nothing rather than "None".
    return "" if value is None else value


def _filter(name: str) -> Callable[..., Any]:
    return CHECKED_FILTERS.get(name) or FILTERS[name]


# -- compiling and rendering


@functools.lru_cache(maxsize=16)
def environment(limits: Limits, autoescape: bool) -> _Environment:
    return _Environment(limits, autoescape=autoescape)


@functools.lru_cache(maxsize=512)
def _compiled(source: str, filename: str, autoescape: bool, limits: Limits) -> Template:
    env = environment(limits, autoescape)
    code = env.compile(source, name=filename, filename=filename)
    return env.template_class.from_code(env, code, env.make_globals(None))


def template_compile(
    source: str, *, field: str, name: str, autoescape: bool, limits: Limits
) -> Template:
    """Compile ``source`` (cached); ``name`` (e.g. "email.html") names its code for tracing."""
    if len(source) > SOURCE_CHARACTERS:
        raise RenderError(
            field, f"the template is longer than the limit of {SOURCE_CHARACTERS} characters"
        )
    filename = f"<template:{name}>"
    try:
        return _compiled(source, filename, autoescape, limits)
    except Exception as error:
        line = _error_line(error, filename)
        raise RenderError(field, _error_describe(error), line=line) from error


def template_render(
    source: str,
    context: Mapping[str, Any],
    *,
    field: str,
    name: str,
    autoescape: bool,
    limits: Limits,
) -> str:
    """Render ``source`` within ``limits``; any failure is a ``RenderError`` for ``field``."""
    template = template_compile(
        source, field=field, name=name, autoescape=autoescape, limits=limits
    )
    filename = f"<template:{name}>"
    try:
        return "".join(_output_collect(template, context, limits))
    except Exception as error:
        line = _error_line(error, filename)
        raise RenderError(field, _error_describe(error), line=line) from error


def _output_collect(
    template: Template, context: Mapping[str, Any], limits: Limits
) -> Iterator[str]:
    render_context = template.new_context(dict(context))
    assert isinstance(render_context, _Context)  # noqa: S101 -- our environment's class
    render_context.deadline_set(limits.seconds)
    size = 0
    try:
        for chunk in template.root_render_func(render_context):
            size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
            if size > limits.output_bytes:
                raise LimitExceeded(
                    f"the output is longer than the limit of {limits.output_bytes} bytes"
                )
            yield chunk
    except Exception:
        # Rewrites the traceback so that template frames carry template line numbers.
        template.environment.handle_exception()


def _error_describe(error: Exception) -> str:
    if isinstance(error, LimitExceeded):
        return f"template exceeds a limit: {error}"
    if isinstance(error, TemplateError):
        return error.message or type(error).__name__
    if isinstance(error, RecursionError):
        return "template recursion is too deep"
    return f"{type(error).__name__}: {error}"


def _error_line(error: Exception, filename: str) -> int | None:
    if isinstance(error, TemplateSyntaxError):
        return error.lineno
    line = None
    # Jinja rewrites tracebacks so that template frames carry template line numbers.
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line
