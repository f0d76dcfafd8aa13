"""The Task Engine dialect's services: settings, priority queues and slots, the scheduler, callbacks."""

from sojourn.services.taskengine.service import (
    SEVERITIES,
    STATES,
    VERSION,
    TaskEngine,
    TEJob,
)

__all__ = ["SEVERITIES", "STATES", "VERSION", "TaskEngine", "TEJob"]
