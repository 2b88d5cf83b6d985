"""The permission check and the owner scoping of http/auth.py, without a server.

The middleware is driven with stand-in requests and a stand-in key authenticator; the owner
scoping runs real queries on a migrated SQLite file. Every status and code is checked: a
request let through where it should be refused is the failure this file exists to catch.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from messagepusher.accounts.credentials import ROLE_SCOPES
from messagepusher.http.auth import AuthMiddleware, Principal, get_owned, owner_filter
from messagepusher.http.errors import APIError
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Op, Route
from messagepusher.supervisor.db import open_database
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.models import Channel, User


def fresh(name: str) -> str:
    """An equal string that is not the interned literal: permissions are compared by value."""
    return "".join(list(name))


ROUTES = [
    Route("/healthz", "health:Health", {"GET": Op(fresh(PUBLIC), "liveness")}),
    Route("/api/v1/me", "accounts:Me", {"GET": Op(fresh(AUTHENTICATED), "own profile")}),
    Route(
        "/api/v1/messages",
        "messages:Messages",
        {"POST": Op("messages:send", "send"), "GET": Op("messages:read", "list")},
    ),
    Route("/api/v1/users", "accounts:Users", {"GET": Op(fresh("admin"), "users")}),
    # Scopes that sort before "admin" and after "public": a scope is matched, never ordered.
    Route("/api/v1/ledger", "x:Ledger", {"GET": Op("accounts:read", "ledger")}),
    Route("/api/v1/webhooks", "x:Webhooks", {"POST": Op("webhooks:write", "hooks")}),
]
ADMIN = Principal(1, "root", "admin", frozenset(ROLE_SCOPES["admin"]), key_id=1)
USER = Principal(2, "ann", "user", frozenset(ROLE_SCOPES["user"]), key_id=2)
SENDER = Principal(3, "bot", "user", frozenset({"messages:send"}), key_id=3)
NO_SCOPES = Principal(4, "empty", "user", frozenset(), key_id=4)


class Keys:
    """Stands in for KeyAuthenticator: knows some tokens, refuses the rest with a 401."""

    def __init__(self, **principals: Principal) -> None:
        self.principals = principals
        self.presented: list[str] = []

    def authenticate(self, presented: str) -> Principal:
        self.presented.append(presented)
        if presented not in self.principals:
            raise APIError(401, "unauthorized", "unknown key")
        return self.principals[presented]


class Request:
    def __init__(self, method: str, template: str, authorization: str | None = None, **params):
        self.method = method
        self.uri_template = template
        self.headers = {"Authorization": authorization} if authorization else {}
        self.params = params
        self.context = SimpleNamespace()

    def get_header(self, name: str) -> str | None:
        return self.headers.get(name)

    def get_param(self, name: str) -> str | None:
        return self.params.get(name)


def middleware(**principals: Principal) -> AuthMiddleware:
    return AuthMiddleware(ROUTES, Keys(**principals))


def refusal(mw: AuthMiddleware, req: Request) -> APIError:
    with pytest.raises(APIError) as caught:
        mw.process_resource(req, None, None, {})
    return caught.value


def status(error: APIError) -> int:
    return int(error.status.split()[0]) if isinstance(error.status, str) else int(error.status)


# --- who is an admin ------------------------------------------------------------------------


def test_an_admin_is_an_admin_account_holding_the_admin_scope():
    assert ADMIN.is_admin
    assert not Principal(1, "root", "admin", frozenset({"messages:send"})).is_admin, (
        "an admin's key without the admin scope acts as a user"
    )
    assert not Principal(2, "ann", "user", frozenset({"admin"})).is_admin, (
        "a user's key can never carry admin rights"
    )


def test_a_role_read_from_the_database_is_compared_by_value():
    role = "".join(["ad", "min"])  # equal to "admin", but not the interned literal
    assert Principal(1, "root", role, frozenset(ROLE_SCOPES["admin"])).is_admin


def test_a_principal_is_a_value_that_cannot_be_changed():
    with pytest.raises(AttributeError):
        USER.role = "admin"
    assert USER.via == "key" and USER.session_id is None


# --- the permission check --------------------------------------------------------------------


def test_a_public_route_needs_no_credentials_and_names_no_caller():
    mw = middleware()
    req = Request("GET", "/healthz")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is None
    assert req.context.op.permission == PUBLIC


def test_a_public_route_ignores_a_bad_key_rather_than_refusing():
    mw = middleware()
    req = Request("GET", "/healthz", "Bearer nonsense")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is None


def test_an_unknown_route_or_method_is_left_to_the_router():
    mw = middleware()
    for req in (Request("GET", "/nowhere"), Request("DELETE", "/api/v1/messages")):
        mw.process_resource(req, None, None, {})
        assert req.context.op is None and req.context.principal is None


def test_an_authenticated_route_takes_any_valid_key_whatever_its_scopes():
    mw = middleware(empty=NO_SCOPES)
    req = Request("GET", "/api/v1/me", "Bearer empty")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is NO_SCOPES


def test_an_authenticated_route_refuses_a_caller_without_credentials_with_401():
    error = refusal(middleware(), Request("GET", "/api/v1/me"))
    assert status(error) == 401 and error.code == "unauthorized"
    assert "Authorization: Bearer" in error.message
    assert error.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_the_route_s_scope_is_let_through_and_becomes_the_principal():
    mw = middleware(bot=SENDER)
    req = Request("POST", "/api/v1/messages", "Bearer bot")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is SENDER
    assert req.context.op.permission == "messages:send"


def test_a_key_without_the_route_s_scope_gets_403_naming_the_scope_it_lacks():
    error = refusal(middleware(bot=SENDER), Request("GET", "/api/v1/messages", "Bearer bot"))
    assert status(error) == 403 and error.code == "missing_scope"
    assert error.details == {"required_scope": "messages:read"}
    assert "'messages:read'" in error.message and "messages:send" in error.message


def test_a_key_with_no_scopes_at_all_is_told_it_has_none():
    error = refusal(
        middleware(empty=NO_SCOPES), Request("POST", "/api/v1/messages", "Bearer empty")
    )
    assert status(error) == 403 and error.message.endswith("this key has none")


def test_the_refused_caller_is_still_known_so_that_the_refusal_is_audited_against_it():
    req = Request("GET", "/api/v1/messages", "Bearer bot")
    refusal(middleware(bot=SENDER), req)
    assert req.context.principal is SENDER


def test_an_admin_route_refuses_a_user_with_403_even_with_every_user_scope():
    error = refusal(middleware(ann=USER), Request("GET", "/api/v1/users", "Bearer ann"))
    assert status(error) == 403 and error.code == "forbidden"
    assert "admin" in error.message


def test_an_admin_route_refuses_a_user_key_that_claims_the_admin_scope():
    claimer = Principal(5, "eve", "user", frozenset({"admin", "messages:send"}), key_id=5)
    error = refusal(middleware(eve=claimer), Request("GET", "/api/v1/users", "Bearer eve"))
    assert status(error) == 403 and error.code == "forbidden"


def test_an_admin_route_takes_an_admin_with_the_admin_scope():
    mw = middleware(root=ADMIN)
    req = Request("GET", "/api/v1/users", "Bearer root")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is ADMIN


@pytest.mark.parametrize(
    ("method", "template", "scope"),
    [("GET", "/api/v1/ledger", "accounts:read"), ("POST", "/api/v1/webhooks", "webhooks:write")],
)
def test_any_scope_name_is_checked_by_membership_alone(method, template, scope):
    holder = Principal(6, "kim", "user", frozenset({scope}), key_id=6)
    mw = middleware(kim=holder, bot=SENDER)
    req = Request(method, template, "Bearer kim")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is holder
    error = refusal(mw, Request(method, template, "Bearer bot"))
    assert status(error) == 403 and error.details == {"required_scope": scope}
    assert status(refusal(mw, Request(method, template))) == 401


def test_an_admin_holds_every_scope_a_user_route_needs():
    mw = middleware(root=ADMIN)
    for method in ("GET", "POST"):
        req = Request(method, "/api/v1/messages", "Bearer root")
        mw.process_resource(req, None, None, {})
        assert req.context.principal is ADMIN


# --- how the caller is identified ------------------------------------------------------------


def test_the_bearer_scheme_is_case_insensitive_and_the_token_is_trimmed():
    keys = Keys(bot=SENDER)
    mw = AuthMiddleware(ROUTES, keys)
    req = Request("POST", "/api/v1/messages", "bearer   bot  ")
    mw.process_resource(req, None, None, {})
    assert keys.presented == ["bot"]
    assert req.context.principal is SENDER


@pytest.mark.parametrize("header", ["Basic Ym90OnB3", "Token bot", "Bearer", "Bearer    ", "bot"])
def test_anything_but_a_bearer_token_is_refused_with_401_before_any_key_lookup(header):
    keys = Keys(bot=SENDER)
    error = refusal(AuthMiddleware(ROUTES, keys), Request("GET", "/api/v1/me", header))
    assert status(error) == 401 and error.message == "use Authorization: Bearer <api key>"
    assert keys.presented == []


def test_an_unknown_key_is_refused_with_the_authenticator_s_401():
    error = refusal(middleware(), Request("GET", "/api/v1/me", "Bearer stolen"))
    assert status(error) == 401 and error.message == "unknown key"


def test_without_a_key_the_session_cookie_identifies_the_caller():
    mw = middleware()
    mw.session_authenticator = lambda req: USER
    req = Request("GET", "/api/v1/messages")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is USER


def test_a_key_wins_over_a_session_cookie():
    mw = middleware(bot=SENDER)
    mw.session_authenticator = lambda req: USER
    req = Request("POST", "/api/v1/messages", "Bearer bot")
    mw.process_resource(req, None, None, {})
    assert req.context.principal is SENDER


def test_no_key_and_no_session_is_refused_with_401_naming_both_ways_in():
    mw = middleware()
    mw.session_authenticator = lambda req: None
    error = refusal(mw, Request("GET", "/api/v1/me"))
    assert status(error) == 401
    assert "Bearer" in error.message and "POST /api/v1/session" in error.message


# --- owner scoping on a real database ----------------------------------------------------------


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Two users with one channel each, made once (the tests only read); {name: (user, channel)}."""
    database = open_database(f"sqlite:///{tmp_path_factory.mktemp('auth') / 'auth.db'}")
    database.connect()
    migrate(database)
    out = {}
    for name in ("ann", "bob"):
        user = User.create(username=name, password_hash="x", created_at=0, updated_at=0)
        channel = Channel.create(
            user=user, name=f"{name}-hook", type="webhook", config="", created_at=0, updated_at=0
        )
        out[name] = (user, channel)
    yield out
    database.close()


