"""Statements (SPEC §15, issue 17 items 1, 3, 4): `crmbonus statement` in every format, /api/statement and
/statement of a running worker, the token and the escaping of SPEC §16 for the page, the CSV and the PDF, and
the page opened from the leaderboard in a real Chromium, with a screenshot kept (tests/output/statement.png).

The months are the worked example (tests/fixtures/examples/month.jsonl under the default plan: fr-1 4
cross-sells 355.00 -> 10.65; fr-2 2 cross-sells 105.00 -> 0.00, one short of the gate; tm-2 a held and
converted appointment and a telemarketer part) fed through the real pipeline into a real Postgres.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.plan import DEFAULT_PLAN_PATH
from tests.examples import EXAMPLES, ROOT
from tests.integration.conftest import Feeder, crmbonus
from tests.integration.test_web import CHROMIUM, TOKEN, Worker, fetch, running_worker

pytestmark = pytest.mark.integration
OUTPUT = ROOT / "tests" / "output"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
#: A seller id and a category as a hostile CRM could publish them: markup, a spreadsheet formula, a bidi override.
HOSTILE_PERSON = "=HYPERLINK(\"http://x.example\")<img src=x onerror=\"window.pwned=1\">\u202efr"
HOSTILE_CATEGORY = "@SUM(1)</td><script>window.pwned=2</script>"
#: fr-1 after the late refund of the 200.00 warranty: 3 cross-sells, 155.00, earned 4.65 against 10.65 paid.
ADJUSTMENT = ("4.65", "10.65", "-6.00")


def month_lines() -> list[bytes]:
    return [line.encode() for line in (EXAMPLES / "month.jsonl").read_text().splitlines() if line.strip()]


def hostile_lines() -> list[bytes]:
    """Three cross-sells by the hostile seller in 2026-10, one of the hostile category."""
    sale = {"event_id": "h-s1", "event_type": "sale", "occurred_at": "2026-10-05T10:00:00Z", "customer_id": "h1",
            "sale_id": "H1", "seller_id": HOSTILE_PERSON, "seller_role": "field_rep", "currency": "EUR",
            "lines": [{"line_id": "A", "sku": "LT", "category": "laptops", "quantity": 1, "unit_price": "1000.00"},
                      {"line_id": "B", "sku": "X", "category": HOSTILE_CATEGORY, "quantity": 1, "unit_price": "60.00"},
                      {"line_id": "C", "sku": "BAG", "category": "accessories", "quantity": 1, "unit_price": "40.00"},
                      {"line_id": "D", "sku": "OFF", "category": "software", "quantity": 1, "unit_price": "25.50"}]}
    return [json.dumps(sale).encode()]


def hostile_plan(directory: Path) -> Path:
    """The default plan whose laptops also take the hostile category as a cross-sell."""
    text = DEFAULT_PLAN_PATH.read_text().replace(
        'laptops  = ["accessories", "software", "insurance", "warranty"]',
        'laptops  = ["accessories", "software", "insurance", "warranty", ' + json.dumps(HOSTILE_CATEGORY) + "]")
    path = directory / "hostile.toml"
    path.write_text(text)
    return path


@pytest.fixture
def month(pg_url: str) -> str:
    asyncio.run(Feeder(pg_url).feed(month_lines()))
    return pg_url


def statement(data_dir: Path, url: str, *args: str, check: bool = True, env: dict[str, str] | None = None) -> Any:
    return crmbonus("statement", "--database-url", url, *args, data_dir=data_dir, check=check, env=env)


def test_json_of_a_person_one_short_of_the_gate(month: str, tmp_path: Path) -> None:
    done = statement(tmp_path, month, "--person", "fr-2", "--period", "2026-11", "--format", "json")
    document = json.loads(done.stdout)
    assert {"person_id", "period", "role", "settled", "settlement_id", "credits", "totals", "settled_totals",
            "adjustments_out"} <= set(document)
    assert (document["person_id"], document["period"], document["role"], document["settled"],
            document["settlement_id"], document["settled_totals"], document["adjustments_out"]) == (
        "fr-2", "2026-11", "field_rep", False, None, None, [])
    assert document["totals"] == {
        "period": "2026-11", "person_id": "fr-2", "role": "field_rep", "cross_sell_count": 2,
        "cross_sell_amount": "105.00", "appointments_held": 0, "appointments_converted": 0,
        "cross_sell_bonus": "0.00", "appointment_bonus": "0.00", "prior_adjustments": "0.00", "total_bonus": "0.00",
        "upsell_count": 0, "upsell_amount": "0.00", "upsell_bonus": "0.00", "kpi_bonus": "0.00",
        "prize_bonus": "0.00", "plan_version": "default-1"}
    assert document["cross_sell"]["gate_message"] == "1 more cross-sell unlocks the bonus."
    assert document["cross_sell"]["bands"][0] == {"lower": "0.00", "upper": "5000.00", "rate": "0.03",
                                                  "amount": "105.00", "bonus": "3.15", "current": True}
    assert document["cross_sell"]["to_next_band"] == "4895.00"
    assert document["arithmetic_agrees"] is True
    # the field rep's parts of the phone sale: category from the stored sale, the telemarketer's touch elsewhere
    assert sorted((c["kind"], c["line_id"], c["category"], c["amount"], c["share"]) for c in document["credits"]) == [
        ("cross_sell", "P2", "insurance", "84.00", "0.7"), ("cross_sell", "P3", "accessories", "21.00", "0.7")]


def test_a_telemarketers_credits_name_the_touch_and_its_time(month: str, tmp_path: Path) -> None:
    document = json.loads(statement(tmp_path, month, "--person", "tm-2", "--period", "2026-11", "--format",
                                    "json").stdout)
    parts = {(c["kind"], c["line_id"] or c["lead_id"]): c for c in document["credits"]}
    assert parts[("cross_sell", "P2")]["touch_event_id"] == "lh1"
    assert parts[("cross_sell", "P2")]["touch_at"] == "2026-11-01T07:00:00+00:00"
    assert parts[("cross_sell", "P2")]["category"] == "insurance"
    assert {k for k in parts if k[0] != "cross_sell"} == {("appointment_held", "L-1"), ("appointment_converted", "L-1")}
    assert document["appointments"] == {"held": 1, "converted": 1, "held_credit": "25.00",
                                        "conversion_bonus": "10.00", "bonus": "35.00"}
    assert document["totals"]["total_bonus"] == "35.00"


def test_a_person_without_a_row_and_the_refusals(month: str, tmp_path: Path) -> None:
    document = json.loads(statement(tmp_path, month, "--person", "nobody", "--period", "2026-11", "--format",
                                    "json").stdout)
    assert (document["role"], document["credits"], document["totals"]["total_bonus"],
            document["totals"]["cross_sell_count"]) == (None, [], "0.00", 0)
    bad = statement(tmp_path, month, "--person", "fr-1", "--period", "2026-13", check=False)
    assert bad.returncode == 2 and "period '2026-13' must be YYYY-MM" in bad.stderr and "Traceback" not in bad.stderr
    missing = statement(tmp_path, month, "--period", "2026-11", check=False)
    assert missing.returncode == 2 and "Missing option '--person'" in missing.stderr


def test_text_at_80_columns_never_cuts_money(month: str, tmp_path: Path) -> None:
    done = statement(tmp_path, month, "--person", "fr-1", "--period", "2026-11", env={"COLUMNS": "80"})
    lines = done.stdout.splitlines()
    assert lines[0] == "Statement of fr-1 for 2026-11"
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in done.stdout
    assert "The gates are met: the cross-sell bonus is paid." in lines
    assert any("total bonus" in line and "10.65" in line for line in lines)
    assert "4,645.00 more reaches the 5% band." in lines
    assert done.stdout.count("cross sell") >= 4  # the four credits' kind stays at any width


def test_csv_and_pdf_files(month: str, tmp_path: Path) -> None:
    statement(tmp_path, month, "--person", "fr-1", "--period", "2026-11", "--format", "csv", "-o",
              str(tmp_path / "s.csv"))
    rows = list(csv.reader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert rows[0] == ["Statement of fr-1 for 2026-11"]
    assert ["total bonus", "10.65"] in rows and ["cross sell bonus", "10.65"] in rows
    done = statement(tmp_path, month, "--person", "fr-1", "--period", "2026-11", "--format", "pdf", "-o",
                     str(tmp_path / "s.pdf"))
    assert "written to" in done.stderr
    text, ink = pdf_text_and_ink(tmp_path / "s.pdf", tmp_path / "s.png")
    assert "Statement of fr-1 for 2026-11" in text
    assert "total bonus 10.65" in text and "cross sell bonus 10.65" in text
    assert "The gates are met: the cross-sell bonus is paid." in text
    assert "0.00 - 5,000.00 3% 355.00 10.65 reached" in text
    assert ink > 0.01, f"the first page is nearly blank ({ink:.4f} of it inked)"


def pdf_text_and_ink(path: Path, png: Path) -> tuple[str, float]:
    """The PDF's text (every page, lines joined by spaces per line) and the share of dark pixels of page 1."""
    pdfium = pytest.importorskip("pypdfium2")
    document = pdfium.PdfDocument(str(path))
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in document)
        image = document[0].render(scale=1.5).to_pil().convert("L")
        image.save(png)
        dark = sum(1 for value in image.getdata() if value < 160)
        ink = dark / (image.width * image.height)
    finally:
        document.close()
    return text.replace("\r\n", "\n"), ink


