"""GET /schemas/{name}.json: the published JSON Schemas of the topics' records and the Redis
documents (contract/schemas.py; the same files as docs/schemas/ in the repository), and
GET /schemas/index.json listing them.

Open, like /healthz: the schemas are public documentation (the repository publishes them), carry
no deployment data (no zone ids, no topic prefix), and validators resolving a schema by URL do not
send bearer tokens. The internal zone-events schema is not served (docs/schemas/zone-events.json).
"""

from __future__ import annotations

from functools import cache

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import schemas

CACHE = {"Cache-Control": "public, max-age=300"}


@cache
def bodies() -> dict[str, bytes]:
    """Every schema, encoded once; "index" is the list."""
    docs = schemas.published()
    out = {name: orjson.dumps(s, option=orjson.OPT_INDENT_2) for name, s in docs.items()}
    out["index"] = orjson.dumps({"schemas": [{"name": n, "title": s["title"], "href": f"/schemas/{n}.json"}
                                             for n, s in docs.items()]})
    return out


async def schema(request: Request):
    """The route `/schemas/{name}.json` (no token)."""
    name = request.path_params["name"]
    body = bodies().get(name)
    if body is None:
        return JSONResponse({"error": f"no schema {name!r}; the list is /schemas/index.json"}, status_code=404)
    media = "application/json" if name == "index" else "application/schema+json"
    return Response(body, media_type=media, headers=CACHE)
