"""Rendered email HTML: click tracking, the open pixel, and a plain-text version.

All three read the document with ``html.parser`` (what the browser-ish tokenizer calls a tag
is what we treat as one) and splice changes into the original text by position, so the rest
of the document stays byte-for-byte as rendered.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from html import escape, unescape
from html.parser import HTMLParser

_TRACKED_SCHEMES = ("http://", "https://")


class _Positions(HTMLParser):
    """Turns ``getpos()`` (line, column) into offsets in the fed document."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.document = document
        # html.parser counts lines by "\n" alone.
        lengths = (len(line) + 1 for line in document.split("\n"))
        self.line_starts = [0, *itertools.accumulate(lengths)]

    def position(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def parse(self) -> None:
        self.feed(self.document)
        self.close()


class _AnchorFinder(_Positions):
    def __init__(self, document: str) -> None:
        super().__init__(document)
        # (offset, raw start tag text, parsed attributes)
        self.anchors: list[tuple[int, str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text()
        if tag == "a" and raw is not None:
            self.anchors.append((self.position(), raw, attrs))


def links_track(html: str, tracked_url: Callable[[int, str], str]) -> tuple[str, list[str]]:
    """Point every http(s) ``<a href>`` at ``tracked_url(index, original_url)``.

    Returns the new HTML and the original URLs in index order; a URL that appears twice
    keeps its first index. ``mailto:``, ``tel:``, ``#anchors``, other schemes and links
    marked ``data-notrack`` are left alone. Only the ``href`` value of a rewritten tag changes.
    """
    finder = _AnchorFinder(html)
    finder.parse()
    return _links_splice(html, finder.anchors, tracked_url)


def links_track_with_text(
    html: str, tracked_url: Callable[[int, str], str]
) -> tuple[str, list[str], str]:
    """``links_track`` and ``text_from_html`` of the same document in one parse (the send
    path's hot spot): the tracked HTML, the original URLs, and the plain text (with the
    original URLs)."""
    parser = _AnchorsAndText(html)
    parser.feed(html)
    parser.close()
    tracked, urls = _links_splice(html, parser.anchors, tracked_url)
    return tracked, urls, _text_join(parser.parts)


_Anchor = tuple[int, str, list[tuple[str, str | None]]]


def _links_splice(
    html: str, anchors: list[_Anchor], tracked_url: Callable[[int, str], str]
) -> tuple[str, list[str]]:
    indexes: dict[str, int] = {}
    pieces: list[str] = []
    done = 0
    for start, raw, attrs in anchors:
        names = {name for name, _ in attrs}
        url = next((value for name, value in attrs if name == "href"), None)
        if url is None or "data-notrack" in names or html[start : start + len(raw)] != raw:
            continue
        url = url.strip()
        if not url.lower().startswith(_TRACKED_SCHEMES):
            continue
        index = indexes.setdefault(url, len(indexes))
        pieces += [html[done:start], _href_replace(raw, attrs, tracked_url(index, url))]
        done = start + len(raw)
    pieces.append(html[done:])
    return "".join(pieces), list(indexes)


def _href_replace(raw: str, attrs: list[tuple[str, str | None]], url: str) -> str:
    quoted = f'"{escape(url, quote=True)}"'
    span = _attribute_value_span(raw, "href")
    parsed = next(value for name, value in attrs if name == "href")
    if span is not None and unescape(raw[span[0] : span[1]].strip("\"'")) == parsed:
        return raw[: span[0]] + quoted + raw[span[1] :]
    # Our tokenizer read the tag differently from html.parser (malformed markup): write the
    # tag out again from what html.parser understood rather than leave the link untracked.
    rebuilt = [
        f'{name}="{escape(url, quote=True) if name == "href" else escape(value or "")}"'
        for name, value in attrs
    ]
    closing = "/>" if raw.endswith("/>") else ">"
    return f"<a {' '.join(rebuilt)}{closing}"


def _attribute_value_span(tag: str, wanted: str) -> tuple[int, int] | None:
    """Where the value (quotes included) of the first ``wanted`` attribute is in ``tag``."""
    end = len(tag)
    i = 1
    while i < end and not tag[i].isspace() and tag[i] not in "/>":
        i += 1  # the tag name
    while i < end:
        while i < end and (tag[i].isspace() or tag[i] == "/"):
            i += 1
        if i >= end or tag[i] == ">":
            return None
        name_start = i
        while i < end and not tag[i].isspace() and tag[i] not in "/>=":
            i += 1
        name = tag[name_start:i].lower()
        j = i
        while j < end and tag[j].isspace():
            j += 1
        if j >= end or tag[j] != "=":
            if name == wanted:
                return None
            i = j
            continue
        j += 1
        while j < end and tag[j].isspace():
            j += 1
        value_start = j
        if j < end and tag[j] in "\"'":
            close = tag.find(tag[j], j + 1)
            j = end if close == -1 else close + 1
        else:
            while j < end and not tag[j].isspace() and tag[j] != ">":
                j += 1
        if name == wanted:
            return value_start, j
        i = j
    return None


class _BodyEndFinder(_Positions):
    def __init__(self, document: str) -> None:
        super().__init__(document)
        self.body_end: int | None = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self.position()


def open_pixel_add(html: str, pixel_url: str) -> str:
    """Add a 1x1 tracking image before the last ``</body>``, or at the end without one."""
    pixel = (
        f'<img src="{escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    # The last "</body" is the document's end tag: nothing a template renders after it
    # would be displayed anyway, so a search is as good as a parse here, and cheaper.
    end = html.lower().rfind("</body")
    if end < 0:
        return html + pixel
    return html[:end] + pixel + html[end:]


_SKIPPED = frozenset({"head", "script", "style", "template", "title"})
_PARAGRAPHS = frozenset(
    {
        "address", "article", "aside", "blockquote", "div", "dl", "fieldset", "figure",
        "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav",
        "ol", "p", "pre", "section", "table", "ul",
    }
)  # fmt: skip
_LINES = frozenset({"br", "dd", "dt", "figcaption", "li", "tr"})
_SPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.links: list[tuple[str | None, int]] = []  # (href, where its label starts)
        # Text ends with a URL we wrote: a word or link right after it needs a space.
        self.after_url = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag in _LINES:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            if self.after_url:
                self.parts.append(" ")
                self.after_url = False
            href = next((value for name, value in attrs if name == "href"), None)
            self.links.append((href, len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(self.skipping - 1, 0)
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag == "a" and self.links:
            href, label_start = self.links.pop()
            url = (href or "").strip()
            label = _SPACE.sub(" ", "".join(self.parts[label_start:])).strip()
            if url.lower().startswith(_TRACKED_SCHEMES):
                if label != url:
                    self.parts.append(f" ({url})" if label else url)
                self.after_url = True

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        text = _SPACE.sub(" ", data)
        if self.after_url and text[:1].isalnum():
            text = " " + text
        self.after_url = self.after_url and not text
        self.parts.append(text)


class _AnchorsAndText(_TextExtractor):
    """The text extractor that also records the anchors' positions, as ``_AnchorFinder``."""

    def __init__(self, document: str) -> None:
        super().__init__()
        lengths = (len(line) + 1 for line in document.split("\n"))
        self.line_starts = [0, *itertools.accumulate(lengths)]
        self.anchors: list[_Anchor] = []

    def _anchor(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text()
        if tag == "a" and raw is not None:
            line, column = self.getpos()
            self.anchors.append((self.line_starts[line - 1] + column, raw, attrs))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._anchor(tag, attrs)
        super().handle_starttag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._anchor(tag, attrs)
            return
        super().handle_startendtag(tag, attrs)


def text_from_html(html: str) -> str:
    """A readable plain-text version of an HTML email: paragraphs, list items, link URLs."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return _text_join(extractor.parts)


def _text_join(parts: list[str]) -> str:
    kept: list[str] = []
    for line in "".join(parts).split("\n"):
        line = line.strip()
        # At most one blank line in a row: paragraphs are separated, never spaced out.
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()
