"""datarange layer."""
