"""The contract: what connectors, workers, walls, tools and tests agree on, each defined once.

    errors     one root (`ZonewatchError`) for every error a user may see
    events     input records and their validator, the dead-letter record, personal data (§1, §4, §6)
    topics     topic names and their configuration (§1, §4, internal topics)
    keys       Redis key names (§3)
    zones      zones-file rules (§2)
    response   the incident rules: arrival, 1-3-5, breach, expiry, corroboration, ETA (§3, §4)
    metrics    metric names (§5)
    settings   configuration from the environment (§7)
    security   the accepted Kafka security protocols, secret files, URL redaction
    kafka_settings  Kafka from the settings: client arguments, the Faust broker, topic specs, `ensure_topics`
    redisurl   every Redis client, from a redis:// or a redis+sentinel:// URL
    schemas    JSON Schemas of the records and Redis documents, the AsyncAPI document (docs/schemas)

It imports nothing else of the project; everything else imports it.
"""
