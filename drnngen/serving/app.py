"""The HTTP JSON API of `drnngen serve` (FastAPI; OpenAPI docs at /docs and /openapi.json).

Every client mistake is a 4xx answer `{"error": "<one line>"}`: a missing field or a
wrong type (422), a bad time or k (422), time going backwards (422), an unknown session
on GET or end (404), a view on an ended session (409), a body over the size limit (413),
a session over its event limit (413). An unknown item is no error: it is the OOV page.
Admin routes answer only loopback clients, unless a token is configured; then they want
`Authorization: Bearer <token>` from anyone.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from drnngen.data.live import parse_time
from drnngen.errors import UserError
from drnngen.runner.run import CaffeError
from drnngen.serving.service import ApiError, Event, SessionService

MAX_BODY_BYTES = 16 << 10
_ID = r"^[^\x00-\x1f/]{1,200}$"
_ID_PATTERN = re.compile(_ID)


class EventBody(BaseModel):
    """One event of a session."""

    model_config = ConfigDict(extra="forbid")

    item: StrictStr | StrictInt = Field(description="the raw item (page) id, as in the click log")
    time: StrictInt | StrictFloat | StrictStr = Field(description="Unix seconds, or ISO 8601 text")
    type: StrictStr = Field("view", description="view or purchase")
    user: StrictStr | StrictInt | None = Field(None, description="the user's id (its earlier purchases count)")


class Recommendation(BaseModel):
    item: str
    score: float


class Recommendations(BaseModel):
    session: str
    recommendations: list[Recommendation]


def create_app(service: SessionService, reload: Callable[[], dict[str, Any]], default_k: int = 10,
               admin_token: str | None = None, on_close: Callable[[], None] | None = None) -> FastAPI:
    """The API over `service`; `reload` swaps in the run's current weights; `on_close` runs
    when the server shuts down (uvicorn then re-raises SIGTERM, so no `finally` would run)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if on_close is not None:
            on_close()

    app = FastAPI(title="drnngen serve", description="Session recommendations from a tuned DRNN (Wu et al.).",
                  lifespan=lifespan)
    _errors(app)
    app.add_middleware(_LimitBody)

    def answer(session: str, found: list[tuple[str, float]]) -> JSONResponse:
        # a Response goes out as it is: FastAPI's validation and encoding of the
        # response model (kept for the OpenAPI schema) would cost more than the forward pass
        return JSONResponse({"session": session, "recommendations": [{"item": i, "score": s} for i, s in found]})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "update": service.model.update}

    @app.get("/model")
    def model() -> dict[str, Any]:
        return service.describe()

    # The hot route is async and checks its request by hand (`_event`, `_session_id`,
    # `_k`): the store and row work is sub-millisecond and runs inline, the forward pass is
    # awaited, so no request hops to the thread pool, and neither FastAPI's dependency
    # solving nor pydantic runs per event. It is a plain Starlette route in front of the
    # FastAPI one, which stays for the OpenAPI docs (and would answer the same). The other
    # routes are plain handlers in the thread pool.
    async def event(request: Request) -> JSONResponse:
        session = _session_id(request.path_params["session"])
        k = _k(request.query_params.get("k"), default_k)
        found = await service.event_async(session, _event(await request.body()), k)
        return answer(session, found)

    app.router.routes.insert(0, Route("/sessions/{session}/events", event, methods=["POST"]))

    @app.post("/sessions/{session}/events", response_model=Recommendations, openapi_extra=_EVENT_BODY)
    async def event_documented(request: Request, session: str = _session_path(),
                               k: int = Query(default_k, description="length of the list")) -> JSONResponse:
        return await event(request)

    @app.get("/sessions/{session}/recommendations", response_model=Recommendations)
    def recommendations(session: str = _session_path(), k: int = Query(default_k)) -> JSONResponse:
        return answer(session, service.recommendations(session, k))

    @app.post("/sessions/{session}/end")
    def end(session: str = _session_path()) -> dict[str, Any]:
        state = service.end(session)
        return {"session": session, "ended": True, "events": state.events}

    @app.post("/admin/reload")
    def admin_reload(request: Request) -> dict[str, Any]:
        _admin(request, admin_token)
        return reload()

    return app


_EVENT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EventBody.model_json_schema()}}}}


def _event(raw: bytes) -> Event:
    """The event of a request body, checked as EventBody states it (one-line 422s)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "body: expected a JSON object with item and time") from None
    if not isinstance(body, dict):
        raise ApiError(422, "body: expected a JSON object with item and time")
    for name in body:
        if name not in EventBody.model_fields:
            raise ApiError(422, f"{str(name)[:80]}: unknown field (expected item, time, type, user)")
    for name in ("item", "time"):
        if name not in body:
            raise ApiError(422, f"{name}: field required")
    item, when, kind, user = body["item"], body["time"], body.get("type", "view"), body.get("user")
    if not _text_or_int(item):
        raise ApiError(422, "item: expected text or an integer")
    if not (_text_or_int(when) or isinstance(when, float)):
        raise ApiError(422, "time: expected Unix seconds or an ISO 8601 date-time")
    if not isinstance(kind, str):
        raise ApiError(422, "type: expected text (view or purchase)")
    if user is not None and not _text_or_int(user):
        raise ApiError(422, "user: expected text or an integer")
    return Event(str(item), parse_time(when), kind, None if user is None else str(user))


def _session_id(session: str) -> str:
    if not _ID_PATTERN.match(session):
        raise ApiError(422, "session: expected 1 to 200 characters, without / or control characters")
    return session


def _k(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(422, f"k: expected an integer, found {text[:40]!r}") from None


def _text_or_int(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class _LimitBody:
    """413 over MAX_BODY_BYTES, 411 for a chunked body: a plain ASGI middleware (the
    `@app.middleware` kind costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
                await _error(413, f"the body is over {MAX_BODY_BYTES} bytes")(scope, receive, send)
                return
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                await _error(411, "send the body with a Content-Length")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _session_path() -> Any:
    from fastapi import Path as PathParam

    return PathParam(..., pattern=_ID, description="the session's id (any text without / or control characters)")


def _admin(request: Request, token: str | None) -> None:
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "admin routes need Authorization: Bearer <the --admin-token>")
        return
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ApiError(403, "admin routes answer loopback clients only (configure --admin-token for others)")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(CaffeError)
    async def caffe_error(_: Request, exc: CaffeError) -> JSONResponse:
        return _error(503, str(exc))  # the server's trouble, not the client's

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))
