"""One way to make pages: report.html, monev.html and the status page are Jinja2 templates
in pipeline/report/templates/ sharing one layout (base.html.j2) and one stylesheet.

Every page is self-contained: its CSS and JavaScript are inlined and a
Content-Security-Policy allows exactly the inlined script (by hash) and nothing from
anywhere else, so files open offline and cannot leak what they show. Data for the
JavaScript travels as JSON in a <script type="application/json"> element.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).with_name("templates")
STYLESHEET = "verval.css"


def json_for_script(data: object) -> str:
    """JSON that cannot close its <script> element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


def asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def content_security_policy(script: str, connect_self: bool = False) -> str:
    """No request of any kind may leave the page (a served page may call its own server);
    only this exact script may run."""
    connect = "connect-src 'self'; " if connect_self else ""
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{csp_hash(script)}'; "
            f"{connect}img-src data:; form-action 'none'; base-uri 'none'")


def fmt_int(value: int | float | None) -> str:
    """Indonesian thousands separator: 12.345."""
    return "" if value is None else f"{int(value):,}".replace(",", ".")


def fmt_dec(value: float | None, digits: int) -> str:
    """Indonesian decimals: 1.234,56 (thousands with dots, decimals after a comma)."""
    if value is None:
        return ""
    return f"{value:,.{digits}f}".replace(",", "_").replace(".", ",").replace("_", ".")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is text unless a template marks it safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["int"] = fmt_int
    env.filters["dec"] = fmt_dec
    env.filters["json_script"] = lambda data: Markup(json_for_script(data))
    return env


def render(template: str, script: str, connect_self: bool = False, **context) -> str:
    """A page from its template, with the shared stylesheet and `script` inlined."""
    return environment().get_template(template).render(
        stylesheet=Markup(asset(STYLESHEET)), script=Markup(script), csp=content_security_policy(script, connect_self), **context
    )
