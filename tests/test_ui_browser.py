"""The web UI driven in a real headless Chromium through Selenium, against the real server.

Log-in and log-out, a webhook channel, a message sent and delivered, its timeline, an API key
that works against the API, schedules with their next runs, hooks with their URL shown once and a
preview, Recall and Edit of a sent message, the admin panel (status, run-time configuration with a live pool
resize and a rollback, users, alerts, jobs, backups and a restore, supervisor events, the audit
log, logs) and the language toggle. Every flow ends by checking the browser console: no SEVERE entry
other than the HTTP errors the flow provoked.

Needs Debian's chromium and chromium-driver; skips loudly without them unless
MP_REQUIRE_BROWSER=1, which makes a missing browser a failure. Selenium Manager is never used:
the driver path is given, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from support.server import ADMIN_PASSWORD, ServerProcess

pytestmark = pytest.mark.xdist_group("browser")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
UI_TIMEOUT = 30.0  # a page reaction: one or two API calls on a local server (3x+ headroom)
DELIVERY_TIMEOUT = 20.0  # a message through the pipeline to the sink
FAILED_LOAD = re.compile(
    r"^(?P<url>\S+) - Failed to load resource: the server responded with a status of (?P<status>\d+)"
)


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    reason = (
        f"web UI browser tests NOT RUN: {' and '.join(missing)} missing "
        "(apt-get install chromium chromium-driver); set MP_REQUIRE_BROWSER=1 to fail instead"
    )
    if os.environ.get("MP_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module; each test's server is a new origin, so no state leaks."""
    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-component-update",
        "--window-size=1280,1024",
    ):
        options.add_argument(arg)
    # No password manager: it would offer to save (and leak-check) the passwords typed below.
    options.add_experimental_option(
        "prefs",
        {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "profile.password_manager_leak_detection": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(UI_TIMEOUT)
    try:
        yield browser
    finally:
        browser.quit()


class UI:
    """The web UI of one server in the shared browser, with bounded waits."""

    def __init__(self, driver: webdriver.Chrome, server: ServerProcess):
        self.driver = driver
        self.server = server
        driver.get_log("browser")  # drop what an earlier test left

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float = UI_TIMEOUT) -> Any:
        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(condition, f"{what} (within {timeout:g}s)")

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def visible(self, css: str) -> WebElement:
        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} shown")

    def hidden(self, css: str) -> None:
        self.wait(EC.invisibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} hidden")

    def text(self, css: str, expected: str) -> None:
        self.wait(lambda d: self.find(css).text == expected, f"{css} reads {expected!r}")

    def fill(self, form: str, **fields: str) -> None:
        for name, value in fields.items():
            field = self.find(f"{form} [name={name}]")
            field.clear()
            field.send_keys(value)

    def submit(self, form: str) -> None:
        self.find(f"{form} button[type=submit]").click()

    def go(self, view: str) -> None:
        self.find(f'#nav a[href="#{view}"]').click()
        self.visible(f"#{view}-view")

    def open(self) -> None:
        self.driver.get(self.server.url + "/")
        self.visible("#login-view")

    def submit_login(self, password: str, username: str = "admin") -> None:
        self.fill("#login-form", username=username, password=password)
        self.submit("#login-form")

    def login(self) -> None:
        self.submit_login(ADMIN_PASSWORD)
        self.visible("#nav")
        self.text("#who", "admin")

    def refresh_until(
        self, cell: str, wanted: str, timeout: float, button: str = "refresh-messages"
    ) -> None:
        """Press a view's Refresh button until the cell (an XPath) reads `wanted`."""

        def refreshed(d) -> bool:
            cells = d.find_elements(By.XPATH, cell)
            if cells and cells[0].text == wanted:
                return True
            d.find_element(By.ID, button).click()
            return False

        WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(refreshed, f"{cell} reads {wanted!r} after Refresh (within {timeout:g}s)")

    def click(self, css: str) -> None:
        """Click, again if a reload replaced the element meanwhile."""
        self.wait(lambda d: self.find(css).click() or True, f"{css} clicked")

    def table(self, tbody: str) -> list[list[str]]:
        """The cells' text of a table body, read at once (a reload cannot leave stale rows)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tr')]"
            ".map((tr) => [...tr.cells].map((td) => td.innerText.trim()));",
            tbody,
        )

    def open_admin(self) -> None:
        """The Admin view, fully loaded: its log lines come last."""
        self.go("admin")
        self.wait(lambda d: self.find("#admin-logs").text, "the admin panel loaded")

    def error(self) -> str:
        return self.visible("#error").text

    def mislabelled(self, english: bool) -> list[str]:
        """The data-i18n labels (static and rendered) not in English, or still in English."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('[data-i18n]')]"
            ".filter((e) => (e.textContent === e.dataset.en) !== arguments[0])"
            ".map((e) => e.dataset.i18n);",
            english,
        )

    def assert_console_clean(self, *expected: tuple[str, int]) -> None:
        """No SEVERE console entry except failed loads of the (path, HTTP status) pairs expected."""
        unexpected = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            failed = FAILED_LOAD.match(entry["message"])
            if (
                entry.get("source") == "network"
                and failed
                and failed["url"].startswith(self.server.url)
                and (failed["url"][len(self.server.url) :], int(failed["status"])) in expected
            ):
                continue
            unexpected.append(entry)
        assert not unexpected, f"browser console errors: {json.dumps(unexpected, indent=1)}"


