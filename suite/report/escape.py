"""Escaping for text that comes from results (ids, reasons, provenance): it must render as text.

Markdown: a table cell must stay one cell on one line and must not become markup, links or raw HTML.
HTML: `html.escape` with quotes, so values are safe in text and in attributes.
"""

from __future__ import annotations

import html
import re

_MD_ALWAYS = re.compile(r"([\\`*|~])")
_MD_BRACKETS = re.compile(r"([\[\]])")
_MD_LINKISH = re.compile(r"\]\s*[(\[:]")  # [text](url), [text][ref], [ref]: url
_MD_HEADING = re.compile(r"^(\s*)(#+)(?=\s|$)|(#+)\s*$")
# `_` only makes emphasis at a word boundary; leaving intraword ones keeps ids like off_none readable.
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MD_SAFE = re.compile(r"[0-9A-Za-z .,:;()/+=%@'\"-]*")  # nothing to escape: the common case, fast
_NEWLINES = re.compile(r"[\r\n\u2028\u2029\x0b\x0c]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def one_line(text: str) -> str:
    return _CONTROL.sub("", _NEWLINES.sub(" ", text)).strip()


def md(text: object, *, cell: bool = False) -> str:
    """Escape a value for GitHub-flavoured Markdown running text, or a table cell with `cell=True`
    (where `#` cannot open a heading, so it stays as it is)."""
    s = str(text)
    if _MD_SAFE.fullmatch(s):
        return s.strip()
    s = one_line(s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_ALWAYS.sub(r"\\\1", s)
    if _MD_LINKISH.search(s):
        s = _MD_BRACKETS.sub(r"\\\1", s)
    if cell:
        return _MD_UNDERSCORE.sub(r"\\_", s)
    # ATX heading opening/closing sequences, which matter in list items and headings
    s = _MD_HEADING.sub(lambda m: (m.group(1) or "") + "\\#" * len(m.group(2) or m.group(3)), s)
    return _MD_UNDERSCORE.sub(r"\\_", s)


def h(text: object) -> str:
    return html.escape(str(text), quote=True)


def plot_label(text: object, limit: int = 60) -> str:
    """Plain text for a matplotlib label: no mathtext (`$` would start it), one line, bounded length."""
    s = one_line(str(text)).replace("$", r"\$")
    return s if len(s) <= limit else s[: limit - 1] + "…"
