"""A running `crmbonus worker`: /health, /metrics, /api/leaderboard and the page in a real browser;
who may read what (SPEC section 16: the token, the bind, nothing but the listed paths)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from stream import web
from stream.app import build_app
from stream.embedded import free_port, stop_process
from stream.metrics import NAMES
from stream.plan import load_plan
from stream.settings import Resolved
from tests.examples import EXAMPLES, ROOT
from tests.integration.conftest import command_env, crmbonus, get, wait_for

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "test-token-0123456789abcdefghij"
#: The paths SPEC sections 9 and 16 allow; everything else, Faust's own views first, is 404.
GUARDED = ("/leaderboard", "/api/leaderboard")
#: SPEC section 15, guarded too (they need ?person=&period=: tests/integration/test_statements.py).
STATEMENTS = ("/statement", "/api/statement")
OPEN = ("/health", "/metrics")
FAUST_PATHS = ("/", "/router", "/router/", "/table", "/table/", "/table/x/", "/stats", "/stats/", "/assignment",
               "/assignment/", "/graph", "/graph/", "/performance", "/performance/", "/favicon.ico", "/x",
               "/leaderboard/", "/api", "/api/", "/api/leaderboard/x", "/metrics/", "/HEALTH")
HOSTILE = ("[link=https://x.example]a[/link]", "[/bold]", "<img src=x onerror=\"window.pwned=1\">",
           "</script><script>window.pwned=1</script>", "\"><b>b</b>", "{{7*7}} ${7*7}", "fr-\u202eevil")


#: An API row's figures of the programmes a version-1 plan has not, and of what a field rep has not.
NOTHING_ELSE = {"appointment_bonus": "0.00", "prior_adjustments": "0.00", "upsell_count": 0, "upsell_amount": "0.00",
                "upsell_bonus": "0.00", "kpi_bonus": "0.00", "prize_bonus": "0.00", "lead_points": 0, "badge": "none",
                "gold": False}


class Worker:
    def __init__(self, base: str, data_dir: Path, process: subprocess.Popen[bytes], token: str | None = None) -> None:
        self.base, self.data_dir, self.process, self.token = base, data_dir, process, token

    def api(self, query: str = "") -> dict[str, Any]:
        status, body = self.get(f"/api/leaderboard{query}")
        assert status == 200, body
        return json.loads(body)

    def get(self, path: str, headers: dict[str, str] | None = None, authorized: bool = True) -> tuple[int, bytes]:
        """GET `path`, with the worker's token in the header unless not `authorized`."""
        headers = dict(headers or {})
        if authorized and self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return fetch(self.base + path, headers)[:2]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@contextlib.contextmanager
def running_worker(pg_url: str, tmp_path: Path, *args: str, token: str | None = None) -> Iterator[Worker]:
    """`crmbonus worker` with its own embedded broker, on a free port, against `pg_url`."""
    port = free_port()
    env = command_env(tmp_path, {"CRMBONUS_WEB_TOKEN": token} if token else {})
    if not token:
        env.pop("CRMBONUS_WEB_TOKEN", None)
    log = open(tmp_path / "worker.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "stream", "worker", "--database-url", pg_url,
                                "--web-port", str(port), *args], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/health")[0] == 200 or process.poll() is not None,
                 "the worker's /health to answer 200")
        assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        yield Worker(base, tmp_path, process, token)
    finally:
        stop_process(process, 20)
        log.close()


@pytest.fixture
def worker(pg_url: str, tmp_path: Path) -> Iterator[Worker]:
    """A worker without a token, on loopback (the default)."""
    with running_worker(pg_url, tmp_path) as started:
        yield started


@pytest.fixture
def guarded_worker(pg_url: str, tmp_path: Path) -> Iterator[Worker]:
    """A worker with CRMBONUS_WEB_TOKEN, bound to every interface (allowed: it has a token)."""
    with running_worker(pg_url, tmp_path, "--web-host", "0.0.0.0", token=TOKEN) as started:
        yield started


