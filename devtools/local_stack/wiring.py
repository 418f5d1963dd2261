"""The template's HTTP API routes and stage throttles, read for the local HTTP front."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devtools.local_stack.http_front import Route, Throttle
from devtools.local_stack.lambda_runtime import LocalFunction
from devtools.local_stack.template import Resolver


def routes(sam: Mapping[str, Any], functions: Mapping[str, LocalFunction]) -> list[Route]:
    """Every HttpApi event of every function in the SAM template."""
    resources = sam.get("Resources") or {}
    globals_api = ((sam.get("Globals") or {}).get("HttpApi") or {}).get("Auth") or {}
    found: list[Route] = []
    for logical_id, resource in resources.items():
        if logical_id not in functions:
            continue
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api_auth = globals_api
            api_ref = props.get("ApiId")
            api_id = "ServerlessHttpApi"  # SAM's implicit API, for an event without ApiId
            if isinstance(api_ref, dict) and "Ref" in api_ref:
                api_id = str(api_ref["Ref"])
                api = resources.get(api_id) or {}
                api_auth = ((api.get("Properties") or {}).get("Auth")) or globals_api
            authorizer = (props.get("Auth") or {}).get("Authorizer") or api_auth.get("DefaultAuthorizer")
            method = str(props.get("Method", "ANY")).upper()
            if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                method = "ANY"
            found.append(
                Route(
                    method=method,
                    path=str(props.get("Path", "/{proxy+}")),
                    function=functions[logical_id],
                    iam_auth=authorizer == "AWS_IAM",
                    api=api_id,
                )
            )
    return found


def _limits(settings: Any) -> dict[str, float]:
    settings = settings if isinstance(settings, dict) else {}
    keys = {"ThrottlingRateLimit": "rate", "ThrottlingBurstLimit": "burst"}
    return {name: float(settings[key]) for key, name in keys.items() if settings.get(key) is not None}


def throttles(resolver: Resolver) -> dict[str, Throttle]:
    """Each HTTP API's stage throttle, resolved (parameters applied) from the translated template."""

    found: dict[str, Throttle] = {}
    for logical_id, resource in resolver.resources().items():
        if resource["Type"] != "AWS::ApiGatewayV2::Stage" or not resolver.is_created(logical_id):
            continue
        props = resource.get("Properties") or {}
        api_ref = props.get("ApiId")
        if not (isinstance(api_ref, dict) and "Ref" in api_ref):
            continue
        default = _limits(resolver.resolve(props.get("DefaultRouteSettings")))
        own_routes = {}
        for route_key, settings in (resolver.resolve(props.get("RouteSettings")) or {}).items():
            own = _limits(settings)
            merged = {**default, **own}
            if own and len(merged) == 2:
                own_routes[str(route_key)] = (merged["rate"], merged["burst"])
        found[str(api_ref["Ref"])] = Throttle(
            (default["rate"], default["burst"]) if len(default) == 2 else None, own_routes
        )
    return found
