"""``catalog_sync``: bring the supplier's product catalog into ``products``.

The supplier speaks the WooCommerce REST API v3 (see
:mod:`swifty_desktop.integrations.woocommerce`).  Products are upserted by SKU;
products of this supplier that are no longer in the feed become ``discontinued``
(never deleted); a product whose data did not change is not written at all, so a
second sync with nothing changed updates nothing.

Resuming: every page is applied in one transaction together with the job's
checkpoint (next page and counts), so a re-run after a crash, an engine kill or a
transient failure goes on at the first page not yet applied.  Which products the
feed still offers is marked in the product rows themselves (``last_seen_run``, the
sync's run key, written with the page's upsert), so the checkpoint stays small
however large the catalogue; an unchanged product gets only that mark, its data
and ``updated_at`` stay as they are.  A product the sync cannot store (a price
that is no number) still counts as offered: it is never discontinued for that.

Products of another supplier are never taken over: a feed row whose SKU belongs to
another supplier's product is skipped, logged and listed in the result as a
conflict.  A product without a supplier is adopted by this one.

An empty feed discontinues nothing the first time (a supplier's shop answering an
empty list by mistake must not wipe the catalogue); the sync remembers it, and
the next sync that also finds the feed empty marks the products discontinued.

With the supplier setting on "demo" (the default) and no ``base_url`` given, the
job starts the built-in demo supplier on loopback inside its own worker process
for the duration of the sync.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from swifty_desktop.settings import SettingSpec, register_group
from swifty_desktop.tasks.base import Action, Context, Param, RetryPolicy, TaskError, task

if TYPE_CHECKING:
    from sqlalchemy import Table

SETTINGS = register_group(
    "supplier",
    "Supplier",
    [
        SettingSpec("supplier.mode", "Supplier", type="choice", default="demo",
                    choices=("demo", "custom"),
                    help="demo: a built-in supplier with generated products (works offline); "
                         "custom: the WooCommerce shop below"),
        SettingSpec("supplier.base_url", "Shop address",
                    enabled_when=("supplier.mode", "custom"),
                    help="the supplier's WooCommerce shop, e.g. https://supplier.example.com"),
        SettingSpec("supplier.consumer_key", "Consumer key",
                    enabled_when=("supplier.mode", "custom"),
                    help="ck_… from WooCommerce › Settings › Advanced › REST API (Read access)"),
        SettingSpec("supplier.consumer_secret", "Consumer secret", type="password",
                    enabled_when=("supplier.mode", "custom"),
                    help="cs_…; kept in the system keyring, never in the database"),
        SettingSpec("supplier.name", "Supplier name",
                    enabled_when=("supplier.mode", "custom"),
                    help="stored with its products; empty: the shop's address"),
        SettingSpec("supplier.currency", "Price currency", default="EUR",
                    help="the currency the supplier's prices are in (ISO code, e.g. EUR)"),
    ],
    description="Where Sync catalog reads products from. The demo supplier needs no setup.",
    check="swifty_desktop.integrations.checks:check_supplier",
)

DISCONTINUED = "discontinued"
ACTIVE = "active"
STATE_VERSION = 2  # 2: seen products marked in the rows, not listed here
CONFLICTS_LISTED = 50  # conflicts named in the result (all are counted)
EMPTY_FEEDS_KEY = "catalog_sync.empty_feeds"  # settings row: {supplier: run that found none}


def _title(params: Mapping[str, Any]) -> str:
    url = str(params.get("base_url") or "")
    if url:
        host = re.sub(r"^https?://", "", url).split("/")[0]
        return f"Sync catalog from {host}"
    return "Sync supplier catalog"


def _outcome(result: Mapping[str, Any]) -> str:
    """"12 new and 340 updated products; 3 discontinued"."""
    from swifty_desktop.tasks.base import result_count

    if not result.keys() & {"inserted", "updated"}:
        return ""
    parts = [f"{result_count(result, 'inserted'):,} new and "
             f"{result_count(result, 'updated'):,} updated products"]
    if discontinued := result_count(result, "discontinued"):
        parts.append(f"{discontinued:,} discontinued")
    if conflicts := result_count(result, "conflict_count"):
        parts.append(f"{conflicts:,} skipped (their SKU belongs to another supplier's product)")
    return "; ".join(parts)


@task(
    "catalog_sync",
    title="Sync supplier catalog",
    changes=("products",),
    outcome=_outcome,
    description="Reads the supplier's products (WooCommerce REST API), adds new ones, updates "
                "changed ones and marks those no longer offered as discontinued.",
    params=(
        Param("base_url", "str", label="Shop address",
              help="the supplier's WooCommerce shop, e.g. https://supplier.example.com; "
                   "empty: from Settings › Supplier (the built-in demo supplier by default)"),
        Param("consumer_key", "str", label="Consumer key",
              help="WooCommerce REST API key; empty: from Settings › Supplier"),
        Param("consumer_secret", "str", secret=True, label="Consumer secret",
              help="WooCommerce REST API secret; empty: from the system keyring (Settings › "
                   "Supplier). A secret given here is stored with the job: prefer Settings"),
        Param("currency", "str", label="Currency",
              help="ISO code of the supplier's prices; empty: Settings › Supplier (EUR)"),
        Param("supplier", "str", label="Supplier name",
              help="name stored with the products; empty: from settings or the shop's address"),
        Param("per_page", "int", default=100, minimum=1, maximum=100,
              help="products per request (WooCommerce allows at most 100)"),
        Param("timeout", "float", default=30.0, minimum=0.1, maximum=600,
              help="seconds to wait for each answer from the supplier"),
        Param("retries", "int", default=5, minimum=0, maximum=20,
              help="times a failing request is retried (with back-off) before the job "
                   "fails and is retried as a whole later"),
    ),
    retry=RetryPolicy(max_attempts=5, backoff_base=15.0, backoff_max=600.0,
                      transient=("requests.exceptions:ConnectionError",
                                 "requests.exceptions:Timeout")),
    concurrency=1,
    timeout=3600.0,
    rerun_safe=True,
    title_fn=_title,
    icon="sync",
    actions=(
        Action("Sync supplier catalog", shortcut="Ctrl+Shift+S", icon="sync", menu="Sync",
               toolbar=True,
               tooltip="Read the supplier's catalog: new products, new prices and stock, "
                       "discontinued products",
               ack="Syncing the supplier catalog…"),
    ),
)
def catalog_sync(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    from swifty_desktop.integrations.http import HttpPolicy
    from swifty_desktop.integrations.woocommerce import WooCommerceClient, map_product

    source = _resolve_source(params, ctx)
    demo = None
    if source["mode"] == "demo":
        from swifty_desktop.integrations.demo_supplier import DemoSupplier

        demo = DemoSupplier().start()
        source.update(base_url=demo.base_url, consumer_key=demo.consumer_key,
                      consumer_secret=demo.consumer_secret)
        ctx.log(f"Using the built-in demo supplier ({len(demo.products)} products), serving "
                f"on {demo.base_url} inside this job's worker process")
    try:
        policy = HttpPolicy(read_timeout=float(params.get("timeout") or 30.0),
                            retries=int(params.get("retries", 5)))
        client = WooCommerceClient(source["base_url"], source["consumer_key"],
                                   source["consumer_secret"], policy=policy,
                                   per_page=int(params.get("per_page") or 100))
        with client:
            return _sync(ctx, client, source, map_product)
    finally:
        if demo is not None:
            demo.stop()


# ---------------------------------------------------------------------- source
def _resolve_source(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Where to read from: the parameters, else the settings (demo by default)."""
    from swifty_desktop.settings import Settings

    settings = Settings(ctx.engine())  # type: ignore[attr-defined]

    def setting(key: str) -> str:
        value = settings.get(key)
        return "" if value is None else str(value).strip()

    currency = str(params.get("currency") or setting("supplier.currency") or "EUR").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise TaskError(f"the supplier currency {currency!r} is not a 3-letter ISO code such "
                        "as EUR or USD; correct it in Settings › Supplier or in the job's "
                        "'currency' parameter")
    name = str(params.get("supplier") or "").strip()
    base_url = str(params.get("base_url") or "").strip()
    mode = "custom" if base_url else (setting("supplier.mode") or "demo")
    if mode == "demo":
        return {"mode": "demo", "source": "demo", "currency": currency,
                "supplier": name or "Demo supplier"}
    if mode != "custom":
        raise TaskError(f"the supplier setting is {mode!r}; choose demo or custom in "
                        "Settings › Supplier")
    if not base_url:
        base_url = setting("supplier.base_url")
        if not base_url:
            raise TaskError("the supplier is set to 'custom' but has no shop address; enter "
                            "it in Settings › Supplier, or choose the demo supplier there")
    key = str(params.get("consumer_key") or "").strip() or setting("supplier.consumer_key")
    secret = str(params.get("consumer_secret") or "").strip() or \
        (settings.get_secret("supplier.consumer_secret") or "")
    if not name:
        name = setting("supplier.name") or re.sub(r"^https?://", "", base_url).split("/")[0]
    return {"mode": "custom", "source": base_url.rstrip("/"), "base_url": base_url,
            "consumer_key": key, "consumer_secret": secret, "currency": currency,
            "supplier": name[:120]}


