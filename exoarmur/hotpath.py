"""A hot route served straight to its endpoint (shared by the api and the effector)."""

from __future__ import annotations

from fastapi import FastAPI, Request


class HotPath:
    """Serve one hot route straight to its endpoint, around the framework's middleware stack.

    Profiling showed FastAPI/Starlette layers (exception middleware, routing, dependency
    solving) costing ~40% of the api's CPU per intent (0.37 -> 0.22 ms measured). The endpoint
    function, its OpenAPI entry and its error mapping (async ``handler(request, exc)``, as the
    app registers them) are the same ones the app uses; only the layers in between are skipped.
    Every other request goes to the app unchanged."""

    def __init__(self, app: FastAPI, method: str, path: str, endpoint, errors: dict | None = None) -> None:
        self.app, self.method, self.path, self.endpoint = app, method, path, endpoint
        self.errors = errors or {}
        self.state = app.state  # tests reach the app's state through the served object

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != self.method or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        scope["app"] = self.app  # as Starlette would: handlers find their state through request.app
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except tuple(self.errors) as exc:  # an empty tuple catches nothing
            handler = next(handler for kind, handler in self.errors.items() if isinstance(exc, kind))
            response = await handler(request, exc)
        await response(scope, receive, send)