async def add_rows(url: str, period: str, people: tuple[str, ...] | list[str]) -> None:
    """bonus_running rows for `people`, ranked in their order, as a worker would have left them."""
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO bonus_running (period, person_id, role, cross_sell_count, cross_sell_amount,"
            " appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus, prior_adjustments,"
            " total_bonus) VALUES ($1, $2, 'field_rep', 1, 100, 0, 0, $3, 0, 0, $3)",
            [(period, person, Decimal(len(people) - i)) for i, person in enumerate(people)])
    finally:
        await conn.close()


def test_health_metrics_and_api_of_a_running_worker(worker: Worker, pg_url: str) -> None:
    assert json.loads(get(f"{worker.base}/health")[1]) == {"status": "ok"}
    assert worker.api() == {"period": None, "role": None, "periods": [], "rows": []}

    crmbonus("publish", str(EXAMPLES / "month.jsonl"), data_dir=worker.data_dir)
    wait_for(lambda: worker.api()["periods"] == ["2026-12", "2026-11"], "both periods on /api/leaderboard")
    latest = worker.api()
    assert (latest["period"], [row["person_id"] for row in latest["rows"]]) == ("2026-12", ["tm-3"])
    november = worker.api("?period=2026-11&role=field_rep")
    assert november["rows"] == [
        {"rank": 1, "person_id": "fr-1", "role": "field_rep", "cross_sell_count": 4, "cross_sell_amount": "355.00",
         "appointments_held": 0, "appointments_converted": 0, "total_bonus": "10.65", "cross_sell_bonus": "10.65",
         **NOTHING_ELSE},
        {"rank": 2, "person_id": "fr-2", "role": "field_rep", "cross_sell_count": 2, "cross_sell_amount": "105.00",
         "appointments_held": 0, "appointments_converted": 0, "total_bonus": "0.00", "cross_sell_bonus": "0.00",
         **NOTHING_ELSE},
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
    wait_for(lambda: len(worker.api("?period=2026-11")["rows"]) == 4, "November on /api/leaderboard")

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
            first = by_header(page, "tm-2")
            assert {name: first[name] for name in ("#", "person", "role", "cross-sells", "amount", "appointments",
                                                   "bonus")} == {
                "#": "1", "person": "tm-2", "role": "telemarketer", "cross-sells": "2", "amount": "45.00",
                "appointments": "1 held · 1 conv.", "bonus": "35.00"}
            assert not {"upsells", "KPI", "prize"} & set(first)  # the default plan has none of them
            assert page.locator("#period").input_value() == "2026-11"

            # a new event lands: fr-1 gets a fifth cross-sell, and the open page follows without a reload
            crmbonus("publish", str(write_extra_sale(worker.data_dir)), data_dir=worker.data_dir)
            page.wait_for_function(
                "() => document.querySelector(\"#rows tr[data-person='fr-1'] td:nth-child(4)\").textContent === '5'",
                timeout=30_000)
            fr1 = by_header(page, "fr-1")
            assert {name: fr1[name] for name in ("#", "person", "role", "cross-sells", "amount", "appointments",
                                                 "bonus")} == {
                "#": "2", "person": "fr-1", "role": "field rep", "cross-sells": "5", "amount": "555.00",
                "appointments": "0 held · 0 conv.", "bonus": "16.65"}
            page.screenshot(path=str(worker.data_dir / "leaderboard.png"))
        finally:
            browser.close()


def by_header(page: Any, person: str) -> dict[str, str]:
    """The cells of `person`'s row on the page, by their column's header (columns come and go with the data)."""
    headers = [text.strip() for text in page.locator("#head th").all_inner_texts()]
    cells = [text.strip() for text in page.locator(f"#rows tr[data-person='{person}'] td").all_inner_texts()]
    return dict(zip(headers, cells, strict=True))


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


def own_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_token_guards_every_page_but_health_and_metrics(guarded_worker: Worker) -> None:
    w = guarded_worker
    for path in OPEN:
        assert w.get(path, authorized=False)[0] == 200, path
    for path in GUARDED:
        refused = [
            fetch(w.base + path),
            fetch(w.base + path, {"Authorization": "Bearer wrong-token-0123456789abcdef"}),
            fetch(w.base + path, {"Authorization": f"Bearer {TOKEN[:-1]}"}),
            fetch(w.base + path, {"Authorization": f"Basic {TOKEN}"}),
            fetch(w.base + path, {"Authorization": TOKEN}),
            fetch(f"{w.base}{path}?token=wrong-token-0123456789abcdef"),
            fetch(f"{w.base}{path}?token="),
            fetch(f"{w.base}{path}?token={TOKEN}x"),
        ]
        for status, body, headers in refused:
            assert status == 401, (path, status, body)
            assert headers.get("WWW-Authenticate", "").startswith("Bearer") and TOKEN.encode() not in body
        for status, body, _ in (fetch(w.base + path, {"Authorization": f"Bearer {TOKEN}"}),
                                fetch(w.base + path, {"Authorization": f"bearer {TOKEN}"}),
                                fetch(f"{w.base}{path}?token={TOKEN}"),
                                fetch(f"{w.base}{path}?token=wrong-token-0123456789abcdef&token={TOKEN}")):
            assert status == 200, (path, status, body)
    status, _, headers = fetch(f"{w.base}/leaderboard?token={TOKEN}")
    assert "script-src 'sha256-" in headers["Content-Security-Policy"] and "frame-ancestors 'none'" in \
        headers["Content-Security-Policy"]
    assert (headers["X-Content-Type-Options"], headers["Referrer-Policy"], headers["Cache-Control"]) == (
        "nosniff", "no-referrer", "no-store")


def test_nothing_but_the_listed_paths_is_served(guarded_worker: Worker) -> None:
    """Faust's own views (/router, /table, /stats, /assignment, /graph, /performance, /) and any
    other path: 404, with the token or without it."""
    for path in FAUST_PATHS:
        for authorized in (False, True):
            status, body = guarded_worker.get(path, authorized=authorized)
            assert status == 404, (path, status, body)
            assert json.loads(body) == {"error": "not found"}


def test_the_app_mounts_none_of_fausts_views(tmp_path: Path) -> None:
    """The routes the web server would serve, listed: exactly ours (a plain Faust app has more)."""
    import faust

    settings = Resolved(broker="kafka://127.0.0.1:9", database_url="postgresql://127.0.0.1:9/x",
                        data_dir=tmp_path)
    app, _ = build_app(settings, load_plan())
    app.web.init_server()
    ours = {route.resource.canonical for route in app.web.web_app.router.routes()}  # type: ignore[attr-defined]
    assert ours == {*OPEN, *GUARDED, *STATEMENTS}
    plain = faust.App("plain", web_enabled=True, datadir=str(tmp_path / "plain"))
    plain.web.init_server()
    theirs = {route.resource.canonical for route in plain.web.web_app.router.routes()}  # type: ignore[attr-defined]
    assert {"/router/", "/table/"} <= theirs and "/" in theirs  # what is switched off above
    assert (app.conf.web_bind, app.conf.web_router_enabled, app.conf.web_tables_enabled) == ("127.0.0.1", False, False)


class FailingPool:
    """A pool whose every connection attempt fails with an internal message."""

    def acquire(self, timeout: float | None = None) -> Any:
        @contextlib.asynccontextmanager
        async def failing() -> Any:
            raise OSError("password authentication failed for user 'crmbonus' (10.0.0.5:5432)")
            yield

        return failing()


async def test_health_reasons_are_fixed_phrases_without_error_text() -> None:
    runtime: Any = SimpleNamespace(pool=FailingPool(), consuming=True, rebalancing=False,
                                   pipeline=SimpleNamespace(healthy=True, last_error=None))
    reasons = [await web.health_problem(runtime)]
    runtime.pipeline = SimpleNamespace(healthy=False, last_error="ZeroDivisionError: decimal.DivisionByZero at x")
    reasons.append(await web.health_problem(runtime))
    runtime.rebalancing, runtime.consuming = True, True
    reasons.append(await web.health_problem(runtime))
    runtime.consuming = False
    reasons.append(await web.health_problem(runtime))
    runtime.pool = None
    reasons.append(await web.health_problem(runtime))
    assert reasons == [web.POSTGRES_SILENT, web.NOT_COMMITTING, web.REBALANCING, web.NOT_CONSUMING,
                       web.NOT_CONNECTED]
    for reason in reasons:
        assert reason in web.HEALTH_REASONS
        assert "Error" not in reason and "password" not in reason and "10.0.0.5" not in reason


def test_a_non_loopback_web_host_needs_a_token_or_web_insecure(pg_url: str, tmp_path: Path) -> None:
    refused = crmbonus("worker", "--web-host", "0.0.0.0", "--database-url", pg_url, data_dir=tmp_path, check=False)
    assert refused.returncode == 2 and "--web-host 0.0.0.0 is not a loopback address" in refused.stderr
    assert "CRMBONUS_WEB_TOKEN" in refused.stderr and "--web-insecure" in refused.stderr
    assert "Traceback" not in refused.stderr
    with running_worker(pg_url, tmp_path, "--web-host", "0.0.0.0", "--web-insecure") as insecure:
        assert insecure.get("/api/leaderboard", authorized=False)[0] == 200  # asked for: no token
        address = own_address()
        if address is not None:  # bound to every interface indeed
            assert fetch(insecure.base.replace("127.0.0.1", address) + "/health")[0] == 200


def test_a_worker_binds_loopback_by_default(worker: Worker) -> None:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(worker.base.replace("127.0.0.1", address) + "/health", timeout=3)


async def test_the_api_defaults_to_the_latest_month_so_far_and_omits_zero_rows(
        guarded_worker: Worker, pg_url: str) -> None:
    await add_rows(pg_url, "2026-10", ["fr-1", "fr-2"])
    await add_rows(pg_url, "2999-01", ["fr-future"])  # a clock-skewed CRM's month: no default
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO bonus_running VALUES ('2026-10', 'fr-zero', 'field_rep', 0, 0, 0, 0, 0, 0,"
                           " 0, 0, now()), ('2026-08', 'fr-zero', 'field_rep', 0, 0, 0, 0, 0, 0, 0, 0, now())")
    finally:
        await conn.close()
    latest = guarded_worker.api()
    assert (latest["period"], latest["periods"]) == ("2026-10", ["2999-01", "2026-10"])
    assert [row["person_id"] for row in latest["rows"]] == ["fr-1", "fr-2"]
    assert [row["person_id"] for row in guarded_worker.api("?period=2999-01")["rows"]] == [
        "fr-future"]
    assert guarded_worker.api("?period=2026-08")["rows"] == []


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps)")
async def test_the_page_shows_hostile_ids_literally_and_passes_its_token_on(
        guarded_worker: Worker, pg_url: str) -> None:
    sync_api = pytest.importorskip("playwright.async_api")
    await add_rows(pg_url, "2026-10", HOSTILE)
    async with sync_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 900})
            api_calls: list[Any] = []
            page.on("request", lambda request: api_calls.append(request) if "/api/" in request.url else None)
            refused = await page.goto(f"{guarded_worker.base}/leaderboard?period=2026-10")
            assert refused is not None and refused.status == 401  # a page load carries no header: ?token=

            await page.goto(f"{guarded_worker.base}/leaderboard?period=2026-10&token={TOKEN}")
            await page.wait_for_selector("#rows tr")
            shown = await page.evaluate(
                "() => [...document.querySelectorAll('#rows tr td:nth-child(2)')].map(td => td.textContent)")
            assert shown == list(HOSTILE)
            assert await page.evaluate("() => window.pwned") is None
            assert await page.locator("#rows img, #rows b, #rows script, #rows a:not(.statement)").count() == 0
            assert "updated" in (await page.locator("#status").text_content() or "")
            assert api_calls and all("token" not in request.url for request in api_calls)
            sent = [(await request.all_headers()).get("authorization") for request in api_calls]
            assert sent == [f"Bearer {TOKEN}"] * len(api_calls)
            assert TOKEN in page.url  # kept for a reload
        finally:
            await browser.close()


