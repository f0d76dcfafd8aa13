"""Tables of the Scrape-jobs API dialect (none yet)."""
