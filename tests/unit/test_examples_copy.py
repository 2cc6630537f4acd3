"""The repo's copy of the worked example equals the contract's, when the contract is beside us."""

import pytest

from tests.examples import EXAMPLES, SHARED_EXAMPLES


@pytest.mark.skipif(not SHARED_EXAMPLES.is_dir(), reason="../shared/examples is not beside this clone")
def test_copy_equals_the_contracts_examples() -> None:
    ours = {p.name: p.read_bytes() for p in EXAMPLES.iterdir()}
    theirs = {p.name: p.read_bytes() for p in SHARED_EXAMPLES.iterdir()}
    assert ours == theirs
