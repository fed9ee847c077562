"""Local sandbox of the Kapwork Partner API: deterministic data, faults, ground truth."""

from kapwork_sandbox.server import Sandbox

__all__ = ["Sandbox"]
