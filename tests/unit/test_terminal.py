"""Terminal tables never cut a figure (issue 17): at any width from 40 columns, every money value
of the leaderboard is shown whole or its column is left out (and named in the caption); the
person and the bonus are always there, an id folds rather than a figure."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from rich.console import Console
from rich.text import Text

from stream import cli
from stream.reports import Standing
from stream.terminal import Column, FittedTable

WIDTHS = (40, 60, 80, 120)
MONEY_HEADERS = {"amount", "upsell", "KPI", "prize", "bonus"}


def standings(person: str = "tm-{i:03d}", n: int = 12) -> list[Standing]:
    """The demo's kind of month, every programme on: four- and five-figure bonuses, one negative."""
    return [Standing(rank=i + 1, person_id=person.format(i=i), role="telemarketer", cross_sell_count=40 - i,
                     cross_sell_amount=Decimal("123456.78") - 1000 * i, appointments_held=61 - i,
                     appointments_converted=17 - i, total_bonus=Decimal("13101.45") - 1111 * i,
                     upsell_count=7, upsell_bonus=Decimal("1045.10") + i, kpi_bonus=Decimal("250.00") + i,
                     prize_bonus=Decimal("1000.01") if i == 0 else Decimal("0.00"), lead_points=17 - i,
                     badge="silver" if i < 3 else "bronze", gold=i == 0)
            for i in range(n - 1)] + [
        Standing(rank=n, person_id=person.format(i=n - 1), role="field_rep", cross_sell_count=0,
                 cross_sell_amount=Decimal("0.00"), appointments_held=0, appointments_converted=0,
                 total_bonus=Decimal("-1234567.89"), prior_adjustments=Decimal("-1234567.89"))]


def render(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), markup=False, emoji=False, highlight=False)
    console.print(renderable)
    return console.export_text()


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a rendered table, a folded cell joined up again."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    rows: list[dict[str, str]] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = dict(zip(names, (cell.strip() for cell in line.split("│")[1:-1]), strict=True))
        starts_row = any(cells[name] for name in names if name != "person")
        if starts_row or not rows:
            rows.append(cells)
        else:  # the fold of a long id: the rest of the person's cell
            rows[-1]["person"] += cells["person"]
    return names, rows


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("role", [None, "telemarketer"])
def test_the_leaderboard_shows_every_money_value_whole(width: int, role: str | None) -> None:
    rows = standings()
    text = render(cli.leaderboard_table("2026-11", role, rows), width)
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    names, shown = parse(text)
    assert {"person", "bonus"} <= set(names)
    assert [r["person"] for r in shown] == [r.person_id for r in rows]
    wanted = {"amount": "cross_sell_amount", "upsell": "upsell_bonus", "KPI": "kpi_bonus", "prize": "prize_bonus",
              "bonus": "total_bonus"}
    for header in MONEY_HEADERS & set(names):
        assert [r[header] for r in shown] == [f"{getattr(r, wanted[header]):,.2f}" for r in rows], header
    left_out = [header for header in [c.header for c, _, _ in cli.LEADERBOARD_COLUMNS] if header not in names
                and not (role and header == "role")]
    if left_out:
        assert "not shown at this width: " + ", ".join(left_out) in " ".join(text.split())
    else:
        assert "not shown" not in text


def test_widths_that_drop_columns_drop_the_least_important_first() -> None:
    rows = standings()
    shown = {width: parse(render(cli.leaderboard_table("2026-11", None, rows), width))[0] for width in WIDTHS}
    # the amount does not fit beside -1,234,567.89 at 40; the narrow held count does, in the room left
    assert shown[40] == ["#", "person", "held", "bonus"]
    assert shown[60] == ["#", "person", "role", "amount", "bonus"]
    assert shown[80] == ["#", "person", "role", "cross-sells", "amount", "held", "bonus"]
    assert shown[120] == ["#", "person", "role", "cross-sells", "amount", "held", "conv.", "upsell", "KPI", "prize",
                          "bonus"]
    everything = parse(render(cli.leaderboard_table("2026-11", None, rows), 200))[0]
    assert everything == [c.header for c, _, _ in cli.LEADERBOARD_COLUMNS]


def test_every_width_from_40_to_200_keeps_the_bonus_whole() -> None:
    rows = standings()
    for width in range(40, 201):
        _names, shown = parse(render(cli.leaderboard_table("2026-11", None, rows), width))
        assert [r["bonus"] for r in shown] == [f"{r.total_bonus:,.2f}" for r in rows], width
        assert "…" not in render(cli.leaderboard_table("2026-11", None, rows), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_long_id_folds_and_the_figures_stay_whole(width: int) -> None:
    rows = standings(person="fr-" + "x" * 60 + "-{i:02d}", n=3)
    text = render(cli.leaderboard_table("2026-11", None, rows), width)
    _names, shown = parse(text)
    assert [r["person"] for r in shown] == [r.person_id for r in rows]
    assert [r["bonus"] for r in shown] == [f"{r.total_bonus:,.2f}" for r in rows]
    assert "…" not in text


def test_a_plan_without_programmes_shows_no_programme_columns() -> None:
    """The default plan of version 1: no upsell, KPI, prize or lead-point columns of zeros, and a
    field rep's table no appointment counts (a telemarketer's)."""
    rows = [Standing(rank=1, person_id="fr-1", role="field_rep", cross_sell_count=4,
                     cross_sell_amount=Decimal("355.00"), appointments_held=0, appointments_converted=0,
                     total_bonus=Decimal("10.65"))]
    names, shown = parse(render(cli.leaderboard_table("2026-11", None, rows), 120))
    assert names == ["#", "person", "role", "cross-sells", "amount", "bonus"]
    assert shown == [{"#": "1", "person": "fr-1", "role": "field_rep", "cross-sells": "4", "amount": "355.00",
                      "bonus": "10.65"}]


def test_badges_and_gold_in_one_cell() -> None:
    rows = standings(n=5)
    _names, shown = parse(render(cli.leaderboard_table("2026-11", None, rows), 200))
    assert [r["badge"] for r in shown] == ["silver + gold", "silver", "silver", "bronze", ""]
    assert [r["points"] for r in shown] == ["17", "16", "15", "14", "0"]
    assert "Leaderboard 2026-11 (lead points: 2026)" in render(cli.leaderboard_table("2026-11", None, rows), 200)


def test_fitted_table_keeps_priority_zero_and_refills_room() -> None:
    columns = [Column("id", 0, "left", fold=True), Column("wide", 1), Column("narrow", 2), Column("total", 0)]
    table = FittedTable(columns, [[Text("a"), Text("w" * 30), Text("n"), Text("1,000.00")]])
    assert table.chosen(200) == [0, 1, 2, 3]
    # 40 columns: "wide" (36 with its frame) does not fit beside the others; "narrow" dropped first, then
    # "wide" went, and "narrow" fits again in the room it left
    assert table.chosen(40) == [0, 2, 3]
    assert table.chosen(10) == [0, 3]  # priority 0 is never dropped
    with pytest.raises(ValueError):
        FittedTable(columns, [[Text("a")]])
