"""Pure tests of the template sandbox: what a template can reach, escaping, and every limit."""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest

from messaging.rendering import SAFE_FILTERS, Limits, RenderError, render
from messaging.rendering.sandbox import environment

CONTEXT: dict[str, Any] = {
    "customer": {"first_name": "Ana", "_note": "kept", "tags": ["b", "a", "b"]},
    "profile": types.SimpleNamespace(name="Ana", _token="secret"),
    "items": [{"name": "pen", "price": 2.5, "kind": "office"}, {"name": "ink", "price": 4,
              "kind": "office"}, {"name": "tea", "price": 3, "kind": "food"}],
    "when": dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC),
}  # fmt: skip

# A template that would loop for minutes: refusing it on time is certain, whatever the machine.
FOR_MINUTES = Limits(seconds=0.01)


def body(source: str, context: dict[str, Any] | None = None, limits: Limits = Limits()) -> str:  # noqa: B008
    rendered = render(
        "sms", {"body": source}, CONTEXT if context is None else context, limits=limits
    )
    return str(rendered["body"])


def refusal(source: str, context: dict[str, Any] | None = None, limits: Limits = Limits()) -> str:  # noqa: B008
    with pytest.raises(RenderError) as caught:
        body(source, context, limits)
    assert caught.value.field == "body"
    return caught.value.message


# -- escapes


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__.__mro__ }}",
         "access to attribute '__class__' of 'str' object is unsafe."),
        ("{{ ().__class__.__base__.__subclasses__() }}",
         "access to attribute '__class__' of 'tuple' object is unsafe."),
        ("{{ cycler.__init__.__globals__ }}",
         "access to attribute '__init__' of 'type' object is unsafe."),
        ("{{ joiner.__init__.__globals__ }}",
         "access to attribute '__init__' of 'type' object is unsafe."),
        ("{{ namespace.__init__.__globals__ }}",
         "access to attribute '__init__' of 'type' object is unsafe."),
        ("{{ range.__globals__ }}",
         "access to attribute '__globals__' of 'method' object is unsafe."),
        ("{{ self._TemplateReference__context }}",
         "access to attribute '_TemplateReference__context' of 'TemplateReference' object is "
         "unsafe."),
        ("{{ self.__init__.__globals__ }}",
         "access to attribute '__init__' of 'TemplateReference' object is unsafe."),
        ("{{ '{0.__class__}'.format(customer) }}",
         "access to attribute 'format' of 'str' object is unsafe."),
        ("{{ '{0.__class__}'.format_map(customer) }}",
         "access to attribute 'format_map' of 'str' object is unsafe."),
        ("{{ '{:>999999999}'.format(1) }}",
         "access to attribute 'format' of 'str' object is unsafe."),
        ("{{ '{0.__class__}'|format(customer) }}", "No filter named 'format'."),
        ("{{ lipsum.__globals__ }}", "'lipsum' is undefined"),
        ("{{ lipsum(100000) }}", "'lipsum' is undefined"),
        ("{{ config }}", "'config' is undefined"),
        ("{{ request }}", "'request' is undefined"),
        ("{{ customer.__class__ }}", "access to attribute '__class__' of 'dict' object is unsafe."),
        ("{{ customer['__class__'] }}",
         "access to attribute '__class__' of 'dict' object is unsafe."),
        ("{{ profile._token }}",
         "access to attribute '_token' of 'SimpleNamespace' object is unsafe."),
        ("{{ profile.__dict__ }}",
         "access to attribute '__dict__' of 'SimpleNamespace' object is unsafe."),
        ("{{ 'x'|attr('__class__') }}", "No filter named 'attr'."),
        ("{{ ['a']|map(attribute='__class__')|join }}",
         "access to attribute '__class__' of 'str' object is unsafe."),
        ("{% for x in customer.tags %}{{ loop._iterator }}{% endfor %}",
         "access to attribute '_iterator' of 'LoopContext' object is unsafe."),
        ("{{ 'a'.split.__self__ }}",
         "access to attribute '__self__' of 'builtin_function_or_method' object is unsafe."),
        ("{{ customer.update({'x': 1}) }}",
         "access to attribute 'update' of 'dict' object is unsafe."),
        ("{{ customer.tags.append('x') }}",
         "access to attribute 'append' of 'list' object is unsafe."),
        ("{{ 'a'.center(999999999) }}", "access to attribute 'center' of 'str' object is unsafe."),
        ("{{ 'a'.encode() }}", "access to attribute 'encode' of 'str' object is unsafe."),
        ("{{ namespace().__class__ }}",
         "access to attribute '__class__' of 'Namespace' object is unsafe."),
        ("{% include 'other.html' %}",
         "a message template cannot extend, include or import other templates"),
        ("{% extends 'base.html' %}",
         "a message template cannot extend, include or import other templates"),
        ("{% import 'macros.html' as m %}",
         "a message template cannot extend, include or import other templates"),
        ("{% from 'macros.html' import m %}",
         "a message template cannot extend, include or import other templates"),
    ],
)  # fmt: skip
def test_a_sandbox_escape_attempt_is_refused(source: str, message: str) -> None:
    assert refusal(source) == f"line 1: {message}"


