"""Typed settings: supervisor.yaml plus MP_<SECTION>__<KEY> environment overrides.

Owns loading, validation and the one-line error an operator sees for a bad value.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from messagepusher.supervisor.jobs import JOBS

log = logging.getLogger(__name__)

ENV_PREFIX = "MP_"
# Environment variables that start with MP_ but are not configuration keys.
NON_CONFIG_ENV = {"MP_CONFIG", "MP_ADMIN_PASSWORD", "MP_PROCESS_WORKER"}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


class ConfigError(Exception):
    """A configuration value is wrong; str() is the one line shown to the operator."""


def parse_duration(value: Any) -> float:
    """Return seconds for 30, 0.5, "30s", "5m", "1h", "2d" or "250ms"; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 1h or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError("expected a duration such as 30s, 5m, 1h or a number of seconds")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    threads: int = Field(32, ge=1, le=512)
    connection_limit: int = Field(512, ge=1, le=100_000)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=100 * 1_048_576)
    public_url: str = ""
    # The reverse proxy (its address, or "*") whose X-Forwarded-Proto is believed: behind a
    # proxy that terminates TLS, that header is how a request is known to have come over HTTPS.
    trusted_proxy: str = ""
    # IANA time zone of schedules that name none; "" is the host's own.
    timezone: str = ""
    # Worker processes under one root on this host; 1 is one process with no root, 0 one per core.
    processes: int = 1
    # all: API and pipeline; api: HTTP and ingest, sends nothing; worker: pipeline, health and metrics.
    role: Literal["all", "api", "worker"] = "all"
    # The name this node shows in GET /api/v1/admin/nodes and as the metrics' node label.
    node_name: str = Field(default_factory=socket.gethostname)
    # Every process stamps its node row this often; the root expects a pipe beat from each
    # worker within heartbeat_timeout_seconds once it is ready (worker_start_seconds before).
    heartbeat_seconds: float = Field(5.0, gt=0, le=3600)
    heartbeat_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    worker_start_seconds: float = Field(60.0, gt=0, le=3600)
    # A node row not stamped for this long is shown stale; one older than the retention is removed.
    node_stale_seconds: float = Field(30.0, gt=0, le=86_400)
    node_retention_seconds: float = Field(86_400.0, gt=0, le=365 * 86_400)

    @field_validator("processes", mode="before")
    @classmethod
    def _process_count(cls, value: Any) -> int:
        text = str(value).strip() if isinstance(value, str | int) else None
        if isinstance(value, bool) or text is None or not text.isdigit() or int(text) > 256:
            raise ValueError(
                "must be a whole number from 0 to 256: 1 runs one process (the default), "
                "N runs N worker processes under a root, 0 one per CPU core"
            )
        return int(text)

    @field_validator("role", mode="before")
    @classmethod
    def _role_name(cls, value: Any) -> Any:
        if value not in ("all", "api", "worker"):
            raise ValueError(
                "must be all (API and pipeline), api (HTTP and ingest, sends nothing) "
                "or worker (pipeline; only /healthz, /readyz and /metrics over HTTP)"
            )
        return value

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
            raise ValueError(
                "must be 1 to 63 letters, digits, dots, dashes or underscores, e.g. web-1"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        if value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    "must be an IANA time zone such as Europe/Berlin or Asia/Shanghai"
                ) from None
        return value


class StreamSettings(Section):
    """Server-Sent Event streams; each open stream holds one of server.threads."""

    max_per_user: int = Field(4, ge=1, le=1000)
    # Never more than half of server.threads (but at least one), whatever is set here.
    max_total: int = Field(8, ge=1, le=10_000)
    keepalive_seconds: float = Field(15.0, gt=0, le=600)
    max_seconds: float = Field(300.0, gt=0, le=86_400)
    poll_seconds: float = Field(0.5, gt=0, le=60)


class DatabaseSettings(Section):
    url: str = ""
    busy_timeout_ms: int = Field(10_000, ge=0, le=600_000)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    file: str = ""
    file_max_bytes: int = Field(10 * 1_048_576, ge=4096)
    file_backups: int = Field(5, ge=0, le=100)
    ring_size: int = Field(5000, ge=100, le=1_000_000)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class RateLimitSettings(Section):
    per_key_per_second: float = Field(100.0, ge=0)
    per_key_burst: int = Field(1000, ge=0)
    per_user_per_second: float = Field(200.0, ge=0)
    per_user_burst: int = Field(2000, ge=0)


