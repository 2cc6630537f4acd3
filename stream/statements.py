"""Statements from Postgres, and their page, CSV and PDF (SPEC §15).

`load_statement` reads what a person's month is made of and hands it to the pure
stream/statement.py, which does the arithmetic with the rules' own functions:

- the `credits` in force of (period, person);
- each cross-sell or upsell line's **category**, decoded from the stored sale event
  (`events.raw`) with the ledger's own `StoredDecoder`. Not a join on a column: `credits` has no
  category and `events` keeps the sale only as the bytes received, so decoding them as the
  ledger does gives exactly the category the rules judged (a version-1 event that today's
  decoder would refuse included; Postgres' jsonb would take the last of repeated keys and
  read numbers as floats);
- the **touch's time**: the `occurred_at` stored with the touch event;
- the month's KPI inputs (`customer_facts` of kinds conversion, rating, review: the exact
  counts; `kpi_scores` holds only rounded values), the year's `lead_points` row and gold
  holders, the adjustments into and out of the month (`bonus_adjustments`), the settlement
  (`periods_closed`, `bonus_settled`) and the stored `bonus_running` row, which the statement
  compares with its own arithmetic.

The renderers escape for their medium: the page sets every value through `html.escape` (no
script at all; the one inline style is allowed by its hash), the CSV through `reports.csv_cell`,
the PDF spells out what its font cannot show and every control character. The PDF is made with
fpdf2: pure Python (no system library, so the wheel stays installable anywhere), maintained and
released regularly, with tables that wrap text in cells so a long id never pushes a figure off
the page; its built-in Helvetica needs no font file.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlencode

import asyncpg

from schemas.decode import StoredDecoder
from schemas.events import Sale
from stream.bonus import RUNNING_COLUMNS
from stream.periods import check_period
from stream.plan import Plan
from stream.reports import csv_cell
from stream.rules import FACT_KINDS, LEAD, Credit, Fact
from stream.statement import (
    Adjustment,
    CreditLine,
    LeadYear,
    Section,
    Settled,
    Statement,
    build_statement,
    sections,
)

_decoder = StoredDecoder()
_CREDIT_COLUMNS = ("period", "person_id", "role", "kind", "customer_id", "sale_id", "line_id", "lead_id", "amount",
                   "share", "touch_event_id", "source_event_id")
_KPI_FACTS = tuple(kind for kind in FACT_KINDS if kind != LEAD)


async def load_statement(conn: asyncpg.Connection, plan: Plan, person_id: str, period: str) -> Statement:
    """The statement of `person_id` for `period` from what Postgres holds now (one read-only snapshot)."""
    check_period(period)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            f"SELECT {', '.join(_CREDIT_COLUMNS)} FROM credits WHERE period = $1 AND person_id = $2", period, person_id)
        credits = [Credit(**dict(row)) for row in rows]
        categories = await _categories(conn, credits)
        touches = {row["event_id"]: row["occurred_at"] for row in await conn.fetch(
            "SELECT event_id, occurred_at FROM events WHERE event_id = ANY($1::text[])",
            sorted({c.touch_event_id for c in credits if c.touch_event_id}))}
        facts = [Fact(**dict(row)) for row in await conn.fetch(
            "SELECT kind, scope, person_id, customer_id, key, value, role, occurred_at FROM customer_facts"
            " WHERE scope = $1 AND person_id = $2 AND kind = ANY($3::text[])", period, person_id, list(_KPI_FACTS))]
        year = int(period[:4])
        lead = await conn.fetchrow("SELECT points, turnover, badge, gold FROM lead_points WHERE year = $1"
                                   " AND person_id = $2", year, person_id)
        holders = {row["person_id"]: row["turnover"] for row in await conn.fetch(
            "SELECT person_id, turnover FROM lead_points WHERE year = $1 AND gold", year)}
        closed = {row["period"]: row for row in await conn.fetch("SELECT period, settlement_id, settled_at"
                                                                 " FROM periods_closed")}
        adjustments = [Adjustment(row["source_period"], row["target_period"], row["role"], row["amount"],
                                  row["earned"], row["paid"], row["target_period"] in closed)
                       for row in await conn.fetch(
                           "SELECT source_period, target_period, role, amount, earned, paid FROM bonus_adjustments"
                           " WHERE person_id = $1 AND (source_period = $2 OR target_period = $2)", person_id, period)]
        stored = await conn.fetchrow(f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_running"
                                     " WHERE period = $1 AND person_id = $2", period, person_id)
        settled = None
        if period in closed:
            settled_row = await conn.fetchrow(f"SELECT {', '.join(RUNNING_COLUMNS)} FROM bonus_settled"
                                              " WHERE period = $1 AND person_id = $2", period, person_id)
            settled = Settled(str(closed[period]["settlement_id"]), closed[period]["settled_at"],
                              None if settled_row is None else dict(settled_row))
    return build_statement(
        person_id, period, plan,
        credits=[CreditLine(c, categories.get((c.sale_id, c.line_id)), touches.get(c.touch_event_id or ""))
                 for c in credits],
        facts=facts,
        lead_year=LeadYear(year, lead["points"], lead["turnover"], lead["badge"], lead["gold"], holders)
        if lead is not None else LeadYear(year, gold_holders=holders),
        adjustments_in=[adj for adj in adjustments if adj.target_period == period],
        adjustments_out=[adj for adj in adjustments if adj.source_period == period],
        settled=settled,
        stored=None if stored is None else dict(stored),
        compared=True,
    )


async def _categories(conn: asyncpg.Connection, credits: Sequence[Credit]) -> dict[tuple[str | None, str | None], str]:
    """(sale_id, line_id) -> category, from the stored sale events of the credits' lines."""
    sale_ids = sorted({c.sale_id for c in credits if c.sale_id is not None})
    found: dict[tuple[str | None, str | None], str] = {}
    for row in await conn.fetch("SELECT raw FROM events WHERE event_type = 'sale' AND sale_id = ANY($1::text[])",
                                sale_ids):
        event = _decoder.decode(row["raw"])
        if isinstance(event, Sale):
            for line in event.lines:
                found[(event.sale_id, line.line_id)] = line.category
    return found


