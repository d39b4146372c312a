"""Safe HTML for the static pages: every value is escaped unless the code itself built it as markup.

`Markup` marks text that is already HTML (made by `markup`, `tag` or `join` from escaped parts);
`escape` is the one escaping helper, and it leaves `Markup` alone. So a value that came from a
file, a manifest or a gallery (a path such as ``<img src=x onerror=alert(1)>``) can only ever land
on a page escaped, whatever its first character: markup is a type, not a prefix.
"""
from __future__ import annotations

import html
from typing import Iterable


class Markup(str):
    """HTML that the code built itself from escaped parts; inserted into pages as it is."""


def escape(value: object) -> Markup:
    """`value` as HTML text, safe in content and in double-quoted attributes; Markup unchanged."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _filled(value: object) -> object:
    """A template argument: numbers stay numbers (so format specs such as ``{:.2f}`` work), the rest
    is escaped."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return escape(value)


def markup(template: str, *values: object, **named: object) -> Markup:
    """`template` (HTML written in the code) filled by `str.format` with `values` escaped."""
    return Markup(template.format(*map(_filled, values), **{k: _filled(v) for k, v in named.items()}))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """The parts one after another, each escaped unless it is Markup."""
    return Markup(escape(separator).join(escape(part) for part in parts))


def tag(name: str, content: object = "", **attributes: object) -> Markup:
    """``<name attr="...">content</name>`` with the content and the attribute values escaped;
    ``class_`` gives the ``class`` attribute."""
    attrs = "".join(markup(' {}="{}"', key.rstrip("_"), value) for key, value in attributes.items())
    return markup("<{}{}>{}</{}>", name, Markup(attrs), content, name)
