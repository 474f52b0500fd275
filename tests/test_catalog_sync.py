"""catalog_sync against real HTTP servers on loopback (a WooCommerce-style shop that
fails on cue), real worker processes and a real SQLite database."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import keyring
import pytest
import requests
from conftest import wait_final, wait_until
from helpers import start_worker, stop
from loopback import WooShop, make_due, use_file_keyring, wait_for, woo_product
from sqlalchemy import select

from swifty_desktop.db.models import Product
from swifty_desktop.integrations.demo_supplier import DemoSupplier, demo_products
from swifty_desktop.integrations.woocommerce import BadProduct, map_product, price_cents
from swifty_desktop.jobs.model import JobStatus, Trigger
from swifty_desktop.jobs.store import JobStore
from swifty_desktop.settings import Settings
from swifty_desktop.tasks import get_kind


def next_attempt(qtbot: Any, manager: Any, job_id: int) -> int:
    """The automatic retry the engine queues right after a transient failure."""
    return int(wait_until(qtbot, lambda: manager.store.get(job_id).superseded_by, 10,
                          f"an automatic retry of job #{job_id}"))

def products(db: Any) -> dict[str, dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(Product.__table__)).mappings().all()
    return {r["sku"]: dict(r) for r in rows}


def expected(item: dict[str, Any]) -> dict[str, Any]:
    """What a product of the feed must look like in our table."""
    whole, _, frac = item["price"].partition(".")
    return {"name": item["name"].replace("&amp;", "&"),
            "price_cents": int(whole) * 100 + int((frac + "00")[:2]),
            "stock": item["stock_quantity"] or 0, "category": item["categories"][0]["name"],
            "status": "active" if item["status"] == "publish" else "discontinued",
            "external_id": str(item["id"]), "currency": "EUR"}


def strip_mark(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {sku: {k: v for k, v in r.items() if k != "last_seen_run"} for sku, r in rows.items()}


def assert_matches_feed(db: Any, feed: list[dict[str, Any]], supplier: str) -> None:
    rows = products(db)
    for item in feed:
        row = rows[item["sku"]]
        assert {k: row[k] for k in expected(item)} == expected(item), item["sku"]
        assert row["supplier"] == supplier


@pytest.fixture(autouse=True)
def file_keyring(monkeypatch: Any, tmp_path: Any) -> Any:
    """Secret job parameters go to the keyring: give these tests (and their workers) one."""
    folder = tmp_path / "keyring"
    folder.mkdir()
    previous = use_file_keyring(monkeypatch, folder)
    yield
    keyring.set_keyring(previous)


def sync_params(shop: WooShop, **extra: Any) -> dict[str, Any]:
    return {"base_url": shop.base_url, "consumer_key": shop.key,
            "consumer_secret": shop.secret, "supplier": "Loopback", **extra}


def test_sync_survives_every_transient_fault_then_changes_nothing_then_discontinues(
        make_manager, qtbot, db) -> None:
    feed = [woo_product(i) for i in range(1, 46)]
    feed[3]["stock_quantity"] = None  # not counted by the supplier
    feed[4]["status"] = "draft"
    with WooShop(feed) as shop:
        shop.fail(1, "503")
        shop.fail(2, "500", "429:3")  # longer than urllib3's own back-off (1 s) here
        shop.fail(3, "reset")
        shop.fail(4, "stall:2.5")  # longer than the 1 s read timeout
        shop.fail(5, "stall_body:2.5", "502", "504")
        manager = make_manager()
        started = time.monotonic()
        first = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", sync_params(shop, per_page=10, timeout=1.0)), timeout=60)
        assert first.status is JobStatus.COMPLETED, first.error
        assert time.monotonic() - started < 30
        assert first.result["fetched"] == 45 and first.result["inserted"] == 45
        assert first.result["updated"] == 0 and first.result["discontinued"] == 0
        assert first.result["pages"] == 5
        assert first.result["retries"] >= 8  # 1 + 2 + 1 + 1 + 3 injected faults
        assert shop.served_pages() == [1, 2, 3, 4, 5]  # each page applied once
        page2 = [(t, what) for t, page, what in shop.log if page == 2]
        assert [what for _, what in page2] == ["500", "429:3", "200"]
        assert page2[2][0] - page2[1][0] >= 2.9  # Retry-After: 3 was honoured
        assert len(manager.store.chain(first.id)) == 1  # no job-level retry was needed
        assert_matches_feed(db, feed, "Loopback")
        before = products(db)

        second = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", sync_params(shop, per_page=10)))
        assert second.status is JobStatus.COMPLETED, second.error
        assert {k: second.result[k] for k in ("inserted", "updated", "discontinued")} == \
            {"inserted": 0, "updated": 0, "discontinued": 0}
        # not one column of one row changed: only the "seen by this sync" mark moved
        assert strip_mark(products(db)) == strip_mark(before)
        assert {r["last_seen_run"] for r in products(db).values()} == {f"sync-{second.id}"}

        gone = {feed[10]["sku"], feed[20]["sku"]}
        shop.products = [p for p in feed if p["sku"] not in gone]
        shop.products[0] = dict(shop.products[0], price="99.99")
        shop.products[4] = dict(shop.products[4], status="publish")  # back from draft
        shop.products.append(woo_product(46))
        third = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", sync_params(shop, per_page=10)))
        assert third.status is JobStatus.COMPLETED, third.error
        assert (third.result["inserted"], third.result["updated"],
                third.result["discontinued"]) == (1, 2, 2)
        rows = products(db)
        assert len(rows) == 46  # discontinued, never deleted
        assert {sku for sku, r in rows.items() if r["status"] == "discontinued"} == gone
        assert rows[feed[0]["sku"]]["price_cents"] == 9999
        assert rows[feed[3]["sku"]]["stock"] == 0  # uncounted stock keeps our value
        assert rows[feed[10]["sku"]]["updated_at"] >= before[feed[10]["sku"]]["updated_at"]
        assert_matches_feed(db, shop.products, "Loopback")


def test_wrong_credentials_and_wrong_address_fail_at_once_saying_what_to_fix(
        make_manager, qtbot) -> None:
    with WooShop([woo_product(1)]) as shop:
        manager = make_manager()
        started = time.monotonic()
        bad_key = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", dict(sync_params(shop), consumer_secret="wrong")))
        assert time.monotonic() - started < 10
        assert bad_key.status is JobStatus.FAILED
        assert not bad_key.error.transient
        assert "HTTP 401" in bad_key.error.message
        assert "consumer key and secret" in bad_key.error.message
        assert "Settings › Supplier" in bad_key.error.message
        assert len(manager.store.chain(bad_key.id)) == 1  # not retried
        assert [what for _, _, what in shop.log] == ["401"]  # asked once, never retried

        bad_url = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", dict(sync_params(shop), base_url=shop.base_url + "/shop")))
        assert bad_url.status is JobStatus.FAILED and not bad_url.error.transient
        assert "HTTP 404" in bad_url.error.message
        assert "/shop/wp-json/wc/v3/products" in bad_url.error.message
        assert "supplier's address" in bad_url.error.message
        assert len(manager.store.chain(bad_url.id)) == 1


def test_a_key_without_read_permission_fails_at_once_with_http_403(make_manager, qtbot) -> None:
    with WooShop([woo_product(1)]) as shop:
        shop.fail(1, "403")
        manager = make_manager()
        job = wait_final(qtbot, manager, manager.submit("catalog_sync", sync_params(shop)))
        assert job.status is JobStatus.FAILED and not job.error.transient
        assert "HTTP 403" in job.error.message and "cannot list resources" in job.error.message
        assert "Read permission" in job.error.message and "Settings › Supplier" in \
            job.error.message
        assert len(manager.store.chain(job.id)) == 1  # not retried
        assert [what for _, _, what in shop.log] == ["403"]  # asked once


def test_https_to_a_plain_http_port_fails_at_once_and_points_at_the_scheme(
        make_manager, qtbot) -> None:
    with WooShop([woo_product(1)]) as shop:
        manager = make_manager()
        started = time.monotonic()
        job = wait_final(qtbot, manager, manager.submit("catalog_sync", dict(
            sync_params(shop), base_url=shop.base_url.replace("http://", "https://"))))
        assert time.monotonic() - started < 15
        assert job.status is JobStatus.FAILED and not job.error.transient, job.error
        message = job.error.message
        assert "secure (TLS) connection" in message and "http://, not https://" in message
        assert "tries" not in message  # urllib3 does not retry TLS failures: no "6 tries"
        assert "Settings › Supplier" in message
        assert len(manager.store.chain(job.id)) == 1
        assert shop.log == []  # a TLS hello is no HTTP request


def test_a_retry_after_above_the_cap_frees_the_worker_and_delays_the_job_retry(
        make_manager, qtbot, db) -> None:
    from swifty_desktop.integrations.http import RETRY_AFTER_MAX_S
    from swifty_desktop.tasks.base import TransientError

    assert "retry_after" in TransientError.__init__.__code__.co_varnames  # the engine's part
    feed = [woo_product(i) for i in range(1, 16)]
    with WooShop(feed) as shop:
        shop.fail(2, f"429:{RETRY_AFTER_MAX_S * 10}")
        manager = make_manager()
        started = time.monotonic()
        first = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", sync_params(shop, per_page=10)), timeout=20)
        failed_at = time.time()
        assert time.monotonic() - started < 15  # nobody slept through the cap
        assert first.status is JobStatus.FAILED and first.error.transient
        assert f"wait {RETRY_AFTER_MAX_S * 10} s" in first.error.message
        assert [(page, what) for _, page, what in shop.log] == \
            [(1, "200"), (2, f"429:{RETRY_AFTER_MAX_S * 10}")]  # no request-level retry
        retry = manager.store.get(next_attempt(qtbot, manager, first.id))
        assert retry.not_before >= failed_at + RETRY_AFTER_MAX_S * 10 - 5  # the server's wait
        make_due(db, retry.id)
        done = wait_final(qtbot, manager, retry.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert done.result["resumed_from_page"] == 2 and done.result["fetched"] == 15


def test_unreadable_rows_foreign_skus_and_one_empty_feed_discontinue_nothing(
        make_manager, qtbot, db) -> None:
    """A bad row is still offered; another supplier's SKU is left alone; an empty feed
    discontinues only on the second empty sync in a row."""
    import datetime as dt

    from sqlalchemy import insert

    with db.begin() as conn:
        conn.execute(insert(Product.__table__).values(
            sku="TP-003", name="Someone else's", category="", price_cents=111, currency="EUR",
            stock=1, supplier="Other Co", status="active", updated_at=dt.datetime(2024, 1, 1)))
    feed = [woo_product(i) for i in range(1, 6)]
    with WooShop(feed) as shop:
        manager = make_manager()

        def sync() -> Any:
            job = wait_final(qtbot, manager, manager.submit("catalog_sync", sync_params(shop)))
            assert job.status is JobStatus.COMPLETED, job.error
            return job

        first = sync()
        assert first.result["inserted"] == 4 and first.result["conflict_count"] == 1
        assert first.result["conflicts"] == [{"sku": "TP-003", "owner": "Other Co"}]
        rows = products(db)
        assert (rows["TP-003"]["supplier"], rows["TP-003"]["name"],
                rows["TP-003"]["price_cents"]) == ("Other Co", "Someone else's", 111)
        assert any("TP-003" in line and "Other Co" in line
                   for _, _, line in manager.store.logs(first.id))

        shop.products = [dict(p, price="twelve") if p["sku"] == "TP-002" else p for p in feed]
        unreadable = sync()
        assert unreadable.result["skipped"] == 1 and unreadable.result["discontinued"] == 0
        assert products(db)["TP-002"]["status"] == "active"  # still offered: kept
        assert products(db)["TP-002"]["price_cents"] == 202  # its last good price

        ours = {f"TP-00{i}" for i in (1, 2, 4, 5)}
        shop.products = []
        empty = sync()
        assert empty.result["discontinued"] == 0 and "next sync" in empty.result["note"]
        shop.products = feed
        assert sync().result["discontinued"] == 0  # not empty: forget the empty one
        shop.products = []
        assert sync().result["discontinued"] == 0  # the first empty one in a row again
        assert {s for s, r in products(db).items() if r["status"] == "active"} == \
            ours | {"TP-003"}
        second = sync()
        assert second.result["discontinued"] == 4
        assert "second sync in a row" in second.result["note"]
        assert {s for s, r in products(db).items() if r["status"] == "active"} == {"TP-003"}


def test_the_checkpoint_does_not_grow_with_the_catalogue(make_manager, qtbot) -> None:
    manager = make_manager()
    sizes = []
    for n in (3, 300):
        with WooShop([woo_product(i) for i in range(1, n + 1)]) as shop:
            job = wait_final(qtbot, manager, manager.submit("catalog_sync", sync_params(shop)))
            assert job.status is JobStatus.COMPLETED, job.error
            assert job.result["fetched"] == n
            sizes.append(len(json.dumps(job.checkpoint)))
    assert sizes[1] - sizes[0] < 40, sizes  # a few more digits, no list of SKUs


def test_a_page_that_keeps_failing_fails_the_job_transient_and_the_retry_resumes(
        make_manager, qtbot, db) -> None:
    feed = [woo_product(i) for i in range(1, 31)]
    with WooShop(feed) as shop:
        shop.down_pages.add(3)
        manager = make_manager()
        first = wait_final(qtbot, manager, manager.submit(
            "catalog_sync", sync_params(shop, per_page=10, retries=1)))
        assert first.status is JobStatus.FAILED
        assert first.error.transient
        assert "HTTP 503" in first.error.message and "retry automatically" in first.error.message
        assert first.checkpoint["next_page"] == 3  # pages 1 and 2 were applied
        assert len(products(db)) == 20
        retry = manager.store.get(next_attempt(qtbot, manager, first.id))
        assert retry.status is JobStatus.QUEUED and retry.not_before > time.time()
        assert retry.trigger.automatic

        shop.down_pages.clear()  # the supplier is back
        repaired_at = time.time()
        make_due(db, retry.id)
        done = wait_final(qtbot, manager, retry.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert done.result["resumed_from_page"] == 3
        assert shop.served_pages(since=repaired_at) == [3]  # pages 1-2 not fetched again
        assert (done.result["fetched"], done.result["inserted"], done.result["pages"]) == \
            (30, 30, 3)
        assert_matches_feed(db, feed, "Loopback")


def test_a_secret_given_as_a_parameter_stays_out_of_the_database(make_manager, qtbot,
                                                                 data_dir) -> None:
    with WooShop([woo_product(i) for i in range(1, 4)], secret="cs_very_secret") as shop:
        manager = make_manager()
        job = wait_final(qtbot, manager, manager.submit("catalog_sync", sync_params(shop)))
        assert job.status is JobStatus.COMPLETED, job.error  # the worker had the secret
        assert job.params["consumer_secret"].startswith("keyring:")
        retry = wait_final(qtbot, manager, manager.submit("fail"))  # more writes, then look
        assert retry.status is JobStatus.FAILED
    for name in ("swifty.db", "swifty.db-wal"):
        path = data_dir.root / name
        if path.exists():
            assert b"cs_very_secret" not in path.read_bytes(), name


@pytest.mark.slow
def test_kill_9_of_the_engine_during_a_sync_then_a_restart_resumes(
        data_dir, db, qtbot, make_manager) -> None:
    feed = [woo_product(i) for i in range(1, 61)]
    with WooShop(feed, page_delay=0.25) as shop:
        store = JobStore(db)
        engine = start_worker(data_dir.root, "--workers", "1")
        params = get_kind("catalog_sync").validate(sync_params(shop, per_page=5))
        job_id = store.insert("catalog_sync", "Sync", params, Trigger("api"))
        wait_for(lambda: (store.get(job_id).checkpoint or {}).get("next_page", 0) >= 4, 60,
                 "the sync to apply a few pages")
        os.kill(engine.pid, signal.SIGKILL)
        stop(engine)
        killed_at = time.time()
        page_at_kill = store.get(job_id).checkpoint["next_page"]
        assert store.get(job_id).status is JobStatus.RUNNING
        assert 4 <= page_at_kill <= 12
        applied = len(products(db))
        assert applied == (page_at_kill - 1) * 5  # each page is applied with its checkpoint

        manager = make_manager()  # restart: recovery re-queues the sync (safe to re-run)
        old = store.get(job_id)
        assert old.status is JobStatus.INTERRUPTED and old.superseded_by is not None
        rerun = wait_final(qtbot, manager, old.superseded_by, timeout=60)
        assert rerun.status is JobStatus.COMPLETED, rerun.error
        assert rerun.result["resumed_from_page"] == page_at_kill
        after = shop.served_pages(since=killed_at)
        assert after == list(range(page_at_kill, 13))  # went on where it stopped
        assert rerun.result["fetched"] == 60 and rerun.result["inserted"] == 60
        assert_matches_feed(db, feed, "Loopback")
        store.close()


def test_demo_supplier_works_out_of_the_box_and_custom_supplier_reads_the_keyring(
        make_manager, qtbot, db, monkeypatch, tmp_path) -> None:
    previous = use_file_keyring(monkeypatch, tmp_path)
    try:
        manager = make_manager()  # workers start after the keyring is set up
        demo = wait_final(qtbot, manager, manager.submit("catalog_sync", {}), timeout=60)
        assert demo.status is JobStatus.COMPLETED, demo.error
        count = len(demo_products())
        assert demo.result["fetched"] == count == demo.result["inserted"]
        assert demo.result["pages"] == -(-count // 100)
        assert demo.result["supplier"] == "Demo supplier"
        assert any("built-in demo supplier" in line for _, _, line in
                   manager.store.logs(demo.id))
        assert_matches_feed(db, [dict(p, stock_quantity=p["stock_quantity"] or 0)
                                 for p in demo_products()], "Demo supplier")
        again = wait_final(qtbot, manager, manager.submit("catalog_sync", {}))
        assert (again.result["inserted"], again.result["updated"],
                again.result["discontinued"]) == (0, 0, 0)

        with WooShop([woo_product(i) for i in range(1, 4)], key="ck_live",
                     secret="cs_from_keyring") as shop:
            settings = Settings(db)
            settings.set("supplier.mode", "custom")
            settings.set("supplier.base_url", shop.base_url)
            settings.set("supplier.consumer_key", "ck_live")
            settings.set("supplier.name", "Acme Wholesale")
            settings.set("supplier.consumer_secret", "cs_from_keyring")  # -> keyring
            assert "supplier.consumer_secret" not in settings.all()  # never in the database
            custom = wait_final(qtbot, manager, manager.submit("catalog_sync", {}))
            assert custom.status is JobStatus.COMPLETED, custom.error
            assert custom.result["supplier"] == "Acme Wholesale"
            assert custom.result["inserted"] == 3 and shop.served_pages() == [1]
            # the demo products belong to another supplier: not discontinued by this one
            assert custom.result["discontinued"] == 0
    finally:
        keyring.set_keyring(previous)


def test_demo_supplier_speaks_woocommerce_paging_and_basic_auth() -> None:
    with DemoSupplier(demo_products(25), consumer_key="ck", consumer_secret="cs") as shop:
        url = shop.base_url + "/wp-json/wc/v3/products"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, auth=("ck", "nope"), timeout=5).status_code == 401
        first = requests.get(url, params={"page": 1, "per_page": 10}, auth=("ck", "cs"),
                             timeout=5)
        assert first.status_code == 200
        assert first.headers["X-WP-Total"] == "25" and first.headers["X-WP-TotalPages"] == "3"
        assert "page=2" in first.links["next"]["url"]
        last = requests.get(first.links["next"]["url"].replace("page=2", "page=3"),
                            auth=("ck", "cs"), timeout=5)
        assert len(last.json()) == 5 and "next" not in last.links
        assert [p["sku"] for p in first.json()] == [f"DEMO-{i:04d}" for i in range(1, 11)]
        assert requests.get(shop.base_url + "/nope", timeout=5).status_code == 404
    assert demo_products() == demo_products()  # deterministic


def test_paging_follows_the_link_header_when_there_is_no_page_count() -> None:
    from swifty_desktop.integrations.http import HttpPolicy
    from swifty_desktop.integrations.woocommerce import WooCommerceClient

    with WooShop([woo_product(i) for i in range(1, 26)], paging="link") as shop:
        client = WooCommerceClient(shop.base_url + "/wp-json/wc/v3/", shop.key, shop.secret,
                                   policy=HttpPolicy(retries=0), per_page=10)
        with client:
            pages = [client.fetch_page(1)]
            while pages[-1].has_next:
                pages.append(client.fetch_page(pages[-1].number + 1))
        assert [len(p.items) for p in pages] == [10, 10, 5]
        assert all(p.total_pages is None for p in pages)
        assert shop.served_pages() == [1, 2, 3]


def test_an_unreachable_supplier_is_transient_and_named_plainly() -> None:
    from loopback import free_port

    from swifty_desktop.integrations.http import HttpPolicy
    from swifty_desktop.integrations.woocommerce import SupplierUnavailable, WooCommerceClient
    from swifty_desktop.tasks import TransientError

    port = free_port()  # nothing listens there
    client = WooCommerceClient(f"http://127.0.0.1:{port}", "k", "s",
                               policy=HttpPolicy(retries=1, backoff=0.01))
    with client, pytest.raises(SupplierUnavailable) as info:
        client.fetch_page(1)
    assert isinstance(info.value, TransientError)  # the engine retries the job later
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "after 2 tries" in message
    assert "connection refused" in message and "retry automatically" in message


def test_product_mapping() -> None:
    assert price_cents("12.5") == 1250 and price_cents("0.005") == 1 and price_cents("") == 0
    with pytest.raises(BadProduct, match="not a number"):
        price_cents("twelve")
    row = map_product({"id": 7, "sku": " A-1 ", "name": "Fish &amp; Chips", "price": "",
                       "regular_price": "3.20", "stock_quantity": None,
                       "stock_status": "outofstock", "status": "private",
                       "categories": [{"name": "Food &amp; Drink"}]}, "USD")
    assert row == {"sku": "A-1", "name": "Fish & Chips", "category": "Food & Drink",
                   "price_cents": 320, "currency": "USD", "stock": 0, "status": "discontinued",
                   "external_id": "7"}
    with pytest.raises(BadProduct, match="no SKU"):
        map_product({"id": 8, "sku": ""}, "EUR")


def test_loopback_requests_bypass_a_configured_proxy(monkeypatch) -> None:
    """HTTP_PROXY pointing at nothing: the demo supplier on 127.0.0.1 is still reached,
    while other hosts would go through the proxy."""
    from loopback import StaticServer

    from swifty_desktop.integrations.http import HttpPolicy, is_loopback, make_session

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with StaticServer({"/ping": (200, "text/plain", b"pong")}) as server:
        with make_session(HttpPolicy()) as session:
            assert session.get(server.base_url + "/ping", timeout=5).text == "pong"
            settings = session.merge_environment_settings(
                "http://supplier.example/x", {}, False, True, None)
            assert settings["proxies"].get("http") == "http://127.0.0.1:9"
    assert is_loopback("http://localhost:8080/") and is_loopback("http://[::1]/")
    assert not is_loopback("http://127.example.com/")
