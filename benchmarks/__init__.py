"""Throughput, latency and memory of crmbonus against the machine's raw rates (issue 6).

`python -m benchmarks.run` prints the table; `python -m benchmarks.profile` says where
the time of a batch goes. Both run on the embedded stack (tansu + pgserver) under a
temporary directory and leave nothing behind; `benchmarks.run` also measures raw consume,
end to end and the burst on a real Apache Kafka broker (tests/apache_kafka.py) beside it.
"""
