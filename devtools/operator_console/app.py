"""The console's pages: a Flask app over ``AdminApi``. Each page has a stable URL an alert can link to.

    /                                   overview: last 24 h by status, per hour, DLQ depth, breakers
    /events?status=&type=&source=&since=&cursor=   the list, paged with the API's cursor
    /events/<event id>                  one event; POST .../retry (handler=, force=) with a confirmation
    /entities/<workorder|request|asset>/<id>        every event of one entity, in order
    /dlq                                peek; POST /dlq/redrive (max=) with a confirmation

State changes are POSTs carrying Flask-WTF's CSRF token; a POST without ``confirmed=yes``
answers with a confirmation page (the page's script asks first, so a click with
JavaScript on confirms in a dialog, and without it on a page). Every template is
autoescaped (Flask does so for ``.html``), and the Content-Security-Policy allows no
inline script, so a payload's text is shown, never run.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlencode

from flask import Flask, abort, flash, g, has_request_context, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import SecurityError
from werkzeug.wrappers import Response

from devtools.operator_console import views
from devtools.operator_console.client import AdminApi, ApiError, ApiNotFound, ApiProblem
from devtools.operator_console.stats import StatsCache

LIST_FILTERS = ("status", "type", "source", "since")
PAGE_SIZES = (25, 50, 100, 200)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(api: AdminApi, *, port: int = 0, target: str = "") -> Flask:
    """The console for ``api``. ``port`` names its session cookie and trusted hosts (two consoles
    on two ports keep apart); ``target`` says in the header which stack it shows."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),  # per process: a restart invalidates old forms, nothing else
        SESSION_COOKIE_NAME=f"mx_console_{port}",
        SESSION_COOKIE_SAMESITE="Strict",
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        SEND_FILE_MAX_AGE_DEFAULT=3600,  # the CSS and the script: fetched once, not revalidated on every page
        # the console answers only under the names of the address it binds (no DNS rebinding)
        TRUSTED_HOSTS=["127.0.0.1", "localhost", "::1", "[::1]"] if port else None,
    )
    CSRFProtect(app)
    app.extensions["admin_api"] = api
    app.jinja_env.globals.update(
        target=target or api.where,
        kinds=views.ENTITY_KINDS,
        not_filters=views.NOT_FILTERS,
        status_help=views.STATUS_HELP,
    )
    app.jinja_env.filters["when"] = views.iso_time
    _routes(app, api)
    _entity_and_dlq_routes(app, api)
    _action_routes(app, api)
    _errors(app)

    def observe(ms: float) -> None:
        if has_request_context():  # not the overview's background refresh
            g.api_ms = g.get("api_ms", 0.0) + ms

    api.observe = observe

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def headers(response: Response) -> Response:
        # the page's time split in two, for the browser's PerformanceNavigationTiming.serverTiming
        total = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        api_ms = g.get("api_ms", 0.0)
        response.headers["Server-Timing"] = f"api;dur={api_ms:.1f}, console;dur={max(total - api_ms, 0):.1f}"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"  # pages are live data
        return response

    return app


def _routes(app: Flask, api: AdminApi) -> None:
    stats_cache = StatsCache(api)
    app.extensions["stats_cache"] = stats_cache

    @app.get("/")
    def overview() -> str:
        stats, age = stats_cache.get(fresh=request.args.get("fresh") == "1")
        return render_template(
            "overview.html",
            stats=stats,
            age=age,
            max_age=stats_cache.max_age,
            stale_problem=stats_cache.last_problem,
            counts=views.ordered_counts(stats.get("counts") or {}),
            chart=views.hourly_chart(stats.get("series") or []),
            breakers=_breakers(api),
            since=views.since_label(str(stats.get("since", ""))),
        )

    @app.get("/events")
    def events() -> str:
        filters = {key: request.args.get(key, "").strip() for key in LIST_FILTERS}
        limit = request.args.get("limit", type=int) or 50
        limit = limit if limit in PAGE_SIZES else 50
        cursor = request.args.get("cursor") or None
        page = api.list_events(**filters, limit=limit, cursor=cursor)
        kept = {k: v for k, v in filters.items() if v} | ({"limit": str(limit)} if limit != 50 else {})
        next_url = (
            url_for("events") + "?" + urlencode(kept | {"cursor": page["nextCursor"]})
            if page.get("nextCursor")
            else None
        )
        return render_template(
            "events.html",
            statuses=views.filter_statuses(app.extensions["stats_cache"].known_statuses()),
            items=page.get("items") or [],
            filters=filters,
            limit=limit,
            sizes=PAGE_SIZES,
            first_url=url_for("events") + ("?" + urlencode(kept) if kept else ""),
            next_url=next_url,
            paged=bool(cursor),
            entity_link=views.entity_link,
        )

    @app.get("/events/<path:event_id>")
    def event(event_id: str) -> str:
        shown = api.event(event_id)
        return render_template(
            "event.html",
            event=shown,
            event_id=event_id,
            fields=views.event_fields(shown),
            handlers=views.handler_rows(shown),
            timeline=views.timeline(shown),
            payload=views.pretty_payload(shown.get("payload")) if "payload" in shown else None,
            entity=views.entity_link(shown.get("entityKey")),
        )


