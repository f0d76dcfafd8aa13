"""Tables of the fastlane API dialect (none yet)."""
