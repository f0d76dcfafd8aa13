"""What a dialect mounted under the main app reaches: the main app's state (the process's services, its key
lookup) and the settings the dialect's sub-app was made with. One place for the four mounted dialects."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.datastructures import State
from starlette.requests import HTTPConnection

from sojourn.settings import Settings


def main_state(conn: HTTPConnection) -> State:
    """The main app's state: ``jobs``, ``scrape``, ``taskengine``, ``fastlane``, ``auth``, ... (set at its start)."""
    return conn.app.state.main.state  # type: ignore[no-any-return]


# async: an attribute read runs on the event loop, as the routes' own code does (no threadpool hop)
async def settings_of(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings  # type: ignore[no-any-return]


Config = Annotated[Settings, Depends(settings_of)]
