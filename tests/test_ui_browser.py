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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
)
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
LOCAL_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (UTC|GMT[+-][\d:]+)"  # localTime() in app.js
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
        driver.get("about:blank")  # the last test's page stops calling its (stopped) server
        driver.set_window_size(1366, 900)
        self.time_zone("UTC")  # the zone an earlier test chose is not kept
        driver.get_log("browser")  # drop what an earlier test left

    def time_zone(self, zone: str) -> None:
        """The browser's time zone, as if the machine were there (Chrome DevTools emulation)."""
        self.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})

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
            field = self.find(f'{form} [name="{name}"]')
            field.clear()
            field.send_keys(value)

    def press(self, css: str) -> None:
        """Scroll the element to the middle of the window (clear of the sticky header and the
        window's edge) and click it."""
        self.intercepted = ""
        try:
            self.wait(lambda d: self.try_press(css), f"{css} pressed")
        except TimeoutException:
            raise AssertionError(f"{css} could not be pressed: {self.intercepted}") from None

    def try_press(self, css: str) -> bool:
        """One attempt of press(): False when the page moved under the pointer (a list loading
        above the element, a toast passing)."""
        element = self.find(css)
        self.driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element
        )
        try:
            element.click()
        except ElementClickInterceptedException as exc:
            self.intercepted = exc.msg
            return False
        return True

    def submit(self, form: str) -> None:
        self.press(f"{form} button[type=submit]")

    def go(self, view: str) -> None:
        """Click the view's link in the header, opening the collapsed menu first on a phone."""
        link = self.find(f'#nav a[href="#{view}"]')
        if not link.is_displayed():
            self.find("#nav-toggle").click()
            self.wait(
                lambda d: "show" in self.find("#nav-collapse").get_attribute("class").split(),
                "the menu open",
            )
        link.click()
        self.visible(f"#{view}-view")

    def open(self) -> None:
        self.driver.get(self.server.url + "/")
        self.visible("#login-view")

    def submit_login(self, password: str, username: str = "admin") -> None:
        self.fill("#login-form", username=username, password=password)
        self.submit("#login-form")

    def login(self) -> None:
        self.submit_login(ADMIN_PASSWORD)
        self.wait(lambda d: self.find("#who").get_attribute("textContent") == "admin", "logged in")

    def refresh_until(
        self, cell: str, wanted: str, timeout: float, button: str = "refresh-messages"
    ) -> None:
        """Press a view's Refresh button until the cell (an XPath) reads `wanted`."""

        def refreshed(d) -> bool:
            cells = d.find_elements(By.XPATH, cell)
            if cells and cells[0].text == wanted:
                return True
            self.try_press(f"#{button}")
            return False

        WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(refreshed, f"{cell} reads {wanted!r} after Refresh (within {timeout:g}s)")

    def click(self, css: str) -> None:
        """Click, again if a reload replaced the element meanwhile."""
        self.wait(lambda d: self.press(css) or True, f"{css} clicked")

    def table(self, tbody: str) -> list[list[str]]:
        """The cells' text of a table body, read at once (a reload cannot leave stale rows)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tr')]"
            ".map((tr) => [...tr.cells].map((td) => td.innerText.trim().replace(/\\s+/g, ' ')));",
            tbody,
        )

    def open_admin(self) -> None:
        """The Admin view, fully loaded: its log lines come last."""
        self.go("admin")
        self.wait(lambda d: self.find("#admin-logs").text, "the admin panel loaded")

    def toasts(self, kind: str) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#toasts .toast.text-bg-' + arguments[0])]"
            ".map((t) => t.innerText.trim());",
            kind,
        )

    def clear_toasts(self) -> None:
        self.driver.execute_script("document.getElementById('toasts').innerHTML = '';")

    def error(self) -> str:
        """The newest error toast's text (waiting for one)."""
        return self.wait(lambda d: (self.toasts("danger") or [None])[-1], "an error toast")

    def success(self) -> str:
        """The newest success toast's text (waiting for one)."""
        return self.wait(lambda d: (self.toasts("success") or [None])[-1], "a success toast")

    def no_error(self) -> None:
        assert self.toasts("danger") == [], self.toasts("danger")

    def confirm(self, secret: str) -> None:
        """Answer the password/TOTP modal a sensitive action opened."""
        self.visible("#confirm-modal #confirm-secret")
        self.wait(
            lambda d: d.switch_to.active_element == self.find("#confirm-secret"), "modal focused"
        )
        self.find("#confirm-secret").send_keys(secret)
        self.find("#confirm-ok").click()
        self.hidden("#confirm-modal")

    def dismiss_confirm(self) -> None:
        self.visible("#confirm-modal #confirm-secret")
        self.find("#confirm-modal .btn-close").click()
        self.hidden("#confirm-modal")

    def agree(self) -> str:
        """Press the red button of a confirmation dialog; its question is answered."""
        self.visible("#ask-modal #ask-ok")
        question = self.find("#ask-title").text
        self.find("#ask-ok").click()
        self.hidden("#ask-modal")
        return question

    def no_horizontal_scroll(self) -> None:
        widths = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];"
        )
        assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"

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
                and (failed["url"][len(self.server.url) :].split("?")[0], int(failed["status"]))
                in expected
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
    inline = ui.visible('#login-form [data-error-for="password"]').text
    assert "wrong" in inline  # beside the field, not only in the toast
    assert "is-invalid" in ui.find("#login-password").get_attribute("class")
    assert ui.find("#login-view").is_displayed() and not ui.find("#nav").is_displayed()

    ui.clear_toasts()
    ui.login()
    ui.visible("#send-view")  # the default view
    ui.no_error()
    assert ui.find("#login-form [name=password]").get_attribute("value") == ""

    ui.press("#admin-link")
    ui.visible("#admin-view")
    raw = ui.wait(
        lambda d: ui.find("#admin-status").get_attribute("textContent").strip(),
        "the raw admin status loaded",
    )
    status = json.loads(raw)
    assert status["accepting"] is True and status["ready"] is True, status
    assert {"dispatcher", "channel_pool"} <= set(status["components"]), status["components"]
    ui.wait(lambda d: ui.find("#admin-logs").text, "the admin panel loaded")  # nothing in flight

    ui.press("#logout")
    ui.visible("#login-view")
    ui.hidden("#nav")
    ui.hidden("#admin-view")
    assert ui.find("#who").text == "" and not ui.find("#logout").is_displayed()
    for left in ("#admin-status", "#admin-summary", "#admin-components", "#admin-users"):
        assert ui.find(left).get_attribute("textContent").strip() == "", left  # nothing left behind
    ui.driver.refresh()  # the session is really gone, not just hidden
    ui.visible("#login-view")
    ui.assert_console_clean(("/api/v1/me", 401), ("/api/v1/session", 401))


