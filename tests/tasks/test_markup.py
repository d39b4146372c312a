"""The one escaping helper and the safe-markup type the HTML pages are built with."""
from __future__ import annotations

from avssl.tasks.markup import Markup, escape, join, markup, tag


def test_values_are_escaped_and_markup_passes_once():
    text = "<b>\"Tom\" & 'Jerry'</b>"
    assert escape(text) == "&lt;b&gt;&quot;Tom&quot; &amp; &#x27;Jerry&#x27;&lt;/b&gt;"
    assert escape(escape(text)) == escape(text)  # Markup is never escaped twice
    assert isinstance(escape(3), Markup) and escape(None) == "None"


def test_templates_fill_escaped_values_and_keep_number_formats():
    assert markup('<td class="num">{:.2f}</td>', 2.5) == '<td class="num">2.50</td>'
    assert markup("<p>{}</p>", "<i>") == "<p>&lt;i&gt;</p>"
    assert markup("<p>{}</p>", Markup("<i>x</i>")) == "<p><i>x</i></p>"
    assert markup("<p>{name}</p>", name="a&b") == "<p>a&amp;b</p>"


def test_tags_and_joins_escape_content_and_attributes():
    cell = tag("td", '"<x>"', class_='a" onclick="y')
    assert cell == '<td class="a&quot; onclick=&quot;y">&quot;&lt;x&gt;&quot;</td>'
    assert join(["<a>", Markup("<br>")], separator=", ") == "&lt;a&gt;, <br>"
    assert isinstance(join([]), Markup) and isinstance(tag("p"), Markup)
