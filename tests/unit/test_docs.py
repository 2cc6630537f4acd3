"""The user documentation (docs/) agrees with the code, and `crmbonus --version` prints the version."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.decode import REASONS, decode_event
from schemas.events import EVENT_TYPES, event_type
from stream import cli, docs, metrics, plan, version
from stream.bonus import RUNNING_COLUMNS
from stream.errors import PlanError
from stream.settings import DEFAULT_TOPIC_PREFIX, Topics

ROOT = Path(__file__).resolve().parents[2]


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"crmbonus {importlib.metadata.version('crmbonus')}\n"


def test_the_installed_version_is_the_source_trees() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert version.package_version() == project["version"]
    assert version.source_version(ROOT / "pyproject.toml") == project["version"]


def test_a_source_tree_without_metadata_reads_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "crmbonus"\nversion = "9.8.7"\n', encoding="utf-8")
    assert version.source_version(tmp_path / "pyproject.toml") == "9.8.7"
    (tmp_path / "other.toml").write_text('[project]\nname = "other"\nversion = "1.0"\n', encoding="utf-8")
    assert version.source_version(tmp_path / "other.toml") == "unknown"
    assert version.source_version(tmp_path / "missing.toml") == "unknown"


# -- docs/ and the code -------------------------------------------------------------------------

DOCS = ROOT / "docs"


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_generated_section_is_fresh() -> None:
    assert docs.stale() == []


def test_every_name_the_code_knows_has_words() -> None:
    assert docs.missing_words() == []


def test_a_plan_key_without_words_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    words = dict(docs.PLAN_KEYS)
    del words["kpi.components[].cap"]
    words["cross_sell.no_such_key"] = ("gone", "1")
    monkeypatch.setattr(docs, "PLAN_KEYS", words)
    assert docs.missing_words() == [
        "plan key 'kpi.components[].cap' has no explanation in stream/docs.py",
        "plan key 'cross_sell.no_such_key' is explained in stream/docs.py but the code has no such thing",
    ]
    assert docs.stale()[:1] == ["plan key 'kpi.components[].cap' has no explanation in stream/docs.py"]
    with pytest.raises(docs.DocsError, match=r"kpi\.components\[\]\.cap"):
        docs.write()


def test_every_plan_key_is_in_the_plan_reference_with_its_default() -> None:
    text = _text("plan-authors.md")
    keys = docs.plan_keys()
    paths = [key.path for key in keys]
    # the plan model's keys, version 1 and the optional keys of version 2
    for path in ["version", "timezone", "cross_sell.tiers[].up_to", "cross_sell.matrix", "appointments.held_credit",
                 "effective_from", "cross_sell.min_amount", "upsell.rate", "lead_sharing.silver_points",
                 "kpi.roles", "kpi.components[].cap"]:
        assert path in paths
    for key in keys:
        assert f"| `{key.path}` | {key.type} |" in text
    assert '| `lead_sharing.bronze_points` | integer >= 0 | optional; default: `5` |' in text
    assert '| `kpi.components[].cap` | decimal (a quoted string, or a whole number) | optional; default: `"1"` |' \
        in text
    assert "| `clawback_days` | integer 0..36,525 | **required** |" in text
    for name in (*plan.ATTRIBUTION_MODELS, *plan.KPI_METRICS):
        assert f"`{name}`" in text


def test_every_event_type_reason_and_schema_file_is_in_the_publishers_guide() -> None:
    text = _text("publishers.md")
    for name, model in EVENT_TYPES.items():
        assert f"#### `{name}` (topic `" in text
        assert f"`schemas/json/{name}.schema.json`" in text
        for field in model.__struct_fields__:
            assert f"| `{field}` |" in text
    assert "`schemas/json/event.schema.json`" in text
    for reason in REASONS:
        assert f"| `{reason}` |" in text
    topics = Topics.with_prefix(DEFAULT_TOPIC_PREFIX)
    for name in EVENT_TYPES:
        assert f"(topic `{topics.for_event_type(name)}`" in text
    assert "| `crm.quality` | `feedback`, `quality_review` |" in text


def test_every_export_column_is_in_the_payroll_guide_in_order() -> None:
    text = _text("payroll.md")
    columns = [*RUNNING_COLUMNS, "settlement_id", "settled_at"]
    assert re.findall(r"^\| \d+ \| `(\w+)` \|", text, re.MULTILINE) == columns
    # version 2: the new columns come after total_bonus, in this order
    assert columns[columns.index("total_bonus") + 1:][:6] == [
        "upsell_count", "upsell_amount", "upsell_bonus", "kpi_bonus", "prize_bonus", "plan_version"]


def test_every_table_a_migration_creates_is_in_the_payroll_guide() -> None:
    text = _text("payroll.md")
    for table in docs.migration_tables():
        assert f"`{table}`" in text
    assert {"lead_points", "kpi_scores", "bonus_settled"} <= set(docs.migration_tables())


def test_every_metric_is_in_the_ops_guide() -> None:
    text = _text("ops.md")
    assert [info.name for info in docs.metric_infos()] == list(metrics.NAMES)
    for name in metrics.NAMES:
        assert f"| `{name}` |" in text


def test_check_names_a_stale_or_missing_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in DOCS.glob("*.md"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert docs.main(["--check", "--dir", str(tmp_path)]) == 0
    ops = tmp_path / "ops.md"
    ops.write_text(ops.read_text(encoding="utf-8").replace("| `crmbonus_healthy` | gauge |", "| `x` | gauge |"),
                   encoding="utf-8")
    publishers = tmp_path / "publishers.md"
    publishers.write_text(re.sub(r"<!-- (BEGIN|END) GENERATED dead-letter-reasons.*?-->", "",
                                 publishers.read_text(encoding="utf-8")), encoding="utf-8")
    capsys.readouterr()
    assert docs.main(["--check", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "docs/publishers.md: no markers for the generated section 'dead-letter-reasons'",
        f"{ops}: section 'metrics' is stale: run `python -m stream.docs` (or `make docs`)",
    ]
    assert docs.main(["--dir", str(tmp_path)]) == 1  # the missing markers are not invented
    publishers.write_text(_text("publishers.md"), encoding="utf-8")
    assert docs.main(["--dir", str(tmp_path)]) == 0
    assert ops.read_text(encoding="utf-8") == _text("ops.md")


def test_every_full_plan_example_loads() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _text("plan-authors.md"), re.DOTALL)
    assert len(blocks) >= 3  # the shipped plans and the version-2 example
    for block in blocks:
        plan.parse_plan(block, "docs/plan-authors.md")
    example = plan.parse_plan(blocks[0], "example")
    assert example.effective_from == "2027-01"
    assert example.upsell_rate == Decimal("0.10") and example.kpi is not None


def test_the_refusal_quoted_in_the_plan_guide_is_what_crmbonus_says() -> None:
    quoted = re.search(r"e\.g\. `(plan bonus\.toml: cross_sell\.tiers\[1\]\.up_to: [^`]*)`",
                       " ".join(_text("plan-authors.md").split()))
    assert quoted is not None
    shipped = (ROOT / "stream" / "plans" / "default.toml").read_text(encoding="utf-8")
    broken = shipped.replace('{ rate = "0.05" }', '{ up_to = "4000", rate = "0.04" }, { rate = "0.05" }')
    broken = broken.replace('up_to = "5000.00"', 'up_to = "5000"')
    with pytest.raises(PlanError) as refused:
        plan.parse_plan(broken, "bonus.toml")
    assert str(refused.value) == quoted[1]


def test_every_example_event_is_valid() -> None:
    block = re.search(r"### Examples\n\n```json\n(.*?)```", _text("publishers.md"), re.DOTALL)
    assert block is not None
    decoder, text, at, seen = json.JSONDecoder(), block[1], 0, []
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        value, at = decoder.raw_decode(text, at)
        seen.append(event_type(decode_event(json.dumps(value).encode())))
    assert sorted(seen) == sorted(EVENT_TYPES)


def test_links_resolve_and_nothing_points_outside_the_project() -> None:
    files = [ROOT / "README.md", *DOCS.glob("*.md")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "shared/spec" not in text, path
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (path.parent / target).resolve().exists(), f"{path.name} links {target}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in ("docs/README.md", "docs/publishers.md", "docs/payroll.md", "docs/ops.md", "docs/plan-authors.md"):
        assert f"]({guide})" in readme