def create_webhook_channel(ui: UI, name: str, url: str, default: bool = False) -> None:
    """Through the Channels form generated from the webhook type's schema."""
    ui.go("channels")
    ui.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#channels-body tr"), "the list loaded")
    Select(ui.find("#channel-types")).select_by_value("webhook")
    ui.visible('#channel-config [name="config.url"]')
    ui.fill("#channel-form", name=name, **{"config.url": url})
    if default:
        ui.press("#channel-default")
        assert ui.find("#channel-default").is_selected()
    ui.submit("#channel-form")
    row = f'//tbody[@id="channels-body"]/tr[td[2]="{name}"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), f"the channel {name} listed")


def test_a_message_sent_from_the_ui_arrives_live_on_its_own_page_with_labelled_deliveries(ui, sink):
    ui.open()
    ui.login()
    create_webhook_channel(ui, "sink", sink.url + "/hook", default=True)
    row = '//tbody[@id="channels-body"]/tr[td[2]="sink"]'
    assert ui.driver.find_element(By.XPATH, row + "/td[3]").text == "webhook"
    assert ui.driver.find_element(By.XPATH, row + "/td[5]").text == "✓"  # the default
    assert ui.success() == "Created"
    assert ui.find("#channel-form [name=name]").get_attribute("value") == ""  # ready for the next
    assert Select(ui.find("#channel-types")).first_selected_option.text == "webhook"

    ui.go("send")
    choice = '#send-channels input[value="sink"]'
    ui.wait(lambda d: ui.find(choice).is_selected(), "the default channel preselected")
    ui.fill("#send-form", title="Hello from Chromium", body="sent **through** the web UI")
    Select(ui.find("#send-format")).select_by_value("markdown")
    with sink.lock:  # the sink holds the webhook call, so the message cannot finish yet
        ui.submit("#send-form")
        ui.visible("#message-view")
        heading = ui.wait(
            lambda d: re.match(r"#(\d+) Hello from Chromium$", ui.find("#message-title").text),
            "the sent message's page",
        )
        message_id = heading[1]
        assert ui.driver.current_url.endswith(f"#/messages/{message_id}")  # its own URL
        ui.driver.execute_script("window.notReloaded = true;")
        ui.text("#live", "live")  # over the event stream, not the polling fallback
        ui.text("#message-status", "sending")  # pushed by the event stream: nobody pressed a key
    ui.wait(lambda d: ui.find("#message-status").text == "delivered", "delivered", DELIVERY_TIMEOUT)
    assert ui.driver.execute_script("return window.notReloaded === true;")  # no page load
    received = sink.wait_for(lambda reqs: reqs, timeout=5)
    assert [r["body"]["title"] for r in received] == ["Hello from Chromium"]
    assert received[0]["path"] == "/hook" and received[0]["body"]["id"] == int(message_id)
    assert ui.find("#message-body strong").text == "through"  # markdown rendered

    heads = [th.text for th in ui.driver.find_elements(By.CSS_SELECTOR, "#message-view thead th")]
    assert heads == ["Channel", "Status", "Attempts", "Response code", "Last error", "Sent at"]
    cells = ui.table("#message-deliveries")[0]
    assert cells[:4] == ["sink webhook", "sent", "1", "200"], cells
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", cells[5]), cells
    ui.wait(lambda d: "Delivered" in ui.find("#message-timeline").text, "the timeline's last event")
    events = [
        li.text.split("\n")[1]
        for li in ui.driver.find_elements(By.CSS_SELECTOR, "#message-timeline li")
    ]
    assert events[0] == "Accepted" and events[-1] == "Delivered", events
    assert "Delivered to a channel" in events, events
    actions = [b.text for b in ui.driver.find_elements(By.CSS_SELECTOR, "#message-actions button")]
    assert actions == ["Recall"], actions  # delivered: nothing to retry or cancel

    # The list shows it too, with the status filter.
    ui.go("messages")
    ui.wait(lambda d: [r[2] for r in ui.table("#messages-body")] == ["delivered"], "the list")
    Select(ui.find("#filter-status")).select_by_value("failed")
    ui.wait(lambda d: ui.table("#messages-body") == [["none"]], "filtered by status")
    Select(ui.find("#filter-status")).select_by_value("")
    ui.wait(lambda d: [r[0] for r in ui.table("#messages-body")] == [message_id], "all again")
    ui.fill("#message-filter", text="nothing like it")
    ui.wait(lambda d: ui.table("#messages-body") == [["none"]], "filtered by text")

    # The language toggle relabels everything, the rendered labels and statuses too, and back.
    ui.press("#lang")
    ui.text('#nav a[href="#messages"]', "消息")
    assert ui.mislabelled(english=False) == []
    assert ui.find("#lang").text == "English"
    assert ui.find("html").get_attribute("lang") == "zh-CN"
    ui.driver.execute_script(f"location.hash = '#/messages/{message_id}'")
    ui.text("#message-status", "已送达")
    assert ui.mislabelled(english=False) == []
    ui.press("#lang")
    ui.text('#nav a[href="#messages"]', "Messages")
    assert ui.mislabelled(english=True) == []
    ui.assert_console_clean(("/api/v1/me", 401))