D = Decimal


async def add_programme_rows(url: str) -> None:
    """November 2026 under a plan with every programme: upsells, KPI, the gold prize, lead points (SPEC 13);
    a row whose only figure is an upsell count, and one of zeros."""
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO bonus_running (period, person_id, role, cross_sell_count, cross_sell_amount,"
            " appointments_held, appointments_converted, cross_sell_bonus, appointment_bonus, prior_adjustments,"
            " total_bonus, upsell_count, upsell_amount, upsell_bonus, kpi_bonus, prize_bonus, plan_version)"
            " VALUES ('2026-11', $1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, $12, $13, $14, 'demo-1')",
            [("tm-gold", "telemarketer", 3, D("400.00"), 20, 16, D("0.00"), D("660.00"), D("1322.00"), 2,
              D("120.00"), D("12.00"), D("150.00"), D("500.00")),
             ("fr-upsell-only", "field_rep", 0, D("0.00"), 0, 0, D("0.00"), D("0.00"), D("0.00"), 1, D("80.00"),
              D("0.00"), D("0.00"), D("0.00")),
             ("tm-zero", "telemarketer", 0, D("0.00"), 0, 0, D("0.00"), D("0.00"), D("0.00"), 0, D("0.00"),
              D("0.00"), D("0.00"), D("0.00"))])
        await conn.executemany("INSERT INTO lead_points VALUES ($1, $2, $3, $4, $5, $6)",
                               [(2026, "tm-gold", 16, D("24000.00"), "silver", True),
                                (2025, "fr-upsell-only", 9, D("10.00"), "bronze", False)])
    finally:
        await conn.close()



