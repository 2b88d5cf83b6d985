"""The OpenAPI 3.1 document, built from the route table, its parameter declarations and models.

The same declarations and models check the requests, so the document cannot drift from the server.
"""

from __future__ import annotations

import re
from typing import Any

from messagepusher.http.params import path_param, query_param
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Route

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
            "required": ["code", "message"],
        }
    },
}


def build(
    routes: list[Route], channel_configs: dict[str, dict[str, Any]], version: str
) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for type_name, schema in channel_configs.items():
        lifted = dict(schema)
        components.update(lifted.pop("$defs", {}))
        components[f"ChannelConfig_{type_name}"] = lifted
    paths: dict[str, Any] = {}
    for route in routes:
        item = paths.setdefault(route.template, {})
        params = [
            path_param(name).document("path") for name in re.findall(r"{(\w+)}", route.template)
        ]
        for method, op in route.ops.items():
            errors: dict[str, Any] = {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
            }
            success: dict[str, Any] = {"description": "success"}
            if op.html:
                page = {"text/html": {"schema": {"type": "string"}}}
                success["content"] = page
                errors.update(page)
            operation: dict[str, Any] = {
                "summary": op.summary,
                "tags": [route.tag] if route.tag else [],
                "x-permission": op.permission,
                "responses": {
                    str(op.status): success,
                    "default": {"description": "error", "content": errors},
                },
            }
            parameters = list(params) + [query_param(q).document("query") for q in op.query]
            if parameters:
                operation["parameters"] = parameters
            if op.permission != PUBLIC:
                operation["security"] = [{"bearerAuth": []}, {"sessionCookie": []}]
            if op.permission not in (PUBLIC, AUTHENTICATED):
                operation["description"] = f"Needs the scope `{op.permission}`."
            if op.sensitive:
                operation["description"] = (
                    operation.get("description", "") + " Needs X-Confirm (password or TOTP code)."
                )
            if op.request is not None:
                schema = op.request.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[op.request.__name__] = schema
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{op.request.__name__}"}
                        }
                    },
                }
            item[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MessagePusher API",
            "version": version,
            "description": "One API to WeCom, DingTalk, Feishu, Telegram, e-mail, webhooks and more.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key, mp_<prefix>_<secret>",
                },
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "mp_session"},
            },
        },
    }
