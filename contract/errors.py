"""Every error zonewatch raises on purpose, under one root.

A `ZonewatchError` carries a message a user can act on (what is wrong and how to fix it); the
CLI prints it without a traceback and exits 2. Anything else that escapes is a bug.
"""

from __future__ import annotations


class ZonewatchError(Exception):
    """The root: a refusal or failure with a message meant for the person running zonewatch."""


# -- configuration and files read at start ----------------------------------------------------


class ConfigError(ZonewatchError, ValueError):
    """A configuration value is unusable; the message says which variable and why."""


class ZonesFileError(ZonewatchError, ValueError):
    """The zones GeoJSON is unusable; the message names the feature and the problem."""


class RulesError(ZonewatchError, ValueError):
    """The level rules file is unusable; the message points at the offending entry."""


class PlanError(ZonewatchError, ValueError):
    """The duty plan (CONTRACT §10) is unusable; the message names the entry and the reason."""


# -- input ------------------------------------------------------------------------------------


class Rejected(ZonewatchError):
    """A message breaks the contract; `reason` is what goes to the dead-letter topic."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# -- dependencies -----------------------------------------------------------------------------


class KafkaUnavailable(ZonewatchError, RuntimeError):
    """Kafka did not answer; the message says where we looked."""


class RedisUnavailable(ZonewatchError, RuntimeError):
    """Redis did not answer; the message says where we looked."""


# -- the gateway ------------------------------------------------------------------------------


class RewindRefused(ZonewatchError):
    """GET /zones?at= gets no documents (gateway/rewind.py): the answer's HTTP `status` (400, 404,
    503) and `headers`; the message is its body's `error`."""

    def __init__(self, status: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status = status
        self.headers = headers


# -- connectors -------------------------------------------------------------------------------


class ReplayError(ZonewatchError, ValueError):
    """A replay option or input row cannot be used; the message names it."""


class ProducerError(ZonewatchError, RuntimeError):
    """Publishing to Kafka failed; the message says what and where."""


class TopicUnavailable(ProducerError):
    """The topic does not exist (or has no leader) and could not be used."""


class DeliveryFailed(ProducerError):
    """Kafka did not acknowledge records within the producer's delivery timeout."""


# -- the face (CLI, demo, watch) ---------------------------------------------------------------


class WatchError(ZonewatchError, RuntimeError):
    """`zonewatch watch` cannot show the deployment; the message says why."""


class BriefingError(ZonewatchError, LookupError):
    """`zonewatch briefing` cannot make the report: the date is not in zones.daily (the message
    lists the dates that are), the topic is missing, or it cannot be read to its end."""


class DemoError(ZonewatchError, RuntimeError):
    """The demo cannot go on; the message says why."""


class ChildExited(DemoError):
    """A process the demo (or a harness) started exited by itself."""

    def __init__(self, name: str, rc: int, log_path: object, child: object = None):
        super().__init__(f"the {name} exited early with code {rc} (log {log_path})")
        self.name, self.rc, self.log_path, self.child = name, rc, log_path, child
