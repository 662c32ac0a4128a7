"""`make bench`: zonewatch throughput and latency against two baselines, measured in one run.

    python -m bench.run --help

Modules: `run` (the orchestration and the report), `events` (the self-contained event
generator), `faust_baseline` (the trivial Faust app run as a subprocess for baseline B) and
`promtext` (parsing /metrics, histogram quantiles). The bench reports; it asserts nothing about
timings and CI never runs it.
"""
