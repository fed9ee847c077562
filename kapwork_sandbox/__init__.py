"""Local sandbox of the Kapwork Partner API."""