@pytest.fixture
def ui(driver, private_server) -> UI:
    return UI(driver, private_server)


def test_login_rejects_a_wrong_password_then_admin_status_and_log_out(ui):
    ui.open()
    ui.submit_login("not-the-password")
    assert "wrong" in ui.error()
    assert ui.find("#login-view").is_displayed() and not ui.find("#nav").is_displayed()

    ui.login()
    ui.hidden("#error")
    ui.visible("#send-view")  # the default view
    assert ui.find("#login-form [name=password]").get_attribute("value") == ""

    ui.find("#admin-link").click()
    ui.visible("#admin-view")
    raw = ui.wait(
        lambda d: ui.find("#admin-status").get_attribute("textContent").strip(),
        "the raw admin status loaded",
    )
    status = json.loads(raw)
    assert status["accepting"] is True and status["ready"] is True, status
    assert {"dispatcher", "channel_pool"} <= set(status["components"]), status["components"]
    ui.wait(lambda d: ui.find("#admin-logs").text, "the admin panel loaded")  # nothing in flight

    ui.find("#logout").click()
    ui.visible("#login-view")
    ui.hidden("#nav")
    ui.hidden("#admin-view")
    assert ui.find("#who").text == "" and not ui.find("#logout").is_displayed()
    for left in ("#admin-status", "#admin-summary", "#admin-components", "#admin-users"):
        assert ui.find(left).get_attribute("textContent").strip() == "", left  # nothing left behind
    ui.driver.refresh()  # the session is really gone, not just hidden
    ui.visible("#login-view")
    ui.assert_console_clean(("/api/v1/me", 401), ("/api/v1/session", 401))