def test_settled_month_with_an_adjustment_sent_on(month: str, tmp_path: Path) -> None:
    feeder = Feeder(month)
    settled = asyncio.run(feeder.settle("2026-11"))
    late = {"event_id": "late-r", "event_type": "refund", "occurred_at": "2026-12-02T09:00:00Z", "customer_id": "c3",
            "sale_id": "S4", "lines": [{"line_id": "T2", "quantity": 1}]}
    asyncio.run(feeder.feed([json.dumps(late).encode()]))
    document = json.loads(statement(tmp_path, month, "--person", "fr-1", "--period", "2026-11", "--format",
                                    "json").stdout)
    assert (document["settled"], document["settlement_id"]) == (True, str(settled.settlement_id))
    assert document["settled_totals"]["total_bonus"] == "10.65"
    assert document["totals"]["cross_sell_count"] < 4
    assert [(a["target_period"], a["settled"]) for a in document["adjustments_out"]] == [("2026-12", False)]
    out = document["adjustments_out"][0]
    assert (out["earned"], out["paid"], out["amount"]) == ADJUSTMENT
    december = json.loads(statement(tmp_path, month, "--person", "fr-1", "--period", "2026-12", "--format",
                                    "json").stdout)
    assert [a["source_period"] for a in december["adjustments_in"]] == ["2026-11"]
    assert december["totals"]["prior_adjustments"] == document["adjustments_out"][0]["amount"]
    assert december["arithmetic_agrees"] is True


