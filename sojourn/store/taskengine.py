"""Tables of the Task Engine API dialect (none yet)."""