def test_a_message_sent_from_the_ui_reaches_a_default_webhook_channel(ui, sink):
    ui.open()
    ui.login()

    ui.go("channels")
    ui.wait(lambda d: ui.driver.find_elements(By.CSS_SELECTOR, "#channel-types option"), "types")
    Select(ui.find("#channel-types")).select_by_visible_text("webhook")
    ui.fill("#channel-form", name="sink", config=json.dumps({"url": sink.url + "/hook"}))
    ui.find("#channel-form [name=default]").click()
    ui.submit("#channel-form")
    row = '//tbody[@id="channels-body"]/tr[td[2]="sink"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the new channel listed")
    assert ui.driver.find_element(By.XPATH, row + "/td[3]").text == "webhook"
    assert ui.driver.find_element(By.XPATH, row + "/td[4]").text == "✓"  # the default
    assert ui.find("#channel-form [name=name]").get_attribute("value") == ""  # ready for the next
    assert Select(ui.find("#channel-types")).first_selected_option.text == "webhook"

    ui.go("send")
    choice = '#send-channels option[value="sink"]'
    ui.wait(lambda d: ui.find(choice).is_selected(), "the default channel preselected")
    ui.fill("#send-form", title="Hello from Chromium", body="sent through the web UI")
    with sink.lock:  # the sink holds the webhook call, so the message cannot finish yet
        ui.submit("#send-form")
        ui.visible("#messages-view")
        heading = ui.wait(
            lambda d: re.match(r"#(\d+) Hello from Chromium$", ui.find("#message-detail h3").text),
            "the sent message's detail",
        )
        message_id = heading[1]
        status = f'//tbody[@id="messages-body"]/tr[td[1]="{message_id}"]/td[3]'
        ui.refresh_until(status, "sending", DELIVERY_TIMEOUT)
    ui.refresh_until(status, "delivered", DELIVERY_TIMEOUT)
    ui.text("#message-detail > p", "delivered")  # Refresh updates the open detail as well
    received = sink.wait_for(lambda reqs: reqs, timeout=5)
    assert [r["body"]["title"] for r in received] == ["Hello from Chromium"]
    assert received[0]["path"] == "/hook" and received[0]["body"]["id"] == int(message_id)

    shown = ui.find("#message-detail h3")
    ui.driver.find_element(By.XPATH, f'{status}/../td[5]/button[@data-show="{message_id}"]').click()
    ui.wait(EC.staleness_of(shown), "the detail shown anew")

    def timeline(d) -> list[str] | None:
        if ui.find("#message-detail > p").text != "delivered":
            return None
        items = d.find_elements(By.CSS_SELECTOR, "#message-detail ol li")
        return [li.text.split(" — ", 1)[1] for li in items]  # "<time> — <type> <detail>"

    events = ui.wait(timeline, "the delivered message's timeline")
    kinds = [event.split()[0] for event in events]
    assert kinds[0] == "accepted" and kinds[-1] == "delivered" and "delivery_sent" in kinds, events
    assert ui.find("#message-detail h3").text == f"#{message_id} Hello from Chromium"
    assert "sink (webhook): sent" in ui.find("#message-detail ul").text

    # The language toggle relabels everything, the rendered buttons too, and back.
    ui.find("#lang").click()
    ui.text('#nav a[href="#messages"]', "消息")
    assert ui.mislabelled(english=False) == []
    assert ui.find(f'[data-show="{message_id}"]').text == "详情"
    assert ui.find("#lang").text == "English"
    assert ui.find("html").get_attribute("lang") == "zh-CN"
    ui.find("#lang").click()
    ui.text('#nav a[href="#messages"]', "Messages")
    assert ui.mislabelled(english=True) == []
    assert ui.find(f'[data-retry="{message_id}"]').text == "Retry"
    ui.assert_console_clean(("/api/v1/me", 401))


