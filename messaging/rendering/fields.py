"""A message's fields per channel: which exist, which are required, how each is rendered."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from messaging.rendering.email_html import text_from_html
from messaging.rendering.errors import RenderError
from messaging.rendering.limits import Limits
from messaging.rendering.sandbox import template_compile, template_render

CHANNEL_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "email": ("subject", "preheader", "html", "text"),
        "sms": ("body",),
        "push": ("title", "body", "deep_link", "data"),
        "in_app": ("title", "body", "cta_label", "cta_url"),
    }
)

REQUIRED_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "email": frozenset({"subject", "html"}),
        "sms": frozenset({"body"}),
        "push": frozenset({"body"}),
        "in_app": frozenset({"title", "body"}),
    }
)

# Rendered as one line: whitespace, newlines included, collapses to single spaces.
_ONE_LINE_FIELDS = frozenset({"subject", "preheader", "title", "cta_label"})
_URL_FIELDS = frozenset({"deep_link", "cta_url"})
_UNSAFE_URL_SCHEMES = frozenset({"javascript", "data", "vbscript", "file"})
_JSON_SCALARS = (str, int, float, bool, type(None))


def fields_validate(channel: str, fields: Mapping[str, Any]) -> None:
    """Check that ``fields`` suit ``channel``: known names, required ones present, right
    types, and every template compiles. Raises ``RenderError`` for the first problem."""
    names = CHANNEL_FIELDS.get(channel)
    if names is None:
        raise RenderError("channel", f"unknown channel {channel!r}")
    for name in fields:
        if name not in names:
            raise RenderError(name, f"not a field of {channel} messages ({', '.join(names)})")
    for name in names:
        value = fields.get(name)
        if name == "data":
            _data_validate(channel, value)
            continue
        if value is not None and not isinstance(value, str):
            raise RenderError(name, f"must be text, not {type(value).__name__}")
        if name in REQUIRED_FIELDS[channel] and not (value or "").strip():
            raise RenderError(name, "is required")
        if value:
            _compile(channel, name, value)
    if channel == "in_app" and bool(fields.get("cta_label")) != bool(fields.get("cta_url")):
        missing = "cta_url" if fields.get("cta_label") else "cta_label"
        raise RenderError(missing, "a call to action needs both a label and a URL")


def render(
    channel: str,
    fields: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    limits: Limits = Limits(),  # noqa: B008 -- frozen, so one shared default is safe
    text_version: bool = True,
    validate: bool = True,
) -> dict[str, Any]:
    """Render every field of a ``channel`` message with ``context``; return them by name.

    Every field of the channel is in the result (an absent optional one as "" or, for push
    ``data``, {}). An email whose ``text`` is blank gets one made from the rendered HTML.
    A required field that renders blank, a URL field that renders an unsafe URL, or any
    template failure raises ``RenderError``: there is never a blank send. ``text_version``
    False leaves a blank email ``text`` blank, for a caller that makes it from the HTML in
    its own pass (``links_track_with_text``). ``validate`` False skips ``fields_validate``
    for fields the caller has seen pass it (an immutable template version's).
    """
    if validate:
        fields_validate(channel, fields)
    rendered: dict[str, Any] = {}
    for name in CHANNEL_FIELDS[channel]:
        if name == "data":
            rendered[name] = _data_render(channel, fields.get(name) or {}, context, limits)
        else:
            rendered[name] = _field_render(channel, name, fields.get(name) or "", context, limits)
    if channel == "email" and text_version and not rendered["text"]:
        rendered["text"] = text_from_html(rendered["html"])
    for name in CHANNEL_FIELDS[channel]:
        if name in REQUIRED_FIELDS[channel] and not rendered[name].strip():
            raise RenderError(name, "rendered empty")
    return rendered


def _compile(channel: str, name: str, source: str, *, field: str | None = None) -> None:
    template_compile(
        source,
        field=field or name,
        name=f"{channel}.{name}",
        autoescape=(channel, name) == ("email", "html"),
        limits=Limits(),
    )


def _field_render(
    channel: str, name: str, source: str, context: Mapping[str, Any], limits: Limits
) -> str:
    if not source:
        return ""
    text = template_render(
        source,
        context,
        field=name,
        name=f"{channel}.{name}",
        autoescape=(channel, name) == ("email", "html"),
        limits=limits,
    )
    if name in _ONE_LINE_FIELDS:
        return " ".join(text.split())
    if name in _URL_FIELDS:
        return _url_check(name, text.strip())
    if name == "html":
        return text
    return text.strip()


def _url_check(name: str, url: str) -> str:
    if not url:
        return url
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise RenderError(name, f"rendered URL {url!r} contains whitespace or control characters")
    scheme = urlsplit(url).scheme.lower()
    if scheme in _UNSAFE_URL_SCHEMES:
        raise RenderError(name, f"rendered URL uses the unsafe scheme {scheme!r}")
    if not scheme and not url.startswith("/"):
        raise RenderError(name, f"rendered URL {url!r} is neither absolute nor a path")
    return url


def _data_validate(channel: str, data: Any, path: str = "data") -> None:
    if path == "data" and data is None:
        return
    if path == "data" and not isinstance(data, Mapping):
        raise RenderError("data", f"must be a JSON object, not {type(data).__name__}")
    if isinstance(data, Mapping):
        for key, value in data.items():
            if not isinstance(key, str):
                raise RenderError("data", f"{path} has a key that is not text: {key!r}")
            _data_validate(channel, value, f"{path}.{key}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _data_validate(channel, value, f"{path}[{index}]")
    elif not isinstance(data, _JSON_SCALARS):
        raise RenderError("data", f"{path} is not a JSON value: {type(data).__name__}")
    elif isinstance(data, str) and data:
        try:
            _compile(channel, path, data, field="data")
        except RenderError as error:
            raise RenderError("data", f"{path}: {error.message}") from None


def _data_render(
    channel: str, data: Any, context: Mapping[str, Any], limits: Limits, path: str = "data"
) -> Any:
    if isinstance(data, Mapping):
        return {
            key: _data_render(channel, value, context, limits, f"{path}.{key}")
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            _data_render(channel, value, context, limits, f"{path}[{index}]")
            for index, value in enumerate(data)
        ]
    if not isinstance(data, str) or not data:
        return data
    try:
        return template_render(
            data, context, field="data", name=f"{channel}.{path}", autoescape=False, limits=limits
        )
    except RenderError as error:
        raise RenderError("data", f"{path}: {error.message}") from error


def variant_for(
    variants: Mapping[str, Mapping[str, Any]], locale: str, default_locale: str
) -> tuple[str, Mapping[str, Any]]:
    """Pick the variant for ``locale``: the exact locale ("pt-BR"), else its language ("pt"),
    else ``default_locale`` (exact, then its language), else the first variant.

    Locales compare case-insensitively with "_" and "-" alike. Returns the variant's key as
    spelled in ``variants`` and its fields.
    """
    if not variants:
        raise RenderError("variants", "the message has no variants")
    by_locale: dict[str, str] = {}
    for key in variants:
        by_locale.setdefault(_locale_normalize(key), key)
    wanted = (locale, _language(locale), default_locale, _language(default_locale))
    for candidate in filter(None, map(_locale_normalize, wanted)):
        found = by_locale.get(candidate)
        if found is not None:
            return found, variants[found]
    first = next(iter(variants))
    return first, variants[first]


def _locale_normalize(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


def _language(locale: str) -> str:
    return _locale_normalize(locale).split("-", 1)[0]
