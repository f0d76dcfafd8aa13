"""Prefect flows, one per job kind."""

from sojourn.flows.browse import browse

__all__ = ["browse"]