def test_an_api_key_with_the_admin_scope_asks_for_the_password_in_a_modal_and_works(ui):
    ui.open()
    ui.login()
    ui.go("account")
    ui.visible('#key-scopes input[value="admin"]')
    ui.fill("#key-form", name="from-the-ui")
    ui.press('#key-scopes input[value="admin"]')  # the admin scope: sensitive

    # The API asks for a second verification: the modal opens at that moment; a wrong password
    # is refused inside it, the right one creates the key.
    ui.submit("#key-form")
    ui.visible("#confirm-modal #confirm-secret")
    assert "X-Confirm" in ui.find("#confirm-what").text
    ui.find("#confirm-secret").send_keys("not-my-password")
    ui.press("#confirm-ok")
    ui.wait(lambda d: ui.find("#confirm-error").text, "the refusal shown in the modal")
    assert "does not match" in ui.find("#confirm-error").text
    assert not ui.find("#new-key").is_displayed()
    ui.find("#confirm-secret").send_keys(ADMIN_PASSWORD)
    ui.press("#confirm-ok")
    ui.hidden("#confirm-modal")
    ui.visible("#new-key")
    key = ui.find("#new-key-value").text
    assert key and key in ui.find("#new-key").text
    assert ui.find("#confirm-secret").get_attribute("value") == ""  # not kept around
    row = '//tbody[@id="keys-body"]/tr[td[2]="from-the-ui"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the new key listed")
    prefix = ui.driver.find_element(By.XPATH, row + "/td[3]").text
    assert prefix and f"_{prefix}_" in key and key not in ui.find("#keys-body").text
    assert "admin" in ui.driver.find_element(By.XPATH, row + "/td[4]").text

    # Ready-to-paste examples carry the new key and the compatible /push/{username} URL.
    examples = ui.find("#key-examples").text
    assert f"Authorization: Bearer {key}" in examples, examples
    assert f"{ui.server.url}/push/admin?token={key}" in examples, examples
    ui.driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": ui.server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    ui.clear_toasts()
    ui.press('[data-copy="new-key-value"]')
    assert ui.success() == "Copied"

    me = requests.get(
        ui.server.url + "/api/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["username"] == "admin", me.text
    bad = requests.get(
        ui.server.url + "/api/v1/me", headers={"Authorization": f"Bearer {key}x"}, timeout=10
    )
    assert bad.status_code == 401

    # Delete asks first.
    key_id = ui.driver.find_element(By.XPATH, row + "/td[1]").text
    ui.press(f'[data-delete-key="{key_id}"]')
    assert ui.agree() == "Delete?"
    ui.wait(lambda d: not d.find_elements(By.XPATH, row), "the key gone")

    ui.press("#logout")
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

    # An admin account needs the caller's password as X-Confirm: the modal asks; closed, nothing
    # is created and the form keeps what was typed.
    user = '//tbody[@id="admin-users"]/tr[td[2]="carol"]'
    ui.fill("#user-form", username="carol", password="carol-pass-Test-1")
    Select(ui.find("#user-form [name=role]")).select_by_value("admin")
    ui.submit("#user-form")
    ui.dismiss_confirm()
    assert not ui.driver.find_elements(By.XPATH, user)
    assert ui.find("#user-form [name=username]").get_attribute("value") == "carol"
    ui.submit("#user-form")
    ui.confirm(ADMIN_PASSWORD)
    ui.wait(EC.presence_of_element_located((By.XPATH, user)), "the new user listed")
    ui.no_error()
    assert ui.find("#user-form [name=username]").get_attribute("value") == ""
    assert ui.driver.find_element(By.XPATH, user + "/td[3]").text == "admin"
    assert ui.driver.find_element(By.XPATH, user + "/td[4]").text == "enabled"
    user_id = ui.driver.find_element(By.XPATH, user + "/td[1]").text
    assert login_status(ui.server, "carol", "carol-pass-Test-1") == 200

    # A role change is sensitive too; disabling is not.
    ui.press(f'[data-make-user="{user_id}"]')
    ui.confirm(ADMIN_PASSWORD)
    ui.wait(lambda d: d.find_element(By.XPATH, user + "/td[3]").text == "user", "carol made a user")
    ui.press(f'[data-disable="{user_id}"]')
    ui.wait(
        lambda d: d.find_element(By.XPATH, user + "/td[4]").text == "disabled", "carol disabled"
    )
    assert not ui.find("#confirm-modal").is_displayed()
    ui.no_error()
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
    ui.press("#logout")
    ui.visible("#login-view")
    ui.driver.refresh()  # still at #admin
    ui.visible("#login-view")
    ui.submit_login("dave-pass-Test-1", username="dave")
    ui.wait(lambda d: ui.find("#who").get_attribute("textContent") == "dave", "dave logged in")
    ui.visible("#send-view")
    assert not ui.find("#admin-link").is_displayed() and not ui.find("#admin-view").is_displayed()
    assert not ui.find('#nav a[href="#tasks"]').is_displayed()
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
        assert re.fullmatch(LOCAL_TIME, row[2]), row  # next run, in the browser's zone
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
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \S+ [A-Z]+ ", log, re.MULTILINE)
    assert 1 < len(stamps) <= 50 and stamps[0] >= stamps[-1], log
    assert "messagepusher: listening on http://" in log, log

    # Every label of the panel, the rendered ones too, has its Chinese text.
    ui.press("#lang")
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find('[data-run-job="backup"]').text == "立即运行"
    ui.press("#lang")
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
    assert int(row[1]) > 0 and re.fullmatch(LOCAL_TIME, row[2]) and row[3] == "Restore", row
    ui.no_error()

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

    # Restore asks first; then, being sensitive, the API wants the password: the modal closed
    # without it, the API has refused and nothing changes.
    restore = f'[data-restore="{name}"]'
    ui.click(restore)
    assert ui.agree() == "Restore from this backup?"
    ui.dismiss_confirm()
    channels = [c["name"] for c in api.get("/api/v1/channels").json()["items"]]
    assert channels == ["after-backup"], channels

    # The audit log (newest first) shows the backup and the refused restore in words, and filters
    # by a part of the action.
    restore_action = "POST /api/v1/admin/backups/{name}/restore"

    def audited(action: str, target: str, outcome: str) -> None:
        """Refresh until the newest audit row of admin's action on target has that outcome."""
        row = f'tr[td[2]="admin" and @data-action="{action}" and td[4]="{target}"]'
        # The audit rows are written in batches, off the request: Refresh until they are.
        cell = f'//tbody[@id="admin-audit"]/{row}/td[5]'
        ui.refresh_until(cell, outcome, UI_TIMEOUT, button="refresh-admin")

    audited(restore_action, name, "denied (403 confirmation_required)")
    audited("POST /api/v1/admin/backups", "", "ok (201)")
    rows = ui.table("#admin-audit")
    assert 1 < len(rows) <= 50 and rows[0][0] >= rows[-1][0], rows
    assert {"Restored a backup", "Took a backup"} <= {r[2] for r in rows}, rows
    ui.fill("#audit-form", contains="/restore")
    ui.submit("#audit-form")
    ui.wait(
        lambda d: {r[2] for r in ui.table("#admin-audit")} == {"Restored a backup"},
        "the audit log filtered by a part of the action",
    )
    ui.fill("#audit-form", contains="", user="nobody")
    ui.submit("#audit-form")
    ui.wait(lambda d: ui.table("#admin-audit") == [["none"]], "no entries for an unknown user")
    ui.find("#audit-form [name=user]").clear()

    # With the password: the answer is shown, the panel reloaded, and the work since the backup gone.
    ui.click(restore)
    ui.agree()
    ui.confirm(ADMIN_PASSWORD)
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
    ui.no_error()
    assert [r[0] for r in ui.table("#admin-backups")] == [name]  # the files are not in the database

    def healthy(d) -> bool:
        return requests.get(ui.server.url + "/readyz", timeout=5).status_code == 200

    ui.wait(healthy, "the service ready again", RESTORE_TIMEOUT)
    assert api.get("/api/v1/channels").json()["items"] == []
    assert api.get(f"/api/v1/messages/{sent.json()['id']}").status_code == 404
    assert api.get("/api/v1/me").json()["username"] == "admin"  # the key predates the backup
    audited(restore_action, name, "ok (200)")

    # Every new label has its Chinese text.
    ui.press("#lang")
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find(restore).text == "恢复" and ui.find("#backup-now").text == "立即备份"
    ui.press("#lang")
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
        ui.submit("#config-form")
        if confirm:
            ui.confirm(ADMIN_PASSWORD)
        else:
            ui.dismiss_confirm()

    # A change is sensitive: the modal asks for the password; closed, nothing changes.
    save(wanted, confirm=False)
    assert config()["version"] == 0 and pool()["workers"] == before
    ui.no_error()

    # With it: a new version, and the running pool resized at once (no restart).
    save(wanted)
    ui.text("#config-result", "Saved as version 1 (patch)")
    assert ui.success() == "Saved as version 1 (patch)"
    ui.no_error()
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
    assert re.fullmatch(LOCAL_TIME, row[1]), row
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
    ui.clear_toasts()
    ui.click('[data-rollback="0"]')
    ui.confirm(ADMIN_PASSWORD)
    ui.text("#config-result", "Saved as version 2 (rollback to version 0)")
    ui.no_error()
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
    ui.press("#lang")
    ui.text('#nav a[href="#admin"]', "管理")
    assert ui.mislabelled(english=False) == []
    assert ui.find('[data-rollback="1"]').text == "回滚"
    ui.press("#lang")
    ui.text('#nav a[href="#admin"]', "Admin")
    assert ui.mislabelled(english=True) == []
    ui.assert_console_clean(
        ("/api/v1/me", 401),
        ("/api/v1/admin/config", 403),
        ("/api/v1/admin/config", 422),
        ("/api/v1/admin/config/versions/0/rollback", 403),
    )


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: $MP_UI_SCREENSHOTS when set (CI keeps it out of the repo), else
    a pytest temporary folder."""
    chosen = os.environ.get("MP_UI_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _screenshots(ui: UI, folder: Path, name: str) -> list[str]:
    """The current view at desktop (1366) and phone (390) widths, in English and in 中文, each
    checked for sideways scrolling; the window and the language are put back after."""
    paths = []
    for language in ("en", "zh"):
        for width, height in ((1366, 900), (390, 844)):
            ui.driver.set_window_size(width, height)
            ui.wait(
                lambda d, w=width: d.execute_script("return window.innerWidth;") <= w,
                f"the window at {width} px",
            )
            ui.no_horizontal_scroll()
            path = folder / f"{name}-{language}-{width}.png"
            ui.driver.save_screenshot(str(path))
            paths.append(str(path))
        ui.click("#lang")
        ui.wait(
            lambda d, lang=language: (
                d.find_element(By.TAG_NAME, "html").get_attribute("lang")
                != ("en" if lang == "en" else "zh-CN")
            ),
            "the language switched",
        )
    ui.driver.set_window_size(1366, 900)
    return paths


def test_schedules_show_next_runs_in_local_time_and_hooks_show_their_url_once(ui, sink, shots):
    ui.time_zone("Asia/Shanghai")  # the browser is in Shanghai, the schedule too
    ui.open()
    ui.login()
    api = ui.server.client(ui.server.create_key())
    made = api.post(
        "/api/v1/channels", json={"name": "sink", "type": "webhook", "config": {"url": sink.url}}
    )
    assert made.status_code == 201, made.text

    ui.go("schedules")
    ui.wait(lambda d: ui.find('#schedule-channels input[value="sink"]'), "channel choices")
    ui.fill(
        "#schedule-form",
        name="standup",
        cron="30 9 * * mon-fri",
        timezone="Asia/Shanghai",
        title="Stand-up",
        body="in 5 minutes",
    )
    ui.press('#schedule-channels input[value="sink"]')
    ui.submit("#schedule-form")
    row = '//tbody[@id="schedules-body"]/tr[td[2]="standup"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the new schedule listed")
    times = ui.driver.find_elements(By.XPATH, row + "/td[4]//time")
    api_runs = api.get("/api/v1/schedules").json()["items"][0]["next_runs"]
    assert [t.get_attribute("datetime") for t in times] == api_runs[:3], api_runs
    shown = [t.text for t in times]  # the browser's local time, with its zone named
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d 09:30:00 GMT\+8", t) for t in shown), shown
    taken = _screenshots(ui, shots, "schedules")
    schedule_id = ui.driver.find_element(By.XPATH, row + "/td[1]").text
    ui.press(f'[data-disable-schedule="{schedule_id}"]')
    ui.wait(
        lambda d: d.find_element(By.XPATH, row + "/td[4]").text == "off", "disabled: no next runs"
    )

    ui.go("hooks")
    ui.wait(lambda d: ui.find('#hook-channels input[value="sink"]'), "channel choices")
    ui.fill(
        "#hook-form", name="ci", title="Build {{ payload.status }}", body="by {{ payload.who }}"
    )
    ui.press('#hook-channels input[value="sink"]')
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
    taken += _screenshots(ui, shots, "hooks")
    posted = requests.post(url, json={"status": "red", "who": "ci-bot"}, timeout=30)
    assert posted.status_code == 202, posted.text
    sink.wait_for(lambda reqs: [r for r in reqs if r["body"]["title"] == "Build red"], timeout=20)
    ui.driver.refresh()
    ui.visible("#hooks-view")
    ui.wait(lambda d: [r[3] for r in ui.table("#hooks-body") if r[1] == "ci"] != [""], "last use")
    assert token not in ui.driver.page_source  # shown once, gone after a reload

    ui.press("#lang")
    ui.text('#nav a[href="#hooks"]', "Webhook 接入")
    assert ui.mislabelled(english=False) == []
    ui.press("#lang")
    assert all(os.path.getsize(p) > 0 for p in taken)
    ui.assert_console_clean(("/api/v1/me", 401))


def test_recall_and_edit_a_sent_message_from_its_page(ui, shots):
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
        ui.visible("#message-view")
        ui.click("#message-detail details:has(#edit-form) > summary")
        ui.visible("#edit-form")
        ui.fill("#edit-form", body="v1 is out (fixed)")
        ui.submit("#edit-form")
        ui.wait(lambda d: "edit: edited" in ui.find("#message-deliveries").text, "edited")
        assert ui.success() == "Edited"
        assert [i for i, _ in discord.edited] == [remote] and "fixed" in discord.edited[0][1]
        ui.click(f'[data-recall="{sent["id"]}"]')
        ui.wait(lambda d: "recall: recalled" in ui.find("#message-deliveries").text, "recalled")
        assert discord.deleted == [remote]
        ui.wait(  # once the timeline has the recall, Recall is no longer offered
            lambda d: not d.find_elements(By.CSS_SELECTOR, "#message-actions button"),
            "no action left",
        )
        assert "recall: recalled" in ui.find("#message-deliveries").text  # kept through reloads
        taken = _screenshots(ui, shots, "message")
        assert all(os.path.getsize(p) > 0 for p in taken)
        ui.press("#lang")
        ui.wait(lambda d: "撤回: 已撤回" in ui.find("#message-deliveries").text, "in 中文")
        assert ui.mislabelled(english=False) == []
        ui.press("#lang")
    ui.assert_console_clean(("/api/v1/me", 401))


def test_channels_are_made_from_their_schema_tested_edited_and_deleted_with_feedback_in_place(
    ui, sink, shots
):
    ui.open()
    ui.login()
    ui.go("channels")
    ui.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#channel-types option"), "types")

    # The form is the type's JSON schema: labels, descriptions, required marks, secrets hidden.
    Select(ui.find("#channel-types")).select_by_value("telegram")
    token = ui.visible('#channel-config [name="config.bot_token"]')
    assert token.get_attribute("type") == "password"
    label = ui.find('label[for="cfg-bot_token"]').text
    assert label.startswith("Bot token") and label.endswith("*"), label  # required
    assert ui.find('#channel-config [name="config.chat_id"]').get_attribute("type") == "text"
    assert ui.driver.find_elements(By.CSS_SELECTOR, "#channel-config .form-text")  # descriptions

    # A refused value: the API's message is shown next to the field it names.
    Select(ui.find("#channel-types")).select_by_value("webhook")
    ui.fill("#channel-form", name="hook", **{"config.url": "ftp://example.org/x"})
    ui.submit("#channel-form")
    ui.error()
    field = ui.find('#channel-config [name="config.url"]')
    ui.wait(lambda d: "is-invalid" in field.get_attribute("class"), "the field marked")
    beside = ui.find('#channel-config [data-error-for="config.url"]')
    assert beside.is_displayed() and beside.text, "no message beside the field"
    assert field.get_attribute("value") == "ftp://example.org/x"  # kept, to be corrected
    _screenshots(ui, shots, "channel-error")

    # Corrected: created; its masked target listed.
    ui.clear_toasts()
    ui.fill("#channel-form", **{"config.url": sink.url + "/hook", "config.secret": "s3cret-value"})
    ui.submit("#channel-form")
    row = '//tbody[@id="channels-body"]/tr[td[2]="hook"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, row)), "the channel listed")
    ui.no_error()
    target = ui.driver.find_element(By.XPATH, row + "/td[4]").text
    assert target and "127.0.0.1" not in target or target.startswith("http"), target
    channel_id = ui.driver.find_element(By.XPATH, row + "/td[1]").text

    # Test: a toast, and the result beside the button.
    ui.clear_toasts()
    ui.click(f'[data-test="{channel_id}"]')
    assert ui.success().startswith("Test: sent"), ui.toasts("success")
    inline = ui.visible(f'tr[data-channel="{channel_id}"] .test-result')
    assert inline.text.startswith("sent"), inline.text
    sink.wait_for(lambda reqs: reqs, timeout=DELIVERY_TIMEOUT)
    _screenshots(ui, shots, "channels")

    # Edit (PATCH): the form filled, the secret left empty keeps the stored one.
    ui.click(f'[data-edit-channel="{channel_id}"]')
    ui.text("#channel-form-title", "Edit channel")
    assert ui.find('[name="config.secret"]').get_attribute("value") == ""
    assert not ui.find("#channel-types").is_enabled()
    ui.fill("#channel-form", name="hook-renamed")
    ui.submit("#channel-form")
    renamed = '//tbody[@id="channels-body"]/tr[td[2]="hook-renamed"]'
    ui.wait(EC.presence_of_element_located((By.XPATH, renamed)), "the channel renamed")
    api = ui.server.client(ui.server.create_key())
    stored = api.get(f"/api/v1/channels/{channel_id}").json()
    assert stored["config"]["secret"].endswith("alue"), stored  # masked, but still there

    # A conflict in 中文: the error code's own sentence, not the English text.
    ui.press("#lang")
    ui.clear_toasts()
    Select(ui.find("#channel-types")).select_by_value("webhook")
    ui.fill("#channel-form", name="hook-renamed", **{"config.url": sink.url + "/other"})
    ui.submit("#channel-form")
    assert ui.error() == "这个名称已被使用。"
    ui.press("#lang")

    # Delete asks first; "Cancel" keeps it.
    ui.click(f'[data-delete-channel="{channel_id}"]')
    ui.visible("#ask-modal #ask-ok")
    ui.press("#ask-modal .btn-close")
    ui.hidden("#ask-modal")
    assert ui.driver.find_elements(By.XPATH, renamed)
    ui.click(f'[data-delete-channel="{channel_id}"]')
    assert ui.agree() == "Delete?"
    ui.wait(lambda d: not d.find_elements(By.XPATH, renamed), "the channel deleted")
    ui.assert_console_clean(
        ("/api/v1/me", 401), ("/api/v1/channels", 422), ("/api/v1/channels", 409)
    )


def test_a_message_page_renders_markdown_safely_with_its_facts_in_local_time(ui):
    ui.time_zone("Asia/Shanghai")
    api = ui.server.client(ui.server.create_key())
    body = "# Notes\n\n- **bold** item\n\n<script>window.injected = 1</script>\n[site](javascript:alert(1))"
    draft = {
        "title": "Markdown",
        "body": body,
        "format": "markdown",
        "priority": 5,
        "channels": [],
        "url": "https://example.com/page",
    }
    sent = api.post("/api/v1/messages", json=draft)
    assert sent.status_code in (202, 422), sent.text
    if sent.status_code == 422:  # no channel at all: make one that goes nowhere
        made = api.post("/api/v1/channels", json={"name": "quiet", "type": "none", "config": {}})
        assert made.status_code == 201, made.text
        sent = api.post("/api/v1/messages", json={**draft, "channels": ["quiet"]})
    message = sent.json()
    ui.open()
    ui.login()
    ui.driver.get(f"{ui.server.url}/#/messages/{message['id']}")
    ui.text("#message-title", f"#{message['id']} Markdown")
    assert ui.find("#message-body h3").text == "Notes"
    assert ui.find("#message-body li strong").text == "bold"
    assert not ui.driver.find_elements(By.CSS_SELECTOR, "#message-body script")
    assert ui.driver.execute_script("return window.injected === undefined;")
    assert "<script>" in ui.find("#message-body").text  # shown as text, never run
    assert not ui.driver.find_elements(By.CSS_SELECTOR, '#message-body a[href^="javascript"]')
    facts = ui.find("#message-detail dl").text
    assert "https://example.com/page" in facts and "5 / 5" in facts, facts
    created = api.get(f"/api/v1/messages/{message['id']}").json()["created_at"]
    shown = ui.find("#message-detail dl time").text
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GMT\+8", shown), shown
    utc_hour = int(created[11:13])
    assert int(shown[11:13]) == (utc_hour + 8) % 24, (created, shown)
    ui.assert_console_clean(("/api/v1/me", 401))


def test_on_a_phone_the_header_collapses_and_no_main_page_scrolls_sideways(ui, sink, shots):
    api = ui.server.client(ui.server.create_key())
    made = api.post(
        "/api/v1/channels",
        json={"name": "sink", "type": "webhook", "config": {"url": sink.url}, "default": True},
    )
    assert made.status_code == 201, made.text
    sent = api.post("/api/v1/messages", json={"title": "A rather long title " * 4, "body": "x"})
    api.wait_message(sent.json()["id"], ("delivered",))
    ui.driver.set_window_size(390, 844)
    ui.open()
    ui.no_horizontal_scroll()
    ui.login()
    assert ui.find("#nav-toggle").is_displayed()
    assert not ui.find('#nav a[href="#messages"]').is_displayed()  # folded away
    assert ui.find("#lang").is_displayed()  # the language stays one tap away
    for view in ("send", "messages", "channels", "account", "dashboard", "tasks", "admin"):
        ui.go(view)
        ui.wait(lambda d: not d.find_element(By.ID, "nav-collapse").is_displayed(), "menu folded")
        ui.no_horizontal_scroll()
        _screenshots(ui, shots, view)
        ui.driver.set_window_size(390, 844)
    ui.driver.get(f"{ui.server.url}/#/messages/{sent.json()['id']}")
    ui.visible("#message-deliveries")
    ui.no_horizontal_scroll()
    # The deliveries are cards whose cells carry their column's name.
    labels = ui.driver.execute_script(
        "return [...document.querySelectorAll('#message-deliveries td')].map((td) =>"
        " getComputedStyle(td, '::before').content);"
    )
    assert labels[:4] == ['"Channel"', '"Status"', '"Attempts"', '"Response code"'], labels
    _screenshots(ui, shots, "message-page")
    ui.assert_console_clean(("/api/v1/me", 401))


def test_the_dashboard_draws_its_charts_lists_the_nodes_and_the_tasks_page_lists_entries(ui, sink):
    api = ui.server.client(ui.server.create_key())
    made = api.post(
        "/api/v1/channels",
        json={"name": "sink", "type": "webhook", "config": {"url": sink.url}, "default": True},
    )
    assert made.status_code == 201, made.text
    sent = api.post("/api/v1/messages", json={"title": "counted"})
    api.wait_message(sent.json()["id"], ("delivered",))
    ui.open()
    ui.login()
    ui.go("dashboard")
    ui.visible("#chart-hourly svg rect[fill]")
    bars = ui.driver.find_elements(By.CSS_SELECTOR, "#chart-hourly svg rect title")
    assert any(": 1" in b.get_attribute("textContent") for b in bars), "no bar for the message"
    ui.wait(lambda d: "webhook" in ui.find("#chart-success").text, "the success rate per type")
    assert "100%" in ui.find("#chart-success").text
    assert ui.find("#chart-success .progress-bar").value_of_css_property("width") != "0px"
    assert ui.driver.find_elements(By.CSS_SELECTOR, "#chart-depth svg polyline")

    ui.wait(lambda d: ui.table("#nodes-body"), "the nodes listed")
    (node,) = ui.table("#nodes-body")
    assert "all" in node and "running" in node, node

    ui.go("tasks")
    ui.visible("#tasks-panel")
    ui.wait(lambda d: ui.table("#tasks-body"), "the tasks listed")
    ui.press("#lang")
    ui.text('#nav a[href="#tasks"]', "任务")
    assert ui.mislabelled(english=False) == []
    ui.press("#lang")
    ui.assert_console_clean(("/api/v1/me", 401))


def test_totp_is_enrolled_with_a_qr_code_and_then_confirms_a_sensitive_action(ui):
    import pyotp

    ui.open()
    ui.login()
    ui.go("account")
    ui.click("#totp-enrol")
    ui.visible("#totp-qr svg path")
    secret = ui.find("#totp-secret").text
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret), secret
    ui.fill("#totp-form", code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    ui.submit("#totp-form")
    ui.error()
    ui.wait(
        lambda d: "is-invalid" in ui.find('#totp-form [name="code"]').get_attribute("class"),
        "the wrong code marked",
    )
    ui.clear_toasts()
    ui.fill("#totp-form", code=pyotp.TOTP(secret).now())
    ui.submit("#totp-form")
    assert ui.success() == "TOTP is on"
    ui.visible("#totp-remove")

    # Removing it is sensitive: the modal takes a fresh TOTP code instead of the password.
    ui.click("#totp-remove")
    totp = pyotp.TOTP(secret)
    ui.confirm(totp.at(time.time() + 30))  # the next step's code: the current one was used
    ui.visible("#totp-enrol")
    ui.assert_console_clean(
        ("/api/v1/me", 401),
        ("/api/v1/me/totp/confirm", 403),
        ("/api/v1/me/totp/confirm", 422),
        ("/api/v1/me/totp", 403),
    )
