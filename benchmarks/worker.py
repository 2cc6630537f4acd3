"""`python -m benchmarks.worker`: the crmbonus Faust worker as its own process, on the benchmark's names.

Like `crmbonus worker`, but with the consumer group and topic prefix of one measurement,
so that its memory and CPU can be watched from outside. Its consumer-group timing is the
embedded broker's, or with `--configured-broker` production's (stream/runtime.py), as
`crmbonus worker --broker ...` has it; the benchmark makes the topics beforehand either way.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stream.plan import load_plan
from stream.runner import run_worker
from stream.settings import Resolved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--batch-max", type=int, default=Resolved.batch_max)
    parser.add_argument("--configured-broker", action="store_true",
                        help="a real Kafka broker: production group timing, topics checked, not created")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Resolved(
        broker=args.broker, database_url=args.database_url, topic_prefix=args.topic_prefix,
        group_id=args.group_id, web_port=args.web_port, data_dir=args.data_dir,
        batch_max=args.batch_max, broker_embedded=not args.configured_broker,
    )
    run_worker(settings, load_plan(None), quiet=True)


if __name__ == "__main__":
    main()
