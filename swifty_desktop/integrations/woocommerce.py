"""A client for the WooCommerce REST API v3 products endpoint, as suppliers expose it.

``GET {base_url}/wp-json/wc/v3/products?page=N&per_page=100`` with HTTP Basic auth
(consumer key and secret).  Paging follows ``X-WP-TotalPages`` and the
``Link: <...>; rel="next"`` header.  Transient failures are retried per request by
:mod:`swifty_desktop.integrations.http`; what keeps failing becomes
:class:`SupplierUnavailable` (a TransientError: the engine retries the job), and
what retrying cannot fix (401, 403, 404, a TLS failure, an answer that is not a
product list) a :class:`~swifty_desktop.tasks.TaskError` that says what to fix.  A
``Retry-After`` longer than the request-level cap becomes a SupplierUnavailable
whose ``retry_after`` makes the engine wait at least that long.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests

from swifty_desktop.integrations.http import (
    RETRY_AFTER_MAX_S,
    RETRY_AFTER_STATUSES,
    HttpPolicy,
    describe_exception,
    make_session,
    retries_of,
    retry_after_of,
)
from swifty_desktop.tasks.base import TaskError, TransientError

API_PATH = "/wp-json/wc/v3/products"
SETTINGS_HINT = "Settings › Supplier"


class SupplierUnavailable(TransientError):
    """The supplier kept failing (down, overloaded, timing out); retry later."""


class SupplierRejected(TaskError):
    """The supplier refused us for a reason retrying will not fix."""


@dataclasses.dataclass
class Page:
    number: int
    items: list[dict[str, Any]]
    total: int | None  # X-WP-Total: products in the whole feed
    total_pages: int | None  # X-WP-TotalPages
    has_next: bool
    retries: int  # request-level retries it took to get this page


def endpoint_for(base_url: str) -> str:
    """The products endpoint for a shop address (tolerates a pasted API address)."""
    url = (base_url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SupplierRejected(
            f"the supplier address {url!r} is not a web address; enter the shop's address "
            f"starting with https:// (e.g. https://supplier.example.com) in {SETTINGS_HINT}"
        )
    url = url.split("?", 1)[0].rstrip("/")
    for suffix in (API_PATH, "/wp-json/wc/v3", "/wp-json"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    return url + API_PATH


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _wp_message(body: bytes) -> str:
    """The ``message`` of a WordPress error answer, if the body is one."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return html.unescape(data["message"]).strip()
    return ""


def _snippet(body: bytes, n: int = 80) -> str:
    text = body[:400].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:n] + ("…" if len(text) > n else "")


