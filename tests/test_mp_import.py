"""`main.py import message-pusher`: a database with message-pusher's schema, dry run, real run, rerun, /push.

The tables are created as GORM's AutoMigrate creates them from message-pusher's model/*.go on SQLite.
"""

from __future__ import annotations

import sqlite3

import pytest
import requests
from support.ops import db_file, rows, until

from messagepusher.operations.mp_mapping import Unmappable, map_channel

GORM_SCHEMA = """
CREATE TABLE `users` (`id` integer,`username` text UNIQUE,`password` text NOT NULL,
  `display_name` text,`role` int DEFAULT 1,`status` int DEFAULT 1,`token` text,`email` text,
  `github_id` text,`wechat_id` text,`channel` text,`send_email_to_others` int DEFAULT 0,
  `save_message_to_database` int DEFAULT 0,PRIMARY KEY (`id`));
CREATE INDEX `idx_users_username` ON `users`(`username`);
CREATE INDEX `idx_users_display_name` ON `users`(`display_name`);
CREATE INDEX `idx_users_email` ON `users`(`email`);
CREATE INDEX `idx_users_github_id` ON `users`(`github_id`);
CREATE INDEX `idx_users_wechat_id` ON `users`(`wechat_id`);
CREATE TABLE `options` (`key` text,`value` text,PRIMARY KEY (`key`));
CREATE TABLE `messages` (`id` integer,`user_id` integer,`title` text,`description` text,
  `content` text,`url` text,`channel` text,`timestamp` bigint,`link` text UNIQUE,`to` text,
  `status` integer DEFAULT 0,`render_mode` text,PRIMARY KEY (`id`));
CREATE INDEX `idx_messages_status` ON `messages`(`status`);
CREATE INDEX `idx_messages_link` ON `messages`(`link`);
CREATE INDEX `idx_messages_user_id` ON `messages`(`user_id`);
CREATE TABLE `channels` (`id` integer,`type` varchar(32),`user_id` integer,`name` varchar(32),
  `description` text,`status` integer DEFAULT 1,`secret` text,`app_id` text,`account_id` text,
  `url` text,`other` text,`created_time` bigint,`token` text,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX `name_user_id` ON `channels`(`user_id`,`name`);
CREATE INDEX `idx_channels_user_id` ON `channels`(`user_id`);
CREATE INDEX `idx_channels_secret` ON `channels`(`secret`);
CREATE TABLE `webhooks` (`id` integer,`user_id` integer,`name` varchar(32),`status` integer DEFAULT 1,
  `link` char(32),`created_time` bigint,`extract_rule` text NOT NULL,`construct_rule` text NOT NULL,
  `channel` varchar(32) NOT NULL,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX `idx_webhooks_link` ON `webhooks`(`link`);
"""

BCRYPT = "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z8hJ0bVfH3zYxYx5Y6Zq8p1e"
ALICE_TOKEN = "alice-old-token-123"
BOB_TOKEN = "b0b-token-9876"
SECRETS = (
    ALICE_TOKEN,
    BOB_TOKEN,
    "bark-device-key-1",
    "123456:ABCDEF",
    "ding-secret-1",
    "smtp-pass",
)

# (id, username, role, status, token, email, default channel)
USERS = [
    (1, "alice", 1, 1, ALICE_TOKEN, "alice@example.com", "hook"),
    (2, "bob", 10, 1, BOB_TOKEN, "bob@example.com", "bark"),
    (3, "carol", 1, 2, "", "carol@example.com|c2@example.com", ""),
]


def channels(sink_url: str) -> list[tuple]:
    """(id, type, user_id, name, secret, app_id, account_id, url, other, token)"""
    return [
        (1, "custom", 1, "hook", "", "", "", sink_url, '{"text": "$title: $description"}', None),
        (2, "client", 1, "phone", "", "", "", "", "", None),
        (3, "none", 1, "quiet", "", "", "", "", "", None),
        (4, "test", 1, "wx", "wx-secret-1", "wx-app", "open-1", "", "tmpl-1", None),
        (5, "bark", 2, "bark", "bark-device-key-1", "", "", "https://api.day.app", "", None),
        (6, "telegram", 2, "tg", "123456:ABCDEF", "", "-100123", "", "", "chan-token"),
        (7, "ding", 2, "ding", "ding-secret-1", "", "",
         "https://oapi.dingtalk.com/robot/send?access_token=ding-token-1", "", None),
        (8, "group", 2, "all", "", "bark|tg", "", "", "", None),
        (9, "corp", 3, "corp", "", "", "",
         "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=corp-key-1", "", None),
        (10, "lark", 3, "lark", "lark-secret-1", "", "",
         "https://open.feishu.cn/open-apis/bot/v2/hook/lark-token-1", "", None),
        (11, "email", 3, "mail", "", "", "", "", "", None),
        (12, "tencent_alarm", 3, "alarm", "sk", "sid", "policy", "", "ap-guangzhou", None),
    ]  # fmt: skip


