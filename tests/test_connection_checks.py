"""Settings › Test connection: the checks against real servers on loopback (a
WooCommerce-style shop, aiosmtpd with and without AUTH and TLS, static HTTP feeds, a
closed port, a port that never answers), and the real Settings dialog running them
off the GUI thread, also when it is closed before the answer arrives.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from conftest import wait_until
from loopback import MailServer, StaticServer, WooShop, free_port, self_signed_cert, woo_product
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QComboBox, QLineEdit, QSpinBox

from swifty_desktop import settings as settings_mod
from swifty_desktop.gui.forms import CHECK_COLORS, SecretField, SettingsDialog, running_checks
from swifty_desktop.integrations.checks import (
    CheckResult,
    check_rates,
    check_rates_settings,
    check_smtp,
    check_supplier,
)
from swifty_desktop.settings import Settings

DAILY = (Path(__file__).parent / "servers" / "eurofxref-daily.xml").read_bytes()
SECRET_KEY = "supplier.consumer_secret"


def custom(shop_url: str, key: str = "ck_test_key", secret: str | None = "cs_test_secret",
           **extra: Any) -> dict[str, Any]:
    return {"supplier.mode": "custom", "supplier.base_url": shop_url,
            "supplier.consumer_key": key, SECRET_KEY: secret, **extra}


@pytest.fixture
def shop() -> Iterator[WooShop]:
    with WooShop([woo_product(i) for i in range(1, 1235)]) as server:
        yield server


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    yield int(listener.getsockname()[1])
    listener.close()


# ------------------------------------------------------------------- supplier
def test_supplier_check_reads_one_product_and_counts_the_shop(shop: WooShop) -> None:
    result = check_supplier(custom(shop.base_url))
    assert result == CheckResult(True, f"Connected to {shop.base_url}: 1,234 products.")
    assert [page for _t, page, _what in shop.log] == [1]  # one request, nothing more


def test_supplier_check_uses_the_stored_secret_when_none_is_typed(shop: WooShop) -> None:
    asked: list[str] = []

    def stored(key: str) -> str | None:
        asked.append(key)
        return "cs_test_secret"

    assert check_supplier(custom(shop.base_url, secret=None), stored).ok
    assert asked == [SECRET_KEY]
    typed_wrong = check_supplier(custom(shop.base_url, secret="cs_typed_now"), stored)
    assert not typed_wrong.ok and asked == [SECRET_KEY]  # what is typed wins
    removed = check_supplier(custom(shop.base_url, secret=""), stored)  # "Remove" pressed
    assert not removed.ok
    assert removed.message.startswith("There is no consumer secret (cs_…) to test with")
    neither = check_supplier(custom(shop.base_url, key="", secret=None))
    assert not neither.ok and neither.message.startswith("No consumer key and secret for the "
                                                         f"supplier at {shop.base_url}")


def test_supplier_check_says_the_key_or_secret_is_refused(shop: WooShop) -> None:
    wrong = check_supplier(custom(shop.base_url, secret="cs_wrong"))
    assert not wrong.ok
    assert wrong.message.startswith(f"The supplier at {shop.base_url} refused the consumer "
                                    "key and secret (HTTP 401: Consumer secret is invalid.)")
    assert "WooCommerce › Settings › Advanced › REST API" in wrong.message
    shop.fail(1, "403")
    forbidden = check_supplier(custom(shop.base_url))
    assert not forbidden.ok and "does not let this consumer key read products (HTTP 403" \
        in forbidden.message and "Read permission" in forbidden.message


def test_supplier_check_says_when_the_address_is_no_woocommerce_shop(tmp_path: Path) -> None:
    api = "/wp-json/wc/v3/products"
    with StaticServer({"/": (200, "text/html", b"<html>a blog</html>")}) as blog:
        result = check_supplier(custom(blog.base_url))
        assert not result.ok
        assert f"There is no WooCommerce products API at {blog.base_url}{api} (HTTP 404" \
            in result.message
    page = b"<!DOCTYPE html><html><body>Welcome</body></html>"
    with StaticServer({api: (200, "text/html", page)}) as site:
        result = check_supplier(custom(site.base_url))
        assert not result.ok and "not a WooCommerce product list" in result.message
        assert "<!DOCTYPE html>" in result.message  # what came back instead


def test_supplier_check_cannot_reach_a_closed_port_a_silent_shop_or_an_unknown_name(
        silent_port: int) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = check_supplier(custom(closed))
    assert not result.ok
    assert result.message.startswith(f"Cannot reach {closed}: connection refused")
    assert "Check the shop address" in result.message
    unknown = check_supplier(custom("https://shop.nonexistent.invalid"))
    assert not unknown.ok and unknown.message.startswith(
        "Cannot reach https://shop.nonexistent.invalid: the host name could not be resolved.")
    started = time.monotonic()
    silent = check_supplier(custom(f"http://127.0.0.1:{silent_port}"), timeout=0.5)
    assert time.monotonic() - started < 5
    assert not silent.ok and silent.message.startswith(
        f"The shop at http://127.0.0.1:{silent_port} took the connection but sent no answer "
        "within 0.5 s.")


def test_supplier_check_reports_a_shop_that_is_down_without_retrying(shop: WooShop) -> None:
    shop.fail(1, "503")
    result = check_supplier(custom(shop.base_url))
    assert not result.ok
    assert f"The shop at {shop.base_url} answered HTTP 503" in result.message
    assert "try again in a few minutes" in result.message.lower()
    assert "job" not in result.message  # no job is running: no "the job will retry"
    assert [what for _t, _page, what in shop.log] == ["503"]


def test_supplier_check_needs_nothing_for_the_demo_supplier_and_an_address_for_custom(
        ) -> None:
    demo = check_supplier({"supplier.mode": "demo", "supplier.base_url": "http://x"})
    assert demo.ok and not demo.contacted and "needs no connection" in demo.message
    empty = check_supplier(custom(""))
    assert not empty.ok and "no shop address" in empty.message
    ftp = check_supplier(custom("ftp://shop.example.com"))
    assert not ftp.ok and "is not a web address" in ftp.message


# ----------------------------------------------------------------------- SMTP
def mail(server: Any, **extra: Any) -> dict[str, Any]:
    values = {"mail.smtp_host": server.host, "mail.smtp_port": server.port,
              "mail.smtp_security": "none", "mail.smtp_user": "", "mail.smtp_password": None}
    values.update(extra)
    return values


def test_smtp_check_connects_and_quits_without_sending() -> None:
    with MailServer() as server:
        result = check_smtp(mail(server))
    assert result.ok and result.contacted
    assert result.message == (f"Connected to 127.0.0.1:{server.port} (unencrypted); no user "
                              "is set, so no login was tried. No message was sent.")
    assert server.messages == [] and server.mail_count == 0


def test_smtp_check_logs_in_with_a_typed_or_a_stored_password() -> None:
    with MailServer(auth=("ana@shop.example", "s3cret")) as server:
        typed = check_smtp(mail(server, **{"mail.smtp_user": "ana@shop.example",
                                           "mail.smtp_password": "s3cret"}))
        stored = check_smtp(mail(server, **{"mail.smtp_user": "ana@shop.example"}),
                            lambda key: "s3cret" if key == "mail.smtp_password" else None)
        wrong = check_smtp(mail(server, **{"mail.smtp_user": "ana@shop.example",
                                           "mail.smtp_password": "guess"}))
        missing = check_smtp(mail(server, **{"mail.smtp_user": "ana@shop.example"}),
                             lambda key: None)
    where = f"127.0.0.1:{server.port}"
    assert typed.ok and typed.message == (f"Connected to {where} (unencrypted), logged in as "
                                          "ana@shop.example. No message was sent.")
    assert stored.ok
    assert server.logins == ["ana@shop.example", "ana@shop.example"]
    assert not wrong.ok and wrong.message.startswith(
        f"The mail server {where} refused the user 'ana@shop.example' and its password (535")
    assert not missing.ok
    assert missing.message.startswith("No password is stored for the mail user")
    assert server.messages == []


def test_smtp_check_says_when_the_login_check_is_down_or_the_server_refuses_us() -> None:
    port = free_port()
    with MailServer(port, auth=("mailer", "pw"),
                    auth_reply="454 4.7.0 Temporary authentication failure"):
        busy = check_smtp(mail(MailServer(port), **{"mail.smtp_user": "mailer",
                                                    "mail.smtp_password": "pw"}))
    assert not busy.ok and "454 4.7.0 Temporary authentication failure" in busy.message
    assert "Try again in a few minutes" in busy.message
    with MailServer(port, greeting="554 5.7.1 No SMTP service here"):
        refused = check_smtp(mail(MailServer(port)))
    assert not refused.ok and "554 5.7.1 No SMTP service here" in refused.message
    assert f"127.0.0.1:{port}" in refused.message


def test_smtp_check_needs_starttls_when_starttls_is_chosen() -> None:
    with MailServer() as server:
        result = check_smtp(mail(server, **{"mail.smtp_security": "starttls"}))
    assert not result.ok
    assert f"The mail server 127.0.0.1:{server.port} does not offer STARTTLS" in result.message
    assert "choose security 'ssl'" in result.message


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_smtp_check_encrypts_as_chosen_and_refuses_an_untrusted_certificate(
        tmp_path: Path, monkeypatch: Any, mode: str) -> None:
    cert, key = self_signed_cert(tmp_path)
    with MailServer(tls=(mode, cert, key), auth=("mailer", "pw")) as server:
        values = mail(server, **{"mail.smtp_security": mode, "mail.smtp_user": "mailer",
                                 "mail.smtp_password": "pw"})
        untrusted = check_smtp(values)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as if the OS trusted it
        trusted = check_smtp(values)
    assert not untrusted.ok and "certificate that cannot be trusted" in untrusted.message
    name = {"starttls": "STARTTLS", "ssl": "SSL/TLS"}[mode]
    assert trusted.ok, trusted.message
    assert trusted.message.startswith(f"Connected to 127.0.0.1:{server.port} ({name}), "
                                      "logged in as mailer.")
    assert server.logins == ["mailer"] and server.messages == []


def test_smtp_check_with_ssl_against_a_plain_server_says_which_setting_is_wrong() -> None:
    with MailServer() as server:
        result = check_smtp(mail(server, **{"mail.smtp_security": "ssl"}))
    assert not result.ok
    assert f"secure connection to the mail server 127.0.0.1:{server.port} failed" \
        in result.message
    assert "'ssl' is usually port 465" in result.message


def test_smtp_check_names_host_and_port_when_nothing_answers(silent_port: int) -> None:
    port = free_port()
    refused = check_smtp({"mail.smtp_host": "127.0.0.1", "mail.smtp_port": port,
                          "mail.smtp_security": "none"})
    assert not refused.ok
    assert refused.message.startswith(f"Cannot reach the mail server 127.0.0.1:{port}")
    assert f"nothing accepts connections on port {port}" in refused.message
    started = time.monotonic()
    silent = check_smtp({"mail.smtp_host": "127.0.0.1", "mail.smtp_port": silent_port,
                         "mail.smtp_security": "starttls"}, timeout=0.5)
    assert time.monotonic() - started < 5
    assert not silent.ok
    assert silent.message.startswith(f"No answer from the mail server 127.0.0.1:{silent_port} "
                                     "within 0.5 s")
    assert "check the security choice" in silent.message
    unknown = check_smtp({"mail.smtp_host": "smtp.nonexistent.invalid",
                          "mail.smtp_security": "starttls"})
    assert not unknown.ok and "'smtp.nonexistent.invalid' could not be resolved" \
        in unknown.message and "Check the server name" in unknown.message


def test_smtp_check_without_a_server_explains_the_outbox() -> None:
    result = check_smtp({"mail.smtp_host": "  ", "mail.smtp_security": "starttls"})
    assert result.ok and not result.contacted
    assert "outbox folder" in result.message and ".eml" in result.message


# ---------------------------------------------------------------------- rates
def test_rates_check_reads_the_feed_as_the_job_does() -> None:
    routes = {"/daily.xml": (200, "text/xml", DAILY)}
    with StaticServer(routes) as server:
        url = server.base_url + "/daily.xml"
        result = check_rates(url)
        assert check_rates_settings({"rates.url": f"  {url} "}) == result
    assert result == CheckResult(True, f"Read 30 exchange rates for 2024-05-03 from {url}.")
    assert server.hits == ["/daily.xml", "/daily.xml"]


def test_rates_check_says_what_came_back_instead_of_rates() -> None:
    routes = {"/garbage": (200, "text/plain", b"\x00\x01 no XML here"),
              "/page.html": (200, "text/html", b"<html><body>Shop</body></html>"),
              "/flaky.xml": (200, "text/xml", DAILY)}
    with StaticServer(routes) as server:
        garbage = check_rates(server.base_url + "/garbage")
        page = check_rates(server.base_url + "/page.html")
        missing = check_rates(server.base_url + "/moved.xml")
        server.fail("/flaky.xml", "503")
        down = check_rates(server.base_url + "/flaky.xml")
    assert not garbage.ok and garbage.message.startswith(
        f"The rates address {server.base_url}/garbage is not an ECB euro reference-rates feed")
    assert "it is not XML" in garbage.message
    assert not page.ok and "its root element is <html>" in page.message
    assert not missing.ok and "answered HTTP 404 (Not Found)" in missing.message
    assert "Check the rates address" in missing.message
    assert not down.ok and "HTTP 503" in down.message and "try again" in down.message.lower()
    assert "job" not in down.message
    assert server.hits.count("/flaky.xml") == 1  # no retries in a test


def test_rates_check_cannot_reach_a_closed_port_and_refuses_a_non_web_address() -> None:
    url = f"http://127.0.0.1:{free_port()}/eurofxref-daily.xml"
    closed = check_rates(url)
    assert not closed.ok and closed.message.startswith(f"Cannot reach {url}: connection refused")
    ftp = check_rates("ftp://ecb.example/rates.xml")
    assert not ftp.ok and "is not a web address" in ftp.message


def test_each_settings_page_with_something_to_reach_declares_its_check() -> None:
    checks = {g.name: g.check for g in settings_mod.groups()}
    assert {"supplier", "mail", "rates"} <= {name for name, check in checks.items() if check}
    for name, reference in checks.items():
        if reference:
            assert callable(settings_mod.resolve_check(reference)), name
    with pytest.raises(ValueError, match="package.module:function"):
        settings_mod.resolve_check("no_function_named")


# ------------------------------------------------------------------------ GUI
@pytest.fixture
def settings_store(db: Any, monkeypatch: Any, tmp_path: Any) -> Iterator[Settings]:
    """Settings on the test's database with a file keyring (secrets can be stored)."""
    import keyring
    from loopback import use_file_keyring

    (tmp_path / "keyring").mkdir()
    previous = use_file_keyring(monkeypatch, tmp_path / "keyring")
    yield Settings(db)
    keyring.set_keyring(previous)


