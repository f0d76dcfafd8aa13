"""Sojourn's background work: the named services, where each runs, and the runner that runs them."""