class LoginSettings(Section):
    max_failures: int = Field(5, ge=1, le=1000)
    lockout_seconds: float = Field(300.0, gt=0)
    slowdown_seconds: float = Field(0.5, ge=0, le=10)


class SecuritySettings(Section):
    allow_private_networks: bool = False
    allowed_private_targets: list[str] = Field(default_factory=list)
    secret_key: str = ""
    session_ttl_hours: float = Field(24.0, gt=0)
    key_cache_seconds: float = Field(5.0, ge=0, le=3600)
    rate_limit: RateLimitSettings = RateLimitSettings()
    login: LoginSettings = LoginSettings()

    @field_validator("allowed_private_targets", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )

    @field_validator("allowed_private_targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not re.match(r"^(\[?[\w.:-]+\]?(:\d+)?|[\d.:a-fA-F]+/\d+)$", entry):
                raise ValueError(f"{entry!r} is not a host, host:port or CIDR such as 10.0.0.0/8")
        return value


class RetrySettings(Section):
    max_attempts: int = Field(5, ge=1, le=100)
    base_delay_seconds: float = Field(2.0, gt=0, le=86400)
    max_delay_seconds: float = Field(600.0, gt=0, le=7 * 86400)
    jitter: float = Field(0.2, ge=0, le=1)


class MailboxSettings(Section):
    lease_seconds: float = Field(60.0, gt=0, le=86400)
    claim_batch: int = Field(64, ge=1, le=10_000)
    scan_interval_seconds: float = Field(1.0, gt=0, le=3600)


class ChildSpec(Section):
    name: str
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout_seconds: float = Field(10.0, gt=0, le=600)


DEFAULT_CHILDREN = [
    ChildSpec(name=n)
    for n in (
        "ingest",
        "channel_pool",
        "ai_pool",
        "fetcher",
        "dispatcher",
        "schedules",
        "janitor",
        "monitor",
    )
]


class SupervisorSettings(Section):
    max_restarts: int = Field(5, ge=0, le=1000)
    within_seconds: float = Field(60.0, gt=0)
    backoff_initial_seconds: float = Field(0.05, ge=0, le=60)
    backoff_max_seconds: float = Field(5.0, ge=0, le=600)
    # Deprecated: the liveness deadline is monitor.ping_deadline_seconds (see liveness_deadline).
    ping_timeout_seconds: float | None = Field(None, gt=0, le=600)
    children: list[ChildSpec] = Field(default_factory=lambda: list(DEFAULT_CHILDREN))

    @field_validator("children")
    @classmethod
    def _known_children(cls, value: list[ChildSpec]) -> list[ChildSpec]:
        known = {c.name for c in DEFAULT_CHILDREN}
        names = [c.name for c in value]
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(
                f"unknown child {unknown[0]!r}; known children: {', '.join(sorted(known))}"
            )
        if len(set(names)) != len(names):
            raise ValueError("each child may be listed once")
        return value


# The children an api node runs: it ingests and keeps house, but claims no work to send.
API_ROLE_CHILDREN = ("ingest", "janitor", "monitor")


class IngestSettings(Section):
    batch_max: int = Field(256, ge=1, le=10_000)


class PoolSettings(Section):
    workers: int = Field(8, ge=1, le=256)


class ChannelPoolSettings(Section):
    workers: int = Field(16, ge=1, le=256)
    timeout_seconds: float = Field(15.0, gt=0, le=600)
    default_rate_per_minute: float = Field(0, ge=0)
    write_back_delay_ms: int = Field(100, ge=0, le=1000)


class FetcherSettings(Section):
    workers: int = Field(4, ge=1, le=256)
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    read_timeout_seconds: float = Field(15.0, gt=0, le=600)
    max_bytes: int = Field(2 * 1_048_576, ge=1024, le=100 * 1_048_576)
    max_redirects: int = Field(5, ge=0, le=5)
    user_agent: str = "MessagePusher/0.1 (+self-hosted)"
    text_limit_chars: int = Field(20_000, ge=100)


class AIProviderSettings(Section):
    kind: Literal["local", "openai"]
    base_url: str = ""
    model: str = ""
    api_key: str = ""
    api_key_env: str = ""
    timeout_seconds: float = Field(60.0, gt=0, le=600)
    max_input_chars: int = Field(12_000, ge=100)

    @model_validator(mode="after")
    def _openai_needs_url(self) -> AIProviderSettings:
        if self.kind == "openai" and not (self.base_url and self.model):
            raise ValueError("an openai provider needs base_url and model")
        return self


class AISettings(Section):
    default_provider: str = "local"
    on_failure: Literal["deliver", "fail"] = "deliver"
    summary_sentences: int = Field(3, ge=1, le=50)
    providers: dict[str, AIProviderSettings] = Field(
        default_factory=lambda: {"local": AIProviderSettings(kind="local")}
    )

    @model_validator(mode="after")
    def _default_exists(self) -> AISettings:
        # The built-in summariser is always there, whatever other providers are configured.
        self.providers.setdefault("local", AIProviderSettings(kind="local"))
        if self.default_provider not in self.providers:
            raise ValueError(
                f"default_provider {self.default_provider!r} is not one of the providers: "
                f"{', '.join(sorted(self.providers))}"
            )
        return self


class JobSchedule(Section):
    every: str = ""
    cron: str = ""
    enabled: bool = True

    @model_validator(mode="after")
    def _one_trigger(self) -> JobSchedule:
        if bool(self.every) == bool(self.cron):
            raise ValueError("give exactly one of every (30s, 5m, 1h) or cron ('0 3 * * *')")
        if self.every:
            parse_duration(self.every)
        if self.cron and len(self.cron.split()) != 5:
            raise ValueError(
                f"cron {self.cron!r} must have five fields: minute hour day month weekday"
            )
        return self


def _default_schedule() -> dict[str, JobSchedule]:
    return {name: JobSchedule(**job.default_schedule()) for name, job in JOBS.items()}


class RetentionSettings(Section):
    messages_days: float = Field(30, gt=0)
    events_days: float = Field(30, gt=0)
    mailbox_days: float = Field(7, gt=0)
    audit_days: float = Field(180, gt=0)
    alerts_days: float = Field(90, gt=0)
    job_runs_days: float = Field(30, gt=0)
    supervisor_events_days: float = Field(30, gt=0)
    reports_days: float = Field(400, gt=0)
    batch_size: int = Field(500, ge=1, le=100_000)


class BackupSettings(Section):
    keep: int = Field(7, ge=1, le=1000)


class SchedulerSettings(Section):
    # How long a node keeps a job's lock after a run; another node takes it over after that.
    lock_seconds: float = Field(60.0, gt=0, le=86400)


class MaintenanceSettings(Section):
    # VACUUM once free pages exceed this share of the file.
    vacuum_free_ratio: float = Field(0.25, gt=0, le=1)


class AlertSettings(Section):
    cooldown_seconds: float = Field(600.0, ge=0)
    backlog_age_seconds: float = Field(300.0, gt=0)
    dead_letters_per_interval: int = Field(10, ge=1)
    failure_rate: float = Field(0.5, gt=0, le=1)
    disk_free_min_mb: float = Field(500.0, ge=0)
    memory_rss_max_mb: float = Field(2048.0, gt=0)
    restarts_per_interval: int = Field(3, ge=1)


class MonitorSettings(Section):
    interval: float = 10.0
    ping_deadline_seconds: float = Field(5.0, gt=0, le=600)
    alert_channels: list[str] = Field(default_factory=list)
    alerts: AlertSettings = AlertSettings()

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("alert_channels", mode="before")
    @classmethod
    def _user_slash_channel(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "admin/ops, admin/mail"
            value = [part.strip() for part in value.split(",") if part.strip()]
        for item in value if isinstance(value, list) else ():
            if not isinstance(item, str) or not re.fullmatch(r"[^/\s]+/[^/]+", item):
                raise ValueError(
                    f"{item!r} must name an admin's channel as user/channel, e.g. admin/ops-webhook"
                )
        return value


class MetricsSettings(Section):
    token: str = ""


class LimitSettings(Section):
    max_schedule_days: int = Field(366, ge=1, le=36_500)
    max_key_days: int = Field(3660, ge=1, le=36_500)


class FaultSpec(Section):
    raise_on_nth: int = Field(0, ge=0)
    hang_on_nth: int = Field(0, ge=0)
    hang_seconds: float = Field(3600.0, gt=0)
    # For faults.heartbeat under a root: 0 fires in every worker process, N only in the first
    # process started in worker slot N (its replacement beats normally).
    worker: int = Field(0, ge=0)


class Settings(Section):
    data_dir: str = "./data"
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=600)
    server: ServerSettings = ServerSettings()
    streams: StreamSettings = StreamSettings()
    database: DatabaseSettings = DatabaseSettings()
    logging: LoggingSettings = LoggingSettings()
    security: SecuritySettings = SecuritySettings()
    retry: RetrySettings = RetrySettings()
    mailbox: MailboxSettings = MailboxSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    ingest: IngestSettings = IngestSettings()
    channel_pool: ChannelPoolSettings = ChannelPoolSettings()
    ai_pool: PoolSettings = PoolSettings(workers=2)
    fetcher: FetcherSettings = FetcherSettings()
    ai: AISettings = AISettings()
    schedule: dict[str, JobSchedule] = Field(default_factory=_default_schedule)
    retention: RetentionSettings = RetentionSettings()
    backup: BackupSettings = BackupSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    monitor: MonitorSettings = MonitorSettings()
    metrics: MetricsSettings = MetricsSettings()
    limits: LimitSettings = LimitSettings()
    faults: dict[str, FaultSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _deprecated_liveness_key(self) -> Settings:
        if self.supervisor.ping_timeout_seconds is not None:
            _warn_once(
                "config: supervisor.ping_timeout_seconds is deprecated; it is read as "
                "monitor.ping_deadline_seconds (which wins when both are set): rename it"
            )
        return self

    @model_validator(mode="after")
    def _children_of_role(self) -> Settings:
        # An api node runs no pipeline actor that sends; a worker node runs them all.
        if self.server.role == "api":
            kept = [c for c in self.supervisor.children if c.name in API_ROLE_CHILDREN]
            if len(kept) != len(self.supervisor.children):
                self.supervisor.children = kept
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'messagepusher.db'}"


DEADLINE_KEY = "monitor.ping_deadline_seconds"
DEPRECATED_DEADLINE_KEY = "supervisor.ping_timeout_seconds"
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def liveness_deadline(settings: Settings) -> tuple[float, str]:
    """(seconds, the key that set them) of the one liveness deadline, read by the monitor.

    `monitor.ping_deadline_seconds` when it is set or the deprecated
    `supervisor.ping_timeout_seconds` is not; else the deprecated key's value.
    """
    monitor = settings.monitor
    alias = settings.supervisor.ping_timeout_seconds
    if alias is None or "ping_deadline_seconds" in monitor.model_fields_set:
        return monitor.ping_deadline_seconds, DEADLINE_KEY
    return alias, DEPRECATED_DEADLINE_KEY


SECRET_KEYS = {"secret_key", "api_key", "token", "password"}


def masked(value: Any) -> Any:
    """Return a copy of a plain config dict with every secret-looking value masked."""
    if isinstance(value, dict):
        return {k: ("****" if k in SECRET_KEYS and v else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:****@", value)
    return value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Turn MP_SECTION__KEY=value pairs into a nested dict; values are parsed as YAML scalars."""
    overrides: dict[str, Any] = {}
    top_level = set(Settings.model_fields)
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NON_CONFIG_ENV:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in top_level:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if isinstance(value, dict | list) and path[-1] not in ("children", "providers"):
            value = raw
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def describe_error(error: dict[str, Any], env_names: set[str]) -> str:
    """One line naming the key, the bad value and what is allowed."""
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    env = ENV_PREFIX + "__".join(str(p).upper() for p in error["loc"])
    source = f" (from environment {env})" if env in env_names else ""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"config error: unknown key {key}{source}: remove it or check its spelling"
    value = error.get("input")
    return f"config error: {key} = {value!r}{source}: {message}"


def load_settings(
    path: str | Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read the YAML file, apply environment then explicit overrides, validate.

    Raises ConfigError with one operator-readable line; never lets a traceback out.
    """
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("MP_CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"config error: cannot read {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" line {where.line + 1}" if where else ""
            raise ConfigError(f"config error: {path}{line} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config error: {path} must hold a mapping of sections at the top")
        data = loaded or {}
    env = _env_overrides(environ)
    if "MP_DATA_DIR" in environ:
        env["data_dir"] = environ["MP_DATA_DIR"]
    data = _merge(data, env)
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        env_names = {n for n in environ if n.startswith(ENV_PREFIX)}
        raise ConfigError(describe_error(exc.errors()[0], env_names)) from None


# Keys that may be changed at run time through the admin API (dotted paths; a prefix
# admits everything below it).
RUNTIME_KEYS = (
    "channel_pool.workers",
    "channel_pool.default_rate_per_minute",
    "ai_pool.workers",
    "fetcher.workers",
    "ingest.batch_max",
    "retry",
    "security.rate_limit",
    "schedule",
    "monitor",
    "logging.level",
    "retention",
    "backup.keep",
)


def is_runtime_key(dotted: str) -> bool:
    return any(dotted == k or dotted.startswith(k + ".") for k in RUNTIME_KEYS)