class WooCommerceClient:
    """Reads a supplier's products, one page at a time, over one Session."""

    def __init__(self, base_url: str, consumer_key: str, consumer_secret: str, *,
                 policy: HttpPolicy | None = None, per_page: int = 100,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint_for(base_url)
        self.base_url = self.endpoint[: -len(API_PATH)]
        self.host = urlsplit(self.endpoint).netloc
        self.policy = policy or HttpPolicy()
        self.per_page = max(1, min(100, int(per_page)))
        self._sleep = sleep
        if not consumer_key or not consumer_secret:
            raise SupplierRejected(
                f"no consumer key and secret for the supplier at {self.base_url}; enter the "
                f"key and secret the supplier gave you in {SETTINGS_HINT}"
            )
        self.session = make_session(self.policy, auth=(consumer_key, consumer_secret))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> WooCommerceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- paging
    def fetch_page(self, number: int) -> Page:
        """Page ``number`` (1-based) of the products feed; see the module doc for errors."""
        params: dict[str, str | int] = {"page": number, "per_page": self.per_page,
                                        "orderby": "id", "order": "asc"}
        retries = 0
        body_failures = 0
        while True:
            try:
                resp = self.session.get(self.endpoint, params=params,
                                        timeout=self.policy.timeout, stream=True)
            except requests.exceptions.SSLError as exc:
                # before RequestException: urllib3 does not retry a TLS failure, and
                # the same certificate or scheme fails the same way next time
                raise SupplierRejected(self._tls_message(number, exc)) from exc
            except requests.exceptions.RequestException as exc:
                # urllib3 has already retried this request with back-off
                raise SupplierUnavailable(
                    f"the supplier at {self.host} did not answer page {number} after "
                    f"{self.policy.retries + 1} tries ({describe_exception(exc)}). The job "
                    "will retry automatically; if this keeps happening, check the supplier's "
                    f"address in {SETTINGS_HINT} or ask the supplier whether their shop is up."
                ) from exc
            retries += retries_of(resp)
            try:
                body = resp.content  # the body can still fail half-way: retry that here
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ConnectionError,
                    requests.exceptions.ContentDecodingError) as exc:
                body_failures += 1
                retries += 1
                if body_failures > self.policy.retries:
                    raise SupplierUnavailable(
                        f"the supplier at {self.host} kept breaking off while sending page "
                        f"{number} ({describe_exception(exc)}, {body_failures} times). The job "
                        "will retry automatically."
                    ) from exc
                self._sleep(min(self.policy.backoff_max,
                                self.policy.backoff * 2 ** (body_failures - 1)))
                continue
            finally:
                resp.close()
            return self._page(number, resp, body, retries)

    def _tls_message(self, number: int, exc: BaseException) -> str:
        text = describe_exception(exc)
        low = text.lower()
        if "certificate" in low:
            hint = ("its certificate is not trusted (expired, self-signed or issued for "
                    "another name). Check that the address is the shop's exact name, or ask "
                    "the supplier to fix their certificate.")
        elif "wrong version number" in low or "record layer" in low or \
                "unexpected eof" in low or "packet length" in low:
            hint = ("it does not speak HTTPS on that port. If the shop is served over plain "
                    "HTTP, its address starts with http://, not https://.")
        else:
            hint = ("check whether the shop's address starts with https:// or http://, and "
                    "whether its certificate is valid.")
        return (f"a secure (TLS) connection to the supplier at {self.host} failed for page "
                f"{number} ({text}): {hint} Correct the address in {SETTINGS_HINT}; retrying "
                "will not help until then.")

    def _page(self, number: int, resp: requests.Response, body: bytes, retries: int) -> Page:
        status = resp.status_code
        where = f"the supplier at {self.base_url}"
        if status in (401, 403, 404) or (400 <= status < 500 and status != 429):
            detail = _wp_message(body)
            detail = f": {detail}" if detail else ""
            if status == 400 and number > 1 and b"invalid_page_number" in body:
                return Page(number, [], None, None, False, retries)  # past the last page
            if status == 401:
                hint = ""
                parts = urlsplit(self.endpoint)
                if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
                    hint = (" WooCommerce accepts a key and secret only over HTTPS: use the "
                            "https:// address of the shop.")
                raise SupplierRejected(
                    f"{where} refused the consumer key and secret (HTTP 401{detail}). Check "
                    f"the consumer key and secret in {SETTINGS_HINT}; in WooCommerce they are "
                    f"under WooCommerce › Settings › Advanced › REST API.{hint}"
                )
            if status == 403:
                raise SupplierRejected(
                    f"{where} does not let this consumer key read products (HTTP 403{detail}). "
                    "Give the key Read permission in WooCommerce › Settings › Advanced › REST "
                    f"API, or ask the supplier for a key that can read products, and enter it "
                    f"in {SETTINGS_HINT}."
                )
            if status == 404:
                raise SupplierRejected(
                    f"there is no WooCommerce products API at {self.endpoint} (HTTP 404"
                    f"{detail}). Check the supplier's address in {SETTINGS_HINT}: it should be "
                    "the shop's home address (e.g. https://supplier.example.com) and the shop "
                    "must have the WooCommerce REST API enabled."
                )
            raise SupplierRejected(
                f"{where} refused the request for page {number} (HTTP {status}{detail}). "
                f"Check the supplier settings in {SETTINGS_HINT}."
            )
        wait = retry_after_of(resp) if status in RETRY_AFTER_STATUSES else None
        if wait is not None and wait > RETRY_AFTER_MAX_S:  # urllib3 stopped at once
            raise SupplierUnavailable(
                f"{where} answered HTTP {status} ({resp.reason or 'error'}) for page "
                f"{number} and asked to wait {wait:.0f} s before trying again (Retry-After). "
                f"The job will retry automatically in {wait:.0f} s or later, going on from "
                f"page {number}.", retry_after=wait)
        if status >= 400:  # 429 and 5xx that urllib3 already retried
            raise SupplierUnavailable(
                f"{where} kept answering HTTP {status} ({resp.reason or 'error'}) for page "
                f"{number} after {self.policy.retries + 1} tries. The job will retry "
                "automatically; if it keeps failing, the supplier's shop may be down."
            )
        try:
            data = json.loads(body.decode(resp.encoding or "utf-8", "replace"))
        except ValueError:
            data = None
        if not isinstance(data, list):
            ctype = resp.headers.get("Content-Type", "no content type")
            raise SupplierRejected(
                f"{where} answered page {number} with something that is not a WooCommerce "
                f"product list ({ctype}, {len(body):,} bytes, starting {_snippet(body)!r}). "
                f"Check the supplier's address in {SETTINGS_HINT}."
            )
        items = [d for d in data if isinstance(d, dict)]
        total = _int_header(resp.headers, "X-WP-Total")
        total_pages = _int_header(resp.headers, "X-WP-TotalPages")
        if total_pages is not None:
            has_next = number < total_pages
        elif "next" in resp.links:
            has_next = True
        else:  # neither header: go on while pages come back full
            has_next = len(items) >= self.per_page
        return Page(number, items, total, total_pages, has_next and bool(items), retries)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        value = int(str(headers.get(name, "")).strip())
    except ValueError:
        return None
    return value if value >= 0 else None


