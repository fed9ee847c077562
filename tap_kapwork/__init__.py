"""Singer tap for the Kapwork Partner API."""
