"""Pure tests of what is done to rendered email HTML: click tracking, open pixel, plain text."""

from __future__ import annotations

import pytest

from messaging.rendering import links_track, links_track_with_text, open_pixel_add, text_from_html


def tracked(index: int, url: str) -> str:
    return f"https://t.io/c/{index}?m=7&u=1"


TRACKED_0 = "https://t.io/c/0?m=7&amp;u=1"
TRACKED_1 = "https://t.io/c/1?m=7&amp;u=1"

# -- links_track


def test_a_link_is_pointed_at_its_tracked_url_and_the_original_is_returned_unescaped() -> None:
    html = '<p><a class="btn" href="https://ex.com/x?a=1&amp;b=2">Go</a></p>'

    assert links_track(html, tracked) == (
        f'<p><a class="btn" href="{TRACKED_0}">Go</a></p>',
        ["https://ex.com/x?a=1&b=2"],
    )


def test_the_tracked_url_is_called_with_the_index_and_the_original_url() -> None:
    calls: list[tuple[int, str]] = []

    def record(index: int, url: str) -> str:
        calls.append((index, url))
        return "https://t.io"

    links_track('<a href="https://a.com">a</a><a href="https://b.com">b</a>', record)

    assert calls == [(0, "https://a.com"), (1, "https://b.com")]


def test_the_same_url_twice_keeps_its_first_index() -> None:
    html = '<a href="https://a.com">1</a><a href="https://b.com">2</a><a href="https://a.com">3</a>'

    assert links_track(html, tracked) == (
        f'<a href="{TRACKED_0}">1</a><a href="{TRACKED_1}">2</a><a href="{TRACKED_0}">3</a>',
        ["https://a.com", "https://b.com"],
    )


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="mailto:help@ex.com">Mail</a>',
        '<a href="tel:+14155550100">Call</a>',
        '<a href="#top">Top</a>',
        '<a href="/relative">Rel</a>',
        '<a href="javascript:void(0)">JS</a>',
        '<a href="ftp://ex.com/f">FTP</a>',
        "<a name=top>Anchor</a>",
        "<a href>Empty</a>",
        '<a href="https://ex.com/u" data-notrack>Unsubscribe</a>',
        '<a data-notrack="true" href="https://ex.com/u">Unsubscribe</a>',
        '<!-- <a href="https://ex.com/c">In a comment</a> -->',
        "<script>var a = '<a href=\"https://ex.com/s\">';</script>",
    ],
)
def test_links_that_are_not_http_or_are_marked_notrack_are_left_alone(anchor: str) -> None:
    html = f"<p>{anchor}</p>"

    assert links_track(html, tracked) == (html, [])


@pytest.mark.parametrize(
    ("anchor", "rewritten", "url"),
    [
        ("<a href='https://a.com'>x</a>", f'<a href="{TRACKED_0}">x</a>', "https://a.com"),
        ("<a href=https://a.com>x</a>", f'<a href="{TRACKED_0}">x</a>', "https://a.com"),
        ('<A HREF="HTTPS://A.COM">x</A>', f'<A HREF="{TRACKED_0}">x</A>', "HTTPS://A.COM"),
        ('<a href="http://a.com">x</a>', f'<a href="{TRACKED_0}">x</a>', "http://a.com"),
        ('<a href="  https://a.com  ">x</a>', f'<a href="{TRACKED_0}">x</a>', "https://a.com"),
        ('<a\n  title="a href=x"\n  href = "https://a.com"\n>x</a>',
         f'<a\n  title="a href=x"\n  href = "{TRACKED_0}"\n>x</a>', "https://a.com"),
        ('<a data-href="https://z.com" href="https://a.com">x</a>',
         f'<a data-href="https://z.com" href="{TRACKED_0}">x</a>', "https://a.com"),
        ('<a href="https://a.com" href="https://b.com">x</a>',
         f'<a href="{TRACKED_0}" href="https://b.com">x</a>', "https://a.com"),
        ('<a href="https://a.com"/>', f'<a href="{TRACKED_0}"/>', "https://a.com"),
        ('<a href="https://ü.com/ö">ü</a>', f'<a href="{TRACKED_0}">ü</a>', "https://ü.com/ö"),
    ],
)  # fmt: skip
def test_only_the_href_value_of_a_tracked_link_changes(
    anchor: str, rewritten: str, url: str
) -> None:
    assert links_track(anchor, tracked) == (rewritten, [url])