def test_private_keys_of_plain_data_are_data_and_public_attributes_are_readable() -> None:
    assert body("{{ customer._note }} {{ profile.name }}") == "kept Ana"


def test_the_template_cannot_change_the_data_it_is_given() -> None:
    context = {"tags": ["a"], "ns": {"n": 1}}

    message = refusal("{{ tags.pop() }}", context)

    assert message == "line 1: access to attribute 'pop' of 'list' object is unsafe."
    assert context == {"tags": ["a"], "ns": {"n": 1}}


# -- what a template can use


def test_the_filters_are_exactly_the_safe_set() -> None:
    assert sorted(environment(Limits(), autoescape=False).filters) == sorted(SAFE_FILTERS)


@pytest.mark.parametrize(
    "name",
    ["safe", "format", "attr", "tojson", "center", "indent", "wordwrap", "batch", "slice",
     "pprint", "random", "urlize", "xmlattr", "forceescape", "filesizeformat"],
)  # fmt: skip
def test_a_filter_outside_the_safe_set_does_not_exist(name: str) -> None:
    assert refusal(f"{{{{ 'x'|{name} }}}}") == f"line 1: No filter named '{name}'."


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ customer.nickname|default('there') }}", "there"),
        ("{{ customer.tags|join(', ') }}", "b, a, b"),
        ("{{ customer.tags|unique|join }}", "ba"),
        ("{{ customer.tags|sort|first }}{{ customer.tags|last }}", "ab"),
        ("{{ customer.tags|length }} {{ customer.tags|count }}", "3 3"),
        ("{{ 'a-b'|replace('-', '+') }}", "a+b"),
        ("{{ 'hello world'|title }} {{ 'Hi'|upper }}{{ 'Hi'|lower }}", "Hello World HIhi"),
        ("{{ '  x  '|trim }}|{{ 'a b c'|wordcount }}", "x|3"),
        ("{{ 'abcdefghij'|truncate(8, leeway=0) }}", "abcde..."),
        ("{{ '<b>x</b>'|striptags }}", "x"),
        ("{{ 'a b&c'|urlencode }}", "a%20b%26c"),
        ("{{ 2.456|round(2) }} {{ '7'|int + 1 }} {{ '1.5'|float }} {{ -3|abs }}", "2.46 8 1.5 3"),
        ("{{ items|sum(attribute='price') }}", "9.5"),
        ("{{ items|map(attribute='name')|join(',') }}", "pen,ink,tea"),
        ("{{ items|selectattr('kind', 'eq', 'food')|map(attribute='name')|join }}", "tea"),
        ("{{ items|rejectattr('kind', 'eq', 'food')|map(attribute='name')|join }}", "pen,ink"
         .replace(",", "")),
        ("{{ items|sort(attribute='price')|map(attribute='name')|join(' ') }}", "pen tea ink"),
        ("{% for g in items|groupby('kind') %}{{ g.grouper }}={{ g.list|length }} {% endfor %}",
         "food=1 office=2"),
        ("{{ {'b': 1, 'a': 2}|dictsort|first|first }}", "a"),
        ("{{ [3, 1, 2]|max }}{{ [3, 1, 2]|min }}{{ [1, 2]|reverse|list|first }}", "312"),
        ("{{ [1, 2, 3]|select('odd')|list }}{{ [1, 2, 3]|reject('odd')|list }}", "[1, 3][2]"),
        ("{{ {'a': 1}|items|list }}", "[('a', 1)]"),
        ("{{ 'a'|string }}{{ '<'|escape }}{{ '<'|e }}", "a&lt;&lt;"),
        ("{{ range(3)|list }} {{ dict(a=1) }}", "[0, 1, 2] {'a': 1}"),
        ("{% set c = cycler('x', 'y') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}", "xyx"),
        ("{% set j = joiner('+') %}{% for t in customer.tags %}{{ j() }}{{ t }}{% endfor %}",
         "b+a+b"),
        ("{% set ns = namespace(n=0) %}{% for i in items %}{% set ns.n = ns.n + 1 %}{% endfor %}"
         "{{ ns.n }}", "3"),
        ("{% for t in customer.tags %}{{ loop.cycle('<', '>') }}{{ loop.index }}{% endfor %}",
         "<1>2<3"),
        ("{{ 'Ana Lu'.split()|last }} {{ 'x'.upper() }} {{ 'ab'.startswith('a') }}",
         "Lu X True"),
        ("{{ customer.get('first_name') }} {{ customer.keys()|list|first }}", "Ana first_name"),
        ("{{ customer.tags.index('a') }} {{ customer.tags.count('b') }}", "1 2"),
        ("{{ when.strftime('%d %b %Y') }} {{ when.date().isoformat() }} {{ when.isoweekday() }}",
         "02 Mar 2026 2026-03-02 1"),
        ("{% macro hi(name) %}Hi {{ name }}{% endmacro %}{{ hi(customer.first_name) }}", "Hi Ana"),
        ("{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}x{% endcall %}", "[x]"),
        ("{% filter upper %}shout{% endfilter %}", "SHOUT"),
        ("{{ '%s has %d' % ('Ana', 3) }}", "Ana has 3"),
    ],
)  # fmt: skip
def test_the_safe_filters_globals_and_methods_work(source: str, expected: str) -> None:
    assert body(source) == expected


