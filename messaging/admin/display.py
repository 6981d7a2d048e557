"""Rendered content as the admin shows it: one row per field, email HTML in a sandboxed
frame, SMS with its encoding and segment count, and stored email stripped of its tracking."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from html import escape
from typing import Any, Final

from django.conf import settings
from django.template.loader import render_to_string

from messaging.rendering import CHANNEL_FIELDS, RenderError, SmsSegments, sms_segments
from messaging.tracking import BadTrackingToken, click_read

#: Multi-line fields, shown as preformatted text.
_BLOCK_FIELDS: Final = frozenset({"text", "body"})


@dataclasses.dataclass(frozen=True, slots=True)
class RenderedField:
    name: str
    kind: str  # "html" (sandboxed frame) | "block" (preformatted) | "line"
    value: str


def rendered_fields(channel: str, rendered: Mapping[str, Any]) -> list[RenderedField]:
    """The channel's fields in their usual order, then anything else stored (headers)."""
    names = [
        *CHANNEL_FIELDS.get(channel, ()),
        *sorted(set(rendered) - set(CHANNEL_FIELDS.get(channel, ()))),
    ]
    rows = []
    for name in names:
        value = rendered.get(name, "")
        if name == "html" and channel == "email":
            rows.append(RenderedField(name, "html", str(value)))
        elif not isinstance(value, str):
            rows.append(RenderedField(name, "block", json.dumps(value, indent=2, sort_keys=True)))
        else:
            rows.append(RenderedField(name, "block" if name in _BLOCK_FIELDS else "line", value))
    return rows


def sms_info(channel: str, rendered: Mapping[str, Any]) -> SmsSegments | None:
    if channel != "sms":
        return None
    return sms_segments(str(rendered.get("body", "")))


def rendered_panel(
    channel: str,
    rendered: Mapping[str, Any],
    *,
    error: RenderError | None = None,
    empty: str = "Nothing rendered.",
) -> str:
    """The shared panel: rendered fields, SMS segments, or the render error."""
    return render_to_string(
        "admin/messaging/rendered.html",
        {
            "fields": [] if error else rendered_fields(channel, rendered),
            "sms": None if error else sms_info(channel, rendered),
            "error": error,
            "empty": empty,
        },
    )


def _tracking_pattern(kind: str) -> re.Pattern[str]:
    base = re.escape(escape(settings.PUBLIC_BASE_URL, quote=True))
    # Up to the end of the attribute value; an open pixel's address ends in ".gif".
    token = r"(?P<token>[^\"'\s<>]+?)\.gif" if kind == "o" else r"(?P<token>[^\"'\s<>]+)"
    return re.compile(rf"{base}/m/{kind}/{token}")


def html_untracked(html: str, links: Any) -> str:
    """Stored email HTML without its tracking: the open pixel's address emptied and each
    click redirect pointed back at its original URL. Showing the stored HTML as it is would
    record an open (and clicks) for every look a colleague takes at it."""
    originals = [url for url in links if isinstance(url, str)] if isinstance(links, list) else []

    def original(found: re.Match[str]) -> str:
        try:
            _, index = click_read(found["token"])
        except BadTrackingToken:
            return ""
        return escape(originals[index], quote=True) if 0 <= index < len(originals) else ""

    html = _tracking_pattern("o").sub("", html)
    return _tracking_pattern("c").sub(original, html)
