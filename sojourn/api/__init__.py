"""The REST facade: app factory, JobService, auth, errors, events; dialects/ holds one router per API."""
