"""The optional compiled build (issue 18): the pure core compiled by mypyc, only when asked for.

pyproject.toml holds the package's metadata; this file only adds extension modules, and only when
the environment variable CRMBONUS_COMPILE is 1. Without it (`pip install .`, `python -m build`,
`make wheel-test`) the build is the pure-Python wheel it always was, and needs no mypy:

    make compiled                                      # .so files next to the sources (build_ext --inplace)
    make pure                                          # remove them: the plain Python runs again
    CRMBONUS_COMPILE=1 pip wheel --no-deps -w dist .   # a compiled wheel (its build fetches mypy)

The compiled modules are the same source as the interpreted ones, so a compiled build changes no
result: the unit and integration suites pass on both (benchmarks/PROFILE.md, "mypyc"), and
tests/unit/test_compiled.py pins what the two builds could read differently.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled: the pure core the worker runs per customer and per event. The rules
#: (`rules.outcome_under`), the batch's bookkeeping around them (`diff.sort_customers`,
#: `diff.diff_batch`), tallies and bonus rows, money, KPI and lead arithmetic, periods. Left out,
#: each for a reason (benchmarks/PROFILE.md): `schemas.decode` (msgspec does its work in C:
#: compiled it saved ~0.2 µs/event, and msgspec structs lose their tags when mypyc compiles
#: them); `stream.customer_cache` (tests stub a method on its instances, which a compiled class
#: refuses); `stream.plan` and `stream.plan_versions` (read at start-up); and every module with a
#: driver (the ledger, the store, the pipeline), which tests and benchmarks.profile patch: a
#: compiled caller would not see a patched function.
COMPILED = [
    "stream/money.py",
    "stream/periods.py",
    "stream/kpi.py",
    "stream/leads.py",
    "stream/rules.py",
    "stream/bonus.py",
    "stream/diff.py",
]
#: One shared library for them all, inside the package (a top-level one would not be found by an
#: editable install's finder): stream/compiled_core__mypyc*.so.
GROUP = "stream.compiled_core"
#: Where a compiled build puts its C sources, objects and staged files: never build/lib, which a
#: plain build of the same tree would package, extension modules and all, into its py3-none-any wheel.
BUILD_BASE = "build/mypyc"
#: What compiling needs besides setuptools, asked for through PEP 517 (`setup_requires`): the
#: mypy the suites were run against on both builds, or a later 2.x.
MYPY = "mypy>=2.4.1,<3"


def compiling() -> bool:
    """Whether the compiled build was asked for (CRMBONUS_COMPILE=1); anything else is pure Python."""
    return os.environ.get("CRMBONUS_COMPILE", "") == "1"


def main() -> None:
    if not compiling():
        setup()
        return
    try:
        from mypyc.build import mypycify
    except ImportError:
        # An isolated build's get_requires_for_build_wheel: ask for mypy; the backend runs this
        # file again once it is installed.
        setup(setup_requires=[MYPY])
        return
    setup(setup_requires=[MYPY], options={"build": {"build_base": BUILD_BASE}},
          ext_modules=mypycify(COMPILED, group_name=GROUP, opt_level="3", target_dir=f"{BUILD_BASE}/c"))


main()
