"""The console's pages, rendered on the server: one layout, four pages, and ``/docs``.

A page is plain HTML with its navigation, headings, labelled controls and empty places for
the figures; a small script of its own (``static/<page>.js``) fills them from the console's
JSON endpoints and the V2 routes. The pages hold no data, so they need no credentials:
with authentication on, the script asks for an API key or token once (kept in the tab's
``sessionStorage``) and sends it as ``Authorization: Bearer`` on every call, which the
engine's policy chain checks like any other.
"""

from __future__ import annotations

from html import escape
from importlib import resources

__all__ = ["DOCS_HTML", "PAGES", "render"]

#: Console pages: name -> (title, its script); the body is ``templates/<name>.html``.
PAGES: dict[str, tuple[str, str]] = {
    "models": ("Models", "models.js"),
    "try": ("Try it", "try.js"),
    "live": ("Live", "live.js"),
    "admin": ("Admin", "admin.js"),
}

_NAV = (("models", "/console", "Models"), ("try", "/console/try", "Try it"),
        ("live", "/console/live", "Live"), ("admin", "/console/admin", "Admin"))


def _template(name: str) -> str:
    return resources.files("ferry.console").joinpath("templates", name).read_text("utf-8")


def render(page: str) -> str:
    """The HTML of console page ``page`` (a key of :data:`PAGES`)."""
    title, script = PAGES[page]
    current = ' aria-current="page"'
    nav = "".join(
        f'\n<li><a href="{href}"{current if key == page else ""}>{escape(label)}</a></li>'
        for key, href, label in _NAV)
    head = ('\n<link rel="stylesheet" href="/console/static/uPlot.min.css">'
            if page == "live" else "")
    scripts = ('<script src="/console/static/uPlot.iife.min.js"></script>\n'
               if page == "live" else "")
    scripts += f'<script src="/console/static/{script}"></script>'
    return _template("layout.html").format(
        title=escape(title), page=page, nav=nav, head=head, body=_template(f"{page}.html"),
        scripts=scripts)


#: ``GET /docs``: Redoc, shipped in the package, renders ``/openapi.json`` (works offline).
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ferry REST API</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <noscript>The API reference needs JavaScript; the raw document is at
    <a href="openapi.json">openapi.json</a>.</noscript>
  <redoc spec-url="openapi.json" hide-download-button="false"></redoc>
  <script src="/console/static/redoc.standalone.js"></script>
</body>
</html>
"""
