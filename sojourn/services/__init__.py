"""What Sojourn does, apart from HTTP: accepting and dispatching jobs, reading them back, following them,
and what happens when they end (webhooks, batches, metrics). The dialects in :mod:`sojourn.api` call these;
nothing here imports :mod:`sojourn.api`.
"""
