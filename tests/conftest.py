"""The two brokers the integration and fault tests run on, and the Apache Kafka broker they share.

A test that takes the `broker_kind` fixture (directly, or through `broker`, `brokers`, `workers`...
of tests/integration/conftest.py) runs once per broker, with the id and the mark of each:

    tansu   the embedded default (stream/embedded.py): memory-only, a fresh one per test
    kafka   a real Apache Kafka (tests/apache_kafka.py, KRaft, one node): one per session, each test
            on topics of its own (a unique CRMBONUS_TOPIC_PREFIX); a broker of the test's own only
            where the test kills, freezes or needs an empty one

`pytest -m kafka` / `pytest -m tansu` runs one side. `@pytest.mark.brokers("tansu", reason=...)`
keeps a test on the brokers named (the reason is the documentation of why). Without Java the
kafka cases are skipped with the launcher's reason, which the session header prints.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import apache_kafka
from tests.apache_kafka import ApacheKafka

TANSU = "tansu"
KAFKA = "kafka"
KINDS = (TANSU, KAFKA)

SKIPPED_KAFKA_CASES: list[str] = []  # node ids, for the terminal summary


def kafka_unavailable() -> str | None:
    """Why no Apache Kafka broker can run here (the skip reason of every kafka case), else None."""
    return apache_kafka.unavailable()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tansu: runs on the embedded broker (tansu)")
    config.addinivalue_line("markers", "kafka: runs on a real Apache Kafka broker (skipped without Java)")
    config.addinivalue_line("markers", "brokers(*kinds, reason): run only on these brokers (tansu, kafka)")


def pytest_report_header(config: pytest.Config) -> str:
    reason = kafka_unavailable()
    if reason is None:
        return (f"brokers: tansu (embedded) and Apache Kafka {apache_kafka.KAFKA_VERSION} "
                f"(java {apache_kafka.java_version()}): [kafka] cases run")
    return f"brokers: tansu only, every kafka case SKIPPED ({reason})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `broker_kind` (indirectly, so that only kafka cases ever start Java)."""
    if "broker_kind" not in metafunc.fixturenames:
        return
    kinds = KINDS
    marker = metafunc.definition.get_closest_marker("brokers")
    if marker is not None:
        kinds = tuple(marker.args)
        unknown = set(kinds) - set(KINDS)
        if not kinds or unknown:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: brokers({kinds}) names no known broker")
    metafunc.parametrize("broker_kind", [pytest.param(kind, id=kind, marks=getattr(pytest.mark, kind))
                                         for kind in kinds], indirect=True)


@pytest.fixture
def broker_kind(request: pytest.FixtureRequest) -> str:
    """`tansu` or `kafka` (see the module docstring); a kafka case skips where Kafka cannot run."""
    kind = str(request.param)
    if kind == KAFKA:
        reason = kafka_unavailable()
        if reason is not None:
            SKIPPED_KAFKA_CASES.append(request.node.nodeid)
            pytest.skip(reason)
    return kind


@pytest.fixture(scope="session")
def apache_kafka_broker() -> Iterator[ApacheKafka]:
    """One Apache Kafka broker for the whole session (~4-7 s and ~350 MB to start), started only
    when a kafka case first needs it; tests keep apart by topic prefix. Never killed or frozen:
    a test that does that starts a broker of its own."""
    reason = kafka_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with ApacheKafka() as kafka:
        yield kafka


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say it again at the end: without Java, the Kafka half of the suite did not run."""
    if SKIPPED_KAFKA_CASES:
        terminalreporter.write_line(f"{len(SKIPPED_KAFKA_CASES)} kafka cases SKIPPED ({kafka_unavailable()})",
                                    yellow=True, bold=True)
