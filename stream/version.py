"""crmbonus's version, for `crmbonus --version`: the installed package's, else the source tree's.

An install (wheel or editable) records the version in its metadata; a source tree that was never
installed (``python -m stream`` from a checkout) has only `pyproject.toml`, read as a fallback.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

DISTRIBUTION = "crmbonus"
#: The project file of a source tree: next to the package directory.
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def package_version() -> str:
    """The version of the installed `crmbonus` distribution, else `pyproject.toml`'s, else "unknown"."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return source_version(PYPROJECT)


def source_version(pyproject: Path) -> str:
    """`[project] version` of the crmbonus project file at `pyproject`, or "unknown" without one."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "unknown"
    if project.get("name") != DISTRIBUTION or not isinstance(project.get("version"), str):
        return "unknown"
    return str(project["version"])
