"""Who is calling and may they: API keys and session cookies to a Principal, CSRF, then the route table's permission.

One middleware for every route, so no resource checks permissions itself.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import falcon
import peewee

from messagepusher.accounts.credentials import ROLE_SCOPES, hash_secret, secret_matches, split_key
from messagepusher.accounts.users import find_session
from messagepusher.http import params
from messagepusher.http.errors import APIError, not_found
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Op, Route
from messagepusher.supervisor import cluster_stamps
from messagepusher.supervisor.clock import Clock, SystemClock
from messagepusher.supervisor.models import ApiKey, User


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: str
    scopes: frozenset[str]
    key_id: int | None = None
    via: str = "key"  # "key" or "session"
    session_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and "admin" in self.scopes


class KeyCache:
    """Recently verified keys, so the hot path skips the join and the hash. Thread-safe.

    Entries live `ttl` seconds. Any change to a key or its user, through any process or node,
    drops them on the next request: the change bumps the shared `credentials` stamp
    (supervisor/cluster_stamps) and every lookup compares it (one indexed read; a stat on
    SQLite) with the value the cache was filled under. `generation` reads that stamp
    (caller's thread), once per lookup: overlapping lookups once shared reads, but handing
    a read's value between threads cost three times the read itself (docs/benchmarks.md).
    """

    def __init__(
        self,
        ttl: float,
        clock: Clock | None = None,
        generation: Callable[[], int] = cluster_stamps.credentials,
    ):
        self.ttl = ttl
        self.clock: Clock = clock or SystemClock()
        self.generation = generation
        self._filled_under: int | None = None
        self._entries: dict[str, tuple[float, Principal, float | None]] = {}
        self._lock = threading.Lock()

    def get(self, presented: str) -> tuple[Principal | None, int]:
        """The cached principal (or None) and the stamp read, which `put` needs after a load."""
        if self.ttl <= 0:
            return None, 0
        current = self.generation()
        with self._lock:
            if current != self._filled_under:
                self._entries.clear()
                self._filled_under = current
            hit = self._entries.get(presented)
        if hit is None:
            return None, current
        stored_at, principal, expires_at = hit
        if self.clock.monotonic() - stored_at > self.ttl or (
            expires_at is not None and self.clock.now() >= expires_at
        ):
            with self._lock:
                self._entries.pop(presented, None)
            return None, current
        return principal, current

    def put(
        self, presented: str, principal: Principal, expires_at: float | None, seen: int
    ) -> None:
        """Keep a principal loaded after reading stamp `seen`; not if the stamp has moved since."""
        if self.ttl <= 0:
            return
        with self._lock:
            if seen != self._filled_under:
                return
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[presented] = (self.clock.monotonic(), principal, expires_at)

    def drop_key(self, key_id: int) -> None:
        cluster_stamps.bump(cluster_stamps.CREDENTIALS)
        with self._lock:
            for k in [k for k, v in self._entries.items() if v[1].key_id == key_id]:
                del self._entries[k]

    def clear(self) -> None:
        """Forget every key, here and in every other process (after a restore: the backup
        may lack keys verified before it)."""
        cluster_stamps.bump(cluster_stamps.CREDENTIALS)
        with self._lock:
            self._entries.clear()

    def drop_user(self, user_id: int) -> None:
        cluster_stamps.bump(cluster_stamps.CREDENTIALS)
        with self._lock:
            for k in [k for k, v in self._entries.items() if v[1].user_id == user_id]:
                del self._entries[k]


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="messagepusher"'}
SESSION_COOKIE = "mp_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def unauthorized(message: str) -> APIError:
    return APIError(401, "unauthorized", message, headers=UNAUTHORIZED_HEADERS)


def login_locked(seconds: float) -> APIError:
    """429 for an account or address locked after too many failed logins or confirmations."""
    wait = max(1, math.ceil(seconds))
    return APIError(
        429,
        "login_locked",
        f"too many failed attempts: locked for {wait} more seconds "
        "(security.login.max_failures / lockout_seconds); try again after that",
        {"retry_after": wait},
        headers={"Retry-After": str(wait)},
    )


class KeyAuthenticator:
    """Turns `Authorization: Bearer mp_…` into a Principal. Runs in the HTTP worker thread."""

    LAST_USED_EVERY = 30.0  # the first use after start or after any change to the key always writes

    def __init__(self, cache: KeyCache, clock: Clock | None = None):
        self.cache = cache
        self.clock: Clock = clock or cache.clock
        self._last_used_written: dict[int, float] = {}

    def authenticate(self, presented: str) -> Principal:
        principal, seen = self.cache.get(presented)
        if principal is None:
            principal, expires_at = self._load(presented)
            self.cache.put(presented, principal, expires_at, seen)
        self._touch(principal.key_id)
        return principal

    def _load(self, presented: str) -> tuple[Principal, float | None]:
        parts = split_key(presented)
        if parts is None:
            raise unauthorized("the API key is malformed; keys look like mp_<prefix>_<secret>")
        prefix, secret = parts
        row = ApiKey.select(ApiKey, User).join(User).where(ApiKey.prefix == prefix).first()
        if row is None or not secret_matches(row.secret_hash, secret):
            raise unauthorized("the API key is not valid (unknown or deleted)")
        if not row.enabled:
            raise unauthorized("the API key is disabled; enable it with PATCH /api/v1/keys/{id}")
        if row.expires_at is not None and row.expires_at <= self.clock.now():
            raise unauthorized("the API key has expired; create a new one")
        user = row.user
        if user.disabled:
            raise unauthorized("the account of this API key is disabled")
        allowed = set(ROLE_SCOPES.get(user.role, ()))
        scopes = frozenset(s for s in row.scopes if s in allowed)
        return Principal(user.id, user.username, user.role, scopes, key_id=row.id), row.expires_at

    def _touch(self, key_id: int | None) -> None:
        if key_id is None:
            return
        now = self.clock.now()
        if now - self._last_used_written.get(key_id, 0) < self.LAST_USED_EVERY:
            return
        self._last_used_written[key_id] = now
        try:
            ApiKey.update(last_used_at=now).where(ApiKey.id == key_id).execute()
        except peewee.OperationalError:
            self._last_used_written.pop(key_id, None)  # busy database: try on a later request

    def forget(self, key_id: int) -> None:
        """Drop a changed or deleted key from the cache; its next use is checked against the database."""
        self._last_used_written.pop(key_id, None)
        self.cache.drop_key(key_id)


def session_token(req: falcon.Request) -> str | None:
    values = req.get_cookie_values(SESSION_COOKIE)
    return values[0] if values else None


class SessionAuthenticator:
    """Turns the web UI's `mp_session` cookie into a Principal; runs in the HTTP worker thread.

    A cookie-borne request other than GET/HEAD/OPTIONS must carry the session's CSRF token
    in X-CSRF-Token. Raises APIError 401 (unknown or expired session, disabled account) or
    403 `csrf_failed`.
    """

    def __call__(self, req: falcon.Request) -> Principal | None:
        token = session_token(req)
        if not token:
            return None
        row = find_session(token)
        if row is None:
            raise unauthorized(
                "the session has expired or was ended; log in again with POST /api/v1/session"
            )
        user = row.user
        if user.disabled:
            raise unauthorized("this account is disabled; ask an administrator")
        principal = Principal(
            user.id,
            user.username,
            user.role,
            frozenset(ROLE_SCOPES.get(user.role, ())),
            via="session",
            session_id=row.id,
        )
        if req.method not in SAFE_METHODS:
            presented = req.get_header(CSRF_HEADER) or ""
            if not hmac.compare_digest(hash_secret(presented), row.csrf_token):
                req.context.principal = (
                    principal  # so that the refusal is audited against the account
                )
                raise APIError(
                    403,
                    "csrf_failed",
                    f"a request made with the session cookie must send header "
                    f"{CSRF_HEADER} with the csrf_token from the login answer (or GET /api/v1/session)",
                )
        return principal


class AuthMiddleware:
    """Authenticates every non-public request and checks the route's permission.

    `session_authenticator`, when set, is consulted for requests without a Bearer key
    (the web UI's cookie). Runs in the HTTP worker thread; raises APIError 401/403.
    """

    def __init__(self, routes: list[Route], keys: KeyAuthenticator):
        self.ops = {(r.template, m): op for r in routes for m, op in r.ops.items()}
        self.keys = keys
        self.session_authenticator: Callable[[falcon.Request], Principal | None] | None = None

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        op: Op | None = self.ops.get((req.uri_template, req.method))
        req.context.op = op
        req.context.principal = None
        if op is None or op.permission == PUBLIC:
            return
        req.context.principal = principal = self.identify(req)
        if op.permission == AUTHENTICATED:
            return
        if op.permission == "admin" and not principal.is_admin:
            raise APIError(
                403, "forbidden", "this needs an admin account and a key with the admin scope"
            )
        if op.permission not in principal.scopes:
            raise APIError(
                403,
                "missing_scope",
                f"this needs the scope {op.permission!r}; this key has "
                f"{', '.join(sorted(principal.scopes)) or 'none'}",
                {"required_scope": op.permission},
            )

    def identify(self, req: falcon.Request) -> Principal:
        header = req.get_header("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized("use Authorization: Bearer <api key>")
            return self.keys.authenticate(token.strip())
        if self.session_authenticator is not None:
            principal = self.session_authenticator(req)
            if principal is not None:
                return principal
        raise unauthorized(
            "no credentials: send Authorization: Bearer <api key>, or log in with POST /api/v1/session"
        )


def owner_filter(
    req: falcon.Request, model: type[peewee.Model], owner: peewee.Field | None = None
) -> peewee.Expression | None:
    """The WHERE clause that limits a query to the caller's rows.

    `owner` is the column naming the owner (default `model.user`). Admins see everything, or
    one user's rows with ?user=<id or name>. None = no filter.
    """
    owner = model.user if owner is None else owner
    principal: Principal = req.context.principal
    if not principal.is_admin:
        return owner == principal.user_id
    wanted = params.value(req, "user")
    if not wanted:
        return None
    ident = params.as_id(wanted)
    user = (
        User.get_or_none(User.id == ident)
        if ident is not None
        else User.get_or_none(User.username == wanted)
    )
    if user is None:
        raise not_found("user")
    return owner == user.id


def get_owned(
    req: falcon.Request, model: type[peewee.Model], object_id: int | str, what: str
) -> peewee.Model:
    """One row by id if the caller may see it; another user's row is a 404, like a missing one."""
    ident = object_id if isinstance(object_id, int) else params.as_id(object_id)
    if ident is None:
        raise not_found(what)
    principal: Principal = req.context.principal
    query = model.select().where(model.id == ident)
    if not principal.is_admin:
        query = query.where(model.user == principal.user_id)
    row = query.first()
    if row is None:
        raise not_found(what)
    return row
