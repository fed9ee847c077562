"""`python -m kapwork_sandbox`."""

from kapwork_sandbox.cli import main

main()