def test_the_rest_of_the_document_is_kept_byte_for_byte() -> None:
    head = (
        "<!DOCTYPE html>\n<html><head><meta charset=utf-8><style>a{color:red}</style></head>\n"
        "<body>\n  <!-- note -->\n<p>caf&eacute; &amp; <b>bold</b>\r\n"
    )
    middle = '">x</a> <img src="https://ex.com/i.png" alt=""><br/>\n  <a href="'
    tail = '" target=_blank>y</a></p>\n</body></html>\n'
    html = f'{head}<a href="https://a.com/1{middle}https://a.com/2{tail}'

    rewritten, urls = links_track(html, tracked)

    assert rewritten == f'{head}<a href="{TRACKED_0}{middle}{TRACKED_1}{tail}'
    assert urls == ["https://a.com/1", "https://a.com/2"]


def test_a_document_without_links_is_unchanged() -> None:
    assert links_track("<p>No links</p>", tracked) == ("<p>No links</p>", [])


# -- open_pixel_add

PIXEL = (
    '<img src="https://t.io/o/7?a=1&amp;b=&quot;2&quot;" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px">'
)


def test_the_open_pixel_goes_before_the_end_of_the_body_with_its_url_escaped() -> None:
    html = "<html><body><p>Hi</p></body></html>"

    assert open_pixel_add(html, 'https://t.io/o/7?a=1&b="2"') == (
        f"<html><body><p>Hi</p>{PIXEL}</body></html>"
    )


def test_the_open_pixel_goes_before_the_last_real_end_of_body_whatever_its_case() -> None:
    html = "<html><BODY><p>Hi</p><!-- </body> --></BODY>\n</html>"

    assert open_pixel_add(html, 'https://t.io/o/7?a=1&b="2"') == (
        f"<html><BODY><p>Hi</p><!-- </body> -->{PIXEL}</BODY>\n</html>"
    )


def test_the_open_pixel_is_appended_to_a_fragment_without_a_body() -> None:
    assert open_pixel_add("<p>Hi</p>", 'https://t.io/o/7?a=1&b="2"') == f"<p>Hi</p>{PIXEL}"


# -- text_from_html


def test_the_text_version_keeps_paragraphs_list_items_and_link_urls() -> None:
    html = """<html><head><title>Title</title><style>p { color: red }</style></head><body>
    <h1>Hello&nbsp;Ana</h1>
    <p>First   paragraph
       continues <a href="https://ex.com/a">here</a>.</p>
    <ul><li>One</li><li>Two</li></ul>
    <p>Line one<br>Line two</p>
    <table><tr><td>Cell a</td><td>Cell b</td></tr></table>
    <script>alert(1)</script>
    </body></html>"""

    assert text_from_html(html) == (
        "Hello Ana\n\nFirst paragraph continues here (https://ex.com/a).\n\n- One\n- Two\n\n"
        "Line one\nLine two\n\nCell a Cell b"
    )


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://ex.com">https://ex.com</a>', "https://ex.com"),
        ('<a href="https://ex.com"><img src="logo.png" alt="Logo"></a>', "https://ex.com"),
        ('<a href="mailto:help@ex.com">Write to us</a>', "Write to us"),
        ('<a href="#top">Back to top</a>', "Back to top"),
        ("<p>a &lt; b &amp;&amp; c</p>", "a < b && c"),
        ('<a href="https://a.com">A</a><a href="https://b.com">B</a>and more',
         "A (https://a.com) B (https://b.com) and more"),
        ('See <a href="https://a.com">this</a>.', "See this (https://a.com)."),
        ("", ""),
    ],
)  # fmt: skip
def test_the_text_version_shows_a_link_url_once_and_only_for_web_links(
    html: str, text: str
) -> None:
    assert text_from_html(html) == text


@pytest.mark.parametrize(
    "html",
    [
        '<p>Hi <a href="https://a.example/x">there</a></p><a href="https://b.example">b</a>',
        "<html><head><title>T</title><style>p{}</style></head><body><ul><li>one "
        '<a href="https://a.example/1?x=1&amp;y=2">1</a></li><li>'
        '<a href="mailto:x@example.com">mail</a></li></ul></body></html>',
        '<a href="https://a.example" data-notrack>kept</a><a/><a href="https://a.example">again'
        '</a>\n<table><tr><td>x</td><td><a href="https://c.example/é">c</a></td></tr></table>',
        "<p>no links at all &amp; entities &lt;here&gt;</p>",
        '<p>line one<br>line two <a href="  https://d.example/ ">https://d.example/</a></p>',
    ],
)
def test_tracking_with_text_in_one_parse_equals_the_two_separate_passes(html: str) -> None:
    def tracked(index: int, url: str) -> str:
        return f"https://t.example/{index}"

    assert links_track_with_text(html, tracked) == (
        *links_track(html, tracked),
        text_from_html(html),
    )
