"""The built-in demo supplier: a small WooCommerce-style shop on loopback.

A newcomer has no supplier.  With the supplier setting on "demo" (the default),
the ``catalog_sync`` job starts this server inside its own worker process for the
duration of the sync and syncs from it, so *Sync catalog* does something real on
first launch.  It serves deterministic generated products in the WooCommerce REST
API v3 format (``/wp-json/wc/v3/products``, Basic auth, ``X-WP-Total``,
``X-WP-TotalPages`` and ``Link`` headers), bound to 127.0.0.1 only.

    with DemoSupplier() as shop:
        print(shop.base_url, shop.consumer_key, shop.consumer_secret)
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import secrets
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from swifty_desktop.integrations.local_http import LocalHTTPServer

DEMO_SUPPLIER_NAME = "Demo supplier"
DEMO_PRODUCT_COUNT = 240
DEMO_SEED = 20240501
API_PATH = "/wp-json/wc/v3/products"

_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Ergonomic", "Heavy-duty", "Mini",
               "Portable", "Premium", "Pro", "Rustic", "Smart", "Sturdy", "Travel", "Vintage")
_NOUNS = {
    "Kitchen": ("Kettle", "Chef's Knife", "Cutting Board", "Espresso Cups", "Saucepan",
                "Spice Rack"),
    "Office": ("Desk Lamp", "Notebook", "Stapler", "Monitor Stand", "Pen Set", "Desk Organizer"),
    "Garden": ("Watering Can", "Pruning Shears", "Planter", "Garden Hose", "Bird Feeder"),
    "Outdoor": ("Backpack", "Tent", "Water Bottle", "Headlamp", "Camping Stove"),
    "Home": ("Throw Blanket", "Scented Candle", "Wall Clock", "Cushion", "Picture Frame"),
    "Tools": ("Screwdriver Set", "Tape Measure", "Cordless Drill", "Spirit Level", "Toolbox"),
}


def demo_products(count: int = DEMO_PRODUCT_COUNT, seed: int = DEMO_SEED) -> list[dict[str, Any]]:
    """``count`` products in WooCommerce's JSON shape; the same every time for a seed."""
    rng = random.Random(seed)
    categories = sorted(_NOUNS)
    products: list[dict[str, Any]] = []
    for i in range(1, count + 1):
        cat_index = rng.randrange(len(categories))
        category = categories[cat_index]
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS[category])}"
        cents = rng.randrange(299, 24999)
        price = f"{cents // 100}.{cents % 100:02d}"
        managed = rng.random() > 0.1
        quantity = rng.randrange(0, 250) if managed else None
        status = "draft" if rng.random() < 0.03 else "publish"
        products.append({
            "id": 1000 + i,
            "name": name,
            "slug": f"{name.lower().replace(' ', '-')}-{i}",
            "type": "simple",
            "status": status,
            "sku": f"DEMO-{i:04d}",
            "price": price,
            "regular_price": price,
            "sale_price": "",
            "manage_stock": managed,
            "stock_quantity": quantity,
            "stock_status": ("instock" if (quantity is None or quantity > 0) else "outofstock"),
            "categories": [{"id": 10 + cat_index, "name": category,
                            "slug": category.lower()}],
        })
    return products


def _wp_error(code: str, message: str, status: int) -> bytes:
    return json.dumps({"code": code, "message": message, "data": {"status": status}}).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
        return

    def _send(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, self.server.credentials)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != API_PATH:
            self._send(404, _wp_error("rest_no_route", "No route was found matching the URL "
                                      "and request method.", 404))
            return
        if not self._authorized():
            self._send(401, _wp_error("woocommerce_rest_cannot_view",
                                      "Sorry, you cannot list resources.", 401))
            return
        query = parse_qs(parts.query)
        try:
            page = max(1, int(query.get("page", ["1"])[0]))
            per_page = int(query.get("per_page", ["10"])[0])
        except ValueError:
            self._send(400, _wp_error("rest_invalid_param", "Invalid parameter(s): page", 400))
            return
        if not 1 <= per_page <= 100:
            self._send(400, _wp_error("rest_invalid_param",
                                      "Invalid parameter(s): per_page", 400))
            return
        products = self.server.products
        total = len(products)
        pages = max(1, -(-total // per_page))
        chunk = products[(page - 1) * per_page: page * per_page]
        base = f"http://{self.headers.get('Host', '127.0.0.1')}{API_PATH}"
        links = []
        if page < pages:
            links.append(f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"')
        if page > 1:
            links.append(f'<{base}?page={page - 1}&per_page={per_page}>; rel="prev"')
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
        if links:
            headers.append(("Link", ", ".join(links)))
        self._send(200, json.dumps(chunk).encode(), headers)


class _Server(LocalHTTPServer):
    products: list[dict[str, Any]]
    credentials: bytes


class DemoSupplier:
    """The demo shop; ``start()`` serves it from a daemon thread until ``stop()``."""

    def __init__(self, products: list[dict[str, Any]] | None = None, *,
                 consumer_key: str | None = None, consumer_secret: str | None = None) -> None:
        self.products = products if products is not None else demo_products()
        self.consumer_key = consumer_key or "ck_demo_" + secrets.token_hex(8)
        self.consumer_secret = consumer_secret or "cs_demo_" + secrets.token_hex(16)
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the demo supplier is not running")
        return self._server.base_url

    def start(self) -> DemoSupplier:
        server = _Server(_Handler, name="demo-supplier")
        server.products = self.products
        server.credentials = f"{self.consumer_key}:{self.consumer_secret}".encode()
        self._server = server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> DemoSupplier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
