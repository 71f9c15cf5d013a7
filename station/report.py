"""``fieldtriage station report``: scans as HTML pages (an overview and a page per scan), CSV or JSON.

Paths and names come from seized media and are hostile: every value is made printable (control
characters escaped) and HTML-escaped; pages forbid scripts with a Content-Security-Policy; CSV
cells that a spreadsheet would run as a formula get a leading apostrophe. No file content, ever:
the journal holds none.

Example::

    >>> cell("=HYPERLINK(1)"), html_text("<b>\\x1b")
    ("'=HYPERLINK(1)", '&lt;b&gt;\\\\x1b')
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import blake3

from filters.errors import StationError, printable
from station.scans import Scan, filter_label, iso_ns

PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.2em .5em;text-align:left;vertical-align:top}}
.priority_match{{background:#f99}} .match{{background:#fc9}} .incomplete,.interrupted{{background:#ff9}}
code{{word-break:break-all}}</style></head><body>
"""
CSV_COLUMNS = (
    "kiosk",
    "scan_id",
    "started",
    "finished",
    "clock_synchronised",
    "device",
    "mode",
    "verdict",
    "hits",
    "priority_hits",
    "errors",
    "skipped",
    "lights",
)


def html_text(value: object) -> str:
    return html.escape(printable(str(value)), quote=True)


def cell(value: object) -> str:
    text = printable("" if value is None else str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def page_name(scan: Scan) -> str:
    return f"scan-{blake3.blake3(scan.key.encode('utf-8')).hexdigest(length=8)}.html"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>\n"


def overview_html(scans: Sequence[Scan], findings: Sequence[tuple[str, ...]]) -> str:
    rows = [
        (
            f'<a href="{page_name(s)}">{html_text(iso_ns(s.started_ns) or "?")}</a>',
            f"<code>{html_text(s.kiosk[:8])}</code>",
            html_text(s.device_label()),
            f'<span class="{html_text(s.verdict)}">{html_text(s.verdict)}</span>',
            html_text(len(s.hits)),
            html_text(len(s.errors)),
        )
        for s in scans
    ]
    out = [PAGE_HEAD.format(title="fieldtriage scans"), f"<h1>Scans ({len(scans)})</h1>"]
    out.append(_table(("started", "kiosk", "device", "verdict", "hits", "errors"), rows))
    if findings:
        out.append(f"<h2>Journal integrity findings ({len(findings)})</h2>")
        out.append(
            _table(
                ("severity", "kiosk", "segment", "record", "finding"),
                [tuple(html_text(v) for v in f) for f in findings],
            )
        )
    out.append("</body></html>\n")
    return "".join(out)


def scan_html(scan: Scan) -> str:
    facts = [
        ("kiosk", scan.kiosk),
        ("scan", scan.scan_id),
        ("device", scan.device_label()),
        ("mode", scan.mode),
        ("started", iso_ns(scan.started_ns)),
        ("finished", iso_ns(scan.finished_ns)),
        ("clock synchronised", scan.clock_synchronised),
        ("verdict", scan.verdict),
        ("filters", ", ".join(filter_label(f) for f in scan.filters)),
        ("lights", " → ".join(scan.lights)),
    ]
    out = [
        PAGE_HEAD.format(title=html_text(f"scan {scan.scan_id}")),
        '<p><a href="index.html">all scans</a></p>',
    ]
    out.append(f"<h1>Scan {html_text(scan.scan_id)}</h1>")
    out.append(_table(("", ""), [(html_text(k), html_text("" if v is None else v)) for k, v in facts]))
    out.append("<h2>Device identity</h2>")
    out.append(
        _table(("property", "value"), [(html_text(k), html_text(v)) for k, v in sorted(scan.device.items())])
    )
    out.append(f"<h2>Hits ({len(scan.hits)})</h2>")
    out.append(
        _table(
            ("path", "size", "priority", "categories", "matches", "digests"),
            [_hit_cells(h) for h in scan.hits],
        )
    )
    for title, problems in (("Errors", scan.errors), ("Skipped", scan.skipped)):
        out.append(f"<h2>{title} ({len(problems)})</h2>")
        rows = [
            (f"<code>{html_text(p.get('path'))}</code>", html_text(p.get("code")), html_text(p.get("reason")))
            for p in problems
        ]
        out.append(_table(("path", "code", "reason"), rows))
    out.append("</body></html>\n")
    return "".join(out)


def _hit_cells(hit: dict[str, Any]) -> tuple[str, ...]:
    matches = "<br>".join(
        html_text(
            f"{m.get('filter_name', '')} set {m.get('set')} {m.get('kind')} {m.get('category')} "
            f"{m.get('priority')}" + (f" confirmed={m.get('confirmed')}" if "confirmed" in m else "")
        )
        for m in hit.get("matches", [])
        if isinstance(m, dict)
    )
    digests = _mapping(hit.get("digests"))
    digest_lines = "<br>".join(
        f"{html_text(k)} <code>{html_text(v)}</code>" for k, v in sorted(digests.items())
    )
    categories = hit.get("categories")
    categories = categories if isinstance(categories, list) else []
    return (
        f"<code>{html_text(hit.get('path'))}</code>",
        html_text(hit.get("size")),
        html_text(hit.get("priority")),
        html_text(", ".join(str(c) for c in categories)),
        matches,
        digest_lines,
    )


def write_html_report(folder: Path, scans: Sequence[Scan], findings: Sequence[tuple[str, ...]]) -> list[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "index.html"]
        written[0].write_text(overview_html(scans, findings), encoding="utf-8")
        for scan in scans:
            path = folder / page_name(scan)
            path.write_text(scan_html(scan), encoding="utf-8")
            written.append(path)
    except OSError as err:
        raise StationError(folder, f"cannot write the report: {err.strerror}") from err
    return written


def csv_report(scans: Sequence[Scan]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for s in scans:
        priority_hits = sum(1 for h in s.hits if h.get("priority"))
        writer.writerow(
            [
                cell(v)
                for v in (
                    s.kiosk,
                    s.scan_id,
                    iso_ns(s.started_ns),
                    iso_ns(s.finished_ns),
                    s.clock_synchronised,
                    s.device_label(),
                    s.mode,
                    s.verdict,
                    len(s.hits),
                    priority_hits,
                    len(s.errors),
                    len(s.skipped),
                    " > ".join(s.lights),
                )
            ]
        )
    return buffer.getvalue()


def json_report(scans: Sequence[Scan], findings: Sequence[tuple[str, ...]]) -> str:
    document = {
        "scans": [s.to_json() for s in scans],
        "findings": [
            dict(zip(("severity", "kiosk", "segment", "record", "message"), f, strict=True)) for f in findings
        ],
    }
    return json.dumps(document, indent=2, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
