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
#: issue 15: end to end with every SPEC 13 programme enabled costs at most this much of the rate without them
PROGRAMMES_MAX_COST = 0.15
RSS_MAX_MB = 300
#: Our reading of "flat": RSS grows less than this over the second half of the burst (10 x the
#: end-to-end events), once the customer cache has filled to its bound (100,000 events).
RSS_FLAT_GROWTH = 0.10
#: Issue 18: a burst drained by the running workers (first commit -> last) against a raw COPY of the
#: same rows beside it: the median of the pairs' ratios, the lowest pair, and the moonshot.
BURST_COPY_MEDIAN = 0.25
BURST_COPY_MIN_PAIR = 0.2
BURST_COPY_MOONSHOT = 0.4
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


def _broker(figures: dict[str, dict[str, Any]], suffix: str) -> str:
    """The label of the broker of the figures named with `suffix`."""
    for name, found in figures.items():
        if name.endswith(suffix) and found.get("broker"):
            return str(found["broker"])
    return "Apache Kafka"


def _versus(r: Results, tansu_name: str) -> str:
    """`; x0.95 of tansu's`: the Kafka figure of `tansu_name` against tansu's, when both were measured."""
    ratio = r.get(tansu_name + "-kafka", "rate") / r.get(tansu_name, "rate")
    return "" if math.isnan(ratio) else f"; x{ratio:.2f} of tansu's"


def _skipped(figures: dict[str, Any]) -> str:
    return "[yellow]skipped[/] (above)" if "skipped" in figures else ""