def test_an_api_key_created_in_the_ui_is_shown_once_and_works_against_the_api(ui):
    ui.open()
    ui.login()
    ui.go("keys")
    ui.visible("#key-confirm")  # an admin's key carries the admin scope: X-Confirm

    ui.fill("#key-form", name="from-the-ui")
    ui.submit("#key-form")
    assert "X-Confirm" in ui.error()
    assert not ui.find("#new-key").is_displayed()

    ui.fill("#key-form", name="from-the-ui", confirm=ADMIN_PASSWORD)
    ui.submit("#key-form")
    ui.visible("#new-key")
    ui.hidden("#error")
    key = ui.find("#new-key-value").text
    assert key and key in ui.find("#new-key").text
    assert ui.find("#key-form [name=confirm]").get_attribute("value") == ""  # not kept around
    row = '//tbody[@id="keys-body"]/tr[td[2]="from-the-ui"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the new key listed")
    prefix = ui.driver.find_element(By.XPATH, row + "/td[3]").text
    assert prefix and f"_{prefix}_" in key and key not in ui.find("#keys-body").text
    assert "admin" in ui.driver.find_element(By.XPATH, row + "/td[4]").text

    me = requests.get(
        ui.server.url + "/api/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["username"] == "admin", me.text
    bad = requests.get(
        ui.server.url + "/api/v1/me", headers={"Authorization": f"Bearer {key}x"}, timeout=10
    )
    assert bad.status_code == 401

    ui.find("#logout").click()
    ui.visible("#login-view")
    assert ui.find("#new-key-value").get_attribute("textContent") == ""  # gone from the page
    assert ui.find("#keys-body").get_attribute("textContent").strip() == ""
    ui.assert_console_clean(("/api/v1/me", 401), ("/api/v1/keys", 403))


def login_status(server: ServerProcess, username: str, password: str) -> int:
    answer = requests.post(
        server.url + "/api/v1/session",
        json={"username": username, "password": password},
        timeout=10,
    )
    return answer.status_code


def test_the_admin_panel_shows_the_status_and_creates_confirms_and_disables_users(ui):
    ui.open()
    ui.login()
    ui.open_admin()
    raw = json.loads(ui.find("#admin-status").get_attribute("textContent"))
    components = {row[0]: row[1:] for row in ui.table("#admin-components")}
    assert sorted(components) == sorted(raw["components"]), components
    for name in ("dispatcher", "channel_pool", "ingest"):  # state, restarts, answers pings
        assert components[name][:3] == ["running", "0", "yes"], (name, components[name])
    assert re.fullmatch(r"\d+/\d+", components["channel_pool"][3]), components  # busy/workers
    summary = ui.find("#admin-summary").text
    assert "Accepting: yes" in summary and "Ready: yes" in summary, summary
    assert ui.find("#admin-queues").text  # depths, or "none" when every queue is empty
    assert not ui.find("#admin-status").is_displayed()  # the raw JSON only on demand
    own = '//tbody[@id="admin-users"]/tr[td[2]="admin"]/td[6]'
    assert ui.driver.find_element(By.XPATH, own).text == ""  # no way to lock oneself out

    # An admin account needs the caller's password as X-Confirm: without it, the API refuses.
    user = '//tbody[@id="admin-users"]/tr[td[2]="carol"]'
    ui.fill("#user-form", username="carol", password="carol-pass-Test-1")
    Select(ui.find("#user-form [name=role]")).select_by_value("admin")
    ui.submit("#user-form")
    assert "X-Confirm" in ui.error()
    assert not ui.driver.find_elements(By.XPATH, user)
    ui.fill("#admin-confirm-form", confirm=ADMIN_PASSWORD)
    ui.submit("#user-form")  # the form kept what was typed
    ui.wait(EC.presence_of_element_located((By.XPATH, user)), "the new user listed")
    ui.hidden("#error")
    assert ui.find("#admin-confirm").get_attribute("value") == ""  # not kept around
    assert ui.find("#user-form [name=username]").get_attribute("value") == ""
    assert ui.driver.find_element(By.XPATH, user + "/td[3]").text == "admin"
    assert ui.driver.find_element(By.XPATH, user + "/td[4]").text == "enabled"
    user_id = ui.driver.find_element(By.XPATH, user + "/td[1]").text
    assert login_status(ui.server, "carol", "carol-pass-Test-1") == 200

    # A role change is sensitive too; disabling is not.
    ui.find(f'[data-make-user="{user_id}"]').click()
    assert "X-Confirm" in ui.error()
    ui.fill("#admin-confirm-form", confirm=ADMIN_PASSWORD)
    ui.find(f'[data-make-user="{user_id}"]').click()
    ui.wait(lambda d: d.find_element(By.XPATH, user + "/td[3]").text == "user", "carol made a user")
    assert ui.find("#admin-confirm").get_attribute("value") == ""
    ui.find(f'[data-disable="{user_id}"]').click()
    ui.wait(
        lambda d: d.find_element(By.XPATH, user + "/td[4]").text == "disabled", "carol disabled"
    )
    ui.hidden("#error")
    assert ui.find(f'[data-enable="{user_id}"]').text == "Enable"
    assert login_status(ui.server, "carol", "carol-pass-Test-1") == 401

    # A plain user needs no confirmation; logged in, they get no admin link, and #admin sends
    # them to Send without a single admin call (a fresh page: its resource timings are theirs).
    ui.fill("#user-form", username="dave", password="dave-pass-Test-1")
    ui.submit("#user-form")
    ui.wait(
        EC.presence_of_element_located((By.XPATH, '//tbody[@id="admin-users"]/tr[td[2]="dave"]')),
        "dave listed",
    )
    ui.find("#logout").click()
    ui.visible("#login-view")
    ui.driver.refresh()  # still at #admin
    ui.visible("#login-view")
    ui.submit_login("dave-pass-Test-1", username="dave")
    ui.text("#who", "dave")
    ui.visible("#send-view")
    assert not ui.find("#admin-link").is_displayed() and not ui.find("#admin-view").is_displayed()
    called = ui.driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname);"
    )
    assert "/api/v1/me" in called, called
    assert not [c for c in called if c.startswith(("/api/v1/admin", "/api/v1/users"))], called
    ui.assert_console_clean(
        ("/api/v1/me", 401), ("/api/v1/users", 403), (f"/api/v1/users/{user_id}", 403)
    )


@pytest.fixture
def alerting_ui(driver, server_factory) -> UI:
    """A server whose monitor finds the disk too small every 0.2 s: a disk_low alert fires."""
    return UI(
        driver,
        server_factory(
            {"MP_MONITOR__INTERVAL": "0.2", "MP_MONITOR__ALERTS__DISK_FREE_MIN_MB": "1e12"}
        ),
    )


