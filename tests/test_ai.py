"""Tests for the AI providers: the local summariser and classifier, and the OpenAI-compatible
provider against a real local fake server, all through run_task.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from fakes.openai_fake import FakeOpenAI

from messagepusher.actors.ai import AIError, AIRequest, run_task
from messagepusher.actors.ai.local import join_sentences, split_sentences, summarize
from messagepusher.actors.ai.openai import parse_classification
from messagepusher.supervisor.config import AIProviderSettings, AISettings

ENGLISH = (
    "The primary database server ran out of disk space at three this morning. "
    "Writes to the database failed for twelve minutes while the disk was full. "
    "The weather was pleasant all day. "
    "Dr. Smith, the on-call engineer, removed old database backups and added a disk volume. "
    "The database service is back to normal and no data was lost! "
    "Version 3.5 of the backup tool is documented at example.com for anyone curious."
)
CHINESE = (
    "今天凌晨三点，主数据库服务器的磁盘空间耗尽，数据库写入失败持续了十二分钟。"
    "值班工程师删除了旧的数据库备份，并增加了一块新磁盘。"
    "今天天气很好。"
    "数据库服务已经恢复正常，没有丢失任何数据！"
    "我们将在下周增加磁盘容量的监控告警；避免类似故障再次发生？"
)
KEY_ENV = "MP_TEST_FAKE_AI_KEY"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # no proxy from the environment between the test and the fake
        yield http


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def ai_settings(fake: FakeOpenAI | None = None, **provider: object) -> AISettings:
    providers = {"local": AIProviderSettings(kind="local")}
    if fake is not None:
        options = {"base_url": fake.base_url, "model": "deepseek-chat", "api_key_env": KEY_ENV}
        providers["deepseek"] = AIProviderSettings(kind="openai", **(options | provider))
    return AISettings(providers=providers)


def positions(chosen: list[str], text: str) -> list[int]:
    return [text.index(sentence) for sentence in chosen]


def test_local_summary_of_english_text_is_n_of_its_sentences_in_original_order(session):
    result = run_task(
        AIRequest("summarize", ENGLISH, "Database disk full"), None, ai_settings(), session, False
    )
    chosen = summarize(ENGLISH, "Database disk full", 3)

    assert result.provider == "local"
    assert result.task == "summarize"
    assert len(chosen) == 3
    assert positions(chosen, ENGLISH) == sorted(positions(chosen, ENGLISH))
    assert result.result == " ".join(chosen)
    assert "weather" not in result.result


def test_local_summary_of_chinese_text_is_n_of_its_sentences_in_original_order(session):
    settings = ai_settings().model_copy(update={"summary_sentences": 2})
    result = run_task(
        AIRequest("summarize", CHINESE, "数据库磁盘告警"), None, settings, session, False
    )
    chosen = summarize(CHINESE, "数据库磁盘告警", 2)

    assert len(chosen) == 2
    assert positions(chosen, CHINESE) == sorted(positions(chosen, CHINESE))
    assert result.result == "".join(chosen)
    assert "天气" not in result.result


def test_a_text_shorter_than_n_sentences_is_returned_whole():
    assert summarize("Only one sentence here.", "", 3) == ["Only one sentence here."]


def test_sentences_split_on_english_and_chinese_punctuation_but_not_abbreviations_or_decimals():
    assert split_sentences(ENGLISH)[3].startswith("Dr. Smith, the on-call engineer")
    assert split_sentences(ENGLISH)[5] == (
        "Version 3.5 of the backup tool is documented at example.com for anyone curious."
    )
    assert split_sentences("他说：“服务已经恢复。”随后告警解除；一切正常！真的吗？") == [
        "他说：“服务已经恢复。”",
        "随后告警解除；",
        "一切正常！",
        "真的吗？",
    ]
    assert split_sentences("first line\nsecond line") == ["first line", "second line"]


def test_joined_sentences_have_no_space_after_a_chinese_one():
    assert join_sentences(["告警解除。", "All clear.", "Done."]) == "告警解除。All clear. Done."


def test_local_summary_of_empty_text_is_a_non_retryable_error(session):
    with pytest.raises(AIError, match="nothing to summarize") as caught:
        run_task(AIRequest("summarize", "  ", ""), None, ai_settings(), session, False)
    assert caught.value.retryable is False


def test_local_translate_fails_naming_the_fix(session):
    with pytest.raises(AIError) as caught:
        run_task(
            AIRequest("translate", ENGLISH, "", "zh-CN"), "local", ai_settings(), session, False
        )

    assert caught.value.retryable is False
    assert "cannot translate" in caught.value.message
    assert "kind: openai" in caught.value.message
    assert "ai.provider" in caught.value.message


@pytest.mark.parametrize(
    ("title", "text", "label"),
    [
        ("Database disk full", ENGLISH, "alert"),
        ("数据库磁盘告警", CHINESE, "alert"),
        ("Weekly report", "Messages delivered this week: 1200; average latency 40 ms.", "report"),
        ("", "本周日报：共发送消息一千二百条。", "report"),
        ("Hello", "Lunch is served in the kitchen at noon.", "info"),
    ],
)
def test_local_classify_labels_by_keywords_in_english_and_chinese(session, title, text, label):
    result = run_task(AIRequest("classify", text, title), None, ai_settings(), session, False)

    assert result.label == label
    assert result.result.startswith(label)


def test_local_classify_tags_are_the_top_terms(session):
    result = run_task(
        AIRequest("classify", ENGLISH, "Database disk full"), None, ai_settings(), session, False
    )

    assert result.tags[:2] == ["database", "disk"]
    assert len(result.tags) <= 5


def test_unknown_provider_is_a_non_retryable_error_naming_the_configured_ones(session, fake):
    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "qwen", ai_settings(fake), session, True)

    assert caught.value.retryable is False
    assert "'qwen'" in caught.value.message
    assert "deepseek, local" in caught.value.message


def test_openai_summary_request_carries_model_bearer_key_and_text(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    fake.reply("Disk filled up; fixed, no data lost.")
    request = AIRequest("summarize", ENGLISH, "Database disk full")

    result = run_task(request, "deepseek", ai_settings(fake), session, True)

    assert result.result == "Disk filled up; fixed, no data lost."
    assert (result.task, result.provider, result.model) == (
        "summarize",
        "deepseek",
        "deepseek-chat",
    )
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test-123"
    assert sent.body["model"] == "deepseek-chat"
    assert isinstance(sent.body["temperature"], float)
    system, user = sent.body["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert "at most 3 sentences" in system["content"]
    assert "same language as the text" in system["content"]
    assert "Database disk full" in user["content"]
    assert ENGLISH in user["content"]


def test_an_api_key_in_the_config_is_sent_and_a_requested_language_is_in_the_prompt(session, fake):
    request = AIRequest("summarize", ENGLISH, "", "Chinese")
    run_task(
        request, "deepseek", ai_settings(fake, api_key="sk-inline", api_key_env=""), session, True
    )

    [sent] = fake.requests
    assert sent.headers["Authorization"] == "Bearer sk-inline"
    assert "written in Chinese" in sent.body["messages"][0]["content"]


def test_openai_translate_asks_for_the_target_language(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.reply("数据库磁盘已满。")

    result = run_task(
        AIRequest("translate", "Disk full.", "", "zh-CN"),
        "deepseek",
        ai_settings(fake),
        session,
        True,
    )

    assert result.result == "数据库磁盘已满。"
    assert "into zh-CN" in fake.requests[0].body["messages"][0]["content"]


def test_translate_without_a_language_fails_before_any_request(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with pytest.raises(AIError, match="target language") as caught:
        run_task(AIRequest("translate", "Disk full."), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is False
    assert fake.requests == []


def test_openai_classify_parses_json_in_a_code_fence(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.reply('```json\n{"label": "Alert", "tags": ["disk", "database"]}\n```')

    result = run_task(AIRequest("classify", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert result.label == "alert"
    assert result.tags == ["disk", "database"]
    assert result.result == "alert [disk, database]"
    assert '"label"' in fake.requests[0].body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("content", "label", "tags"),
    [
        ('{"label": "report", "tags": ["weekly"]}', "report", ["weekly"]),
        (
            'Sure! Here it is: {"label": "info", "tags": "lunch, kitchen"} Hope it helps.',
            "info",
            ["lunch", "kitchen"],
        ),
        ('```\n{"label": "alert"}\n```', "alert", []),
        ("Alert.\nBecause the disk is full.", "alert", []),
        ('{"label": "alert", "tags": ', "alert", []),
        ("", "unknown", []),
    ],
)
def test_classification_replies_are_parsed_leniently(content, label, tags):
    assert parse_classification(content) == (label, tags)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(session, fake, monkeypatch, status):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.fail(status, "slow down" if status == 429 else "upstream exploded")

    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is True
    assert f"HTTP {status}" in caught.value.message


def test_a_retry_after_from_the_provider_is_kept(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.fail(429, "rate limit reached", retry_after=7)

    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is True
    assert caught.value.retry_after == 7.0


def test_a_bad_request_is_not_retryable_and_carries_the_providers_message(
    session, fake, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.fail(400, "Model Not Exist")

    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is False
    assert "HTTP 400: Model Not Exist" in caught.value.message


def test_a_rejected_key_names_the_settings_to_check(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong")
    fake.fail(401, "Authentication Fails")

    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is False
    assert "ai.providers.deepseek.api_key" in caught.value.message


def test_a_reply_without_choices_is_a_non_retryable_error(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.reply_raw(200, b'{"id": "x", "choices": []}')

    with pytest.raises(AIError, match="choices") as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is False


def test_a_provider_that_does_not_answer_in_time_is_retryable(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    fake.stall()

    with pytest.raises(AIError, match="did not answer within 0.3s") as caught:
        run_task(
            AIRequest("summarize", ENGLISH),
            "deepseek",
            ai_settings(fake, timeout_seconds=0.3),
            session,
            True,
        )

    assert caught.value.retryable is True


def test_a_missing_key_variable_is_named_and_nothing_is_sent(session, fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)

    with pytest.raises(AIError, match=KEY_ENV) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, True)

    assert caught.value.retryable is False
    assert fake.requests == []


def test_input_is_cut_to_the_providers_max_input_chars(session, fake, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    long_text = "x" * 150 + "TAIL-NOT-SENT"

    run_task(
        AIRequest("summarize", long_text),
        "deepseek",
        ai_settings(fake, max_input_chars=150),
        session,
        True,
    )

    user = fake.requests[0].body["messages"][1]["content"]
    assert user == "x" * 150


def test_a_base_url_on_loopback_is_refused_unless_private_networks_are_allowed(
    session, fake, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "k")

    with pytest.raises(AIError) as caught:
        run_task(AIRequest("summarize", ENGLISH), "deepseek", ai_settings(fake), session, False)

    assert caught.value.retryable is False
    assert "allow_private_networks" in caught.value.message
    assert fake.requests == []
