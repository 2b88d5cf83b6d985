"""Builds the Falcon app from the route table: middleware, resources, error handling.

The app holds no state of its own; resources reach the runtime through `req.context`.
"""

from __future__ import annotations

import atexit
import importlib
import json
from typing import Any

import falcon
import falcon.media

from messagepusher.http import errors
from messagepusher.http.audit import AuditMiddleware, AuditWriter
from messagepusher.http.auth import AuthMiddleware, KeyAuthenticator, KeyCache, SessionAuthenticator
from messagepusher.http.confirm import ConfirmMiddleware
from messagepusher.http.errors import APIError
from messagepusher.http.params import ParamsMiddleware
from messagepusher.http.routes import all_routes
from messagepusher.http.throttle import ThrottleMiddleware


class BodyLimitMiddleware:
    """413 before reading a body larger than server.max_body_bytes."""

    def __init__(self, limit: int):
        self.limit = limit

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self.limit:
            raise APIError(
                413,
                "too_large",
                f"the body has {length} bytes; the limit is {self.limit} (server.max_body_bytes)",
            )


class RuntimeMiddleware:
    """Puts the runtime on every request's context."""

    def __init__(self, runtime):
        self.runtime = runtime

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.runtime = self.runtime
        req.context.principal = None


def dumps_json(media: Any) -> bytes:
    """UTF-8 JSON of an answer; text that cannot be UTF-8 (a lone surrogate stored before the
    body reader refused them) is written as a \\u escape instead of failing the answer."""
    text = json.dumps(media, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(media).encode()


def _resource(path: str, runtime):
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(f"messagepusher.http.resources.{module}"), cls)(runtime)


def create_app(runtime) -> falcon.App:
    """Main thread, at start: build the app and plug the HTTP pieces into the runtime.

    Sets the attributes `Runtime` declares for this layer (key_authenticator, auth, routes,
    audit, throttle), which resources read back, and registers a restore hook that drops
    the key cache (keys verified before a restore may not exist in the backup).
    """
    routes = all_routes()
    runtime.key_authenticator = KeyAuthenticator(
        KeyCache(runtime.settings.security.key_cache_seconds, runtime.clock)
    )
    runtime.on_restore(runtime.key_authenticator.cache.clear)
    runtime.auth = AuthMiddleware(routes, runtime.key_authenticator)
    runtime.auth.session_authenticator = SessionAuthenticator()
    runtime.routes = routes
    # Rows queued during shutdown are written at interpreter exit, after the server stopped.
    runtime.audit = AuditWriter(clock=runtime.clock).start()
    atexit.register(runtime.audit.close)
    throttle = ThrottleMiddleware(runtime)
    runtime.throttle = throttle.check
    middleware = [
        RuntimeMiddleware(runtime),
        BodyLimitMiddleware(runtime.settings.server.max_body_bytes),
        AuditMiddleware(routes, runtime.audit),
        runtime.auth,
        throttle,
        ParamsMiddleware(routes),
        ConfirmMiddleware(),
    ]
    app = falcon.App(middleware=middleware)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dumps_json)
    app.req_options.strip_url_path_trailing_slash = True
    app.resp_options.secure_cookies_by_default = False
    errors.install(app)
    instances: dict[str, object] = {}
    for route in routes:
        if route.resource not in instances:
            instances[route.resource] = _resource(route.resource, runtime)
        app.add_route(route.template, instances[route.resource], suffix=route.suffix)
    return app
