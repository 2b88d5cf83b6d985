"""Ready-made hook templates for the webhooks of Alertmanager, Grafana, GitHub, Gitea and Uptime Kuma.

Each preset is an ordinary template (rendered in the same sandbox); the tests feed each
the sample payload of that project's documentation.
"""

from __future__ import annotations

ALERTS_BODY = (
    "{% for a in payload.alerts %}"
    "{{ '✅' if a.status == 'resolved' else '🔥' }} "
    "{{ a.labels.alertname }}"
    "{% if a.labels.severity %} ({{ a.labels.severity }}){% endif %}"
    "{% if a.labels.instance %} on {{ a.labels.instance }}{% endif %}: "
    "{{ a.annotations.summary or a.annotations.description or a.status }}\n"
    "{% endfor %}"
)

# One template for GitHub and Gitea: their push, issues and release payloads share a shape.
GIT_TITLE = (
    "{% if payload.commits is defined and payload.ref %}"
    "[{{ payload.repository.full_name }}] {{ payload.commits|length }} new commit"
    "{{ 's' if payload.commits|length != 1 }} to {{ payload.ref.split('/')[-1] }}"
    "{% elif payload.issue %}"
    "[{{ payload.repository.full_name }}] Issue #{{ payload.issue.number }} {{ payload.action }}: "
    "{{ payload.issue.title }}"
    "{% elif payload.release %}"
    "[{{ payload.repository.full_name }}] Release {{ payload.release.name or payload.release.tag_name }}"
    " {{ payload.action }}"
    "{% else %}[{{ payload.repository.full_name }}] {{ payload.action or 'event' }}{% endif %}"
)
GIT_BODY = (
    "{% if payload.commits is defined and payload.ref %}"
    "{% for c in payload.commits %}{{ c.id[:7] }} {{ c.message.split('\n')[0] }}"
    " ({{ c.author.name }})\n{% endfor %}"
    "{% elif payload.issue %}"
    "{{ payload.issue.user.login }}: {{ payload.issue.body or '' }}"
    "{% elif payload.release %}"
    "{{ payload.release.tag_name }} by {{ payload.release.author.login }}"
    "{% if payload.release.body %}\n{{ payload.release.body }}{% endif %}"
    "{% endif %}"
)
GIT_URL = (
    "{% if payload.commits is defined and payload.ref %}"
    "{{ payload.compare_url or payload.compare }}"
    "{% elif payload.issue %}{{ payload.issue.html_url }}"
    "{% elif payload.release %}{{ payload.release.html_url }}"
    "{% else %}{{ payload.repository.html_url }}{% endif %}"
)

PRESETS: dict[str, dict[str, str]] = {
    "alertmanager": {
        "title": (
            "[{{ payload.status|upper }}"
            "{% if payload.status == 'firing' %}:{{ payload.alerts|selectattr('status', "
            "'equalto', 'firing')|list|length }}{% endif %}] "
            "{{ payload.groupLabels.alertname or payload.commonLabels.alertname or payload.receiver }}"
        ),
        "body": ALERTS_BODY,
        "priority": (
            "{% if payload.status == 'resolved' %}2"
            "{% elif payload.commonLabels.severity == 'critical' %}5{% else %}4{% endif %}"
        ),
        "url": "{{ payload.externalURL }}",
    },
    "grafana": {
        "title": (
            "{{ payload.title or ('[' ~ payload.status|upper ~ '] ' ~ payload.commonLabels.alertname) }}"
        ),
        "body": ALERTS_BODY,
        "priority": "{% if payload.status == 'resolved' %}2{% else %}4{% endif %}",
        "url": "{{ payload.externalURL }}",
    },
    "github": {"title": GIT_TITLE, "body": GIT_BODY, "url": GIT_URL},
    "gitea": {"title": GIT_TITLE, "body": GIT_BODY, "url": GIT_URL},
    "uptime_kuma": {
        "title": (
            "{% if payload.heartbeat %}"
            "{{ payload.monitor.name }} is {{ {0: 'DOWN', 1: 'UP', 2: 'PENDING', 3: 'in maintenance'}"
            "[payload.heartbeat.status] or 'changed' }}"
            "{% else %}Uptime Kuma: {{ payload.msg }}{% endif %}"
        ),
        "body": "{{ payload.msg }}",
        "priority": (
            "{% if payload.heartbeat and payload.heartbeat.status == 0 %}5"
            "{% elif payload.heartbeat %}2{% else %}3{% endif %}"
        ),
    },
}
