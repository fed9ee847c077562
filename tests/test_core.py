"""The SDK's standard tap tests, against a sandbox started for this module.

Two of them cannot fail as written in the SDK (primary-key uniqueness compares
generator objects; the final-state check looks for progress markers at the wrong
level): tests/test_streams.py checks both for real.
"""

from __future__ import annotations

import atexit

from helpers import API_KEY
from singer_sdk.testing import get_tap_test_class

from kapwork_sandbox import Sandbox
from tap_kapwork.tap import TapKapwork

# The SDK builds the test class at import time, so the sandbox must already be up.
_SANDBOX = Sandbox(receivables=300, seed=3, api_key=API_KEY).start()
atexit.register(_SANDBOX.stop)
# Fields the docs do not list, so that the catch-all columns hold values to test.
for _level in ("receivable", "entry", "change"):
    _SANDBOX.add_fields(_level, share=0.2)

TestTapKapwork = get_tap_test_class(
    tap_class=TapKapwork,
    config={"api_key": API_KEY, "api_url": _SANDBOX.url},
)