def test_blocks_are_trimmed_so_tags_on_their_own_lines_leave_no_blank_lines() -> None:
    source = "Hi\n{% if true %}\n  there\n{% endif %}\nbye"

    assert body(source) == "Hi\n  there\nbye"


# -- escaping


def test_the_email_html_escapes_values_and_the_plain_text_fields_do_not() -> None:
    context = {"name": '<i>Ana</i> & "co"', "url": "https://ex.com/?a=1&b=2"}
    fields = {
        "subject": "Hi {{ name }}",
        "preheader": "{{ name }}",
        "html": '<a href="{{ url }}" title="{{ name }}">{{ name }}</a>{{ "<b>" ~ name }}',
        "text": "Hi {{ name }}",
    }

    rendered = render("email", fields, context)

    assert rendered == {
        "subject": 'Hi <i>Ana</i> & "co"',
        "preheader": '<i>Ana</i> & "co"',
        "html": '<a href="https://ex.com/?a=1&amp;b=2" title="&lt;i&gt;Ana&lt;/i&gt; &amp; '
        '&#34;co&#34;">&lt;i&gt;Ana&lt;/i&gt; &amp; &#34;co&#34;</a>'
        "&lt;b&gt;&lt;i&gt;Ana&lt;/i&gt; &amp; &#34;co&#34;",
        "text": 'Hi <i>Ana</i> & "co"',
    }