def build_database(path, sink_url: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(GORM_SCHEMA)
    for uid, name, role, status, token, email, channel in USERS:
        conn.execute(
            "INSERT INTO users (id, username, password, display_name, role, status, token, email,"
            " channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, name, BCRYPT, name.title(), role, status, token, email, channel),
        )
    for row in channels(sink_url):
        conn.execute(
            "INSERT INTO channels (id, type, user_id, name, secret, app_id, account_id, url, other,"
            " token, status, created_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1700000000)",
            row,
        )
    options = [("SMTPServer", "smtp.example.com"), ("SMTPPort", "465")]
    options += [("SMTPAccount", "push@example.com"), ("SMTPToken", "smtp-pass")]
    conn.executemany("INSERT INTO options VALUES (?, ?)", options)
    conn.execute(
        "INSERT INTO messages (id, user_id, title, description, content, url, channel, timestamp,"
        " link, status) VALUES (1, 1, 'old', 'was sent', '', '', 'hook', 1700000100, 'l1', 2),"
        " (2, 1, 'older', '', '**md**', '', 'hook', 1700000200, 'l2', 3)"
    )
    conn.execute(
        "INSERT INTO webhooks (id, user_id, name, link, created_time, extract_rule, construct_rule,"
        " channel) VALUES (1, 1, 'gh', 'abc', 1700000000, '{}', '{}', 'hook')"
    )
    conn.commit()
    conn.close()


def imported(server, path, *flags: str) -> str:
    done = server.cli("import", "message-pusher", str(path), *flags)
    assert done.returncode == 0, done.stderr
    assert not any(secret in done.stdout for secret in SECRETS), done.stdout
    return done.stdout


def test_import_dry_run_real_run_rerun_and_the_old_token_pushes_through_the_default_channel(
    private_server, sink, tmp_path
):
    server = private_server
    source = tmp_path / "message-pusher.db"
    build_database(source, sink.url + "/in")
    admin = server.client(server.create_key())

    plan = imported(server, source, "--dry-run")
    assert "user alice -> alice (user): would create" in plan
    assert "user bob -> bob (admin): would create" in plan
    assert "user carol -> carol (user, disabled): would create" in plan
    assert "channel hook (custom) -> hook (webhook: template, url, default): would create" in plan
    assert "channel tg (telegram) -> tg (telegram: bot_token, chat_id): would create" in plan
    assert "channel all (group) -> all (group: members): would create" in plan
    assert (
        "channel mail (email) -> mail (email: from, host, password, port, security, to, username)"
        in plan
    )
    assert (
        "channel wx (test) -> wx (wechat_test: app_id, app_secret, open_id, template_id): "
        "would create" in plan
    )
    assert (
        "channel alarm (tencent_alarm): NOT IMPORTED: message-pusher type 'tencent_alarm'" in plan
    )
    assert "its channel token is not imported" in plan
    assert "webhook 'gh' of user id 1: NOT IMPORTED" in plan
    assert "push token ****-123 -> key 'message-pusher push token'" in plan
    assert (
        "summary: would create 3 users, 2 keys, 11 channels; 0 already here; 2 not imported" in plan
    )
    assert plan.rstrip().endswith("dry run: nothing was changed")
    users = [u["username"] for u in admin.get("/api/v1/users").json()["items"]]
    assert "alice" not in users

    first = imported(server, source)
    assert "summary: created 3 users, 2 keys, 11 channels; 0 already here; 2 not imported" in first
    database = db_file(server)
    stored = rows(database, "SELECT c.name, c.type, c.is_default, c.enabled, c.config FROM channel c"
                  " JOIN user u ON u.id = c.user_id WHERE u.username = 'bob' ORDER BY c.name")  # fmt: skip
    assert [r[:4] for r in stored] == [
        ("all", "group", 0, 1), ("bark", "bark", 1, 1), ("ding", "dingtalk", 0, 1),
        ("tg", "telegram", 0, 1),
    ]  # fmt: skip
    assert not any(s in r[4] for r in stored for s in SECRETS)  # encrypted at rest
    bark = admin.get("/api/v1/channels", params={"user": "bob"}).json()["items"]
    bark = next(c for c in bark if c["name"] == "bark")
    assert bark["config"] == {"device_key": "****ey-1", "base_url": "https://api.day.app"}
    assert rows(database, "SELECT disabled FROM user WHERE username = 'carol'") == [(1,)]
    counts = rows(database, "SELECT (SELECT COUNT(*) FROM user), (SELECT COUNT(*) FROM channel),"
                  " (SELECT COUNT(*) FROM api_key)")  # fmt: skip

    second = imported(server, source)
    assert "summary: created nothing; 16 already here; 2 not imported" in second
    assert rows(database, "SELECT (SELECT COUNT(*) FROM user), (SELECT COUNT(*) FROM channel),"
                " (SELECT COUNT(*) FROM api_key)") == counts  # fmt: skip

    pushed = requests.get(
        server.url + "/push/alice",
        params={"title": "hi", "description": "from an old script", "token": ALICE_TOKEN},
        timeout=10,
    )
    assert pushed.status_code == 200 and pushed.json()["success"] is True, pushed.text
    got = until(sink.received, what="the push at the sink")
    assert got[0]["body"] == {"text": "hi: from an old script"}
    wrong = requests.get(
        server.url + "/push/alice", params={"title": "x", "token": BOB_TOKEN}, timeout=10
    )
    assert wrong.status_code == 401
    assert server.client(ALICE_TOKEN).get("/api/v1/channels").status_code == 403  # send only


def test_import_with_messages_brings_the_history_once(private_server, tmp_path):
    server = private_server
    source = tmp_path / "message-pusher.db"
    build_database(source, "https://example.com/hook")
    assert "messages: 2 to create, 0 exist" in imported(
        server, source, "--with-messages", "--dry-run"
    )
    assert "messages: 2 created, 0 exist" in imported(server, source, "--with-messages")
    assert "messages: 0 created, 2 exist" in imported(server, source, "--with-messages")
    admin = server.client(server.create_key())
    history = admin.get("/api/v1/messages", params={"user": "alice"}).json()["items"]
    assert sorted((m["title"], m["status"]) for m in history) == [
        ("old", "delivered"),
        ("older", "failed"),
    ]


def test_a_file_that_is_not_message_pushers_database_is_one_line_and_exit_1(
    server_factory, tmp_path
):
    server = server_factory(start=False)
    missing = server.cli("import", "message-pusher", str(tmp_path / "nope.db"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    wrong = server.cli("import", "message-pusher", str(other))
    assert wrong.returncode == 1 and "not message-pusher's database" in wrong.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"type": "corp_app", "app_id": "ww1|1000002", "secret": "s", "account_id": "u1|u2"},
         ("wecom_app", {"corp_id": "ww1", "agent_id": "1000002", "agent_secret": "s", "to_user": "u1|u2"})),
        ({"type": "lark_app", "app_id": "cli_1", "secret": "s", "account_id": "open_id:ou_1"},
         ("feishu_app", {"app_id": "cli_1", "app_secret": "s", "receive_id_type": "open_id", "receive_id": "ou_1"})),
        ({"type": "one_bot", "url": "http://napcat:3000/", "secret": "t", "account_id": "group_42"},
         ("onebot", {"base_url": "http://napcat:3000", "access_token": "t", "group_id": 42})),
        ({"type": "one_bot", "url": "http://napcat:3000", "secret": "", "account_id": "10001"},
         ("onebot", {"base_url": "http://napcat:3000", "user_id": 10001})),
        ({"type": "test", "app_id": "wx1", "secret": "s", "other": "tpl", "account_id": "o1"},
         ("wechat_test", {"app_id": "wx1", "app_secret": "s", "template_id": "tpl", "open_id": "o1"})),
        ({"type": "lark", "url": "https://open.larksuite.com/open-apis/bot/v2/hook/t1", "secret": ""},
         ("lark", {"token": "t1", "base_url": "https://open.larksuite.com"})),
    ],
)  # fmt: skip
def test_the_app_channel_types_map_to_the_names_and_fields_of_their_counterparts(row, expected):
    mapped = map_channel(row, {}, {})
    assert (mapped.type, mapped.config) == expected


def test_rows_that_cannot_be_mapped_say_why():
    with pytest.raises(Unmappable, match="corp_id\\|agent_id"):
        map_channel({"type": "corp_app", "app_id": "only-corp"}, {}, {})
    with pytest.raises(Unmappable, match="no SMTPServer"):
        map_channel({"type": "email"}, {"email": "a@example.com"}, {})
    with pytest.raises(Unmappable, match="no key="):
        map_channel({"type": "corp", "url": "https://qyapi.weixin.qq.com/send"}, {}, {})


def test_a_token_two_users_share_goes_to_the_first_and_the_second_is_told(server_factory, tmp_path):
    server = server_factory(start=False)
    source = tmp_path / "message-pusher.db"
    build_database(source, "https://example.com/hook")
    conn = sqlite3.connect(source)
    conn.execute("UPDATE users SET token = ? WHERE username = 'carol'", (ALICE_TOKEN,))
    conn.commit()
    conn.close()
    for flags in (("--dry-run",), ()):
        out = imported(server, source, *flags)
        assert "push token ****-123: NOT IMPORTED: user alice already has the same token" in out
