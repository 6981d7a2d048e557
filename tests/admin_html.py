"""Reading the admin's HTML (Unfold's theme) in tests: changelist cells, readonly fields and
sidebar links by their stable hooks (``field-<name>`` classes, hrefs), not by styling classes."""

from __future__ import annotations

import re

# A changelist cell: Django's field-<name> class first, then the theme's styling classes.
_CELL = re.compile(r'<(t[dh]) class="field-([\w-]+)(?: [^"]*)?"[^>]*>(.*?)</\1>', re.DOTALL)
# The theme's row link in a changelist's first column: styling classes after the href.
_STYLED_LINK = re.compile(r'(<a href="[^"]*") class="[^"]*" ?>')


def cells(html: str) -> list[tuple[str, str]]:
    """Each changelist cell as (field name, contents), in page order; the theme's styling
    classes on a row's change link are left out, so a link reads ``<a href="…">…</a>``."""
    return [(field, _STYLED_LINK.sub(r"\1>", body)) for _, field, body in _CELL.findall(html)]


def has_cells(html: str, *expected: tuple[str, str]) -> bool:
    """Whether the changelist has these cells side by side, in this order."""
    found = cells(html)
    size = len(expected)
    return any(tuple(found[at : at + size]) == expected for at in range(len(found) - size + 1))


def readonly(html: str, field: str) -> str:
    """The shown value of the readonly field ``field`` on a change page."""
    found = re.search(
        rf'<div class="[^"]*\bfield-{field}\b[^"]*"[^>]*>'
        r'.*?<div class="readonly\b[^"]*">(.*?)</div>',
        html,
        re.DOTALL,
    )
    assert found is not None, f"no readonly field {field!r}"
    return found[1]


def sidebar_links(html: str) -> list[tuple[str, str]]:
    """The sidebar navigation's links as (href, title)."""
    return re.findall(
        r'<a href="([^"]*)"[^>]*>\s*'
        r'(?:<span class="material-symbols-outlined[^"]*">[^<]*</span>\s*)?'
        r"<span>([^<]*)</span>",
        html,
    )


def error_notes(html: str) -> list[str]:
    """The texts of a change form's non-field error notes, whitespace collapsed."""
    return [
        " ".join(note.split())
        for note in re.findall(r'<div class="errornote [^"]*">(.*?)</div>', html, re.DOTALL)
    ]