@pytest.mark.parametrize(
    ("channel", "fields", "field"),
    [
        ("sms", {"body": "{{ v }}"}, "body"),
        ("push", {"title": "{{ v }}", "body": "{{ v }}", "data": {"k": "{{ v }}"}}, "title"),
        ("in_app", {"title": "{{ v }}", "body": "{{ v }}"}, "body"),
    ],
)
def test_sms_push_and_in_app_fields_are_not_escaped(
    channel: str, fields: dict[str, Any], field: str
) -> None:
    assert render(channel, fields, {"v": "<b>&"})[field] == "<b>&"


def test_html_captured_by_a_set_block_is_not_escaped_twice() -> None:
    fields = {"subject": "x", "html": "{% set x %}<b>{{ v }}</b>{% endset %}{{ x }}{{ v|e }}"}

    assert render("email", fields, {"v": "<i>"})["html"] == "<b>&lt;i&gt;</b>&lt;i&gt;"


# -- limits: output size


@pytest.mark.parametrize(("count", "refused"), [(10, False), (11, True)])
def test_output_is_limited_in_bytes(count: int, refused: bool) -> None:
    source = f"{{% for _ in range({count}) %}}x{{% endfor %}}"
    if refused:
        assert refusal(source, limits=Limits(output_bytes=10)) == (
            "template exceeds a limit: the output is longer than the limit of 10 bytes"
        )
    else:
        assert body(source, limits=Limits(output_bytes=10)) == "x" * count


def test_output_size_counts_utf8_bytes_not_characters() -> None:
    five = "{% for _ in range(5) %}é{% endfor %}"
    six = "{% for _ in range(6) %}é{% endfor %}"

    assert body(five, limits=Limits(output_bytes=10)) == "é" * 5
    assert refusal(six, limits=Limits(output_bytes=10)) == (
        "template exceeds a limit: the output is longer than the limit of 10 bytes"
    )


@pytest.mark.parametrize(("count", "refused"), [(10, False), (11, True)])
def test_captured_output_is_limited_too(count: int, refused: bool) -> None:
    source = f"{{% set x %}}{{% for _ in range({count}) %}}x{{% endfor %}}{{% endset %}}"
    source += "{{ x|length }}"
    if refused:
        assert refusal(source, limits=Limits(output_bytes=10)) == (
            "line 1: template exceeds a limit: captured output would be longer than the limit of "
            "10 characters"
        )
    else:
        assert body(source, limits=Limits(output_bytes=10)) == str(count)


@pytest.mark.parametrize(("right", "refused"), [(5, False), (6, True)])
def test_concatenation_is_limited(right: int, refused: bool) -> None:
    for operator in ("~", "+"):
        source = f"{{{{ ('x' * 5) {operator} ('y' * {right}) }}}}"
        if refused:
            assert refusal(source, limits=Limits(output_bytes=10)) == (
                "line 1: template exceeds a limit: a text would be longer than the limit of "
                "10 characters"
            )
        else:
            assert body(source, limits=Limits(output_bytes=10)) == "xxxxx" + "y" * right


def test_a_doubling_macro_is_refused_once_its_text_passes_the_limit() -> None:
    source = (
        "{% macro double(s, n) %}{{ double(s ~ s, n - 1) if n else s|length }}{% endmacro %}"
        "{{ double('ab', {n}) }}"
    )

    assert body(source.replace("{n}", "16")) == "131072"
    assert refusal(source.replace("{n}", "60")) == (
        "line 1: template exceeds a limit: a call's arguments would be longer than the limit of "
        "262144 characters"
    )


@pytest.mark.parametrize(("inner", "refused"), [(10, False), (100, True)])
def test_a_structure_weighs_every_reference_so_nesting_cannot_hide_its_size(
    inner: int, refused: bool
) -> None:
    source = (
        "{% set s = 'x' * 100 %}{% set a = [s] * {n} %}{% set b = [a] * {n} %}"
        "{{ b|length }} {{ b == b }}"
    ).replace("{n}", str(inner))
    if refused:
        assert refusal(source) == (
            "line 1: template exceeds a limit: a value would be longer than the limit of "
            "262144 characters"
        )
    else:
        assert body(source) == "10 True"