# ------------------------------------------------------------------- mapping
class BadProduct(ValueError):
    """A product in the feed that cannot be stored (no SKU, a price that is no number)."""


def price_cents(value: Any) -> int:
    """``"12.5"`` -> 1250 (half-up); empty -> 0; raises BadProduct for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadProduct(f"price {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise BadProduct(f"price {value!r} is not a valid price")
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def map_product(item: Mapping[str, Any], currency: str) -> dict[str, Any]:
    """A WooCommerce product as the columns of our ``products`` table.

    ``stock`` is None when the supplier does not count stock (keep ours).
    """
    sku = str(item.get("sku") or "").strip()
    if not sku:
        raise BadProduct(f"product {item.get('id', '?')} has no SKU")
    if len(sku) > 64:
        raise BadProduct(f"SKU {sku[:20]!r}… is longer than 64 characters")
    name = html.unescape(str(item.get("name") or "")).strip() or sku
    raw_price = item.get("price")
    if raw_price in (None, ""):
        raw_price = item.get("regular_price")
    categories = item.get("categories") or []
    category = ""
    if isinstance(categories, list) and categories and isinstance(categories[0], dict):
        category = html.unescape(str(categories[0].get("name") or "")).strip()
    stock: int | None
    quantity = item.get("stock_quantity")
    if isinstance(quantity, (int, float)) and not isinstance(quantity, bool):
        stock = max(0, int(quantity))
    elif item.get("stock_status") == "outofstock":
        stock = 0
    else:
        stock = None
    status = "active" if str(item.get("status") or "publish") == "publish" else "discontinued"
    external = item.get("id")
    return {
        "sku": sku,
        "name": name[:200],
        "category": category[:100],
        "price_cents": price_cents(raw_price),
        "currency": currency,
        "stock": stock,
        "status": status,
        "external_id": None if external is None else str(external)[:64],
    }
