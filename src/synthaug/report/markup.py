"""Small HTML pieces every report section uses: tables, figures, numbers that may be missing."""

from __future__ import annotations

import math
import re
from html import escape


def policy_name(policy: str) -> str:
    """The one display name of a policy in the report, `synthaug table` and the docs:
    ``classical(p=0.2)`` -> ``classical 20%``; every other policy as recorded."""
    m = re.fullmatch(r"classical\(p=([0-9.]+)\)", policy)
    return f"classical {float(m.group(1)) * 100:g}%" if m else policy


def table(header: list[str], rows: list[list[object]], wrap: bool = False) -> str:
    """A plain table; every cell is escaped. ``wrap``: cells wrap their text (a narrow table)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    cls = " class='text'" if wrap else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def figure(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def num(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``; a dash for a figure that could not be computed (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)
