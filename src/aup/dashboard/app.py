"""The dashboard's FastAPI application: the REST API under ``/api``, the pages and their assets.

Build it with :func:`create_app`; ``aup dashboard`` serves it with uvicorn. Every page is a
static HTML file in ``static/`` whose script reads the REST API, so everything a page shows is
also available as JSON (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``).

Security:

- ``token``: when set, every request must carry it (``Authorization: Bearer <token>``, the
  ``X-Aup-Token`` header, the ``aup_token`` cookie, or ``?token=`` once, which sets the cookie).
  ``aup dashboard`` requires one when binding anything but a loopback address.
- Without a token, only loopback ``Host`` headers are accepted (no DNS rebinding).
- The one state-changing call (stop) must carry ``X-Requested-With: aup``, which a cross-site
  form or image cannot send (no CSRF).
- Log files are read only under the experiment's ``<workingdir>/jobs``.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError

from aup.dashboard import models as M
from aup.dashboard.command import is_loopback
from aup.dashboard.queries import (
    EXPERIMENT_STATUSES,
    FAIL_REASONS,
    JOB_SORT_KEYS,
    JOB_STATUSES,
    Conflict,
    DashboardQueries,
    Forbidden,
    NotFound,
)
from aup.errors import DatabaseDamaged
from aup.store.schema import MAX_ID  # larger ids: 422, not a PostgreSQL "out of range" 503
from aup.store.store import Store

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "aup_token"
#: The most experiments the compare page and ``/api/compare`` take at once.
MAX_COMPARED = 20

Eid = Annotated[int, PathParam(ge=1, le=MAX_ID, description="experiment id")]
Jid = Annotated[int, PathParam(ge=1, le=MAX_ID, description="job id")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
SortKey = Literal[JOB_SORT_KEYS]  # type: ignore[valid-type]
JobStatusName = Literal[JOB_STATUSES]  # type: ignore[valid-type]
ExperimentStatusName = Literal[EXPERIMENT_STATUSES]  # type: ignore[valid-type]
FailReasonName = Literal[FAIL_REASONS]  # type: ignore[valid-type]


def plotly_js_path() -> Path:
    """The ``plotly.min.js`` bundled with the installed plotly package (works offline).

    Raises:
        FileNotFoundError: plotly is not installed or has no bundled script.
    """
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall plotly")
    return path


def _host_only(host_header: str) -> str:
    host = host_header.strip()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(store: Store, *, token: str | None = None, refresh_seconds: float = 3.0
               ) -> FastAPI:
    """The dashboard application over ``store``.

    Args:
        store: the database to show (read-only use, plus stop requests).
        token: a secret every request must carry; None: no token, loopback Host only.
        refresh_seconds: how often pages poll for live updates.

    Returns:
        A FastAPI app (ASGI); serve it with ``uvicorn.run(app, ...)``.
    """
    q = DashboardQueries(store)
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": M.Error, "description": text} for code, text in (
            (401, "missing or wrong token"), (403, "file outside the experiment's jobs folder"),
            (404, "unknown experiment or job"), (409, "the experiment is not running"),
            (503, "the database does not answer; retry"))}
    app = FastAPI(title="Auptimizer dashboard", version="1", responses=errors,
                  description="Read-only REST API over the Auptimizer store, plus stop requests. "
                  "Lists are paginated with offset/limit and report their total.")
    app.state.queries = q
    app.state.token = token

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if token is None:
            host = _host_only(request.headers.get("host", ""))
            if not is_loopback(host):
                return JSONResponse({"detail": f"host {host!r} not allowed; the dashboard "
                                     "without a token answers loopback addresses only"},
                                    status_code=400)
            return await call_next(request)
        given = _token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            if request.url.path.startswith("/api") or request.url.path == "/openapi.json":
                return JSONResponse({"detail": "missing or wrong token: send 'Authorization: "
                                     "Bearer <token>' (printed by 'aup dashboard')"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return HTMLResponse("<!doctype html><title>Auptimizer</title><p>This dashboard "
                                "needs its token: open the address printed by <code>aup "
                                "dashboard</code> (it ends with <code>?token=...</code>).</p>",
                                status_code=401)
        if (request.query_params.get("token") and request.method == "GET"
                and not request.url.path.startswith("/api")):
            # A page opened with the printed ?token= address: set the cookie and send the
            # browser to the same page without the token, so that it does not stay in the
            # address bar, the history and bookmarks.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(NotFound)
    async def _nf(request: Request, exc: NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _cf(request: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Forbidden)
    async def _fb(request: Request, exc: Forbidden):
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(DatabaseDamaged)
    async def _damaged(request: Request, exc: DatabaseDamaged):
        # not "retry shortly": a damaged file stays damaged until it is recovered
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(SQLAlchemyError)
    async def _db(request: Request, exc: SQLAlchemyError):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        return JSONResponse({"detail": f"database unavailable, retry shortly: {first}"},
                            status_code=503, headers={"Retry-After": "1"})

    _add_api(app, q, refresh_seconds)
    _add_pages(app)
    return app


def _token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return (request.headers.get("x-aup-token") or request.cookies.get(TOKEN_COOKIE)
            or request.query_params.get("token"))


def _add_api(app: FastAPI, q: DashboardQueries, refresh_seconds: float) -> None:
    @app.get("/api/settings", tags=["meta"], response_model=M.Settings)
    def settings() -> dict[str, Any]:
        """Dashboard settings the pages need (refresh interval, lists of statuses)."""
        return {"refresh_seconds": refresh_seconds, "job_statuses": list(JOB_STATUSES),
                "experiment_statuses": list(EXPERIMENT_STATUSES),
                "job_sort_keys": list(JOB_SORT_KEYS), "max_compared": MAX_COMPARED}

    @app.get("/api/experiments", tags=["experiments"], response_model=M.ExperimentPage)
    def experiments(offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    status: ExperimentStatusName | None = None
                    ) -> dict[str, Any]:
        """Experiments, newest first: status, proposer, progress, best score, times."""
        return q.list_experiments(offset=offset, limit=limit, status=status)

    @app.get("/api/experiments/{eid}", tags=["experiments"],
             response_model=M.ExperimentDetail)
    def experiment(eid: Eid) -> dict[str, Any]:
        """One experiment: summary, configuration, parameters, result labels, best job."""
        return q.experiment(eid)

    @app.post("/api/experiments/{eid}/stop", tags=["experiments"], status_code=202,
              response_model=M.StopAnswer)
    def stop(eid: Eid, x_requested_with: Annotated[Literal["aup"], Header(
            description="must be 'aup' (protects against cross-site requests)")]
             ) -> dict[str, Any]:
        """Ask a running experiment to stop, as ``aup stop`` does (it stays resumable).

        409 when the experiment is not running."""
        return q.request_stop(eid)

    @app.get("/api/experiments/{eid}/jobs", tags=["jobs"], response_model=M.JobPage)
    def jobs(eid: Eid,
             offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
             limit: Annotated[int, Query(ge=1, le=1000)] = 50,
             sort: SortKey = "jid",
             order: Literal["asc", "desc"] = "asc",
             status: Annotated[list[JobStatusName], Query(
                 description="keep these statuses (repeat the parameter)")] = [],  # noqa: B006
             min_score: Annotated[float | None, Query(allow_inf_nan=False)] = None,
             max_score: Annotated[float | None, Query(allow_inf_nan=False)] = None,
             fail_reason: Annotated[FailReasonName | None, Query(
                 description="keep jobs that failed for this reason")] = None
             ) -> dict[str, Any]:
        """A page of the job table, sorted and filtered by the database."""
        return q.jobs(eid, offset=offset, limit=limit, sort=sort, order=order, status=status,
                      min_score=min_score, max_score=max_score, fail_reason=fail_reason)

    @app.get("/api/experiments/{eid}/jobs/{jid}", tags=["jobs"], response_model=M.JobDetail)
    def job(eid: Eid, jid: Jid) -> dict[str, Any]:
        """One job: parameters, score, attempts with failure reasons, multiple results."""
        return q.job(eid, jid)

    @app.get("/api/experiments/{eid}/jobs/{jid}/log", tags=["jobs"], response_model=M.LogTail)
    def log(eid: Eid, jid: Jid,
            attempt: Annotated[int | None, Query(ge=0, le=10**6)] = None,
            max_bytes: Annotated[int, Query(ge=1, le=1_000_000)] = 16384) -> dict[str, Any]:
        """The tail of a job attempt's output (default: its last attempt)."""
        return q.log_tail(eid, jid, attempt, max_bytes)

    @app.get("/api/experiments/{eid}/history", tags=["charts"], response_model=M.History)
    def history(eid: Eid, max_points: Annotated[int, Query(ge=2, le=20000)] = 2000
                ) -> dict[str, Any]:
        """Score per finished job and the best-so-far line, down-sampled."""
        return q.history(eid, max_points=max_points)

    @app.get("/api/experiments/{eid}/parallel", tags=["charts"], response_model=M.Parallel)
    def parallel(eid: Eid, max_lines: Annotated[int, Query(ge=1, le=10000)] = 1000
                 ) -> dict[str, Any]:
        """Parameters and scores of a sample of finished jobs (best ones always included)."""
        return q.parallel(eid, max_lines=max_lines)

    @app.get("/api/experiments/{eid}/curves", tags=["charts"], response_model=M.Curves)
    def curves(eid: Eid,
               jid: Annotated[list[Id], Query(
                   max_length=100, description="jobs to show (repeat, at most 100); default: "
                   "the best and the running ones")] = [],  # noqa: B006
               n_jobs: Annotated[int, Query(ge=1, le=100)] = 10,
               max_points: Annotated[int, Query(ge=2, le=5000)] = 200) -> dict[str, Any]:
        """Intermediate results per job, down-sampled."""
        return q.curves(eid, jid, n_jobs=n_jobs, max_points=max_points)

    @app.get("/api/compare", tags=["charts"], response_model=M.Compare)
    def compare(eid: Annotated[list[Id], Query(min_length=1, max_length=MAX_COMPARED,
                                               description="experiment ids (repeat, 1-20)")],
                max_points: Annotated[int, Query(ge=2, le=20000)] = 1000) -> dict[str, Any]:
        """Best-so-far curves of several experiments, by job number."""
        return q.compare(list(dict.fromkeys(eid)), max_points=max_points)


def _add_pages(app: FastAPI) -> None:
    def page(name: str) -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return page("index.html")

    @app.get("/experiments/{eid}", include_in_schema=False)
    def experiment_page(eid: str) -> Response:
        # any text: the page itself says "bad experiment id" (a 422 here was raw JSON)
        return page("experiment.html")

    @app.get("/compare", include_in_schema=False)
    def compare_page() -> Response:
        return page("compare.html")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(plotly_js_path(), media_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
