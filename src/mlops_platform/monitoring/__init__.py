"""What Prometheus learns about the ML loop beyond the API: read from the stores on scrape."""