def caller(principal: Principal, **params: str) -> Request:
    req = Request("GET", "/api/v1/channels", **params)
    req.context.principal = principal
    return req


def as_user(user: User, role: str = "user") -> Principal:
    return Principal(user.id, user.username, role, frozenset(ROLE_SCOPES[role]))


def visible(req: Request) -> set[str]:
    where = owner_filter(req, Channel)
    query = Channel.select() if where is None else Channel.select().where(where)
    return {c.name for c in query}


def test_a_user_sees_only_their_own_rows(rows):
    ann, _ = rows["ann"]
    bob, _ = rows["bob"]
    assert visible(caller(as_user(ann))) == {"ann-hook"}
    assert visible(caller(as_user(bob))) == {"bob-hook"}


def test_a_user_cannot_widen_their_view_with_the_user_parameter(rows):
    ann, _ = rows["ann"]
    bob, _ = rows["bob"]
    assert visible(caller(as_user(ann), user=str(bob.id))) == {"ann-hook"}
    assert visible(caller(as_user(ann), user="bob")) == {"ann-hook"}


def test_an_admin_sees_every_row_without_the_user_parameter(rows):
    ann, _ = rows["ann"]
    assert owner_filter(caller(as_user(ann, "admin")), Channel) is None
    assert visible(caller(as_user(ann, "admin"))) == {"ann-hook", "bob-hook"}