def test_the_admin_panel_acks_an_alert_runs_a_job_and_shows_events_and_logs(alerting_ui):
    ui = alerting_ui
    ui.open()
    ui.login()
    ui.open_admin()

    # Alerts: the monitor's disk_low alert, acknowledged from the panel.
    alert = '//tbody[@id="admin-alerts"]/tr[starts-with(td[4], "disk_low")]'
    ui.refresh_until(alert + "/td[3]", "firing", UI_TIMEOUT, button="refresh-admin")
    alert_id = ui.driver.find_element(By.XPATH, alert + "/td[1]").text
    ui.click(f'[data-ack="{alert_id}"]')
    ui.wait(lambda d: d.find_element(By.XPATH, alert + "/td[8]").text == "admin", "acknowledged")

    # Jobs: every job with its schedule; "Run now" lists a new run at once, which finishes ok.
    jobs = {row[0]: row for row in ui.table("#admin-jobs")}
    assert sorted(jobs) == ["backup", "daily_report", "db_maintenance", "retention_purge"], jobs
    for row in jobs.values():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[2]), row  # next run
    before = re.findall(r"#(\d+) ", jobs["retention_purge"][3])
    ui.click('[data-run-job="retention_purge"]')

    def new_run(d) -> str | None:
        row = next(r for r in ui.table("#admin-jobs") if r[0] == "retention_purge")
        return next((i for i in re.findall(r"#(\d+) ", row[3]) if i not in before), None)

    run_id = ui.wait(new_run, "the new run listed")  # the POST queued it: no Refresh needed
    runs = '//tbody[@id="admin-jobs"]/tr[td[1]="retention_purge"]/td[4]//li'
    run = f'{runs}[starts-with(., "#{run_id} ")]'
    ui.refresh_until(run + "/span", "ok", UI_TIMEOUT, button="refresh-admin")
    ui.hidden("#error")

    # Supervisor events and log lines, newest first.
    rows = ui.table("#admin-events")
    assert 1 <= len(rows) <= 50, rows
    assert {("dispatcher", "start"), ("channel_pool", "start")} <= {(r[1], r[2]) for r in rows}
    assert len(rows) > 1 and rows[0][0] >= rows[-1][0], rows
    log = ui.find("#admin-logs").text
    stamps = re.findall(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z) [A-Z]+ ", log, re.MULTILINE)
    assert 1 < len(stamps) <= 50 and stamps[0] >= stamps[-1], log
    assert "messagepusher: listening on http://" in log, log

    # Every label of the panel, the rendered ones too, has its Chinese text.
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find('[data-run-job="backup"]').text == "立即运行"
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "Admin")
    assert ui.mislabelled(english=True) == []
    ui.assert_console_clean(("/api/v1/me", 401))


RESTORE_TIMEOUT = 30.0  # the actors stop (up to shutdown_grace_seconds), the copy, the restart


