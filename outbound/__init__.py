"""Outbound HTTP: the private-network guard (`netguard`), page fetching and extraction
(`page_fetch`) and the pooled session with its limits (`http_session`).

Imported as `messagepusher.outbound` (pyproject's `package-dir`). Imports only
`messagepusher.supervisor` and the other domain packages (messages, outbound, accounts).
"""