# ------------------------------------------------------------------------ sync
def _root_id(ctx: Context) -> int:
    from sqlalchemy import text

    with ctx.engine().connect() as conn:  # type: ignore[attr-defined]
        root = conn.execute(text("SELECT root_id FROM jobs WHERE id = :id"),
                            {"id": ctx.job_id}).scalar()
    return int(root or ctx.job_id)


def _fresh_state(ctx: Context, source: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "v": STATE_VERSION, "run": f"sync-{_root_id(ctx)}", "source": source["source"],
        "supplier": source["supplier"], "next_page": 1, "total": None, "total_pages": None,
        "fetched": 0, "inserted": 0, "updated": 0, "skipped": 0, "pages": 0,
        "retries": 0, "paging_done": False, "done": False, "discontinued": 0,
        "discontinue_note": "",
        "marked": 0,  # product rows of this supplier marked as still offered
        "unmatched": 0,  # feed rows that marked no product of ours (bad, conflicts)
        "conflict_count": 0, "conflicts": [],  # at most CONFLICTS_LISTED named
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _sync(ctx: Context, client: Any, source: Mapping[str, Any], map_product: Any
          ) -> dict[str, Any]:
    from swifty_desktop.db.engine import write_transaction

    engine = ctx.engine()  # type: ignore[attr-defined]
    state = ctx.resume_state if isinstance(ctx.resume_state, dict) else None
    if state and (state.get("v") != STATE_VERSION or state.get("source") != source["source"]
                  or state.get("supplier") != source["supplier"]):
        ctx.log("The saved progress belongs to another supplier; starting from page 1")
        state = None
    resumed_from = 0
    if state:
        resumed_from = int(state["next_page"])
        ctx.log(f"Resuming at page {resumed_from} ({state['fetched']} products already "
                f"applied by an earlier attempt)")
    else:
        state = _fresh_state(ctx, source)
    started = time.monotonic()

    while not state["paging_done"]:
        ctx.check_cancelled()
        number = int(state["next_page"])
        page = client.fetch_page(number)
        mapped: dict[str, dict[str, Any]] = {}
        bad_skus: set[str] = set()
        for item in page.items:
            try:
                row = map_product(item, source["currency"])
            except ValueError as exc:
                state["skipped"] += 1
                if state["skipped"] <= 10:
                    ctx.log(f"Skipped a product on page {number}: {exc}")
                raw = str(item.get("sku") or "").strip()
                if raw:  # still offered by the supplier: must not be discontinued
                    bad_skus.add(raw[:64])
                else:
                    state["unmatched"] += 1
                continue
            mapped[row["sku"]] = row
        with write_transaction(engine) as conn:
            applied = _apply(conn, list(mapped.values()), source["supplier"], state["run"])
            bad_only = bad_skus - set(mapped)
            kept = _mark_seen(conn, bad_only, source["supplier"], state["run"])
            conflicts = applied["conflicts"]
            state.update(
                next_page=number + 1, paging_done=not page.has_next,
                fetched=state["fetched"] + len(page.items), pages=state["pages"] + 1,
                inserted=state["inserted"] + applied["inserted"],
                updated=state["updated"] + applied["updated"],
                retries=state["retries"] + page.retries,
                marked=state["marked"] + applied["marked"] + kept,
                unmatched=state["unmatched"] + len(conflicts) + len(bad_only) - kept,
                conflict_count=state["conflict_count"] + len(conflicts),
                conflicts=(state["conflicts"] + conflicts)[:CONFLICTS_LISTED],
            )
            if page.total is not None:
                state["total"] = page.total
            if page.total_pages is not None:
                state["total_pages"] = page.total_pages
            ctx.checkpoint(state, conn=conn)  # type: ignore[call-arg]
        for conflict in conflicts[:max(0, 10 - (state["conflict_count"] - len(conflicts)))]:
            ctx.log(f"Skipped SKU {conflict['sku']} on page {number}: it belongs to "
                    f"{conflict['owner']!r}'s product, which {source['supplier']!r} does not "
                    "take over. Give one of them another SKU if they are different products.")
        ctx.log(f"Page {number}{'/' + str(page.total_pages) if page.total_pages else ''}: "
                f"{len(page.items)} products, {applied['inserted']} new, "
                f"{applied['updated']} changed"
                + (f", {len(conflicts)} of another supplier" if conflicts else "")
                + (f" ({page.retries} retries)" if page.retries else ""))
        total_pages = state["total_pages"]
        fraction = min(0.95, number / total_pages * 0.95) if total_pages else None
        ctx.progress(fraction, f"Page {number}" + (f" of {total_pages}" if total_pages else "")
                     + f": {state['fetched']} products")

    if not state["done"]:
        ctx.check_cancelled()
        ctx.progress(0.97, "Marking products no longer offered as discontinued")
        with write_transaction(engine) as conn:
            count, note = _discontinue(conn, source["supplier"], state)
            state.update(done=True, discontinued=count, discontinue_note=note)
            ctx.checkpoint(state, conn=conn)  # type: ignore[call-arg]
        if note:
            ctx.log(note)
    result = {
        "fetched": state["fetched"], "inserted": state["inserted"],
        "updated": state["updated"], "discontinued": state["discontinued"],
        "pages": state["pages"], "retries": state["retries"], "skipped": state["skipped"],
        "supplier": source["supplier"], "resumed_from_page": resumed_from,
        "conflict_count": state["conflict_count"], "conflicts": state["conflicts"],
    }
    if state["discontinue_note"]:
        result["note"] = state["discontinue_note"]
    ctx.log(f"Synced {state['fetched']} products from {source['supplier']} in "
            f"{time.monotonic() - started:.1f} s: {state['inserted']} new, {state['updated']} "
            f"changed, {state['discontinued']} discontinued, {state['retries']} retries")
    ctx.progress(1.0, f"{state['fetched']} products: {state['inserted']} new, "
                      f"{state['updated']} changed, {state['discontinued']} discontinued")
    return result


_COMPARED = ("name", "category", "price_cents", "currency", "stock", "status", "supplier",
             "external_id")


def _apply(conn: Any, rows: list[dict[str, Any]], supplier: str, run: str) -> dict[str, Any]:
    """Upsert one page by SKU and mark its products as seen by ``run``.

    Only rows whose data changed are updated (with ``updated_at``); an unchanged
    row gets just the ``last_seen_run`` mark.  A SKU owned by another supplier is
    left alone and returned in ``conflicts``.  Returns ``inserted``, ``updated``,
    ``marked`` (our rows now marked) and ``conflicts`` (``{"sku", "owner"}``).
    """
    from sqlalchemy import insert, select, update

    from swifty_desktop.db.models import Product

    products = cast("Table", Product.__table__)
    out: dict[str, Any] = {"inserted": 0, "updated": 0, "marked": 0, "conflicts": []}
    if not rows:
        return out
    existing = {
        r.sku: r for r in conn.execute(
            select(products.c.id, products.c.sku, products.c.last_seen_run,
                   *[products.c[c] for c in _COMPARED])
            .where(products.c.sku.in_([r["sku"] for r in rows])))
    }
    now = _now()
    new_rows = []
    unchanged: list[int] = []
    for row in rows:
        values = dict(row, supplier=supplier)
        old = existing.get(row["sku"])
        if old is None:
            values["stock"] = values["stock"] or 0
            new_rows.append(dict(values, last_seen_run=run, updated_at=now))
            continue
        if old.supplier and old.supplier != supplier:
            out["conflicts"].append({"sku": row["sku"], "owner": old.supplier})
            continue
        if values["stock"] is None:  # the supplier does not count it: keep ours
            values["stock"] = old.stock
        changes = {k: values[k] for k in _COMPARED if getattr(old, k) != values[k]}
        if changes:
            conn.execute(update(products).where(products.c.id == old.id)
                         .values(**changes, last_seen_run=run, updated_at=now))
            out["updated"] += 1
        elif old.last_seen_run != run:
            unchanged.append(old.id)
        # counted once per product, however often the feed repeats it
        out["marked"] += old.last_seen_run != run
    if unchanged:
        conn.execute(update(products).where(products.c.id.in_(unchanged))
                     .values(last_seen_run=run))
    if new_rows:
        conn.execute(insert(products), new_rows)
        out["inserted"] = len(new_rows)
        out["marked"] += len(new_rows)
    return out


def _mark_seen(conn: Any, skus: set[str], supplier: str, run: str) -> int:
    """Mark this supplier's products with these SKUs as offered; how many were newly."""
    from sqlalchemy import or_, update

    from swifty_desktop.db.models import Product

    if not skus:
        return 0
    products = cast("Table", Product.__table__)
    res = conn.execute(update(products).where(products.c.sku.in_(sorted(skus)))
                       .where(products.c.supplier == supplier)
                       .where(or_(products.c.last_seen_run.is_(None),
                                  products.c.last_seen_run != run))
                       .values(last_seen_run=run))
    return int(res.rowcount or 0)


def _discontinue(conn: Any, supplier: str, state: Mapping[str, Any]) -> tuple[int, str]:
    """Mark this supplier's active products the feed no longer offers; (count, note)."""
    from sqlalchemy import func, or_, select, update

    from swifty_desktop.db.models import Product
    from swifty_desktop.settings import read_value, write_value

    products = cast("Table", Product.__table__)
    run = state["run"]
    ours = (products.c.supplier == supplier)
    not_seen = or_(products.c.last_seen_run.is_(None), products.c.last_seen_run != run)
    missing = int(conn.execute(select(func.count()).select_from(products)
                               .where(ours).where(products.c.status == ACTIVE)
                               .where(not_seen)).scalar() or 0)
    empty_feeds = read_value(conn, EMPTY_FEEDS_KEY)
    empty_feeds = dict(empty_feeds) if isinstance(empty_feeds, dict) else {}
    earlier_empty = empty_feeds.pop(supplier, None)
    note = ""
    if state["fetched"] == 0:
        if missing and earlier_empty in (None, run):
            empty_feeds[supplier] = run
            write_value(conn, EMPTY_FEEDS_KEY, empty_feeds)
            return 0, (f"The supplier's feed was empty, so none of the {missing} products of "
                       f"{supplier} were marked discontinued this time. If the next sync "
                       "also finds the feed empty, they will be marked discontinued then.")
        if missing:
            note = (f"The supplier's feed was empty for the second sync in a row, so all "
                    f"{missing} products of {supplier} were marked discontinued.")
    write_value(conn, EMPTY_FEEDS_KEY, empty_feeds or None)
    if not missing:
        return 0, ""
    if state["fetched"]:
        marked = int(conn.execute(select(func.count()).select_from(products).where(ours)
                                  .where(products.c.last_seen_run == run)).scalar() or 0)
        if marked < state["marked"]:
            return 0, ("Another sync of this supplier ran while this one was interrupted, so "
                       "no product was marked discontinued this time; the next sync will do it.")
        total = state.get("total")
        if total is not None and marked + state["unmatched"] < total:
            return 0, (f"The supplier's catalog changed while it was being read ({total} "
                       f"products announced, {marked + state['unmatched']} received), so no "
                       "product was marked discontinued this time; the next sync will do it.")
    conn.execute(update(products).where(ours).where(products.c.status == ACTIVE)
                 .where(not_seen).values(status=DISCONTINUED, updated_at=_now()))
    return missing, note
