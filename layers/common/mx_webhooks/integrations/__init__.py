"""The built-in integrations: the edges the handlers in ``handlers/integrations.py`` use.

- ``http``: a small JSON-over-HTTPS client with bounded retries that honour ``Retry-After``.
- ``maintainx_api``: the MaintainX REST API (get a work order or work request, create a work order).
- ``slack``: Slack incoming-webhook messages for new work orders.
- ``eventbridge``: forwarding events to an EventBridge bus.
- ``status_history``: one item per work-order status transition, stale events ignored.
- ``work_orders``: creating work orders exactly once across retries and crashes.
- ``settings``: the integrations' configuration and their secrets.

None of these import boto3: AWS clients are passed in by the handler module.
"""
