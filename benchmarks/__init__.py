"""Throughput, latency and memory of crmbonus against the machine's raw rates (issue 6).

`python -m benchmarks.run` prints the table; `python -m benchmarks.profile` says where
the time of a batch goes. Both run on the embedded stack (tansu + pgserver) under a
temporary directory and leave nothing behind.
"""