def test_the_admin_panel_takes_a_backup_restores_it_and_shows_the_audit_log(ui):
    api = ui.server.client(ui.server.create_key())  # before the backup, so the restore keeps it
    ui.open()
    ui.login()  # the session, too, must predate the backup to survive the restore
    ui.open_admin()
    assert ui.table("#admin-backups") == [["none"]]

    # Back up now: the answer is shown, and the backup listed with its size and time.
    ui.click("#backup-now")
    result = ui.wait(
        lambda d: re.fullmatch(
            r"Backup taken: (messagepusher-\S+\.db) \(\d+\)", ui.find("#backup-result").text
        ),
        "the new backup shown",
    )
    name = result[1]
    ui.wait(lambda d: [r[0] for r in ui.table("#admin-backups")] == [name], "the backup listed")
    row = ui.table("#admin-backups")[0]
    assert (
        int(row[1]) > 0
        and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", row[2])
        and row[3] == "Restore"
    ), row
    ui.hidden("#error")

    # Work done after the backup: a channel, and a message through it.
    made = api.post(
        "/api/v1/channels",
        json={"name": "after-backup", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}},
    )
    assert made.status_code == 201, made.text
    sent = api.post(
        "/api/v1/messages", json={"title": "after the backup", "channels": ["after-backup"]}
    )
    assert sent.status_code == 202, sent.text

    # Restore is sensitive: without the password the API refuses, and nothing changes.
    restore = f'[data-restore="{name}"]'
    ui.click(restore)
    assert "X-Confirm" in ui.error()
    channels = [c["name"] for c in api.get("/api/v1/channels").json()["items"]]
    assert channels == ["after-backup"], channels

    # The audit log (newest first) shows the backup and the refused restore, and filters by action.
    restore_action = "POST /api/v1/admin/backups/{name}/restore"

    def audited(action: str, target: str, outcome: str) -> None:
        """Refresh until the newest audit row of admin's action on target has that outcome."""
        row = f'tr[td[2]="admin" and td[3]="{action}" and td[4]="{target}"]'
        # The audit rows are written in batches, off the request: Refresh until they are.
        cell = f'//tbody[@id="admin-audit"]/{row}/td[5]'
        ui.refresh_until(cell, outcome, UI_TIMEOUT, button="refresh-admin")

    audited(restore_action, name, "denied (403 confirmation_required)")
    audited("POST /api/v1/admin/backups", "", "ok (201)")
    rows = ui.table("#admin-audit")
    assert 1 < len(rows) <= 50 and rows[0][0] >= rows[-1][0], rows
    ui.fill("#audit-form", action=restore_action)
    ui.submit("#audit-form")
    ui.wait(
        lambda d: {r[2] for r in ui.table("#admin-audit")} == {restore_action},
        "the audit log filtered by action",
    )
    ui.fill("#audit-form", action="", user="nobody")
    ui.submit("#audit-form")
    ui.wait(lambda d: ui.table("#admin-audit") == [["none"]], "no entries for an unknown user")
    ui.find("#audit-form [name=user]").clear()

    # With the password: the answer is shown, the panel reloaded, and the work since the backup gone.
    ui.fill("#admin-confirm-form", confirm=ADMIN_PASSWORD)
    ui.click(restore)
    ui.wait(
        lambda d: re.fullmatch(
            rf"Restored from backup: {re.escape(name)} \([\d.]+ s\)", ui.find("#backup-result").text
        ),
        "the restore's answer shown",
        RESTORE_TIMEOUT,
    )
    ui.wait(
        lambda d: f"database restored from backup {name}" in ui.find("#admin-logs").text,
        "the panel reloaded after the restore",
    )
    ui.hidden("#error")
    assert ui.find("#admin-confirm").get_attribute("value") == ""  # not kept around
    assert [r[0] for r in ui.table("#admin-backups")] == [name]  # the files are not in the database

    def healthy(d) -> bool:
        return requests.get(ui.server.url + "/readyz", timeout=5).status_code == 200

    ui.wait(healthy, "the service ready again", RESTORE_TIMEOUT)
    assert api.get("/api/v1/channels").json()["items"] == []
    assert api.get(f"/api/v1/messages/{sent.json()['id']}").status_code == 404
    assert api.get("/api/v1/me").json()["username"] == "admin"  # the key predates the backup
    audited(restore_action, name, "ok (200)")

    # Every new label has its Chinese text.
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find(restore).text == "恢复" and ui.find("#backup-now").text == "立即备份"
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "Admin")
    assert ui.mislabelled(english=True) == []
    ui.assert_console_clean(("/api/v1/me", 401), (f"/api/v1/admin/backups/{name}/restore", 403))


