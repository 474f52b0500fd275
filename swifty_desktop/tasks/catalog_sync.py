"""``catalog_sync``: bring the supplier's product catalog into ``products``.

The supplier speaks the WooCommerce REST API v3 (see
:mod:`swifty_desktop.integrations.woocommerce`).  Products are upserted by SKU;
products of this supplier that are no longer in the feed become ``discontinued``
(never deleted); a product whose data did not change is not written at all, so a
second sync with nothing changed updates nothing.

Resuming: every page is applied in one transaction together with the job's
checkpoint (next page, SKUs seen so far, counts), so a re-run after a crash, an
engine kill or a transient failure goes on at the first page not yet applied.
The set of SKUs seen lives in that checkpoint rather than in the product rows, so
an unchanged product is never touched.

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
                    help="the supplier's WooCommerce shop, e.g. https://supplier.example.com"),
        SettingSpec("supplier.consumer_key", "Consumer key",
                    help="ck_… from WooCommerce › Settings › Advanced › REST API (Read access)"),
        SettingSpec("supplier.consumer_secret", "Consumer secret", type="password",
                    help="cs_…; kept in the system keyring, never in the database"),
        SettingSpec("supplier.name", "Supplier name",
                    help="stored with its products; empty: the shop's address"),
        SettingSpec("supplier.currency", "Price currency", default="EUR",
                    help="the currency the supplier's prices are in (ISO code, e.g. EUR)"),
    ],
    description="Where Sync catalog reads products from. The demo supplier needs no setup.",
)

DISCONTINUED = "discontinued"
ACTIVE = "active"
STATE_VERSION = 1


def _title(params: Mapping[str, Any]) -> str:
    url = str(params.get("base_url") or "")
    if url:
        host = re.sub(r"^https?://", "", url).split("/")[0]
        return f"Sync catalog from {host}"
    return "Sync supplier catalog"


@task(
    "catalog_sync",
    title="Sync supplier catalog",
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
        "seen": [], "fetched": 0, "inserted": 0, "updated": 0, "skipped": 0, "pages": 0,
        "retries": 0, "paging_done": False, "done": False, "discontinued": 0,
        "discontinue_note": "",
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
    seen: set[str] = set(state["seen"])
    started = time.monotonic()

    while not state["paging_done"]:
        ctx.check_cancelled()
        number = int(state["next_page"])
        page = client.fetch_page(number)
        mapped: dict[str, dict[str, Any]] = {}
        for item in page.items:
            try:
                row = map_product(item, source["currency"])
            except ValueError as exc:
                state["skipped"] += 1
                if state["skipped"] <= 10:
                    ctx.log(f"Skipped a product on page {number}: {exc}")
                continue
            mapped[row["sku"]] = row
        with write_transaction(engine) as conn:
            inserted, updated = _apply(conn, list(mapped.values()), source["supplier"],
                                       state["run"])
            seen.update(mapped)
            state.update(
                seen=sorted(seen), next_page=number + 1, paging_done=not page.has_next,
                fetched=state["fetched"] + len(page.items), pages=state["pages"] + 1,
                inserted=state["inserted"] + inserted, updated=state["updated"] + updated,
                retries=state["retries"] + page.retries,
            )
            if page.total is not None:
                state["total"] = page.total
            if page.total_pages is not None:
                state["total_pages"] = page.total_pages
            ctx.checkpoint(state, conn=conn)  # type: ignore[call-arg]
        ctx.log(f"Page {number}{'/' + str(page.total_pages) if page.total_pages else ''}: "
                f"{len(page.items)} products, {inserted} new, {updated} changed"
                + (f" ({page.retries} retries)" if page.retries else ""))
        total_pages = state["total_pages"]
        fraction = min(0.95, number / total_pages * 0.95) if total_pages else None
        ctx.progress(fraction, f"Page {number}" + (f" of {total_pages}" if total_pages else "")
                     + f": {state['fetched']} products")

    if not state["done"]:
        ctx.check_cancelled()
        ctx.progress(0.97, "Marking products no longer offered as discontinued")
        with write_transaction(engine) as conn:
            count, note = _discontinue(conn, source["supplier"], seen, state)
            state.update(done=True, discontinued=count, discontinue_note=note)
            ctx.checkpoint(state, conn=conn)  # type: ignore[call-arg]
        if note:
            ctx.log(note)
    result = {
        "fetched": state["fetched"], "inserted": state["inserted"],
        "updated": state["updated"], "discontinued": state["discontinued"],
        "pages": state["pages"], "retries": state["retries"], "skipped": state["skipped"],
        "supplier": source["supplier"], "resumed_from_page": resumed_from,
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


def _apply(conn: Any, rows: list[dict[str, Any]], supplier: str, run: str) -> tuple[int, int]:
    """Upsert one page by SKU; write only rows whose data changed.  (inserted, updated)."""
    from sqlalchemy import insert, select, update

    from swifty_desktop.db.models import Product

    products = cast("Table", Product.__table__)
    if not rows:
        return 0, 0
    existing = {
        r.sku: r for r in conn.execute(
            select(products.c.id, products.c.sku, *[products.c[c] for c in _COMPARED])
            .where(products.c.sku.in_([r["sku"] for r in rows])))
    }
    now = _now()
    inserted = updated = 0
    new_rows = []
    for row in rows:
        values = dict(row, supplier=supplier)
        old = existing.get(row["sku"])
        if old is None:
            values["stock"] = values["stock"] or 0
            new_rows.append(dict(values, last_seen_run=run, updated_at=now))
            continue
        if values["stock"] is None:  # the supplier does not count it: keep ours
            values["stock"] = old.stock
        changes = {k: values[k] for k in _COMPARED if getattr(old, k) != values[k]}
        if changes:
            conn.execute(update(products).where(products.c.id == old.id)
                         .values(**changes, last_seen_run=run, updated_at=now))
            updated += 1
    if new_rows:
        conn.execute(insert(products), new_rows)
        inserted = len(new_rows)
    return inserted, updated


def _discontinue(conn: Any, supplier: str, seen: set[str], state: Mapping[str, Any]
                 ) -> tuple[int, str]:
    """Mark this supplier's active products missing from the feed; (count, note)."""
    from sqlalchemy import select, update

    from swifty_desktop.db.models import Product

    products = cast("Table", Product.__table__)
    active = conn.execute(
        select(products.c.id, products.c.sku)
        .where(products.c.supplier == supplier).where(products.c.status == ACTIVE)
    ).all()
    missing = [pid for pid, sku in active if sku not in seen]
    if not missing:
        return 0, ""
    total = state.get("total")
    if not seen:
        return 0, (f"The supplier's feed was empty, so none of the {len(active)} products of "
                   f"{supplier} were marked discontinued; if the supplier really stopped "
                   "offering everything, run the sync again to confirm.")
    if total is not None and len(seen) + state.get("skipped", 0) < total:
        return 0, (f"The supplier's catalog changed while it was being read ({total} products "
                   f"announced, {len(seen)} received), so no product was marked discontinued "
                   "this time; the next sync will do it.")
    now = _now()
    for start in range(0, len(missing), 500):
        conn.execute(update(products).where(products.c.id.in_(missing[start:start + 500]))
                     .values(status=DISCONTINUED, updated_at=now))
    return len(missing), ""
