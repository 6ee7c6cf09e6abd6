"""The one-machine platform behind `mlops up`."""