# -- CSV -------------------------------------------------------------------------------------------


def to_csv(statement: Statement) -> str:
    """The statement's sections one after another: a title row, its lines, its table; every text cell
    through `reports.csv_cell`, so no id or category runs as a spreadsheet formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for section in sections(statement):
        writer.writerow([csv_cell(section.title)])
        for line in (*section.lines,):
            writer.writerow(["", csv_cell(line)])
        if section.table is not None:
            writer.writerow([csv_cell(h) for h in section.table.headers])
            for row in section.table.rows:
                writer.writerow([csv_cell(cell) for cell in row])
        for line in section.after:
            writer.writerow(["", csv_cell(line)])
        writer.writerow([])
    return buffer.getvalue()


# -- the page ----------------------------------------------------------------------------------------

PAGE_STYLE = """
  body { margin: 0 auto; max-width: 72em; padding: 1em 1.5em 3em; background: #0f172a; color: #f1f5f9;
         font: 15px/1.45 system-ui, sans-serif; }
  a { color: #38bdf8; }
  h1 { font-size: 1.7em; margin: 0.3em 0; } h1 span { color: #38bdf8; }
  h2 { font-size: 1.2em; margin: 1.4em 0 0.3em; border-bottom: 1px solid #334155; padding-bottom: 0.2em; }
  p { margin: 0.25em 0; }
  p.gate { font-size: 1.15em; font-weight: 600; color: #fbbf24; }
  p.gate.met { color: #4ade80; }
  p.warn { color: #f87171; }
  table { border-collapse: collapse; margin: 0.4em 0; }
  th { text-align: left; color: #94a3b8; font-weight: 500; padding: 0.25em 0.7em; border-bottom: 1px solid #334155; }
  td { padding: 0.25em 0.7em; border-bottom: 1px solid #1e293b; vertical-align: top; overflow-wrap: anywhere; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  tr.current td { color: #fbbf24; }
  tr.total td { font-weight: 700; border-top: 1px solid #94a3b8; }
"""
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'sha256-"
        + base64.b64encode(hashlib.sha256(PAGE_STYLE.encode()).digest()).decode()
        + "'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def to_html(statement: Statement, token: str | None = None) -> str:
    """The statement page: server-rendered, every value escaped, no script. `token`: the `?token=` the
    page was opened with, kept in its link back to the leaderboard (a wall screen has no header)."""
    back = {"period": statement.period, **({"token": token} if token else {})}
    parts = ["<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             "<meta name=\"referrer\" content=\"no-referrer\">\n"
             f"<title>{_e(f'crmbonus statement: {statement.person_id} {statement.period}')}</title>\n"
             f"<style>{PAGE_STYLE}</style>\n</head>\n<body>\n"
             f"<p><a id=\"back\" href=\"/leaderboard?{_e(urlencode(back))}\">&larr; leaderboard</a></p>\n"]
    for index, section in enumerate(sections(statement)):
        tag = "h1" if index == 0 else "h2"
        parts.append(f"<section id=\"{_e(_anchor(section.title))}\">\n<{tag}>{_e(section.title)}</{tag}>\n")
        for line in section.lines:
            cls = ""
            if line == statement.gate_message:
                cls = " class=\"gate met\" id=\"gate\"" if statement.gates_met else " class=\"gate\" id=\"gate\""
            elif line.startswith("Note:"):
                cls = " class=\"warn\""
            parts.append(f"<p{cls}>{_e(line)}</p>\n")
        if section.table is not None:
            parts.append(_html_table(section))
        parts.extend(f"<p>{_e(line)}</p>\n" for line in section.after)
        parts.append("</section>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def _anchor(title: str) -> str:
    first = title.split(" ")[0].lower()
    return {"statement": "summary", "lead": "lead-points", "prior": "adjustments"}.get(first, first)


def _html_table(section: Section) -> str:
    table = section.table
    assert table is not None
    cls = lambda i: " class=\"num\"" if i in table.numeric else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(table.headers))
    body = []
    for n, row in enumerate(table.rows):
        mark = ""
        if section.title == "Cross-sells" and row[-1] == "reached":
            mark = " class=\"current\""
        elif n == len(table.rows) - 1 and row[0] == "total bonus":
            mark = " class=\"total\""
        body.append(f"<tr{mark}>" + "".join(f"<td{cls(i)}>{_e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>\n"


# -- PDF ---------------------------------------------------------------------------------------------

#: What the PDF's built-in font (Helvetica, Latin-1) cannot show, and what must never act: controls,
#: bidi overrides and invisible format characters; each is spelled out as \\uXXXX.
_UNSHOWABLE_PDF = re.compile("[^\x20-\x7e\xa0-\xff]")


def pdf_text(value: str) -> str:
    """`value` as the PDF shows it: printable Latin-1 as is, anything else spelled out (`\\u202e`)."""
    return _UNSHOWABLE_PDF.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)


def to_pdf(statement: Statement, created: datetime | None = None) -> bytes:
    """The statement as an A4 landscape PDF (fpdf2), the same sections as the page."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_title(pdf_text(f"crmbonus statement {statement.person_id} {statement.period}"))
    pdf.set_creator("crmbonus")
    if created is not None:
        pdf.set_creation_date(created)
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    heading = FontFace(emphasis="BOLD", fill_color=(226, 232, 240))
    for index, section in enumerate(sections(statement)):
        pdf.set_font("Helvetica", "B", 15 if index == 0 else 12)
        pdf.multi_cell(0, 8, pdf_text(section.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for line in section.lines:
            bold = line == statement.gate_message
            pdf.set_font("Helvetica", "B" if bold else "", 10 if bold else 9)
            pdf.multi_cell(0, 5, pdf_text(line), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        if section.table is not None and section.table.rows:
            table = section.table
            widths = _pdf_widths(table.headers, table.rows)
            with pdf.table(col_widths=widths, width=min(sum(widths), pdf.epw), headings_style=heading, align="LEFT",
                           line_height=4.5, text_align=tuple("RIGHT" if i in table.numeric else "LEFT"
                                                             for i in range(len(table.headers)))) as grid:
                grid.row([pdf_text(h) for h in table.headers])
                for row in table.rows:
                    grid.row([pdf_text(cell) for cell in row])
        pdf.set_font("Helvetica", "", 9)
        for line in section.after:
            pdf.multi_cell(0, 5, pdf_text(line), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    return bytes(pdf.output())


def _pdf_widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[float, ...]:
    """Column widths (mm) by the longest text in each, a figure's whole width kept: wide text wraps."""
    longest = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return tuple(float(min(max(n, 4), 40)) * 1.7 + 3 for n in longest)

