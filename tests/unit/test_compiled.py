"""The optional compiled build (setup.py, `make compiled`) runs the same code as the pure one.

mypyc compiles the pure core from the same source, but reads a few things differently: a compiled
dataclass's field types are classes where the interpreted ones are strings (`from __future__
import annotations`), a typeshed stub that is not the truth (`decimal.Context.flags`) is checked at
run time, a function patched on a compiled module is not seen by the calls inside it, and a
compiled class takes no attribute on its instances but its fields. These
tests pin what each build must read the same; run on both (`make compiled`, then `make pure`),
they are what "without changing a result" rests on besides the suites themselves.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.machinery
from decimal import Decimal
from pathlib import Path

import pytest

from stream import ledger
from stream.bonus import FIGURE_COLUMNS, RUNNING_COLUMNS, Tally, type_name
from stream.reports import MONEY_COLUMNS, NUMERIC_COLUMNS
from stream.rules import split_equally

ROOT = Path(__file__).resolve().parents[2]
#: The text columns of a `bonus_running` row: its key, role and plan version; every other is a figure.
TEXT_COLUMNS = ("period", "person_id", "role", "plan_version")
MONEY = ("cross_sell_amount", "cross_sell_bonus", "appointment_bonus", "prior_adjustments", "total_bonus",
         "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus")
#: Modules whose functions tests or benchmarks.profile patch at run time, or whose objects tests stub
#: (`pipeline.cache.update`): never compiled, a compiled caller or class would not take the patch.
PATCHED = ("stream/ledger.py", "stream/store.py", "stream/pipeline.py", "stream/settlement.py", "schemas/decode.py",
           "stream/customer_cache.py")


def compiled_paths() -> list[str]:
    """setup.py's COMPILED list, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPILED" for t in node.targets):
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("setup.py has no COMPILED list")


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def is_extension(module: str) -> bool:
    """Whether the module imported is an extension (its `__spec__.origin`'s directory may be wrong:
    mypyc 2.4 doubles the package's for a compiled module imported by another; the suffix is right)."""
    spec = importlib.import_module(module).__spec__
    origin = (spec.origin if spec else None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def file_found(path: str) -> Path:
    """The file an import of the module at `path` finds (an extension before the source)."""
    spec = importlib.machinery.PathFinder.find_spec(Path(path).stem, [str((ROOT / path).parent)])
    assert spec is not None and spec.origin is not None, path
    return Path(spec.origin)


def test_field_types_are_read_the_same_as_classes_and_as_strings() -> None:
    as_strings = dataclasses.make_dataclass("S", [("n", "int"), ("d", "Decimal"), ("s", "str")])
    as_classes = dataclasses.make_dataclass("C", [("n", int), ("d", Decimal), ("s", str)])
    for cls in (as_strings, as_classes):
        assert [type_name(f) for f in dataclasses.fields(cls)] == ["int", "Decimal", "str"]


def test_the_figures_of_a_row_are_every_count_and_amount() -> None:
    """Empty in the first compiled trial: `has_figures` then said no row had any."""
    assert FIGURE_COLUMNS == tuple(name for name in RUNNING_COLUMNS if name not in TEXT_COLUMNS)
    assert NUMERIC_COLUMNS == FIGURE_COLUMNS
    assert MONEY_COLUMNS == MONEY


def test_the_sql_types_follow_the_field_types() -> None:
    assert ledger._RUNNING_TYPES == {name: "text" if name in TEXT_COLUMNS else "numeric" if name in MONEY else "int"
                                     for name in RUNNING_COLUMNS}
    amounts = {f.name for f in dataclasses.fields(Tally) if isinstance(getattr(Tally(), f.name), Decimal)}
    assert amounts == {"cross_sell_amount", "upsell_amount", "prize"}
    assert ledger._TALLY_TYPES == tuple("numeric" if f.name in amounts else "int" for f in dataclasses.fields(Tally))


def test_an_inexact_split_reads_the_context_flags() -> None:
    """`Context.flags` is a SignalDict, not the dict typeshed says: the compiled build raised TypeError."""
    assert split_equally(Decimal(1), 3) == [Decimal("0.3333333334"), Decimal("0.3333333333"), Decimal("0.3333333333")]
    assert split_equally(Decimal(6), 3) == [Decimal(2)] * 3


def test_no_module_patched_at_run_time_is_compiled() -> None:
    """A compiled caller would not see the patch (tests, benchmarks.profile's phases)."""
    assert not set(compiled_paths()) & set(PATCHED)


def test_a_compiled_build_is_whole_and_current() -> None:
    """After `make compiled`: every module of setup.py's list is its extension, none is older than its
    source (a stale .so runs old code while the .py says otherwise). A pure build is skipped here."""
    paths = compiled_paths()
    compiled = [path for path in paths if is_extension(module_of(path))]
    if not compiled:
        leftovers = sorted(str(p.relative_to(ROOT)) for path in paths
                           for p in (ROOT / path).parent.glob(Path(path).stem + ".*.so"))
        assert not leftovers, f"extension modules not imported: {leftovers}"
        pytest.skip("pure-Python build: nothing compiled (`make compiled` builds the extensions)")
    assert compiled == paths, f"a partial build: {sorted(set(paths) - set(compiled))} not compiled; run `make compiled`"
    stale = [path for path in paths if (ROOT / path).stat().st_mtime > file_found(path).stat().st_mtime]
    assert not stale, f"compiled before their source last changed: {stale}; run `make compiled` (or `make pure`)"
