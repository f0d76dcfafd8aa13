"""Where a profile's encrypted state lives in the artifact store (the API writes and the worker reads, and back)."""


def snapshot_path(profile_id: str, version: int) -> str:
    """The state of one version, written when the version is made (by a create or an applied save)."""
    return f"profiles/{profile_id}/v{version}.enc"


def current_path(profile_id: str) -> str:
    """The state of the profile's current version (what a scheduled scrape job, made before the latest save, reads)."""
    return f"profiles/{profile_id}/current.enc"


def save_path(profile_id: str, job_id: str) -> str:
    """The state a saving job left, until the API applies (or refuses) it."""
    return f"profiles/{profile_id}/saves/{job_id}.enc"


def profile_prefix(profile_id: str) -> str:
    return f"profiles/{profile_id}"
