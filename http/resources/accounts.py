"""The account resources' routes, in the order the route table lists them.

Each resource is a module of its own: users, me, totp, audit_log, sessions and keys (profile.py holds what users and me share).
"""

from __future__ import annotations

from messagepusher.http.resources import audit_log, keys, me, sessions, totp, users

ROUTES = [
    *users.ROUTES,
    *me.ROUTES,
    *totp.ROUTES,
    *audit_log.ROUTES,
    *sessions.ROUTES,
    *keys.ROUTES,
]
