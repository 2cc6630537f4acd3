"""Where the worked example of the contract lives, for every test tier.

`tests/fixtures/examples/` is a copy of `../shared/examples/` so that the tests do
not depend on what lies beside the clone; `test_examples_copy.py` fails when the
two drift apart.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "fixtures" / "examples"
SHARED_EXAMPLES = ROOT.parent / "shared" / "examples"
