"""The message domain: the state machine (`lifecycle`), the store that owns every write to
messages, deliveries and events (`store`), recurrence, the inbox and hook templates.

Imported as `messagepusher.messages`: pyproject's `package-dir` maps each top-level folder to
`messagepusher.<folder>`. Imports only `messagepusher.supervisor` and the other domain packages (messages, outbound, accounts).
"""
