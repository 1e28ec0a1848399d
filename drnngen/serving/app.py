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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from drnngen.data.live import parse_time
from drnngen.errors import UserError
from drnngen.runner.run import CaffeError
from drnngen.serving.service import ApiError, Event, SessionService

MAX_BODY_BYTES = 16 << 10
_ID = r"^[^\x00-\x1f/]{1,200}$"


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

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, f"the body is over {MAX_BODY_BYTES} bytes")
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            return _error(411, "send the body with a Content-Length")
        return await call_next(request)

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

    # Plain (not async) handlers run in the server's thread pool: while one request waits
    # for the Caffe child, another can read its session from the store.
    @app.post("/sessions/{session}/events", response_model=Recommendations)
    def event(session: str = _session_path(), body: EventBody | None = None,
              k: int = Query(default_k, description="length of the list")) -> JSONResponse:
        if body is None:
            raise ApiError(422, "the body must be a JSON object with item and time")
        when = parse_time(body.time)
        user = None if body.user is None else str(body.user)
        found = service.event(session, Event(str(body.item), when, body.type, user), k)
        return answer(session, found)

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