def _entity_and_dlq_routes(app: Flask, api: AdminApi) -> None:
    @app.get("/entities")
    def entity_search() -> Response:
        kind, entity_id = request.args.get("kind", ""), request.args.get("id", "").strip()
        if kind not in views.ENTITY_KINDS or not entity_id:
            abort(400, "choose a kind (workorder, request, asset) and give an id")
        return redirect(url_for("entity", kind=kind, entity_id=entity_id))

    @app.get("/entities/<kind>/<path:entity_id>")
    def entity(kind: str, entity_id: str) -> tuple[str, int] | str:
        if kind not in views.ENTITY_KINDS:
            abort(404, f"no such kind of entity {kind!r}: one of {', '.join(views.ENTITY_KINDS)}")
        cursor = request.args.get("cursor") or None
        try:
            page = api.entity_events(kind, entity_id, cursor)
        except ApiNotFound as exc:
            missing = "route" if exc.route_missing else "entity"
            return render_template(
                "entity.html", kind=kind, entity_id=entity_id, items=None, missing=missing, problem=exc.message
            ), 404
        next_cursor = page.get("nextCursor")
        return render_template(
            "entity.html",
            kind=kind,
            entity_id=entity_id,
            items=page.get("items") or [],
            next_url=url_for("entity", kind=kind, entity_id=entity_id, cursor=next_cursor) if next_cursor else None,
            paged=bool(cursor),
            missing=None,
        )

    @app.get("/dlq")
    def dlq() -> str:
        most = min(max(request.args.get("max", type=int) or 10, 1), 50)
        peek = api.peek_dlq(most)
        return render_template("dlq.html", peek=peek, most=most)


def _action_routes(app: Flask, api: AdminApi) -> None:
    """The state changes: each a POST with a CSRF token (``CSRFProtect``), asked to confirm first."""

    @app.post("/events/<path:event_id>/retry")
    def retry(event_id: str) -> str | Response:
        handler = request.form.get("handler") or None
        force = request.form.get("force") == "true"
        if request.form.get("confirmed") != "yes":
            what = f"Retry handler {handler} of event {event_id}?" if handler else f"Retry event {event_id}?"
            fields = {"handler": handler or "", "force": "true" if force else ""}
            return render_template(
                "confirm.html",
                question=what,
                action=request.path,
                fields=fields,
                back=url_for("event", event_id=event_id),
            )
        try:
            answer = api.retry(event_id, handler=handler, force=force)
        except (ApiError, ApiNotFound) as exc:  # refused (e.g. 409: running now, or finished): say why, stay
            flash(f"Not retried: {exc.message}", "error")
            return redirect(url_for("event", event_id=event_id), code=303)
        app.extensions["stats_cache"].invalidate()
        flash(
            f"Re-enqueued: {answer.get('previousStatus')} -> {answer.get('status')}"
            + (f" (handler {handler})" if handler else ""),
            "ok",
        )
        return redirect(url_for("event", event_id=event_id), code=303)

    @app.post("/dlq/redrive")
    def redrive() -> str | Response:
        most = request.form.get("max", type=int)
        if not most or most < 1:
            abort(400, "max: how many messages to move, a whole number from 1")
        if request.form.get("confirmed") != "yes":
            question = f"Move up to {most} message(s) from the dead-letter queue back to the events queue?"
            return render_template(
                "confirm.html", question=question, action=request.path, fields={"max": str(most)}, back=url_for("dlq")
            )
        try:
            answer = api.redrive_dlq(most)
        except ApiError as exc:
            flash(f"Not redriven: {exc.message}", "error")
            return redirect(url_for("dlq"), code=303)
        app.extensions["stats_cache"].invalidate()
        flash(
            f"Moved {answer.get('moved')} message(s) back; {answer.get('failed')} failed;"
            f" about {answer.get('remaining')} left.",
            "ok",
        )
        return redirect(url_for("dlq"), code=303)


def _breakers(api: AdminApi) -> list[dict[str, Any]] | None:
    """The integrations' breaker states as rows, or ``None`` where the stack does not report them."""
    try:
        reported = api.integrations()
    except ApiProblem:
        return None
    if not reported:
        return None
    entries = reported.get("items", reported.get("integrations", reported)) if isinstance(reported, dict) else reported
    if isinstance(entries, dict):
        entries = [  # {"name": {"state": ...}} or {"name": "OPEN"}
            {"name": name, **(value if isinstance(value, dict) else {"state": value})}
            for name, value in entries.items()
        ]
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else None


def _errors(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def api_problem(exc: ApiProblem) -> tuple[str, int]:
        status = exc.api_status if exc.api_status and 400 <= exc.api_status < 500 else exc.status
        return render_template("problem.html", problem=exc, kind=type(exc).__name__, status=status), status

    @app.errorhandler(CSRFError)
    def csrf_problem(exc: CSRFError) -> tuple[str, int]:
        return render_template("problem.html", problem=exc, kind="CSRFError", status=400), 400

    @app.errorhandler(400)
    @app.errorhandler(404)
    def http_problem(exc: Any) -> tuple[str, int] | tuple[str, int, dict[str, str]]:
        if isinstance(exc, SecurityError):  # an untrusted Host: no URL can be built, answer plainly
            return f"{exc.description}\n", 400, {"content-type": "text/plain; charset=utf-8"}
        return render_template("problem.html", problem=exc, kind="HTTP", status=exc.code), exc.code
