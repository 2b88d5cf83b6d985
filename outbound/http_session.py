"""Outbound HTTP sessions: keep-alive, sized pools, and no per-request environment look-ups.

requests re-reads proxy variables and ~/.netrc on every request when it trusts the
environment; without proxy variables there is nothing to find, so the session skips it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def environment_has_proxies(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name) or env.get(name.upper()) for name in PROXY_VARIABLES)


def new_session(pool_size: int = 32) -> requests.Session:
    """A session for one worker thread. Proxy variables, when set, are still honoured."""
    import requests  # here, on a worker's first request: not at start-up

    session = requests.Session()
    session.trust_env = environment_has_proxies()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
