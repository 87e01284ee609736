"""Framework adapters: thin glue from a web framework to the framework-neutral core.

Import the one you need; this package itself imports no framework:

- ``sipgate_ai_flow.adapters.fastapi``: ``create_router`` (webhook, WebSocket, health) and
  ``lifespan``; or mount the raw ASGI app, ``app.mount("/aiflow", assistant.asgi())``.
- ``sipgate_ai_flow.adapters.flask``: ``create_blueprint`` (webhook, health).
- ``sipgate_ai_flow.adapters.django``: ``webhook_view`` and ``urlpatterns``.
"""
