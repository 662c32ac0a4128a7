"""`make bench`: zonewatch throughput, latency, Redis commands per event and SSE fan-out cost on the
demo and a city zone set, against baselines measured in the same run (docs/BENCHMARKS.md).

    python -m bench.run --help

Modules: `run` (the phases and the orchestration), `report` (table and Markdown), `measure` (pure
arithmetic: rates, min/median/max, Redis command counts), `redisprobe` (INFO commandstats, XINFO,
a MONITOR sample), `procstat` (CPU per process from /proc), `city` (zone sets, the CityStream of
walking units), `events` (backlogs with duplicates and invalid messages, and their expected
outcomes), `faust_baseline` (the trivial Faust app of baseline B); `chaos`, `soak`, `failover`,
`gateway_churn`, `reach_cost`, `ingest_stages` (stage 1 stage by stage) are the other harnesses.
The bench reports; it asserts nothing about timings and CI never runs it.
"""
