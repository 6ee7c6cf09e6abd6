"""Data-source API: the listing simulator, the HTTP app that serves it, and its client."""
