"""The worker: input topics -> zone-events -> per-partition state -> Redis and output topics
(the topology, top to bottom, is app.py's docstring).

    worker.py       `zonewatch worker [--role all|ingest|state]`: one process
    app.py          the Faust app around the stages: tasks, timers, /metrics
    ingest.py       stage 1's I/O: input topics in batches -> Router -> zone-events, dead letters
    routing.py      stage 1's pure part: validate, H3 cell, zones, partitions, records
    columns.py      stage 1's columnar decode: a batch per topic, typed, rejects by the contract
    partitioning.py which zone-events partition a record goes to (zones, incident home cells)
    zone_index.py   which zones hold a point (H3 cells, exact polygons on border cells)
    geocache.py     the zone index and reach cells, prepared once and kept on disk
    records.py      the zone-events schema (versioned msgpack batches)
    ownership.py    the zone-events partitions this worker owns: consumer, takeover, apply loop
    state_stage.py  stage 2's I/O around the pure states: apply, snapshots, flush to Redis
    zone_state.py   one partition's zones: days, windows, units, health, levels, documents
    incidents.py    incidents and the 1-3-5 minute response, corroboration, recommendations
    reach.py        the share of a zone's area an available unit reaches within 1/3/5 minutes
    coverage.py     the share of a zone's H3 cells patrolled in the last 60 minutes / 8 hours
    duty.py         the duty plan against the live picture: posts, checkpoints, the phase in force
    watermark.py    the patrol.gps watermark breaches are decided on
    days.py         local dates of the stream clock in any IANA zone
    dedup.py        compact memory of call and alert ids over a day
    rules.py        zone level rules (counts -> green/yellow/orange/red)
    recovery.py     taking a partition over (snapshot + look-back + tail), Redis lost and refilled
    outputs.py      output topics, snapshots, arrival records; per-partition ordered deliveries
    kafka_fence.py  each partition's transactional producer: a previous owner's Kafka writes fenced
    dispatch.py     the processing-time part of a dispatch recommendation (Redis GEO)
    store.py        everything the worker writes to or reads from Redis
    health.py       dependency probes (metrics and a log line per outage)
    metrics.py      the worker's Prometheus metrics (CONTRACT §5)
    testing.py      the real flow in-process, without Kafka or Redis
"""
