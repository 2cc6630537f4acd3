"""The benchmark's table (rich) and its targets (issue 6). Figures are shown, never asserted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

#: Issue 6's targets on a 2-core machine.
E2E_MIN_RATE = 25_000
E2E_MIN_COPY_SHARE = 0.25
E2E_MIN_NAIVE_FACTOR = 10
P99_MAX_MS = 1000
RSS_MAX_MB = 300
#: Our reading of "flat": RSS grows less than this over the second half of the burst (10 x the
#: end-to-end events), once the customer cache has filled to its bound (100,000 events).
RSS_FLAT_GROWTH = 0.10
#: Our reading of "cost per event must not grow with history": 1000-event customers cost at most this x 10-event ones.
HISTORY_MAX_GROWTH = 1.5


@dataclass
class Results:
    meta: dict[str, Any]
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, name: str, key: str) -> float:
        value = self.figures.get(name, {}).get(key)
        return float(value) if isinstance(value, int | float) else math.nan


def _n(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _us(rate: float) -> str:
    return "-" if math.isnan(rate) or rate == 0 else f"{1e6 / rate:,.0f}"


def _runs(figures: dict[str, Any]) -> str:
    rates = figures.get("rates") or []
    return f"; median of {len(rates)} runs: " + " / ".join(f"{rate:,.0f}" for rate in rates) if len(rates) > 1 else ""


def _meets(ok: bool | None) -> str:
    return "-" if ok is None else ("[green]yes[/]" if ok else "[red]no[/]")


def _ok(value: float, test: bool) -> bool | None:
    return None if math.isnan(value) else test


def render(results: Results, console: Console | None = None) -> None:
    console = console or Console(width=160)
    meta, r = results.meta, results
    smoke = " — SMOKE: tiny sizes, figures meaningless" if meta["smoke"] else ""
    table = Table(title=f"crmbonus benchmark — {meta['date']}, {meta['machine']}, {meta['cores']} cores "
                        f"({meta['cpu']}), Python {meta['python']}{smoke}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("measurement")
    table.add_column("events", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("µs/event", justify="right")
    table.add_column("notes")

    def row(number: str, label: str, name: str, note: str) -> None:
        if name not in r.figures:
            return
        rate = r.get(name, "rate")
        table.add_row(number, label, _n(r.get(name, "events")), _n(rate), _us(rate), note)

    f = r.figures
    row("1", "raw consume (aiokafka, no group)", "consume", f.get("consume", {}).get("detail", ""))
    row("1b", "bare Faust agent (noack_take, acks only)", "faust", f.get("faust", {}).get("detail", ""))
    row("2", "raw COPY (asyncpg copy_records_to_table)", "copy", f.get("copy", {}).get("detail", "")
        + _runs(f.get("copy", {})))
    row("2b", "raw COPY, bare table", "copy-bare", f.get("copy-bare", {}).get("detail", ""))
    workers = int(meta["sizes"].get("workers", 1))
    row("3", "naive: real worker, batch_max=1", "naive",
        "one process, one transaction per event; running worker, first publish -> last commit")
    row("4", f"crmbonus end to end, {workers} worker process(es)", "e2e",
        f"`crmbonus worker --workers {workers}` running; first publish -> last commit; "
        f"publishing took {r.get('e2e', 'publish_s'):.1f} s of it" + _runs(f.get("e2e", {})))
    row("4a", "crmbonus end to end, 1 worker process", "single",
        f"the same with one process; publishing took {r.get('single', 'publish_s'):.1f} s of it")
    row("4b", f"burst into {workers} running worker(s)", "burst",
        f"the same, {r.get('burst', 'events'):,.0f} events; publishing took {r.get('burst', 'publish_s'):.1f} s")
    if "replay" in f:
        row("4c", "crmbonus replay (publish, then start and process)", "replay",
            f"publish {r.get('replay', 'publish_s'):.1f} s + processing {r.get('replay', 'process_s'):.1f} s "
            f"({_n(r.get('replay', 'process_rate'))}/s alone, {r.get('replay', 'batches'):.0f} batches of "
            f"{r.get('replay', 'mean_batch'):.0f}); start-up {r.get('replay', 'startup_s'):.1f} s excluded")
    base = r.get("history-10", "rate")
    for length in (10, 100, 1000):
        name = f"history-{length}"
        if name in f:
            row("8", f"customers of {length:,} events each", name,
                f"cost/event x{base / r.get(name, 'rate'):.2f} of 10-event customers")
    console.print(table)

    e2e, copy, naive = r.get("e2e", "rate"), r.get("copy", "rate"), r.get("naive", "rate")
    lat = f.get("latency", {})
    burst = f.get("burst", {})
    rss_at = burst.get("rss_at_mb", {})
    growth = (rss_at["100%"] / rss_at["50%"] - 1) if "50%" in rss_at and "100%" in rss_at else math.nan
    peak = max(r.get("burst", "rss_peak_mb"), r.get("latency", "rss_peak_mb"))
    hist_growth = base / r.get("history-1000", "rate")

    targets = Table(title="against issue 6's targets", title_justify="left")
    targets.add_column("#", justify="right")
    targets.add_column("figure")
    targets.add_column("measured", justify="right")
    targets.add_column("target", justify="right")
    targets.add_column("meets")
    targets.add_row("4", f"end to end ({workers} workers), events/s", _n(e2e), f">= {E2E_MIN_RATE:,}",
                    _meets(_ok(e2e, e2e >= E2E_MIN_RATE)))
    paired = f.get("e2e-copy", {})
    share = float(paired.get("ratio", e2e / copy))
    targets.add_row("5", "end to end / raw COPY" + (" (median of runs in turn: " + " / ".join(
                        f"{ratio:.3f}" for ratio in paired["ratios"]) + ")" if paired else ""),
                    _n(share, 3), f">= {E2E_MIN_COPY_SHARE}", _meets(_ok(share, share >= E2E_MIN_COPY_SHARE)))
    targets.add_row("5", "end to end / naive", _n(e2e / naive, 1), f">= {E2E_MIN_NAIVE_FACTOR}",
                    _meets(_ok(e2e / naive, e2e / naive >= E2E_MIN_NAIVE_FACTOR)))
    if "faust" in f:
        ceiling = r.get("faust", "rate")
        targets.add_row("", "  end to end / bare Faust agent (Faust's own ceiling)", _n(e2e / ceiling, 2), "", "")
    if lat:
        p50, p99 = float(lat["p50_ms"]), float(lat["p99_ms"])
        targets.add_row("6", f"latency p50 / p99 at {lat['achieved_rate']:,.0f} events/s for {lat['seconds']:.0f} s",
                        f"{p50:,.0f} / {p99:,.0f} ms", f"p99 < {P99_MAX_MS} ms", _meets(_ok(p99, p99 < P99_MAX_MS)))
        targets.add_row("", "  (worker's own histogram, broker time -> commit)",
                        f"{_n(float(lat['histogram_p50_ms']))} / {_n(float(lat['histogram_p99_ms']))} ms",
                        "", "")
    targets.add_row("7", "worker peak RSS (largest process)", f"{_n(peak)} MB", f"< {RSS_MAX_MB} MB",
                    _meets(_ok(peak, peak < RSS_MAX_MB)))
    if rss_at:
        targets.add_row("7", f"worker RSS ready / 25% / 50% / 75% / 100% of {burst['events']:,} events",
                        " / ".join(f"{value:.0f}" for value in (burst["rss_ready_mb"], *(
                            rss_at.get(mark, math.nan) for mark in ("25%", "50%", "75%", "100%")))) + " MB",
                        f"flat (< {RSS_FLAT_GROWTH:.0%} 50%->100%)", _meets(_ok(growth, growth < RSS_FLAT_GROWTH)))
    targets.add_row("8", "cost/event, 1000-event vs 10-event customers", f"x{_n(hist_growth, 2)}",
                    f"<= x{HISTORY_MAX_GROWTH}", _meets(_ok(hist_growth, hist_growth <= HISTORY_MAX_GROWTH)))
    console.print(targets)
    if lat:
        console.print(f"latency run: {lat['batches']:.0f} batches, mean {lat['mean_batch']:.0f} events, mean "
                      f"{lat['mean_batch_ms']:.0f} ms each; p50/p99 ms by send time: " + ", ".join(
                          f"{at:.0f}s {p50:.0f}/{p99:.0f}" for at, p50, p99 in lat["by_window_ms"]))
    for name in ("e2e", "burst", "latency"):
        cpu = f.get(name, {}).get("cpu_s")
        if cpu:
            events = float(f[name]["events"])
            console.print(f"CPU during {name} (s; ms per 1000 events): " + ", ".join(
                f"{part} {seconds:.1f} ({seconds / events * 1e6:.0f})" for part, seconds in sorted(cpu.items())))
    spy = burst.get("py_spy")
    if spy:
        console.print("worker samples during the burst (py-spy): " + ", ".join(
            f"{label} {share:.0%}" for label, share in spy.items() if share >= 0.005))
    console.print(f"total {meta.get('seconds', 0):.0f} s; sizes {meta['sizes']}")
