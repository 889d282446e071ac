"""The operator dashboard (`/ui`): server-rendered pages over the application services.

`Dashboard` is what the app mounts: its routes, templates and Jinja2 load on the first request
to /ui, so the API's cold import (Lambda) does not pay for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from starlette.routing import Router


class Dashboard:
    """ASGI app for the `/ui` mount; builds `service.ui.routes` on first use. Mounted as a
    plain ASGI callable, so requests keep the API app as `request.app` (its state, error
    handling and request ids)."""

    def __init__(self) -> None:
        self._router: Router | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            from service.ui.routes import build_router

            self._router = build_router()
        await self._router(scope, receive, send)
