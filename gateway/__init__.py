"""The gateway: Redis -> wall displays and tools over HTTP, Server-Sent Events and WebSocket
(CONTRACT §9). Reads Redis, and Kafka for two things: intake writes the input topics, the rewind
reads zones.state; imports nothing of `streams`.

    app.py      the Starlette app, its routes and `zonewatch gateway` (add_parser / run)
    context.py  what every handler shares (tokens, Redis, the hub, the zones file, the wall page)
    auth.py     bearer and `?token=` tokens; no caller in a URL
    rest.py     the request/response endpoints (/zones, /units, /incidents, /incidents/{id}, /stats,
                POST /ingest, ...)
    rewind.py   GET /zones?at=: every zone as it was at a moment of stream time, from zones.state
    duty.py     the duty plan's endpoints: /posts, /checkpoints, /plan/phase, the phase command
    intake.py   what POST /ingest does: bodies counted as they arrive, the contract's validator, one
                Kafka producer
    clock.py    the stream clock (/units leaves out stale fixes by it), from checked zone documents
    live.py     the two live endpoints, /stream (SSE) and /ws, one writer per client
    feed.py     the hub: one reader of zw:zone-updates fanning out to bounded client queues,
                snapshots, resume and resync, SSE and WebSocket framing
    untrusted.py  what is read from Redis, checked against the contract's schemas before it is
                served or streamed (a bad record skipped, counted, logged once)
    schemacheck.py  JSON Schema compiled to a Python function (fast enough for every update)
    stats.py    the workers' e2e latency for the wall's badge (scraped /metrics)
    metrics.py  the gateway's own /metrics
    server.py   uvicorn with the connection limits (request-head and write timeouts, connection cap,
                request-head size and framing, bounded WebSocket input, trusted proxies)
    logs.py     the log filters: tokens and callers masked, client-triggered lines rate-limited
    openapi.py  /openapi.json
    schemas.py  /schemas/{name}.json (the contract's published JSON Schemas, open)
    promtext.py the one Prometheus text reader (the wall's badge, `zonewatch watch`, the bench)
    static/     the wall: index.html, wall.css, wall.js, html.js (the one escaping helper), and the
                rewind's slider (rewind.js) and the duty plan's layer (duty.js)
"""
