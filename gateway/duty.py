"""The duty plan's endpoints (CONTRACT §10): posts, checkpoints, the phase in force, and the
operators' phase command.

  GET  /posts          every post's document (zw:post:{id} of the ids in zw:posts), by id
  GET  /checkpoints    every checkpoint's document (zw:checkpoint:{id}), by id
                       (each checked against its schema first, a bad one left out: gateway/untrusted.py;
                       a bad zw:phase is a 502)
  GET  /plan/phase     the phase in force as the worker decided it (zw:phase); `null` before any (no
                       plan, or not written yet: the wall polls it with or without a plan, and a 404
                       would be an error in every wall's console every poll)
  (the wall's posts layer and phase banner is gateway/static/duty.js, served as /static/duty.js)
  POST /plan/phase     with an ingest token: {"name": "决战" | null, "by": "duty officer", "ts"?: time}
                       -> the command in the plan.commands topic (acks=all) before the answer
                       200 {"command_id", "type", "name", "by", "ts"}; 400 with the reason for a
                       name that is not a phase of the plan (ZONEWATCH_PLAN), a missing `by`, a bad
                       ts; 404 when intake is off; 409 without a plan; 503 when Kafka does not take it

The command is audited three ways: it stays in plan.commands (who, what, when), the gateway logs
it, and the worker's `phase` record in duty.events names who changed the phase and when. `ts`
(epoch ms or RFC 3339, default the gateway's clock) is when it takes effect: the worker applies it
when the position feed's watermark reaches it, so it lands in every partition's log and a replay
decides the same (streams/duty.py).
"""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from redis.exceptions import ResponseError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from contract import keys, topics
from contract.errors import KafkaUnavailable, Rejected
from contract.plan import COMMAND_KEY, phase_command, validate_phase_command
from gateway import untrusted
from gateway.auth import OK, refusal
from gateway.context import ctx
from gateway.feed import readable
from gateway.rest import error, json_bytes, protected

log = logging.getLogger("zonewatch.gateway")

MAX_COMMAND_BYTES = 4096


async def _documents(redis, index: str, key_of, kind: untrusted.Kind) -> bytes:
    """The documents of an index set, by id, each checked against its schema (a bad one left out,
    counted and logged once; a key Redis refuses to read is an empty list: gateway/untrusted.py)."""
    try:
        members = await redis.smembers(index)
    except ResponseError as exc:   # WRONGTYPE: something else wrote the index
        members = exc
    ids = sorted(m.decode(errors="replace") if isinstance(m, bytes) else m
                 for m in readable(members, index, kind, set()))
    docs = []
    for i, raw in zip(ids, await redis.mget([key_of(i) for i in ids]) if ids else [], strict=True):
        checked = kind.read(raw, key_of(i)) if raw else None   # a member without its document: gone
        if checked is not None:
            docs.append(checked.json)
    return b"[" + b",".join(docs) + b"]"


@protected
async def posts(request: Request):
    return json_bytes(await _documents(ctx(request).redis, keys.POSTS, keys.post, untrusted.POST))


@protected
async def checkpoints(request: Request):
    return json_bytes(await _documents(ctx(request).redis, keys.CHECKPOINTS, keys.checkpoint, untrusted.CHECKPOINT))


@protected
async def phase(request: Request):
    doc = await ctx(request).redis.get(keys.PHASE)
    if doc is None:
        return json_bytes(b"null")
    checked = untrusted.PHASE.read(doc, keys.PHASE)
    if checked is None:
        return error(502, "the stored phase (zw:phase) does not match the phase schema")
    return json_bytes(checked.json)


async def set_phase(request: Request):
    """POST /plan/phase: an operator's phase command, into Kafka before the answer."""
    c = ctx(request)
    intake = c.intake
    if intake is None or not c.tokens.intake:
        return error(404, "intake is off (set ZONEWATCH_INGEST_TOKENS to turn it on)")
    status = c.tokens.ingest(request)
    if status != OK:
        return refusal(status, "set the phase (it is not an ingest token)")
    plan = request.app.state.plan
    if plan is None:
        return error(409, "no duty plan is loaded (ZONEWATCH_PLAN)")
    try:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_COMMAND_BYTES:
                return error(413, f"a phase command is at most {MAX_COMMAND_BYTES} bytes")
    except ClientDisconnect:
        return error(400, "the client disconnected before the body was complete")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, 'the body must be JSON: {"name": "<phase>" | null, "by": "<who>"}')
    if type(doc) is not dict:
        return error(400, 'the body must be a JSON object: {"name": "<phase>" | null, "by": "<who>"}')
    now = int(time.time() * 1000)
    cmd = phase_command(uuid.uuid4().hex, doc.get("name"), doc.get("by"), doc.get("ts", now))  # type: ignore[arg-type]
    try:
        cmd = validate_phase_command(cmd, plan, now + c.settings.future_tolerance_ms)
    except Rejected as exc:
        return error(400, exc.reason)
    try:
        await intake.produce(topics.PLAN_COMMANDS, [(COMMAND_KEY.encode(), orjson.dumps(cmd))])
    except KafkaUnavailable as exc:
        return error(503, f"{exc}; the phase is unchanged: send the command again", {"Retry-After": "5"})
    log.warning("duty plan: phase command %s by %r: %s from %d", cmd["command_id"], cmd["by"],
                "back to the schedule" if cmd["name"] is None else repr(cmd["name"]), cmd["ts"])
    return Response(orjson.dumps(cmd), media_type="application/json", headers={"Cache-Control": "no-store"})
