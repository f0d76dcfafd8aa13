"""fastlane's tasks, jobs and executions over Sojourn's job ledger (the dialect's services; no HTTP here)."""

from sojourn.services.fastlane.service import FastlaneService, InputError, LookupFailed, execution_dict, iso

__all__ = ["FastlaneService", "InputError", "LookupFailed", "execution_dict", "iso"]
