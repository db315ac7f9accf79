"""A Sphinx extension of the book (``_config.yml`` loads it): each script once per page.

Sphinx 7.4 (which Jupyter Book 1 requires) lists an inline script twice when an extension adds it after the
builder started, as sphinx-thebe and sphinx-togglebutton do: once as added (file name ``None``) and once
more, as ``''``, when the builder collects the registered assets before writing. The second copy of
sphinx-thebe's ``const THEBE_JS_URL = ...`` is a JavaScript error on every page, so each page's scripts are
made unique here, treating both spellings of "no file" as one.
"""

from __future__ import annotations


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", script) or "", getattr(script, "priority", None), tuple(sorted(attributes.items())))


def unique_scripts(scripts) -> list:
    """``scripts`` without repeats (the first of each kept, in order)."""
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    return unique


def _unique_page_scripts(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app):
    app.connect("html-page-context", _unique_page_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
