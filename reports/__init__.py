"""Reports for people, made from the output topics (CONTRACT §4): the daily briefing (研判).

A stage of the data's path after the worker: zones.daily (Kafka) -> figures -> md / html / json.
Imports only `contract` (tests/unit/test_house.py); the face (`zonewatch/briefing.py`) parses the
command line and calls it. `daily` reads the topic, `briefing` is the pure aggregation, `render`
turns its result into text.
"""
