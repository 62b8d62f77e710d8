"""The sign-in routes: a token for a name and password, who the token belongs to, sign-out."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from host.api.operators import OperatorAuth, Principal, SignInRefused, SignInThrottled
from host.api.schemas import ErrorOut, OperatorOut, SignInIn, TokenOut
from host.api.security import AUTH_RESPONSES, CHALLENGE, require_role


def auth_router(auth: OperatorAuth) -> APIRouter:
    router = APIRouter(prefix="/auth", tags=["sign-in"])
    signed_in = require_role(auth, "viewer")

    @router.post(
        "/token",
        response_model=TokenOut,
        summary="Sign in: a bearer token for an operator name and password",
        responses={
            401: {"model": ErrorOut, "description": "wrong name or password, or locked"},
            429: {"model": ErrorOut, "description": "too many attempts from this client"},
        },
    )
    def sign_in(body: SignInIn, request: Request) -> TokenOut:
        client = request.client.host if request.client is not None else "unknown"
        try:
            issued = auth.sign_in(body.name, body.password, client)
        except SignInThrottled as err:
            wait = str(max(1, math.ceil(err.retry_after)))
            raise HTTPException(429, str(err), headers={"Retry-After": wait}) from None
        except SignInRefused as err:
            raise HTTPException(401, str(err), headers=CHALLENGE) from None
        return TokenOut(
            access_token=issued.token,
            role=issued.role,  # type: ignore[arg-type]  # a role the table's CHECK allows
            idle_timeout_seconds=issued.idle_timeout_seconds,
        )

    @router.get(
        "/me",
        response_model=OperatorOut,
        summary="Who this token belongs to",
        responses=AUTH_RESPONSES,
    )
    def me(principal: Principal = Depends(signed_in)) -> OperatorOut:  # noqa: B008
        return OperatorOut(name=principal.name, role=principal.role)  # type: ignore[arg-type]

    @router.delete(
        "/token",
        status_code=204,
        summary="Sign out: the token stops working",
        responses=AUTH_RESPONSES,
    )
    def sign_out(principal: Principal = Depends(signed_in)) -> Response:  # noqa: B008
        auth.sign_out(principal)
        return Response(status_code=204)

    return router
