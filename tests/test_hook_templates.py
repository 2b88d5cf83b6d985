"""Hook templates without a server: each preset on its project's sample, hostile templates refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from messagepusher.messages import hook_templates
from messagepusher.messages.hook_presets import PRESETS

SAMPLES = Path(__file__).parent / "fixtures" / "hooks"


def sample(name: str):
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("preset", "sample_name", "title", "body_lines"),
    [
        (
            "alertmanager",
            "alertmanager",
            "[FIRING:1] ProbeFailure",
            [
                "🔥 ProbeFailure (critical) on https://server.example.org: "
                "BlackBox Probe Failure: https://server.example.org"
            ],
        ),
        (
            "grafana",
            "grafana",
            "[FIRING:2]  (blue)",
            [
                "🔥 High memory usage: This alert was triggered for zone us-1",
                "🔥 High CPU usage: This alert was triggered for zone eu-1",
            ],
        ),
        (
            "github",
            "github_push",
            "[octokitty/testing] 2 new commits to main",
            [
                "c441029 Test (Garen Torikian)",
                "36c5f22 This is me testing the windows client. (Garen Torikian)",
            ],
        ),
        (
            "github",
            "github_issues",
            "[Codertocat/Hello-World] Issue #1 opened: Spelling error in the README file",
            ["Codertocat: It looks like you accidently spelled 'commit' with two 't's."],
        ),
        (
            "github",
            "github_release",
            "[Codertocat/Hello-World] Release 0.0.1 published",
            ["0.0.1 by Codertocat"],
        ),
        (
            "gitea",
            "gitea_push",
            "[gitea/webhooks] 1 new commit to develop",
            ["bffeb74 Webhooks Yay! (Gitea)"],
        ),
        (
            "gitea",
            "gitea_issues",
            "[gitea/webhooks] Issue #3 opened: Webhook preview shows the wrong branch",
            ["gitea: Pushing to develop shows master in the preview."],
        ),
        (
            "gitea",
            "gitea_release",
            "[gitea/webhooks] Release v1.2.0: webhook previews published",
            ["v1.2.0 by gitea", "Adds previews to webhooks."],
        ),
        (
            "uptime_kuma",
            "uptime_kuma",
            "Testing is DOWN",
            ["[Testing] [🔴 Down] PING 10.13.13.13 (10.13.13.13) 56(84) bytes of data."],
        ),
    ],
)
def test_each_preset_turns_its_projects_sample_into_a_readable_message(
    preset, sample_name, title, body_lines
):
    fields, error = hook_templates.message_for(PRESETS[preset], "hook", sample(sample_name))
    assert error is None
    assert fields["title"] == title
    assert fields["body"].splitlines() == body_lines


def test_alert_presets_set_priority_and_link_from_the_payload():
    alert = hook_templates.render(PRESETS["alertmanager"], sample("alertmanager")).fields
    assert alert["priority"] == 5 and alert["url"] == "http://prometheus.example.org:9093"
    resolved = {**sample("alertmanager"), "status": "resolved"}
    assert hook_templates.render(PRESETS["alertmanager"], resolved).fields["priority"] == 2


def test_every_preset_passes_the_save_time_check():
    for template in PRESETS.values():
        hook_templates.check(template)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ payload['__class__'] }}",
        "{{ payload|attr('__init__') }}",
    ],
)
def test_reaching_for_python_internals_is_refused_at_save_time(source):
    with pytest.raises(hook_templates.TemplateProblem) as caught:
        hook_templates.check({"body": source})
    assert "not allowed" in caught.value.message


def test_the_sandbox_refuses_internals_reached_indirectly_at_render_time():
    # The name is built at render time, so the save-time check cannot see it.
    source = "{{ payload|attr('_' ~ '_class__') }}"
    hook_templates.check({"body": source})
    assert hook_templates.render({"body": source}, {}).fields == {}


def test_a_syntax_error_names_the_field_and_the_line():
    with pytest.raises(hook_templates.TemplateProblem) as caught:
        hook_templates.check({"title": "ok", "body": "line one\n{% if %}"})
    assert caught.value.field == "template.body"
    assert caught.value.message.startswith("line 2:")


def test_a_template_producing_100_mb_is_cut_off_at_the_output_limit():
    source = (
        "{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(hook_templates.RenderError, match="cut off"):
        hook_templates.render({"body": source}, {})
    assert time.monotonic() - started < 3


def test_a_loop_that_prints_nothing_is_stopped_by_the_clock():
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(hook_templates.RenderError, match="longer than the budget"):
        hook_templates.render({"body": source}, {}, seconds=0.2)
    assert time.monotonic() - started < 3


def test_a_failing_render_still_gives_a_message_with_the_raw_payload_and_the_error():
    fields, error = hook_templates.message_for(
        {"title": "{{ payload.n + 'x' }}"}, "deploys", {"n": 1, "who": "ci"}
    )
    assert error and "TypeError" in error
    assert fields["title"] == "deploys: template failed"
    assert error in fields["body"] and '"who": "ci"' in fields["body"]


def test_a_rendered_priority_or_format_out_of_range_is_an_error_not_a_guess():
    with pytest.raises(hook_templates.RenderError, match="priority"):
        hook_templates.render({"title": "t", "priority": "{{ 9 }}"}, {})
    with pytest.raises(hook_templates.RenderError, match="format"):
        hook_templates.render({"title": "t", "format": "pdf"}, {})


def test_a_template_may_pick_the_channels_by_name():
    template = {"title": "t", "channels": "{{ 'oncall, ops' if payload.severe else 'ops' }}"}
    assert hook_templates.render(template, {"severe": True}).fields["channels"] == ["oncall", "ops"]
    assert hook_templates.render(template, {}).fields["channels"] == ["ops"]
