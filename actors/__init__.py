"""The actors: ingest, dispatcher, fetcher, AI pool, channel pool, schedules, janitor, monitor,
with the channel plug-ins (`channels/`), the AI providers (`ai/`) and recall.

Imported as `messagepusher.actors`: pyproject's `package-dir` maps each top-level folder to
`messagepusher.<folder>`. Never imports `messagepusher.http` (tests/test_layers.py).
"""