def type_into(qtbot: Any, dialog: SettingsDialog, key: str, text: str) -> None:
    field = dialog.fields[key][1]
    edit = field.edit if isinstance(field, SecretField) else field
    assert isinstance(edit, QLineEdit)
    edit.clear()
    qtbot.keyClicks(edit, text)


def test_the_dialog_tests_the_typed_shop_with_the_stored_secret_off_the_gui_thread(
        qtbot: Any, settings_store: Settings) -> None:
    settings_store.set_secret(SECRET_KEY, "cs_test_secret")
    dialog = SettingsDialog(settings_store)
    qtbot.addWidget(dialog)
    dialog.show()
    button, label = dialog.checks["supplier"]
    assert button.text() == "Test connection" and not label.isVisible()
    mode = dialog.fields["supplier.mode"][1]
    assert isinstance(mode, QComboBox)
    with WooShop([woo_product(i) for i in range(1, 4)], page_delay=1.0) as shop:
        mode.setCurrentText("custom")
        type_into(qtbot, dialog, "supplier.base_url", shop.base_url)
        type_into(qtbot, dialog, "supplier.consumer_key", "ck_test_key")
        started = time.monotonic()
        button.click()
        assert time.monotonic() - started < 0.5  # the shop takes 1 s: not on this thread
        assert button.text() == "Testing…" and not button.isEnabled()
        qtbot.waitUntil(label.isVisible, timeout=15000)
    assert label.text() == f"Connected to {shop.base_url}: 3 products."
    assert CHECK_COLORS["ok"] in label.styleSheet()
    assert button.text() == "Test connection" and button.isEnabled()
    assert settings_store.get("supplier.base_url") is None  # tested, not saved

    type_into(qtbot, dialog, "supplier.base_url", f"http://127.0.0.1:{free_port()}")
    button.click()
    qtbot.waitUntil(lambda: button.isEnabled() and label.isVisible(), timeout=15000)
    assert label.text().startswith("Cannot reach http://127.0.0.1:")
    assert CHECK_COLORS["failed"] in label.styleSheet()
    label.setSelection(0, 6)
    assert label.selectedText() == "Cannot"  # the text can be selected and copied
    type_into(qtbot, dialog, "supplier.base_url", "https://shop.example")
    assert label.isHidden()  # the result spoke of the address tested, not of this one


