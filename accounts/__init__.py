"""Users, passwords, API keys, TOTP, secret encryption, access-token caching and rate limits.

Imported as `messagepusher.accounts` (pyproject's `package-dir`). Imports only
`messagepusher.supervisor` and the other domain packages (messages, outbound, accounts).
"""