def test_the_admin_panel_changes_the_run_time_config_live_refuses_a_bad_value_and_rolls_back(ui):
    api = ui.server.client(ui.server.create_key())

    def pool() -> dict:
        return api.get("/api/v1/admin/status").json()["components"]["channel_pool"]["pool"]

    def config() -> dict:
        return api.get("/api/v1/admin/config").json()

    assert config()["version"] == 0  # a fresh server: the file alone
    before = pool()["workers"]
    wanted = before + 3
    ui.open()
    ui.login()
    ui.open_admin()
    assert "Config version: 0" in ui.find("#config-summary").text
    assert ui.table("#admin-config-versions") == [
        ["0", "", "", "the configuration file alone", "", ""]
    ]
    shown = json.loads(ui.find("#config-values").get_attribute("value"))
    assert shown == config()["values"] and shown["channel_pool"]["workers"] == before, shown

    def save(workers: int, confirm: bool = True) -> None:
        """The shown JSON with another channel_pool.workers, saved (with the password)."""
        values = json.loads(ui.find("#config-values").get_attribute("value"))
        values["channel_pool"]["workers"] = workers
        ui.fill("#config-form", values=json.dumps(values))
        if confirm:
            ui.fill("#admin-confirm-form", confirm=ADMIN_PASSWORD)
        ui.submit("#config-form")

    # A change is sensitive: without the password the API refuses, and nothing changes.
    save(wanted, confirm=False)
    assert "X-Confirm" in ui.error()
    assert config()["version"] == 0 and pool()["workers"] == before

    # With it: a new version, and the running pool resized at once (no restart).
    save(wanted)
    ui.text("#config-result", "Saved as version 1 (patch)")
    ui.hidden("#error")
    assert ui.find("#admin-confirm").get_attribute("value") == ""  # not kept around
    assert pool() == {"workers": wanted, "max_workers": wanted, "in_flight": 0}
    assert config()["overrides"] == {"channel_pool": {"workers": wanted}}  # only what changed
    ui.wait(
        lambda d: (
            {r[0]: r[4] for r in ui.table("#admin-components")}["channel_pool"] == f"0/{wanted}"
        ),
        "the status shows the new pool size",
    )

    def latest(d) -> list[str] | None:
        rows = ui.table("#admin-config-versions")
        return rows[0] if rows[0][0] == "1" else None

    row = ui.wait(latest, "the new version listed")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", row[1]), row
    assert row[2:] == ["admin", "patch", f"channel_pool.workers: {before} → {wanted}", ""], row
    assert (
        json.loads(ui.find("#config-values").get_attribute("value"))["channel_pool"]["workers"]
        == wanted
    )

    # A bad value: the API's error names the key, the value and the rule; nothing changes.
    save(0)
    error = ui.error()
    assert "channel_pool.workers = 0" in error and "greater than or equal to 1" in error, error
    assert config()["version"] == 1 and pool()["workers"] == wanted
    assert (
        json.loads(ui.find("#config-values").get_attribute("value"))["channel_pool"]["workers"] == 0
    )  # what was typed stays, to be corrected
    assert len(ui.table("#admin-config-versions")) == 2

    # Rollback to the version before (0, the file alone): a new version, the old size back live.
    ui.fill("#admin-confirm-form", confirm=ADMIN_PASSWORD)
    ui.click('[data-rollback="0"]')
    ui.text("#config-result", "Saved as version 2 (rollback to version 0)")
    ui.hidden("#error")
    assert pool() == {"workers": before, "max_workers": before, "in_flight": 0}
    now = config()
    assert now["version"] == 2 and now["overrides"] == {}, now
    assert now["values"]["channel_pool"]["workers"] == before
    ui.wait(
        lambda d: (
            [(r[0], r[3], r[4]) for r in ui.table("#admin-config-versions")]
            == [
                ("2", "rollback to version 0", f"channel_pool.workers: {wanted} → {before}"),
                ("1", "patch", f"channel_pool.workers: {before} → {wanted}"),
                ("0", "the configuration file alone", ""),
            ]
        ),
        "the rollback listed",
    )
    assert ui.find('[data-rollback="1"]').text == "Rollback"
    assert not ui.driver.find_elements(By.CSS_SELECTOR, '[data-rollback="2"]')  # the current one
    assert "Config version: 2" in ui.find("#config-summary").text

    # Every new label has its Chinese text.
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find('[data-rollback="1"]').text == "回滚"
    ui.find("#lang").click()
    ui.text('#nav a[href="#admin"]', "Admin")
    assert ui.mislabelled(english=True) == []
    ui.assert_console_clean(
        ("/api/v1/me", 401), ("/api/v1/admin/config", 403), ("/api/v1/admin/config", 422)
    )


def _screenshots(ui: UI, tmp_path, name: str) -> list[str]:
    """The current view at desktop (1366) and phone (390) widths, in English and in 中文; the
    window and the language are put back after."""
    paths = []
    for language in ("en", "zh"):
        for width, height in ((1366, 900), (390, 844)):
            ui.driver.set_window_size(width, height)
            path = tmp_path / f"{name}-{language}-{width}.png"
            ui.driver.save_screenshot(str(path))
            paths.append(str(path))
        ui.click("#lang")
    ui.driver.set_window_size(1280, 1024)
    return paths


