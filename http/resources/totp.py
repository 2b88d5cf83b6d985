"""The caller's TOTP second factor over HTTP: enroll, confirm with a current code, remove.

Permissions come from ROUTES below; removing the factor needs X-Confirm.
"""

from __future__ import annotations

import falcon
from pydantic import Field

from messagepusher.accounts.credentials import new_totp_secret, totp_uri
from messagepusher.http.confirm import use_totp_code
from messagepusher.http.errors import APIError, unprocessable
from messagepusher.http.resources.common import read_model
from messagepusher.http.routes import AUTHENTICATED, Op, Route
from messagepusher.http.schemas import Strict
from messagepusher.supervisor.models import User


class TotpCodeIn(Strict):
    code: str = Field(description="the 6-digit code the authenticator app shows now")


class MeTotp:
    """/api/v1/me/totp: enroll (POST) or remove (DELETE, sensitive) the caller's TOTP second factor.

    HTTP worker thread; raises APIError 409 when TOTP is already on.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = User.get_by_id(req.context.principal.user_id)
        if user.totp_enabled:
            raise APIError(
                409,
                "totp_enabled",
                "TOTP is already enabled; remove it first with DELETE "
                "/api/v1/me/totp (needs X-Confirm) to enroll a new device",
            )
        secret = new_totp_secret()
        # The used-step record belongs to the old secret: a new one starts with none used.
        User.update(
            totp_secret=self.runtime.secretbox.encrypt(secret),
            totp_enabled=False,
            totp_last_step=None,
            updated_at=self.runtime.clock.now(),
        ).where(User.id == user.id).execute()
        resp.status = falcon.HTTP_201
        resp.media = {
            "secret": secret,
            "provisioning_uri": totp_uri(secret, user.username),
            "enabled": False,
            "next": 'add it to an authenticator app, then POST /api/v1/me/totp/confirm {"code": …}',
        }

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        User.update(
            totp_secret=None,
            totp_enabled=False,
            totp_last_step=None,
            updated_at=self.runtime.clock.now(),
        ).where(User.id == req.context.principal.user_id).execute()
        resp.status = falcon.HTTP_204


class MeTotpConfirm:
    """/api/v1/me/totp/confirm: turn an enrolled TOTP secret on by proving a current code.

    HTTP worker thread; raises APIError 409 (nothing enrolled) or 422 (wrong or already used
    code). The code's time step is consumed, so it cannot serve again as an X-Confirm code.
    """

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = User.get_by_id(req.context.principal.user_id)
        body = read_model(req, TotpCodeIn)
        if user.totp_secret is None:
            raise APIError(
                409,
                "totp_not_enrolled",
                "no TOTP secret to confirm; enroll first with POST /api/v1/me/totp",
            )
        outcome = use_totp_code(req, user, body.code)
        if outcome == "used":
            raise unprocessable(
                "code",
                "was already used; each code works once: wait for the next code (at most "
                "30 s) and send that",
            )
        if outcome != "ok":
            raise unprocessable(
                "code",
                "is not the current code of the enrolled secret; check the app and the "
                "device clock",
            )
        User.update(totp_enabled=True, updated_at=self.runtime.clock.now()).where(
            User.id == user.id
        ).execute()
        resp.media = {"enabled": True}


ROUTES = [
    Route(
        "/api/v1/me/totp",
        "totp:MeTotp",
        {
            "POST": Op(
                AUTHENTICATED,
                "Enroll a TOTP second factor: returns the secret and a provisioning URI",
                status=201,
            ),
            "DELETE": Op(
                AUTHENTICATED, "Remove your TOTP second factor", status=204, sensitive=True
            ),
        },
        tag="me",
    ),
    Route(
        "/api/v1/me/totp/confirm",
        "totp:MeTotpConfirm",
        {
            "POST": Op(
                AUTHENTICATED, "Turn the enrolled TOTP factor on with a current code", TotpCodeIn
            ),
        },
        tag="me",
    ),
]
