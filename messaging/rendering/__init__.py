"""Message templates: rendering per channel, and what is done to rendered email and SMS.

Pure (no ORM, no settings). Templates are Jinja2 run in a sandbox with resource limits:
``sandbox.py`` explains what a template can reach and how size and time are bounded, and
``limits.py`` holds the limits. ``fields.py`` knows each channel's fields; ``email_html.py``
rewrites rendered HTML for click and open tracking and derives a plain-text version;
``sms.py`` counts SMS segments.

Template language, in short: Jinja2 with ``trim_blocks``/``lstrip_blocks``, strict undefined
variables (use ``|default`` for optional data), ``None`` printed as nothing, HTML escaping in
the email ``html`` field only (there is no ``|safe``: customer data is never trusted as
HTML). Filters: ``SAFE_FILTERS``; methods: ``SAFE_METHODS``; globals: ``range`` (bounded),
``dict``, ``cycler``, ``joiner``, ``namespace``; no ``include``/``extends``/``import``.
"""

from messaging.rendering.email_html import (
    links_track,
    links_track_with_text,
    open_pixel_add,
    text_from_html,
)
from messaging.rendering.errors import RenderError
from messaging.rendering.fields import (
    CHANNEL_FIELDS,
    REQUIRED_FIELDS,
    fields_validate,
    render,
    variant_for,
)
from messaging.rendering.limits import Limits
from messaging.rendering.sandbox import SAFE_FILTERS, SAFE_METHODS
from messaging.rendering.sms import SmsSegments, sms_segments

__all__ = [
    "CHANNEL_FIELDS",
    "REQUIRED_FIELDS",
    "SAFE_FILTERS",
    "SAFE_METHODS",
    "Limits",
    "RenderError",
    "SmsSegments",
    "fields_validate",
    "links_track",
    "links_track_with_text",
    "open_pixel_add",
    "render",
    "sms_segments",
    "text_from_html",
    "variant_for",
]