def test_the_api_and_the_page_show_the_programmes_and_the_years_lead_points(worker: Worker, pg_url: str) -> None:
    import asyncio

    asyncio.run(add_programme_rows(pg_url))
    november = worker.api("?period=2026-11")
    assert november["rows"] == [
        {"rank": 1, "person_id": "tm-gold", "role": "telemarketer", "cross_sell_count": 3,
         "cross_sell_amount": "400.00", "appointments_held": 20, "appointments_converted": 16, "total_bonus": "1322.00",
         "cross_sell_bonus": "0.00", "appointment_bonus": "660.00", "prior_adjustments": "0.00", "upsell_count": 2,
         "upsell_amount": "120.00", "upsell_bonus": "12.00", "kpi_bonus": "150.00", "prize_bonus": "500.00",
         "lead_points": 16, "badge": "silver", "gold": True},
        {"rank": 2, "person_id": "fr-upsell-only", "role": "field_rep", "cross_sell_count": 0,
         "cross_sell_amount": "0.00", "appointments_held": 0, "appointments_converted": 0, "total_bonus": "0.00",
         "cross_sell_bonus": "0.00", **NOTHING_ELSE, "upsell_count": 1, "upsell_amount": "80.00"},
    ]  # tm-zero: a row of zeros is nobody's rank; fr-upsell-only's points are 2025's, not November 2026's
    if CHROMIUM is None:
        pytest.skip("the page part needs Debian's chromium (make system-deps)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{worker.base}/leaderboard?period=2026-11")
            page.wait_for_selector("#rows tr[data-person='tm-gold']")
            assert page.locator("#rows tr").count() == 2
            assert by_header(page, "tm-gold") == {
                "#": "1", "person": "tm-gold", "role": "telemarketer", "cross-sells": "3", "amount": "400.00",
                "upsells": "2 · 12.00", "appointments": "20 held · 16 conv.", "KPI": "150.00", "prize": "500.00",
                "lead points": "16 · silver · gold", "bonus": "1,322.00"}
            assert by_header(page, "fr-upsell-only")["lead points"] == "0"
            assert page.locator("#rows tr[data-person='tm-gold'] td.gold").count() == 1
        finally:
            browser.close()
