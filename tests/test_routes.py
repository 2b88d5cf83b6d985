"""The route table: every resource module's routes gathered once, looked up by template and
method, and the rules every row must keep (known permissions, admin areas, confirmations).

Pure: the table is read, no server is started.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from messagepusher.accounts.credentials import ALL_SCOPES
from messagepusher.http.resources import accounts, channels, health, messages
from messagepusher.http.routes import AUTHENTICATED, PUBLIC, Op, Route, all_routes, permission_for

ROUTES = all_routes()
OPS = [(method, route.template, op) for route in ROUTES for method, op in route.ops.items()]

# Reachable without credentials by design (DESIGN §5): health, docs, the UI's files, login,
# the compatible push URL, public message pages and incoming webhooks (each by its own token).
PUBLIC_TEMPLATES = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/",
    "/ui/{name}",
    "/api/v1/session",
    "/push/{username}",
    "/m/{token}",
    "/hooks/{token}",
}


def test_an_operation_answers_200_and_needs_no_confirmation_unless_it_says_so():
    op = Op("messages:read", "list")
    assert (op.status, op.sensitive, op.request, op.audit, op.query) == (200, False, None, "", ())


def test_a_route_has_no_operations_tag_or_suffix_unless_given():
    route = Route("/x", "health:Health")
    assert (route.ops, route.tag, route.suffix) == ({}, "", None)


def test_a_row_of_the_table_cannot_be_changed_once_made():
    # The app, the permission check and the OpenAPI document share these objects.
    op = permission_for(ROUTES, "/api/v1/users", "GET")
    with pytest.raises(FrozenInstanceError):
        op.permission = PUBLIC
    with pytest.raises(FrozenInstanceError):
        ROUTES[0].template = "/elsewhere"


def test_the_table_holds_every_resource_module_s_routes_in_order():
    templates = [r.template for r in ROUTES]
    for module in (health, messages, channels, accounts):
        assert all(r in ROUTES for r in module.ROUTES), module.__name__
    assert templates.index("/healthz") < templates.index("/api/v1/messages")
    assert templates.index("/api/v1/messages") < templates.index("/api/v1/channels")


def test_every_url_and_method_appears_once():
    pairs = [(method, template) for method, template, _ in OPS]
    assert len(pairs) == len(set(pairs))


def test_permission_for_finds_the_operation_of_a_template_and_method():
    op = permission_for(ROUTES, "/api/v1/messages", "POST")
    assert op is not None and op.permission == "messages:send" and op.status == 202
    assert permission_for(ROUTES, "/api/v1/messages", "GET").permission == "messages:read"


def test_permission_for_is_none_for_an_unknown_template_or_method():
    assert permission_for(ROUTES, "/api/v1/nowhere", "GET") is None
    assert permission_for(ROUTES, "/api/v1/messages", "DELETE") is None
    assert permission_for([], "/healthz", "GET") is None


@pytest.mark.parametrize(("method", "template", "op"), OPS, ids=lambda v: str(v)[:40])
def test_every_operation_needs_a_known_scope_or_is_public_or_authenticated(method, template, op):
    assert op.permission in (PUBLIC, AUTHENTICATED, *ALL_SCOPES), (method, template)


def test_only_the_designed_urls_are_public():
    public = {template for _, template, op in OPS if op.permission == PUBLIC}
    assert public <= PUBLIC_TEMPLATES, public - PUBLIC_TEMPLATES


def test_the_only_public_session_operation_is_logging_in():
    assert permission_for(ROUTES, "/api/v1/session", "POST").permission == PUBLIC
    assert permission_for(ROUTES, "/api/v1/session", "DELETE").permission == AUTHENTICATED


def test_every_admin_and_user_management_url_needs_the_admin_permission():
    guarded = [
        (method, template, op.permission)
        for method, template, op in OPS
        if template.startswith(("/api/v1/admin/", "/api/v1/users"))
    ]
    assert guarded, "the admin routes are in the table"
    assert all(permission == "admin" for _, _, permission in guarded), guarded


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("DELETE", "/api/v1/users/{user_id}"),
        ("POST", "/api/v1/admin/backups/{name}/restore"),
        ("PATCH", "/api/v1/admin/config"),
        ("POST", "/api/v1/admin/config/versions/{version}/rollback"),
        ("DELETE", "/api/v1/me/totp"),
    ],
)
def test_the_sensitive_operations_need_a_second_verification(method, template):
    assert permission_for(ROUTES, template, method).sensitive


def test_sending_answers_202_after_the_commit():
    assert permission_for(ROUTES, "/api/v1/messages", "POST").status == 202
