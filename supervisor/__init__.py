"""The runtime every other layer stands on: Runtime, the actor base, ticker and clock, the
supervisor actor and the process supervisor, mailbox, scheduler and jobs, readiness, config,
database, SQL dialect and models.

Imported as `messagepusher.supervisor` (pyproject's `package-dir`). Imports no other
messagepusher package (tests/test_layers.py).
"""
