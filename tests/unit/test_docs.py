"""The user documentation (docs/) agrees with the code, and `crmbonus --version` prints the version."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from click.testing import CliRunner

from stream import cli, version

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
