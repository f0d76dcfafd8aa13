"""Prefect flows, one per job kind."""

from sojourn.flows.agent import agent
from sojourn.flows.browse import browse

__all__ = ["agent", "browse"]