def test_the_dialog_tests_the_mail_server_as_typed(qtbot: Any, settings_store: Settings) -> None:
    dialog = SettingsDialog(settings_store)
    qtbot.addWidget(dialog)
    dialog.show()
    button, label = dialog.checks["mail"]
    dialog.pages.setCurrentIndex(
        next(i for i in range(dialog.pages.count()) if dialog.pages.tabText(i) == "E-mail"))
    button.click()  # no server typed: the outbox
    qtbot.waitUntil(label.isVisible, timeout=15000)
    assert "outbox folder" in label.text() and CHECK_COLORS["neutral"] in label.styleSheet()
    with MailServer() as server:
        type_into(qtbot, dialog, "mail.smtp_host", server.host)
        port = dialog.fields["mail.smtp_port"][1]
        security = dialog.fields["mail.smtp_security"][1]
        assert isinstance(port, QSpinBox) and isinstance(security, QComboBox)
        port.setValue(server.port)
        security.setCurrentText("none")
        button.click()
        qtbot.waitUntil(lambda: button.isEnabled() and "Connected" in label.text(),
                        timeout=15000)
    assert label.text().startswith(f"Connected to 127.0.0.1:{server.port} (unencrypted)")
    assert server.messages == []


def test_a_result_after_the_dialog_closed_is_dropped_and_breaks_nothing(
        qtbot: Any, settings_store: Settings) -> None:
    with WooShop([woo_product(1)], page_delay=1.0) as shop:
        values = custom(shop.base_url)

        def start_check() -> SettingsDialog:
            dialog = SettingsDialog(settings_store)
            dialog.fields["supplier.mode"][1].setCurrentText("custom")  # type: ignore[attr-defined]
            for key in ("supplier.base_url", "supplier.consumer_key", SECRET_KEY):
                type_into(qtbot, dialog, key, values[key])
            dialog.checks["supplier"][0].click()
            assert running_checks() == 1
            return dialog

        closed = start_check()
        qtbot.addWidget(closed)
        closed.show()
        closed.reject()  # Cancel while the shop is still thinking
        button, label = closed.checks["supplier"]
        assert button.text() == "Test connection" and button.isEnabled()
        wait_until(qtbot, lambda: running_checks() == 0, 15, "the check to end")
        qtbot.wait(100)  # the queued result, had anyone listened
        assert label.text() == "" and label.isHidden()
        assert shop.served_pages() == [1]  # it did ask the shop

        deleted = start_check()
        deleted.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        assert not shiboken6.isValid(deleted)
        wait_until(qtbot, lambda: running_checks() == 0, 15, "the check to end")
        qtbot.wait(100)  # a result for a deleted dialog: dropped by Qt, no crash
        assert shop.served_pages() == [1, 1]
