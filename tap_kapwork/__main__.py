"""`python -m tap_kapwork`."""

from tap_kapwork.tap import TapKapwork

TapKapwork.cli()
