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
from stream import cli, docs, metrics, plan, plan_versions, version, whatif
from stream.bonus import RUNNING_COLUMNS
from stream.errors import PlanError
from stream.settings import DEFAULT_TOPIC_PREFIX, Topics
from stream.statement import build_statement, statement_json

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
    assert len(blocks) >= 4  # the shipped plans and the two versions of the example directory
    for block in blocks:
        plan.parse_plan(block, "docs/plan-authors.md")
    parsed = [plan.parse_plan(block, "example") for block in blocks]
    full = [found for found in parsed if found.effective_from == "2027-01"]
    assert len(full) == 1  # the example with every programme on
    assert full[0].upsell_rate == Decimal("0.10") and full[0].kpi is not None and full[0].gold_prize > 0


def _example_directory(tmp_path: Path) -> Path:
    """The plan directory of plan-authors.md's "An example directory", written out under `tmp_path`."""
    files = re.findall(r"^`plans/([\w.-]+\.toml)`:\n\n```toml\n(.*?)```", _text("plan-authors.md"),
                       re.DOTALL | re.MULTILINE)
    assert [name for name, _ in files] == ["2026.toml", "2027-h1.toml"]
    directory = tmp_path / "plans"
    directory.mkdir(parents=True)
    for name, text in files:
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_the_example_plan_directory_loads_and_picks_each_months_version(tmp_path: Path) -> None:
    plans = plan_versions.load_plans(_example_directory(tmp_path))
    assert [(v.version, v.effective_from) for v in plans.records] == [("2026", "2026-01"), ("2027-h1", "2027-01")]
    picks = {"2025-01": "2026", "2025-12": "2026", "2026-01": "2026", "2026-12": "2026",
             "2027-01": "2027-h1", "2027-06": "2027-h1", "2031-12": "2027-h1"}
    for period, expected in picks.items():
        assert plans.for_period(period).version == expected, period
    # the guide's table says the same: each row's first (and last) month, and its version
    rows = re.findall(r"^\| (\d{4}-\d{2})(?: \.\. (\d{4}-\d{2})| and later)? \| `([^`]+)` \|",
                      _text("plan-authors.md"), re.MULTILINE)
    assert [row[2] for row in rows] == ["2026", "2026", "2027-h1"]
    for first, last, expected in rows:
        assert plans.for_period(first).version == expected
        if last:
            assert plans.for_period(last).version == expected


def test_the_plan_directory_refusals_quoted_in_the_guide_are_what_crmbonus_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guide = " ".join(_text("plan-authors.md").split())
    example = _example_directory(tmp_path / "example")
    v2026 = (example / "2026.toml").read_text(encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    def refusal(**files: str) -> str:
        directory = tmp_path / "plans"
        if directory.exists():
            for old in directory.iterdir():
                old.unlink()
        else:
            directory.mkdir()
        for name, text in files.items():
            (directory / f"{name}.toml").write_text(text, encoding="utf-8")
        with pytest.raises(PlanError) as refused:
            plan_versions.load_plans("plans")
        return str(refused.value)

    def edited(text: str, *pairs: tuple[str, str]) -> str:
        for old, new in pairs:
            assert old in text
            text = text.replace(old, new)
        return text

    messages = [
        refusal(**{"2026": v2026, "2026-fix": edited(v2026, ('version = "2026"', 'version = "2026-fix"'))}),
        refusal(**{"2026": v2026, "2027": edited(v2026, ('effective_from = "2026-01"', 'effective_from = "2027-01"'))}),
        refusal(**{"2026": v2026, "2027": edited(v2026, ('version = "2026"', 'version = "2027"'),
                                                 ('effective_from = "2026-01"', 'effective_from = "2027-01"'),
                                                 ('timezone = "Europe/Oslo"', 'timezone = "UTC"'))}),
        refusal(**{"2026": v2026, "2027": edited(v2026, ('version = "2026"', 'version = "2027"'),
                                                 ('effective_from = "2026-01"\n', ''))}),
        refusal(**{"2026": v2026, "2027": edited(v2026, ('version = "2026"', 'version = "2027"'),
                                                 ('effective_from = "2026-01"', 'effective_from = "2027-1"'))}),
        refusal(),
    ]
    for message in messages:
        assert f"`{message}`" in guide, message


def test_the_statement_json_keys_in_the_payroll_guide_are_the_statements() -> None:
    section = _text("payroll.md").split("### The statement's JSON", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", section, re.MULTILINE))
    demo = plan.load_plan(plan.DEMO_PLAN_PATH)  # every programme on, so no part of the JSON is null
    document = statement_json(build_statement("nobody", "2026-12", demo))
    assert list(rows) == list(document)
    for key, value in document.items():
        parts = value if isinstance(value, dict) else value[0] if isinstance(value, list) and value else {}
        if key == "totals":
            assert set(parts) == set(RUNNING_COLUMNS)
            continue
        for part in parts:
            assert f"`{part}`" in rows[key], (key, part)
    for part in ("kind", "customer_id", "sale_id", "line_id", "lead_id", "category", "amount", "share",
                 "touch_event_id", "touch_at", "source_event_id"):  # a credit's keys (none for nobody)
        assert f"`{part}`" in rows["credits"]
    whatif_section = _text("payroll.md").split("## What-if", 1)[1]
    assert re.findall(r"^\| `(\w+)` \|", whatif_section, re.MULTILINE) == list(whatif.COLUMNS)


def test_every_command_line_quoted_in_the_docs_exists() -> None:
    quoted: list[tuple[str, str, str]] = []
    for path in DOCS.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        for command, rest in re.findall(r"`crmbonus ([a-z]+)([^`]*)`", text):
            quoted.append((path.name, command, rest))
        for command, rest in re.findall(r"^ {4}crmbonus ([a-z]+)(.*)$", text, re.MULTILINE):
            quoted.append((path.name, command, rest.split("#", 1)[0]))
    assert {command for _, command, _ in quoted} >= {"statement", "whatif", "worker", "settle", "export"}
    for name, command, rest in quoted:
        assert command in cli.main.commands, f"{name}: crmbonus {command}"
        options = {opt for param in cli.main.commands[command].params for opt in param.opts}
        for option in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", rest):
            assert option in options, f"{name}: crmbonus {command} ... {option}"


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