# -- the worker's /api/statement and /statement ---------------------------------------------------------


@pytest.fixture
def hostile_worker(pg_url: str, tmp_path: Path) -> Iterator[Worker]:
    plan = hostile_plan(tmp_path)
    feeder = Feeder(pg_url, str(plan))
    asyncio.run(feeder.feed(month_lines() + hostile_lines()))
    with running_worker(pg_url, tmp_path, "--plan", str(plan), token=TOKEN) as started:
        yield started


def test_api_and_page_need_the_token_and_refuse_bad_queries(hostile_worker: Worker) -> None:
    w = hostile_worker
    for path in ("/api/statement?person=fr-1&period=2026-11", "/statement?person=fr-1&period=2026-11"):
        assert fetch(w.base + path)[0] == 401
        assert fetch(w.base + path, {"Authorization": "Bearer wrong"})[0] == 401
        assert fetch(f"{w.base}{path}&token={TOKEN}")[0] == 200
        assert w.get(path)[0] == 200
    for query in ("?person=fr-1", "?period=2026-11", "?person=fr-1&period=2026-13", "?person=&period=2026-11", ""):
        for path in ("/api/statement", "/statement"):
            status, body = w.get(path + query)
            assert status == 400, (path, query, status)
    status, body = w.get("/api/statement?person=fr-1&period=2026-11")
    document = json.loads(body)
    assert (document["totals"]["total_bonus"], document["cross_sell"]["gate_message"]) == (
        "10.65", "The gates are met: the cross-sell bonus is paid.")
    assert json.loads(w.get("/api/statement?person=nobody&period=2026-11")[1])["role"] is None
    _, _, headers = fetch(f"{w.base}/statement?person=fr-1&period=2026-11&token={TOKEN}")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'sha256-" in policy and "script-src" not in policy
    assert (headers["Referrer-Policy"], headers["Cache-Control"]) == ("no-referrer", "no-store")