def _brokers_line(meta: dict[str, Any]) -> str:
    """Which broker each row ran on, and how Apache Kafka was had (or why not)."""
    parts = []
    for key, broker in meta.get("brokers", {}).items():
        if key == "tansu":
            parts.append("tansu (embedded, consumer-group timing of the embedded stack)")
        elif broker.get("skipped"):
            parts.append(f"{broker['label']}: skipped ({broker['skipped']})")
        else:
            parts.append(f"{broker['label']} (KRaft, one node, PLAINTEXT, production consumer-group timing; "
                         f"answered {broker['startup_s']:.1f} s after launch, then warmed up in "
                         f"{broker.get('warm_up_s') or 0:.1f} s: both excluded)")
    return ("brokers: " + "; ".join(parts) + ". Rows not naming a broker ran on tansu, raw COPY on none."
            if parts else "every row on tansu")


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
        if "skipped" in r.figures[name]:
            table.add_row(number, label, "-", "-", "-", f"[yellow]skipped: {r.figures[name]['skipped']}[/]")
            return
        rate = r.get(name, "rate")
        table.add_row(number, label, _n(r.get(name, "events")), _n(rate), _us(rate), note)

    f = r.figures
    kafka = _broker(f, "-kafka")
    row("1", "raw consume (aiokafka, no group) — tansu", "consume", f.get("consume", {}).get("detail", ""))
    row("1k", f"raw consume (aiokafka, no group) — {kafka}", "consume-kafka",
        f.get("consume-kafka", {}).get("detail", "") + _versus(r, "consume"))
    row("1b", "bare Faust agent (noack_take, acks only)", "faust", f.get("faust", {}).get("detail", ""))
    in_turn = ", in turn with 4" if "ratios" in f.get("e2e-copy", {}) else ""
    row("2", "raw COPY (asyncpg copy_records_to_table)" + in_turn, "copy",
        f.get("copy", {}).get("detail", "") + _runs(f.get("copy", {})))
    row("2k", "raw COPY, the same, in turn with 4k", "copy-kafka",
        "no broker involved: runs of their own beside 4k's" + _runs(f.get("copy-kafka", {})))
    row("2b", "raw COPY, bare table", "copy-bare", f.get("copy-bare", {}).get("detail", ""))
    workers = int(meta["sizes"].get("workers", 1))
    row("3", "naive: real worker, batch_max=1", "naive",
        "one process, one transaction per event; running worker, first publish -> last commit")
    row("4", f"crmbonus end to end, {workers} worker process(es) — tansu", "e2e",
        f"`crmbonus worker --workers {workers}` running; first publish -> last commit; "
        f"publishing took {r.get('e2e', 'publish_s'):.1f} s of it" + _runs(f.get("e2e", {})))
    row("4k", f"crmbonus end to end, {workers} worker process(es) — {kafka}", "e2e-kafka",
        f"the same, production group timing; publishing took {r.get('e2e-kafka', 'publish_s'):.1f} s"
        + _versus(r, "e2e") + _runs(f.get("e2e-kafka", {})))
    row("4a", "crmbonus end to end, 1 worker process", "single",
        f"the same with one process; publishing took {r.get('single', 'publish_s'):.1f} s of it")
    row("4b", f"burst into {workers} running worker(s) — tansu", "burst",
        f"the same, {r.get('burst', 'events'):,.0f} events; publishing took {r.get('burst', 'publish_s'):.1f} s")
    row("4bk", f"burst into {workers} running worker(s) — {kafka}", "burst-kafka",
        f"the same on {kafka}; publishing took {r.get('burst-kafka', 'publish_s'):.1f} s; worker peak RSS "
        f"{_n(r.get('burst-kafka', 'rss_peak_mb'))} MB" + _versus(r, "burst"))
    if "replay" in f:
        row("4c", "crmbonus replay (publish, then start and process)", "replay",
            f"publish {r.get('replay', 'publish_s'):.1f} s + processing {r.get('replay', 'process_s'):.1f} s "
            f"({_n(r.get('replay', 'process_rate'))}/s alone, {r.get('replay', 'batches'):.0f} batches of "
            f"{r.get('replay', 'mean_batch'):.0f}); start-up {r.get('replay', 'startup_s'):.1f} s excluded")
    for number, suffix, broker in (("18", "", "tansu"), ("18k", "-kafka", kafka)):
        name = "burst-copy" + suffix
        found = f.get(name, {})
        row(number, f"burst into {workers} running worker(s), first commit -> last — {broker}", name,
            f"raw COPY beside it {_n(r.get(name, 'copy_rate'))} rows/s; burst / COPY median "
            f"{_n(r.get(name, 'ratio'), 3)} of {len(found.get('pairs', []))} pair(s), lowest "
            f"{_n(r.get(name, 'min_ratio'), 3)}; the first commit (~{_n(r.get(name, 'first_commit_events'))} "
            f"events, seen {r.get(name, 'first_commit_s'):.2f} s after the publish began) left out; publishing "
            f"took {r.get(name, 'publish_s'):.1f} s" + _runs(found))
    base = r.get("history-10", "rate")
    for length in (10, 100, 1000):
        name = f"history-{length}"
        if name in f:
            row("8", f"customers of {length:,} events each", name,
                f"cost/event x{base / r.get(name, 'rate'):.2f} of 10-event customers")
    console.print(table)
    console.print(_brokers_line(meta))

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
    for number, suffix, broker in (("4", "", "tansu"), ("4k", "-kafka", kafka)):
        name = "e2e" + suffix
        if name in f:
            rate = r.get(name, "rate")
            targets.add_row(number, f"end to end ({workers} workers), events/s — {broker}",
                            _skipped(f[name]) or _n(rate), f">= {E2E_MIN_RATE:,}",
                            _meets(_ok(rate, rate >= E2E_MIN_RATE)))
    for number, suffix, broker in (("5", "", "tansu"), ("5k", "-kafka", kafka)):
        paired = f.get("e2e-copy" + suffix, {})
        if not paired and not suffix:  # e2e and COPY measured apart (--only): the ratio of the two medians
            paired = {"ratio": e2e / copy} if "e2e" in f and "copy" in f else {}
        if not paired:
            continue
        share = float(paired.get("ratio", math.nan))
        runs = paired.get("ratios") or []
        targets.add_row(number, f"end to end / raw COPY — {broker}" + (" (median of runs in turn: " + " / ".join(
                            f"{ratio:.3f}" for ratio in runs) + ")" if runs else ""),
                        _skipped(paired) or _n(share, 3), f">= {E2E_MIN_COPY_SHARE}",
                        _meets(_ok(share, share >= E2E_MIN_COPY_SHARE)))
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
    prog = f.get("programmes", {})
    if prog and "ratio" in prog:
        share = float(prog["ratio"])
        targets.add_row("15", "end to end, every SPEC 13 programme / none (median of runs in turn: " + " / ".join(
            f"{ratio:.3f}" for ratio in prog.get("ratios", [])) + ")", _n(share, 3), f">= {1 - PROGRAMMES_MAX_COST}",
                        _meets(_ok(share, share >= 1 - PROGRAMMES_MAX_COST)))
    for number, suffix, broker in (("18", "", "tansu"), ("18k", "-kafka", kafka)):
        paired = f.get("burst-copy" + suffix, {})
        if not paired:
            continue
        median, lowest = float(paired.get("ratio", math.nan)), float(paired.get("min_ratio", math.nan))
        ratios = paired.get("ratios") or []
        targets.add_row(number, f"burst (first commit -> last) / raw COPY — {broker} " + (
                            "(median of pairs in turn: " + " / ".join(f"{ratio:.3f}" for ratio in ratios) + ")"
                            if ratios else "(no pair drained past its first commit: too few events)"),
                        _skipped(paired) or _n(median, 3),
                        f">= {BURST_COPY_MEDIAN} (moonshot {BURST_COPY_MOONSHOT})",
                        _meets(_ok(median, median >= BURST_COPY_MEDIAN)) + (
                            " (moonshot)" if median >= BURST_COPY_MOONSHOT else ""))
        if "skipped" not in paired:
            targets.add_row(number, f"  lowest pair — {broker}", _n(lowest, 3), f">= {BURST_COPY_MIN_PAIR}",
                            _meets(_ok(lowest, lowest >= BURST_COPY_MIN_PAIR)))
    rec = f.get("recompute", {})
    if rec and "rate" in rec:
        ratio = float(rec["rate"]) / e2e if e2e else math.nan
        targets.add_row("16", f"recompute after a plan change: {float(rec['events']):,.0f} stored events "
                        f"({float(rec['customers']):,.0f} customers, {len(rec['periods'])} month(s)) in "
                        f"{float(rec['seconds']):.1f} s, events/s and / end to end", f"{_n(float(rec['rate']))} "
                        f"(x{_n(ratio, 2)})", "", "")
    console.print(targets)
    if lat:
        console.print(f"latency run: {lat['batches']:.0f} batches, mean {lat['mean_batch']:.0f} events, mean "
                      f"{lat['mean_batch_ms']:.0f} ms each; p50/p99 ms by send time: " + ", ".join(
                          f"{at:.0f}s {p50:.0f}/{p99:.0f}" for at, p50, p99 in lat["by_window_ms"]))
    for name in ("e2e", "e2e-kafka", "burst", "burst-kafka", "latency"):
        cpu = f.get(name, {}).get("cpu_s")
        if cpu:
            events = float(f[name]["events"])
            console.print(f"CPU during {name} (s; ms per 1000 events): " + ", ".join(
                f"{part} {seconds:.1f} ({seconds / events * 1e6:.0f})" for part, seconds in sorted(cpu.items())))
    for name in ("burst-copy", "burst-copy-kafka"):
        found = f.get(name, {})
        if "pairs" not in found:
            continue
        console.print(f"CPU during {name}'s bursts (ms per 1000 events, {len(found['pairs'])} pooled): " + ", ".join(
            f"{part} {ms:.0f}" for part, ms in found["cpu_ms_per_1000"].items()) + "; its COPY runs (per 1000 rows): "
            + ", ".join(f"{part} {ms:.0f}" for part, ms in found["copy_cpu_ms_per_1000"].items()))
        console.print(f"{name} pairs: " + "; ".join(
            f"{pair['run'] + 1} ({pair['first']} first) drain {_n(float(pair['burst']['drain_rate']))}/s "
            f"(first commit {pair['burst']['first_commit_events']:,} at {pair['burst']['first_commit_s']:.2f} s, "
            f"last {pair['burst']['e2e_s']:.2f} s) / COPY {_n(float(pair['copy']['rate']))}/s = "
            f"{_n(float(pair['ratio']), 3)}" for pair in found["pairs"]))
    spy = burst.get("py_spy")
    if spy:
        console.print("worker samples during the burst (py-spy): " + ", ".join(
            f"{label} {share:.0%}" for label, share in spy.items() if share >= 0.005))
    console.print(f"total {meta.get('seconds', 0):.0f} s; sizes {meta['sizes']}")