def test_schedules_show_next_runs_and_hooks_show_their_url_once_with_a_preview(ui, sink, tmp_path):
    ui.open()
    ui.login()
    api = ui.server.client(ui.server.create_key())
    made = api.post(
        "/api/v1/channels", json={"name": "sink", "type": "webhook", "config": {"url": sink.url}}
    )
    assert made.status_code == 201, made.text

    ui.go("schedules")
    ui.wait(lambda d: ui.find('#schedule-channels option[value="sink"]'), "channel choices")
    ui.fill(
        "#schedule-form",
        name="standup",
        cron="30 9 * * mon-fri",
        timezone="Asia/Shanghai",
        title="Stand-up",
        body="in 5 minutes",
    )
    Select(ui.find("#schedule-channels")).select_by_value("sink")
    ui.submit("#schedule-form")
    row = '//tbody[@id="schedules-body"]/tr[td[2]="standup"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the new schedule listed")
    runs = ui.driver.find_element(By.XPATH, row + "/td[4]").text.splitlines()
    api_runs = api.get("/api/v1/schedules").json()["items"][0]["next_runs"]
    assert runs == api_runs[:3] and all(r.endswith("T09:30:00+08:00") for r in runs), runs
    shots = _screenshots(ui, tmp_path, "schedules")
    ui.driver.find_element(By.XPATH, row + "//button[@data-disable-schedule]").click()
    ui.wait(
        lambda d: d.find_element(By.XPATH, row + "/td[4]").text == "off", "disabled: no next runs"
    )

    ui.go("hooks")
    ui.wait(lambda d: ui.find('#hook-channels option[value="sink"]'), "channel choices")
    ui.fill(
        "#hook-form", name="ci", title="Build {{ payload.status }}", body="by {{ payload.who }}"
    )
    Select(ui.find("#hook-channels")).select_by_value("sink")
    ui.submit("#hook-form")
    url = ui.visible("#new-hook-url").text
    assert url.startswith(ui.server.url + "/hooks/")
    token = url.rsplit("/", 1)[1]
    ui.wait(lambda d: ui.find("#preview-hooks option").text == "ci", "the hook to preview")
    ui.fill("#preview-form", payload=json.dumps({"status": "green", "who": "ci-bot"}))
    ui.submit("#preview-form")
    ui.wait(lambda d: '"title": "Build green"' in ui.find("#preview-result").text, "the preview")
    assert sink.received() == []  # a preview sends nothing
    ui.driver.execute_script("document.getElementById('new-hook').scrollIntoView()")
    shots += _screenshots(ui, tmp_path, "hooks")
    posted = requests.post(url, json={"status": "red", "who": "ci-bot"}, timeout=30)
    assert posted.status_code == 202, posted.text
    sink.wait_for(lambda reqs: [r for r in reqs if r["body"]["title"] == "Build red"], timeout=20)
    ui.driver.refresh()
    ui.visible("#hooks-view")
    ui.wait(lambda d: [r[3] for r in ui.table("#hooks-body") if r[1] == "ci"] != [""], "last use")
    assert token not in ui.driver.page_source  # shown once, gone after a reload

    ui.find("#lang").click()
    ui.text('#nav a[href="#hooks"]', "Webhook 接入")
    assert ui.mislabelled(english=False) == []
    ui.find("#lang").click()
    assert all(os.path.getsize(p) > 0 for p in shots)
    ui.assert_console_clean(("/api/v1/me", 401))


def test_recall_and_edit_a_sent_message_from_its_detail(ui, tmp_path):
    from fakes.recall_services import DiscordRecallFake

    with DiscordRecallFake("42", "dc-token") as discord:
        api = ui.server.client(ui.server.create_key())
        made = api.post(
            "/api/v1/channels",
            json={
                "name": "dc",
                "type": "discord",
                "config": {"url": f"{discord.url}/api/webhooks/42/dc-token"},
                "default": True,
            },
        )
        assert made.status_code == 201, made.text
        sent = api.post("/api/v1/messages", json={"title": "Deploy", "body": "v1 is out"}).json()
        api.wait_message(sent["id"], ("delivered", "failed"))
        remote = next(iter(discord.sent))
        ui.open()
        ui.login()
        ui.go("messages")
        ui.click(f'[data-show="{sent["id"]}"]')
        ui.visible("#edit-form")
        ui.fill("#edit-form", body="v1 is out (fixed)")
        ui.submit("#edit-form")
        ui.wait(lambda d: "edit: edited" in ui.find("#message-detail ul").text, "edited")
        assert [i for i, _ in discord.edited] == [remote] and "fixed" in discord.edited[0][1]
        ui.click(f'[data-recall="{sent["id"]}"]')
        ui.wait(lambda d: "recall: recalled" in ui.find("#message-detail ul").text, "recalled")
        assert discord.deleted == [remote]
        shots = _screenshots(ui, tmp_path, "recall")
        assert all(os.path.getsize(p) > 0 for p in shots)
        ui.find("#lang").click()
        ui.text(f'[data-recall="{sent["id"]}"]', "撤回")
        assert ui.mislabelled(english=False) == []
        ui.find("#lang").click()
    ui.assert_console_clean(("/api/v1/me", 401))