def test_hostile_ids_and_categories_stay_text_in_the_page_the_csv_and_the_pdf(hostile_worker: Worker,
                                                                              tmp_path: Path, pg_url: str) -> None:
    from urllib.parse import urlencode

    w = hostile_worker
    query = urlencode({"person": HOSTILE_PERSON, "period": "2026-10"})
    document = json.loads(w.get(f"/api/statement?{query}")[1])
    assert document["person_id"] == HOSTILE_PERSON and document["totals"]["cross_sell_count"] == 3
    assert HOSTILE_CATEGORY in {c["category"] for c in document["credits"]}
    status, body = w.get(f"/statement?{query}")
    page = body.decode()
    assert status == 200
    assert "<img" not in page and "<script" not in page and "</td><script>" not in page
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in page
    assert "@SUM(1)&lt;/td&gt;&lt;script&gt;window.pwned=2&lt;/script&gt;" in page

    plan = str(tmp_path / "hostile.toml")
    statement(tmp_path, pg_url, "--plan", plan, "--person", HOSTILE_PERSON, "--period", "2026-10", "--format",
              "csv", "-o", str(tmp_path / "h.csv"))
    cells = [cell for row in csv.reader(io.StringIO((tmp_path / "h.csv").read_text())) for cell in row]
    assert "'" + HOSTILE_CATEGORY in cells and HOSTILE_CATEGORY not in cells  # a formula no more

    statement(tmp_path, pg_url, "--plan", plan, "--person", HOSTILE_PERSON, "--period", "2026-10", "--format",
              "pdf", "-o", str(tmp_path / "h.pdf"))
    text, ink = pdf_text_and_ink(tmp_path / "h.pdf", tmp_path / "h.png")
    assert '=HYPERLINK("http://x.example")<img src=x onerror="window.pwned=1">\\u202efr' in text
    assert "\u202e" not in text and HOSTILE_CATEGORY in text
    assert ink > 0.01


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")
def test_the_statement_page_from_the_leaderboard_in_a_real_browser(hostile_worker: Worker, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    w = hostile_worker
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(f"{w.base}/leaderboard?period=2026-11&token={TOKEN}")
            page.wait_for_selector("#rows tr[data-person='fr-2'] a.statement")
            link = page.locator("#rows tr[data-person='fr-2'] a.statement")
            href = link.get_attribute("href") or ""
            assert href == f"/statement?person=fr-2&period=2026-11&token={TOKEN}"
            link.click()
            page.wait_for_selector("#gate")
            assert page.url == f"{w.base}{href}"
            assert page.locator("h1").inner_text() == "Statement of fr-2 for 2026-11"
            assert page.locator("#gate").inner_text() == "1 more cross-sell unlocks the bonus."
            bands = page.locator("#cross-sells table tbody tr").all_inner_texts()
            assert [" ".join(b.split()) for b in bands] == ["0.00 - 5,000.00 3% 105.00 3.15 reached",
                                                            "5,000.00 - and above 5% 0.00 0.00"]
            credits = [" ".join(c.split()) for c in page.locator("#credits table tbody tr").all_inner_texts()]
            assert credits == ["cross sell field rep c2 S2 P2 insurance 84.00 0.7 s2",
                               "cross sell field rep c2 S2 P3 accessories 21.00 0.7 s2"]
            page.locator("#back").click()  # back to the board, the token kept
            page.wait_for_selector("#rows tr[data-person='fr-1']")
            assert TOKEN in page.url

            # the hostile seller's statement, opened from October's board: text, nothing runs
            page.goto(f"{w.base}/leaderboard?period=2026-10&token={TOKEN}")
            page.wait_for_selector("#rows a.statement")
            page.locator("#rows a.statement").first.click()
            page.wait_for_selector("#gate")
            assert page.locator("h1").inner_text() == f"Statement of {HOSTILE_PERSON} for 2026-10"
            assert page.evaluate("() => window.pwned") is None
            assert page.locator("body img, body script").count() == 0
            assert HOSTILE_CATEGORY in page.locator("#credits").inner_text()

            page.goto(f"{w.base}/statement?person=fr-2&period=2026-11&token={TOKEN}")
            page.wait_for_selector("#gate")
            shot = tmp_path / "statement.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    OUTPUT.mkdir(exist_ok=True)
    kept = OUTPUT / "statement.png"
    shutil.copyfile(shot, kept)
    print(f"\nstatement page screenshot: {shot} (copied to {kept})")

