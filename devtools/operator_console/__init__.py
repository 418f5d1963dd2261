"""The operator console: the admin API in a browser, on 127.0.0.1 (``make console``).

Pages (each a stable URL an alert can link to): the overview (last 24 h by status, per
hour, DLQ depth, the integrations' breakers where the stack reports them), the events
list with the API's filters and cursor, one event (payload, handlers, timeline, retry),
the timeline of a work order / request / asset, and the dead-letter queue (peek,
redrive). ``app`` has the routes, ``views`` what the pages compute, ``client`` the admin
API over HTTP (SigV4 for a deployed stack), ``cli`` the command line.

Why Flask: small, maintained by Pallets, already in the dev environment (moto's server
runs on it), server-side Jinja2 templates that autoescape ``.html`` by default, and a
well-kept CSRF extension (Flask-WTF's ``CSRFProtect``, a synchronizer token in the
signed session cookie) so no token scheme is written here. The console is synchronous
like its admin API client (one operator, one request at a time), so an ASGI stack
(Starlette + uvicorn) would buy nothing. It is served by Werkzeug's threaded server
(Flask's own dependency): enough for one operator on the loopback address, and nothing
to install. No Node build step and no vendored framework: plain HTML and CSS, an inline
SVG chart drawn on the server, and ``static/console.js`` (a dozen lines asking to confirm
a state change; without JavaScript the server asks on a page instead). htmx was not
needed: every action is a form POST answered with a redirect.

Safe by default: binds 127.0.0.1 only (and answers only to that host name); every
state change is a POST with a CSRF token; payload text is escaped, and the
Content-Security-Policy allows no inline script; a deployed stack is reached with the
operator's own AWS credentials, SigV4-signed, so nothing new is exposed and IAM stays
the only gate.
"""

from devtools.operator_console.app import create_app
from devtools.operator_console.client import AdminApi

__all__ = ["AdminApi", "create_app"]
