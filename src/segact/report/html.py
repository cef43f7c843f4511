"""report.html: report.md as one self-contained page that a double click opens. Rendered by
Python-Markdown (its ``tables`` extension for the pipe tables), every figure embedded as a data
URI, a short stylesheet so that the wide tables read; nothing outside the file is needed.

The text comes from result files (dataset names, a failed run's error), so raw HTML in it is
shown as text, never run, and a link keeps only a relative target or an http(s) address.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from html import escape
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element

import markdown
from markdown.treeprocessors import Treeprocessor

REPORT_HTML = "report.html"
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #222; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; }
h1 { font-size: 1.5em; overflow-wrap: anywhere; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: .25em .6em; white-space: nowrap; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 .2em; }
"""
SAFE_SCHEMES = ("http", "https")


def _local_file(target: str, folder: Path) -> Path | None:
    """The file in ``folder`` a relative target names (None: an address, or outside)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = (folder / unquote(parts.path)).resolve()
    return path if path.is_file() and path.is_relative_to(folder.resolve()) else None


def data_uri(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class _Embed(Treeprocessor):
    """Images from the report folder as data URIs; links only to safe targets."""

    def __init__(self, md: markdown.Markdown, folder: Path) -> None:
        super().__init__(md)
        self.folder = folder

    def run(self, root: Element) -> None:
        for image in root.iter("img"):
            path = _local_file(image.get("src", ""), self.folder)
            if path is not None:
                image.set("src", data_uri(path))
        for link in root.iter("a"):
            href = link.get("href", "")
            scheme = urlsplit(href).scheme
            if scheme and scheme not in SAFE_SCHEMES:
                del link.attrib["href"]


def render_html(text: str, folder: Path) -> str:
    """The page of Markdown ``text`` whose figures lie in ``folder``."""
    md = markdown.Markdown(extensions=["tables"], output_format="html")
    md.preprocessors.deregister("html_block")  # raw HTML is shown as text
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_Embed(md, folder), "segact_embed", 1)  # after "inline"
    body = md.convert(text)
    heading = re.search(r"^# (.+)$", text, flags=re.MULTILINE)
    title = escape(heading.group(1) if heading else "segact report")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n"
        "</html>\n"
    )