@pytest.mark.parametrize(("count", "refused"), [(20, False), (30, True)])
def test_a_macros_arguments_are_limited_so_varargs_cannot_multiply(
    count: int, refused: bool
) -> None:
    arguments = ", ".join(["s"] * count)
    source = (
        "{% set s = 'x' * 10000 %}{% macro m() %}{{ varargs|length }}{% endmacro %}"
        f"{{{{ m({arguments}) }}}}"
    )
    if refused:
        assert refusal(source) == (
            "line 1: template exceeds a limit: a call's arguments would be longer than the limit "
            "of 262144 characters"
        )
    else:
        assert body(source) == str(count)


@pytest.mark.parametrize(("separator", "refused"), [(96, False), (97, True)])
def test_join_is_refused_before_it_builds_a_text_over_the_limit(
    separator: int, refused: bool
) -> None:
    source = f"{{{{ ['ab', 'cd']|join('-' * {separator}) }}}}"
    if refused:
        assert refusal(source, limits=Limits(output_bytes=100)) == (
            "line 1: template exceeds a limit: join would make more than the limit of "
            "100 characters"
        )
    else:
        assert body(source, limits=Limits(output_bytes=100)) == "ab" + "-" * separator + "cd"


@pytest.mark.parametrize(("width", "refused"), [(25, False), (26, True)])
def test_replace_is_refused_before_it_builds_a_text_over_the_limit(
    width: int, refused: bool
) -> None:
    source = f"{{{{ 'aaaa'|replace('a', 'b' * {width}) }}}}"
    if refused:
        assert refusal(source, limits=Limits(output_bytes=100)) == (
            "line 1: template exceeds a limit: replace would make 104 characters, over the limit "
            "of 100"
        )
    else:
        assert body(source, limits=Limits(output_bytes=100)) == "b" * 100


@pytest.mark.parametrize(("width", "refused"), [(100, False), (101, True)])
def test_percent_formatting_widths_are_limited(width: int, refused: bool) -> None:
    source = f"{{{{ '%{width}s' % 'x' }}}}"
    if refused:
        assert refusal(source, limits=Limits(output_bytes=100)) == (
            "line 1: template exceeds a limit: % formatting pads to 101 characters, over the "
            "limit of 100"
        )
    else:
        assert body(source, limits=Limits(output_bytes=100)) == "x"  # the SMS body is trimmed


def test_percent_formatting_widths_taken_from_the_arguments_are_refused() -> None:
    assert refusal("{{ '%*s' % (999999999, 'x') }}") == (
        "line 1: template exceeds a limit: '*' widths are not allowed in % formatting"
    )


def test_sum_refuses_to_add_up_lists() -> None:
    assert refusal("{{ [[1], [2]]|sum(start=[]) }}") == (
        "line 1: template exceeds a limit: sum() only adds numbers"
    )


@pytest.mark.parametrize(("length", "refused"), [(200, False), (201, True)])
def test_strftime_formats_are_limited(length: int, refused: bool) -> None:
    source = f"{{{{ when.strftime('x' * {length})|length }}}}"
    if refused:
        assert refusal(source) == (
            "line 1: template exceeds a limit: a strftime format may have at most 200 characters"
        )
    else:
        assert body(source) == "200"


# -- limits: range, repetition, integers


@pytest.mark.parametrize(
    ("source", "expected"),
    [("{{ range(5)|list }}", "[0, 1, 2, 3, 4]"), ("{{ range(0, 10, 2)|list }}", "[0, 2, 4, 6, 8]")],
)
def test_a_range_within_the_limit_renders(source: str, expected: str) -> None:
    assert body(source, limits=Limits(range_size=5)) == expected