def test_an_admin_picks_one_user_s_rows_by_id_or_by_name(rows):
    ann, _ = rows["ann"]
    bob, _ = rows["bob"]
    admin = as_user(ann, "admin")
    assert visible(caller(admin, user=str(bob.id))) == {"bob-hook"}
    assert visible(caller(admin, user="bob")) == {"bob-hook"}
    assert visible(caller(admin, user=str(ann.id))) == {"ann-hook"}
    assert visible(caller(admin, user="ann")) == {"ann-hook"}


def test_an_admin_naming_an_unknown_user_gets_404(rows):
    ann, _ = rows["ann"]
    for wanted in ("nobody", "aaa", "9999"):
        with pytest.raises(APIError) as caught:
            owner_filter(caller(as_user(ann, "admin"), user=wanted), Channel)
        assert status(caught.value) == 404 and caught.value.message == "user not found"


def test_an_admin_naming_a_user_id_that_cannot_exist_gets_422_naming_the_parameter(rows):
    ann, _ = rows["ann"]
    for wanted in ("0", "²", str(2**64)):
        with pytest.raises(APIError) as caught:
            owner_filter(caller(as_user(ann, "admin"), user=wanted), Channel)
        assert status(caught.value) == 422 and caught.value.details[0]["field"] == "user"


def test_a_user_gets_their_own_row_by_id(rows):
    ann, channel = rows["ann"]
    assert get_owned(caller(as_user(ann)), Channel, str(channel.id), "channel") == channel


def test_another_user_s_row_is_a_404_exactly_like_a_missing_one(rows):
    ann, anns = rows["ann"]
    bob, bobs = rows["bob"]
    errors = []
    for who, ident in ((ann, str(bobs.id)), (bob, str(anns.id)), (ann, "9999"), (ann, "0")):
        with pytest.raises(APIError) as caught:
            get_owned(caller(as_user(who)), Channel, ident, "channel")
        errors.append((status(caught.value), caught.value.code, caught.value.message))
    assert errors == [(404, "not_found", "channel not found")] * 4


def test_an_admin_gets_any_user_s_row_by_id(rows):
    ann, _ = rows["ann"]
    _, bobs = rows["bob"]
    assert get_owned(caller(as_user(ann, "admin")), Channel, str(bobs.id), "channel") == bobs


@pytest.mark.parametrize("ident", ["abc", "", None, "1.5"])
def test_an_id_that_is_not_a_number_is_a_404_not_a_500(rows, ident):
    ann, _ = rows["ann"]
    with pytest.raises(APIError) as caught:
        get_owned(caller(as_user(ann)), Channel, ident, "channel")
    assert status(caught.value) == 404 and caught.value.message == "channel not found"
