"""A running `crmbonus worker`: /health, /metrics, /api/leaderboard and the page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.embedded import free_port, stop_process
from stream.metrics import NAMES
from tests.examples import EXAMPLES, ROOT
from tests.integration.conftest import crmbonus, get, wait_for

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Worker:
    def __init__(self, base: str, data_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.base, self.data_dir, self.process = base, data_dir, process

    def api(self, query: str = "") -> dict[str, object]:
        status, body = get(f"{self.base}/api/leaderboard{query}")
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]


@pytest.fixture
def worker(pg_url: str, tmp_path: Path) -> Iterator[Worker]:
    """`crmbonus worker` with its own embedded broker, on a free port, against a fresh database."""
    port = free_port()
    env = {**os.environ, "CRMBONUS_DATA_DIR": str(tmp_path)}
    log = open(tmp_path / "worker.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "stream", "worker", "--database-url", pg_url,
                                "--web-port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/health")[0] == 200, "the worker's /health to answer 200")
        yield Worker(base, tmp_path, process)
    finally:
        stop_process(process, 20)
        log.close()


def test_health_metrics_and_api_of_a_running_worker(worker: Worker, pg_url: str) -> None:
    assert json.loads(get(f"{worker.base}/health")[1]) == {"status": "ok"}
    assert worker.api() == {"period": None, "role": None, "periods": [], "rows": []}

    crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=worker.data_dir)
    wait_for(lambda: worker.api()["periods"] == ["2026-12", "2026-11"], "both periods on /api/leaderboard")
    latest = worker.api()
    assert (latest["period"], [row["person_id"] for row in latest["rows"]]) == ("2026-12", ["tm-3"])  # type: ignore[index]
    november = worker.api("?period=2026-11&role=field_rep")
    assert november["rows"] == [
        {"rank": 1, "person_id": "fr-1", "role": "field_rep", "cross_sell_count": 4, "cross_sell_amount": "355.00",
         "appointments_held": 0, "appointments_converted": 0, "total_bonus": "10.65"},
        {"rank": 2, "person_id": "fr-2", "role": "field_rep", "cross_sell_count": 2, "cross_sell_amount": "105.00",
         "appointments_held": 0, "appointments_converted": 0, "total_bonus": "0.00"},
    ]
    assert get(f"{worker.base}/api/leaderboard?period=november")[0] == 400

    status, body = get(f"{worker.base}/metrics")
    text = body.decode()
    assert status == 200
    served = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("crmbonus_")}
    for name in NAMES:
        assert any(sample == name or sample.startswith(name + "_") for sample in served), name
    assert 'crmbonus_events_consumed_total{event_type="sale",topic="crm.sales"} 4.0' in text
    assert "crmbonus_events_stored_total 9.0" in text
    assert "crmbonus_healthy 1.0" in text
    assert "person" not in text and "fr-1" not in text  # no per-person labels


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")
def test_leaderboard_page_in_a_real_browser_updates_itself(worker: Worker) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=worker.data_dir)
    wait_for(lambda: len(worker.api("?period=2026-11")["rows"]) == 4, "November on /api/leaderboard")  # type: ignore[arg-type]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{worker.base}/leaderboard?period=2026-11")
            page.wait_for_selector("#rows tr[data-person='fr-1']")
            rows = page.locator("#rows tr")
            assert rows.count() == 4
            first = [cell.strip() for cell in rows.nth(0).locator("td").all_inner_texts()]
            assert first == ["1", "tm-2", "telemarketer", "2", "45.00", "1 held · 1 conv.", "35.00"]
            assert page.locator("#period").input_value() == "2026-11"

            # a new event lands: fr-1 gets a fifth cross-sell, and the open page follows without a reload
            crmbonus("publish", str(write_extra_sale(worker.data_dir)), data_dir=worker.data_dir)
            page.wait_for_function(
                "() => document.querySelector(\"#rows tr[data-person='fr-1'] td:nth-child(4)\").textContent === '5'",
                timeout=30_000)
            fr1 = [cell.strip() for cell in page.locator("#rows tr[data-person='fr-1'] td").all_inner_texts()]
            assert fr1 == ["2", "fr-1", "field rep", "5", "555.00", "0 held · 0 conv.", "16.65"]
            page.screenshot(path=str(worker.data_dir / "leaderboard.png"))
        finally:
            browser.close()


def write_extra_sale(directory: Path) -> Path:
    """A TV with a 200.00 warranty for customer c4 by fr-1 in November: one more cross-sell."""
    path = directory / "extra.jsonl"
    path.write_text(json.dumps({
        "event_id": "s9", "event_type": "sale", "occurred_at": "2026-11-15T10:00:00Z", "customer_id": "c4",
        "sale_id": "S9", "seller_id": "fr-1", "seller_role": "field_rep", "currency": "EUR",
        "lines": [{"line_id": "A", "sku": "TV", "category": "tv", "quantity": 1, "unit_price": "900.00"},
                  {"line_id": "B", "sku": "WAR", "category": "warranty", "quantity": 1, "unit_price": "200.00"}],
    }) + "\n")
    return path