@pytest.mark.parametrize(
    ("source", "numbers"), [("{{ range(6)|list }}", "6"), ("{{ range(10**30) }}", str(10**30))]
)
def test_a_range_over_the_limit_is_refused(source: str, numbers: str) -> None:
    assert refusal(source, limits=Limits(range_size=5)) == (
        f"line 1: template exceeds a limit: range() would make {numbers} numbers, over the limit "
        "of 5"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [("{{ 'ab' * 5 }}", "ab" * 5), ("{{ 5 * 'ab' }}", "ab" * 5), ("{{ [0] * 10 }}", str([0] * 10))],
)
def test_repetition_within_the_limit_renders(source: str, expected: str) -> None:
    assert body(source, limits=Limits(repeat_size=10)) == expected


@pytest.mark.parametrize(
    ("source", "items"), [("{{ 'ab' * 6 }}", 12), ("{{ 6 * 'ab' }}", 12), ("{{ [0] * 11 }}", 11)]
)
def test_repetition_over_the_limit_is_refused_before_it_is_built(source: str, items: int) -> None:
    assert refusal(source, limits=Limits(repeat_size=10)) == (
        f"line 1: template exceeds a limit: repeating makes {items} items, over the limit of 10"
    )


def test_a_power_up_to_the_printable_integer_size_renders() -> None:
    assert body("{{ (2 ** 14284)|string|length }}") == "4300"


def test_a_power_past_the_printable_integer_size_is_refused_before_it_is_computed() -> None:
    assert refusal("{{ 2 ** 14285 }}") == (
        "line 1: template exceeds a limit: a power would have more than 4300 digits"
    )
    assert refusal("{{ 10 ** (10 ** 10) }}") == (
        "line 1: template exceeds a limit: a power would have more than 4300 digits"
    )


def test_an_integer_product_past_the_printable_size_is_refused() -> None:
    assert body("{{ ((2 ** 7141) * (2 ** 7141))|string|length }}") == "4300"
    assert refusal("{{ (2 ** 7142) * (2 ** 7142) }}") == (
        "line 1: template exceeds a limit: a product would have more than 4300 digits"
    )


# -- limits: time


def test_nested_loops_within_the_time_limit_render() -> None:
    source = "{% for a in range(10) %}{% for b in range(10) %}{% for c in range(10) %}"
    source += "{% endfor %}{% endfor %}{% endfor %}done"

    assert body(source) == "done"


@pytest.mark.parametrize(
    "source",
    [
        # a billion iterations that print nothing
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        # over bounded strings
        "{% set s = 'x' * 1000 %}{% for a in s %}{% for b in s %}{% for c in s %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        # with an inline filter that skips every item
        "{% set s = 'x' * 1000 %}{% for a in s %}{% for b in s %}{% for c in s if false %}"
        "{% endfor %}{% endfor %}{% endfor %}",
        # 2**60 macro calls
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        # 30**30 recursive loop iterations
        "{% for x in range(30) recursive %}{% if loop.depth < 30 %}{{ loop(range(30)) }}"
        "{% endif %}{% endfor %}",
        # in a scoped block, which runs in a context of its own
        "{% block b scoped %}{% for a in range(1000) %}{% for b in range(1000) %}"
        "{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}{% endblock %}",
    ],
)
def test_a_template_that_would_run_for_minutes_is_refused_on_time(source: str) -> None:
    assert refusal(source, limits=FOR_MINUTES) == (
        "line 1: template exceeds a limit: rendering took longer than the limit of 0.01 seconds"
    )


def test_endless_recursion_is_refused() -> None:
    # A generous time limit, so the recursion limit is what stops it even on a busy machine
    # (at the default 0.2 s a loaded CI box hit the time limit first).
    source = "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
    assert refusal(source, limits=Limits(seconds=30)) == ("line 1: template recursion is too deep")


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^Limits.seconds must be positive, got 0$"):
        Limits(seconds=0)


def test_the_same_template_renders_under_each_callers_own_limits() -> None:
    source = "{{ range(6)|list|length }}"

    assert refusal(source, limits=Limits(range_size=5)) == (
        "line 1: template exceeds a limit: range() would make 6 numbers, over the limit of 5"
    )
    assert body(source) == "6"
