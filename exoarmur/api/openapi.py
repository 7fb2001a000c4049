"""The api's OpenAPI document as the handlers really behave: request bodies, every status each route
answers with its error body, and the bearer-token security scheme.

The handlers read their bodies themselves (bounded size, errors with reason codes), so FastAPI
cannot see them; this module states them once, per route, and ``install`` adds the models'
schemas and the security scheme to ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from exoarmur.contracts import ReasonCode

BEARER = "bearer"


class ErrorBody(BaseModel):
    """Every refusal: a reason code and a human-readable detail."""

    model_config = ConfigDict(extra="forbid")
    reason_code: ReasonCode
    detail: str


WHY = {
    400: "malformed or invalid request (INVALID_INTENT)",
    401: "missing or unknown bearer token (UNAUTHENTICATED)",
    403: "the caller may not do this (FORBIDDEN, TENANT_MISMATCH)",
    404: "no such intent, tenant or node (NOT_FOUND, UNKNOWN_NODE)",
    408: "the body did not arrive within the request deadline (TIMEOUT_API_REQUEST)",
    413: "body over the size bound (INVALID_INTENT)",
    429: "rate limited (RATE_LIMITED_TENANT, RATE_LIMITED_GLOBAL)",
    503: "refused for now: pending bound, NATS away or a deadline (QUEUE_FULL, STACK_UNAVAILABLE, TIMEOUT_*)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": WHY[status]} for status in statuses}


def body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose handler reads a JSON body of ``model`` itself."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def secured(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(extra or {}), "security": [{BEARER: []}]}


def install(app: FastAPI, body_models: list[type[BaseModel]]) -> None:
    """Add the body models' schemas and the bearer scheme to the app's generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in body_models:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        spec["components"]["securitySchemes"] = {BEARER: {
            "type": "http", "scheme": "bearer",
            "description": "a peer's token (bound to one tenant) or the operator's token"}}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi
