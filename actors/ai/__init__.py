"""AI providers behind one small interface, and `run_task`, the ai_pool's one entry point.

Picks the configured provider for a message, enforces its input limit and the private-network
rule on its base URL; the providers themselves live in local.py and openai.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from messagepusher.actors.ai.base import AIError, AIRequest, AIResult, Provider
from messagepusher.actors.ai.local import LocalProvider
from messagepusher.actors.ai.openai import OpenAIProvider
from messagepusher.outbound import netguard
from messagepusher.supervisor.config import AISettings

if TYPE_CHECKING:
    import requests

__all__ = ["AIError", "AIRequest", "AIResult", "run_task"]


def run_task(
    request: AIRequest,
    provider_name: str | None,
    settings: AISettings,
    session: requests.Session,
    allow_private_networks: bool,
) -> AIResult:
    """Run `request` on the named provider (None: `ai.default_provider`).

    Runs in an ai_pool worker thread; an openai-kind provider blocks on DNS and the network.
    Raises AIError only: not retryable for an unknown provider or task, a base URL on a
    private network that is not allowed, or what the provider refuses; retryable for
    transient failures (see OpenAIProvider.run). The text is cut to the provider's
    `max_input_chars`.
    """
    name = provider_name or settings.default_provider
    config = settings.providers.get(name)
    if config is None:
        raise AIError(
            f"unknown AI provider {name!r}; configured providers: "
            f"{', '.join(sorted(settings.providers))} (add it under ai.providers or pick one of those)",
            retryable=False,
        )
    request = replace(request, text=request.text[: config.max_input_chars])
    provider: Provider
    if config.kind == "local":
        provider = LocalProvider(name, settings.summary_sentences)
    else:
        _check_base_url(name, config.base_url, allow_private_networks)
        provider = OpenAIProvider(name, config, settings.summary_sentences, session)
    return provider.run(request)


def _check_base_url(name: str, base_url: str, allow_private_networks: bool) -> None:
    try:
        netguard.check_url(base_url, allow_private_networks)
    except netguard.PrivateNetworkRefused as exc:
        raise AIError(
            f"provider {name!r} base_url {base_url} is refused: {exc}", retryable=False
        ) from None
    except OSError as exc:
        raise AIError(
            f"provider {name!r} base_url {base_url}: cannot resolve its host: {exc}",
            retryable=True,
        ) from None
    except ValueError as exc:
        raise AIError(
            f"provider {name!r} base_url {base_url!r} is not a valid URL: {exc} "
            f"(ai.providers.{name}.base_url)",
            retryable=False,
        ) from None
