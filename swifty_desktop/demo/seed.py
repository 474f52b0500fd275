"""The sample data set: deterministic, realistic, a little nasty, and quick to load.

``seed(engine, "full")`` fills the business tables with about 5,000 products,
3,000 customers and 40,000 orders (about 100,000 order lines) dated over the two
years up to :data:`END_DATE`.  The same size always gives the same rows (a fixed
random seed and fixed dates), so tests and benchmarks can count on them.

The data is meant to exercise the app the way real shops do: names with accents
from fifteen countries (é, ü, ñ, ø, å, ł, ř…), companies and people, several
currencies, open / completed / cancelled orders, a few very loyal customers, and
some tricky values: a product called ``<b>Nuts & Bolts</b>``, customers whose
names start with ``=``, ``+``, ``-`` or ``@`` (spreadsheet formula injection),
inch marks and semicolons in names.

Rows go in with bulk Core inserts, in chunks of a few hundred to a thousand rows,
one short transaction each: the engine writes to the same SQLite file at the same
time, so no transaction here holds the write lock for more than a few tens of
milliseconds.  A database that already holds business data is refused unless
``replace=True``; if loading stops half-way (cancelled, an error), the rows it
added are removed again.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, Table, delete, func, insert, select

from swifty_desktop.db.backup import describe_counts
from swifty_desktop.db.engine import write_transaction
from swifty_desktop.db.models import Customer, Order, OrderLine, Product

SEED = 4_2026
END_DATE = dt.date(2026, 11, 30)  # the last order date; the data spans two years before it
DAYS = 730
START_DATE = END_DATE - dt.timedelta(days=DAYS - 1)
ORDER_BATCH = 250  # orders (with their lines) per transaction: ~20 ms of write lock

PRODUCTS: Table = Product.__table__  # type: ignore[assignment]
CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
ORDERS: Table = Order.__table__  # type: ignore[assignment]
ORDER_LINES: Table = OrderLine.__table__  # type: ignore[assignment]

# The rows the tricky-data tests look for (each size contains all of them).
TRICKY_PRODUCT = "<b>Nuts & Bolts</b>"
TRICKY_CUSTOMERS = (
    '=HYPERLINK("https://example.com/pay","Click to pay")',
    "+Plus Design Studio",
    "-Zero- Waste Shop",
    "@Home Interiors",
)


@dataclasses.dataclass(frozen=True)
class SeedSize:
    products: int
    customers: int
    orders: int


SIZES: dict[str, SeedSize] = {
    "small": SeedSize(products=200, customers=120, orders=600),
    "full": SeedSize(products=5000, customers=3000, orders=40000),
}


class DatabaseNotEmpty(Exception):
    """The database already holds business data; seeding would mix with it."""

    def __init__(self, database: str, counts: dict[str, int], hint: str = "") -> None:
        self.database = database
        self.counts = counts
        held = describe_counts(counts)
        super().__init__(
            f"the database {database} already holds {held}, so the sample data was not "
            "loaded (it would mix with that data); "
            + (hint or "load it with 'replace' to delete that data first, or use an empty "
                       "data directory"))


@dataclasses.dataclass(frozen=True)
class SeedResult:
    size: str
    products: int
    customers: int
    orders: int
    order_lines: int
    replaced: dict[str, int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


Progress = Callable[[float, str], None]


def business_counts(engine: Engine) -> dict[str, int]:
    """Rows in each business table the sample data fills."""
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (("products", PRODUCTS), ("customers", CUSTOMERS),
                                ("orders", ORDERS), ("order_lines", ORDER_LINES))
        }


def database_label(engine: Engine) -> str:
    return engine.url.database or engine.url.render_as_string(hide_password=True)


# ------------------------------------------------------------------ vocabulary
# (country, currency, weight, first names, last names, company suffixes, e-mail domain)
COUNTRIES: tuple[tuple[str, str, int, tuple[str, ...], tuple[str, ...], tuple[str, ...], str],
                 ...] = (
    ("DE", "EUR", 24,
     ("Jürgen", "Günther", "Bärbel", "Jörg", "Uwe", "Anna", "Lena", "Lukas", "Sophie",
      "Maximilian", "Käthe", "Ömer", "Björn", "Fränzi"),
     ("Müller", "Schröder", "Weiß", "Groß", "Köhler", "Bäcker", "Fuchs", "Schmidt", "Krüger",
      "Hoffmann", "Lößl", "Möller", "Schäfer"),
     ("GmbH", "KG", "& Söhne"), "example.de"),
    ("FR", "EUR", 11,
     ("Émilie", "Hélène", "François", "Chloé", "Gaël", "Zoé", "Léa", "Jérôme", "Noël",
      "Inès", "Anaïs", "Maëlle"),
     ("Dubois", "Lefèvre", "Côté", "Gérard", "Moreau", "Bélanger", "Rousseau", "Lemaître",
      "Faure", "Besançon"),
     ("SARL", "SA", "& Fils"), "example.fr"),
    ("ES", "EUR", 8,
     ("José", "María", "Íñigo", "Nuño", "Begoña", "Álvaro", "Lucía", "Martín", "Sofía",
      "Ramón"),
     ("Peña", "Muñoz", "Ibáñez", "Núñez", "García", "Fernández", "Gómez", "Cañizares",
      "Castañeda"),
     ("S.L.", "S.A.", "Hermanos"), "example.es"),
    ("IT", "EUR", 6,
     ("Giulia", "Marco", "Niccolò", "Francesca", "Mattia", "Chiara", "Nicolò"),
     ("Rossi", "Bianchi", "Esposito", "Ricci", "Galli", "D'Angelo", "Fabbrì"),
     ("S.p.A.", "S.r.l."), "example.it"),
    ("NL", "EUR", 5,
     ("Daan", "Sanne", "Joëlle", "Bram", "Fleur", "Thijs"),
     ("de Vries", "van Dijk", "Bakker", "Visser", "Jansen", "van 't Hof"),
     ("B.V.",), "example.nl"),
    ("AT", "EUR", 4,
     ("Florian", "Veronika", "Jakob", "Lea", "Zoë"),
     ("Gruber", "Huber", "Wagner", "Pichler", "Größl", "Mayrhofer"),
     ("GmbH", "OG"), "example.at"),
    ("CH", "CHF", 5,
     ("Reto", "Urs", "Nadja", "Mirjam", "Beat", "Gisèle"),
     ("Meier", "Keller", "Brändli", "Zürcher", "Frühauf", "Rüegg"),
     ("AG", "GmbH"), "example.ch"),
    ("GB", "GBP", 8,
     ("Oliver", "Amelia", "George", "Isla", "Harry", "Siobhán"),
     ("Smith", "O'Brien", "Taylor", "Davies", "Evans", "Ní Bhriain"),
     ("Ltd", "& Co."), "example.co.uk"),
    ("US", "USD", 8,
     ("James", "Olivia", "Liam", "Emma", "Noah", "José"),
     ("Johnson", "Williams", "Brown", "García", "Miller", "O'Connor"),
     ("Inc.", "LLC"), "example.com"),
    ("SE", "SEK", 4,
     ("Åsa", "Björn", "Göran", "Märta", "Linnéa", "Sven"),
     ("Ström", "Åberg", "Lindqvist", "Öberg", "Söderberg"),
     ("AB", "HB"), "example.se"),
    ("DK", "DKK", 3,
     ("Søren", "Mette", "Jørgen", "Frederik", "Line", "Ærø"),
     ("Jørgensen", "Sørensen", "Nielsen", "Kjær", "Høj"),
     ("ApS", "A/S"), "example.dk"),
    ("NO", "NOK", 3,
     ("Øyvind", "Kari", "Åse", "Håkon", "Ingrid"),
     ("Ødegaard", "Bjørnstad", "Haugen", "Næss", "Løvås"),
     ("AS",), "example.no"),
    ("PL", "PLN", 4,
     ("Łukasz", "Małgorzata", "Paweł", "Zofia", "Wojciech", "Agnieszka"),
     ("Wójcik", "Kowalczyk", "Żak", "Nowak", "Wiśniewski", "Szymańska"),
     ("sp. z o.o.", "S.A."), "example.pl"),
    ("CZ", "CZK", 2,
     ("Tomáš", "Jiří", "Věra", "Petra", "Lukáš"),
     ("Dvořák", "Novák", "Černý", "Svoboda", "Růžička"),
     ("s.r.o.", "a.s."), "example.cz"),
    ("PT", "EUR", 2,
     ("João", "Conceição", "Gonçalo", "Inês", "Tiago"),
     ("Gonçalves", "Simões", "Magalhães", "Araújo", "Brandão"),
     ("Lda.", "S.A."), "example.pt"),
)

# Units of the currency per 1 EUR (fixed demo figures; the exchange_rates job fetches
# real ones).
DEMO_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "CHF": 0.95, "SEK": 11.4, "DKK": 7.46,
              "NOK": 11.6, "PLN": 4.3, "CZK": 25.2}

CATEGORIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Kitchen", "KIT", ("Mug", "Teapot", "Knife Set", "Cutting Board", "Espresso Cup",
                        "Salad Bowl", "Frying Pan", "Whisk", "Crêpe Pan")),
    ("Garden", "GAR", ("Hose", "Planter", "Pruning Shears", "Watering Can", "Bird Feeder",
                       "Rake", "Seed Tray")),
    ("Hardware", "HDW", ("Screws 4,5 mm", "Hinge", "Wall Plugs", "Hex Key Set", "Drill Bit",
                         "Padlock", "Spirit Level")),
    ("Office", "OFF", ("Notebook", "Stapler", "Desk Lamp", "Fountain Pen", "Binder",
                       "Paper Tray", "Letter Opener")),
    ("Toys", "TOY", ("Puzzle", "Kite", "Wooden Train", "Plush Bear", "Spinning Top",
                     "Marble Run", "Piñata")),
    ("Décor", "DEC", ("Vase", "Candle Holder", "Picture Frame", "Cushion", "Wall Clock",
                      "Mirror", "Throw")),
    ("Textiles", "TEX", ("Tea Towel", "Blanket", "Table Runner", "Apron", "Scarf",
                         "Tote Bag")),
    ("Food & Drink", "FOD", ("Coffee Beans", "Olive Oil", "Honey", "Müsli", "Chocolate",
                             "Herbal Tea", "Crème Caramel Mix")),
    ("Bathroom", "BTH", ("Towel", "Soap Dish", "Toothbrush Holder", "Bath Mat",
                         "Shower Caddy")),
    ("Lighting", "LGT", ("Pendant Lamp", "LED Strip", "Lantern", "Fairy Lights",
                         "Reading Light")),
    ("Outdoor", "OUT", ("Tent Pegs", "Camping Stove", "Hammock", "Thermos", "Headlamp")),
    ("Electronics", "ELE", ("Charger", "USB-C Cable", "Power Bank", "Earbuds", "Smart Plug")),
)
ADJECTIVES = ("Classic", "Rustic", "Nordic", "Café", "Crème", "Élan", "Fjord", "Señorita",
              "Smørrebrød", "Große", "Petite", "Øresund", "Zürich", "Provençal", "Bohème",
              "Kraków", "Łódź", "Sevilla", "Malmö", "Tromsø", "Açaí", "Brügge", "Ærø",
              "Côte")
MATERIALS = ("Oak", "Walnut", "Steel", "Linen", "Ceramic", "Bamboo", "Copper", "Glass",
             "Wool", "Slate", "Cork", "Brass", "Sage", "Ivory", "Ochre", "Teal")
SIZES_SUFFIX = ("", "", "", "", ", 250 ml", ", 1 l", ' 12"', " (set of 4)", "; large",
                ", 2 × 3 m")
SUPPLIERS = ("Müller & Söhne GmbH", "Søren Trading ApS", "Peña Hermanos S.L.",
             "Lefèvre Frères", "Nordic Goods AB", "Dvořák & Syn s.r.o.", "Hoffmann Werkzeuge",
             "Atelier Côté", "Łódź Manufaktura", "Bianchi S.p.A.", "Acme Supply Co.",
             "O'Neill Imports", "Zürcher Handels AG")

_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l",
                       "Ł": "L", "đ": "d", "Đ": "D", "'": "", " ": "", "&": "", "/": ""})


def ascii_slug(text: str) -> str:
    """'Jørgen Müller' -> 'jorgenmuller' (for e-mail addresses)."""
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-")).lower()


# ------------------------------------------------------------------ generation
def generate_products(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Product rows (without ids), deterministic for a given ``rng`` state."""
    rows: list[dict[str, Any]] = []
    counters: dict[str, int] = {}
    end = dt.datetime.combine(END_DATE, dt.time(18, 0))
    for i in range(n):
        category, code, nouns = CATEGORIES[i % len(CATEGORIES)] if i < len(CATEGORIES) else \
            rng.choice(CATEGORIES)
        counters[code] = counters.get(code, 0) + 1
        sku = f"{code}-{counters[code]:05d}"
        if code == "HDW" and counters[code] == 1:
            name = TRICKY_PRODUCT
        else:
            name = (f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {rng.choice(nouns)}"
                    f"{rng.choice(SIZES_SUFFIX)}")
        price = min(2500.0, max(0.5, rng.lognormvariate(3.0, 1.0)))
        cents = int(price) * 100 + rng.choice((99, 49, 0, 95, 50))
        roll = rng.random()
        currency = "EUR" if roll < 0.85 else "USD" if roll < 0.91 else "GBP" if roll < 0.96 \
            else "CHF"
        stock = 0 if rng.random() < 0.12 else int(rng.expovariate(1 / 80))
        rows.append({
            "sku": sku,
            "name": name,
            "category": category,
            "price_cents": cents,
            "currency": currency,
            "stock": stock,
            "supplier": rng.choice(SUPPLIERS),
            "status": "discontinued" if rng.random() < 0.05 else "active",
            "external_id": None,
            "last_seen_run": None,
            "updated_at": end - dt.timedelta(minutes=rng.randrange(0, DAYS * 24 * 60)),
        })
    return rows


def generate_customers(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Customer rows (without ids); about 60 % have opted in to e-mail."""
    weights = [c[2] for c in COUNTRIES]
    cum = list(_cumulative(weights))
    rows: list[dict[str, Any]] = []
    start = dt.datetime.combine(START_DATE, dt.time(9, 0))
    for i in range(n):
        country, _cur, _w, firsts, lasts, suffixes, domain = COUNTRIES[_pick(rng, cum)]
        first, last = rng.choice(firsts), rng.choice(lasts)
        if i < len(TRICKY_CUSTOMERS):
            name = TRICKY_CUSTOMERS[i]
            local = f"tricky{i + 1}"
        elif rng.random() < 0.15:
            name = f"{last} {rng.choice(suffixes)}"
            local = f"info.{ascii_slug(last)}"
        else:
            name = f"{first} {last}"
            local = f"{ascii_slug(first)}.{ascii_slug(last)}"
        rows.append({
            "name": name,
            "email": f"{local}.{i + 1}@{domain}",
            "country": country,
            "opted_in": rng.random() < 0.6,
            "created_at": start - dt.timedelta(minutes=rng.randrange(0, 600 * 24 * 60)),
        })
    return rows


def _cumulative(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


def _pick(rng: random.Random, cum: Sequence[float]) -> int:
    return min(len(cum) - 1, bisect.bisect_right(cum, rng.random() * cum[-1]))


def generate_orders(rng: random.Random, n: int, products: Sequence[dict[str, Any]],
                    customers: Sequence[dict[str, Any]],
                    ) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``(order, lines)`` pairs in date order.

    ``customer_id`` / ``product_id`` hold 0-based indexes into ``customers`` and
    ``products``; the caller maps them to database ids.
    """
    currency_of = {c[0]: c[1] for c in COUNTRIES}
    # a few loyal customers order a lot (Pareto), most a handful of times
    weights = [min(40.0, rng.paretovariate(1.3)) for _ in customers]
    for i in range(min(len(TRICKY_CUSTOMERS), len(weights))):
        weights[i] = max(weights[i], 4.0)  # the tricky names must show up in orders too
    cust_cum = list(_cumulative(weights))
    prod_cum = list(_cumulative([min(30.0, rng.paretovariate(1.5)) for _ in products]))
    seasonal = [1.0 + (0.6 if d.month in (11, 12) else 0.0) - (0.25 if d.month in (7, 8)
                                                               else 0.0)
                for d in (START_DATE + dt.timedelta(days=k) for k in range(DAYS))]
    day_cum = list(_cumulative(seasonal))
    days = sorted(_pick(rng, day_cum) for _ in range(n))
    for seq, day in enumerate(days, 1):
        order_date = START_DATE + dt.timedelta(days=day)
        c_idx = _pick(rng, cust_cum)
        currency = currency_of[customers[c_idx]["country"]]
        age = (END_DATE - order_date).days
        roll = rng.random()
        if age < 14:
            status = "open" if roll < 0.75 else "completed" if roll < 0.95 else "cancelled"
        else:
            status = "completed" if roll < 0.93 else "cancelled" if roll < 0.98 else "open"
        lines: list[dict[str, Any]] = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6))):
            p_idx = _pick(rng, prod_cum)
            product = products[p_idx]
            qty = rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 5, 10))
            unit = round(product["price_cents"] / DEMO_RATES[product["currency"]]
                         * DEMO_RATES[currency])
            lines.append({
                "product_id": p_idx,
                "sku": product["sku"],
                "description": product["name"],
                "quantity": qty,
                "unit_price_cents": unit,
                "line_total_cents": unit * qty,
            })
        order = {
            "number": f"SO-{order_date.year}-{seq:06d}",
            "customer_id": c_idx,
            "order_date": order_date,
            "status": status,
            "currency": currency,
            "total_cents": sum(line["line_total_cents"] for line in lines),
            "archived_at": None,
        }
        yield order, lines


# ----------------------------------------------------------------------- writing
class _Inserted:
    """Id ranges this run inserted, so that a failed run can remove them again."""

    def __init__(self) -> None:
        self.ranges: dict[str, list[tuple[int, int]]] = {}

    def add(self, table: Table, first: int, last: int) -> None:
        self.ranges.setdefault(table.name, []).append((first, last))


def _next_id(conn: Any, table: Table) -> int:
    return int(conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1


def _insert_with_ids(engine: Engine, table: Table, rows: list[dict[str, Any]],
                     done: _Inserted) -> int:
    """Insert ``rows`` in one short transaction with explicit ids; return the first id.

    The write lock is taken up front (``write_transaction``), so reading max(id)
    and inserting cannot interleave with another writer.
    """
    with write_transaction(engine) as conn:
        first = _next_id(conn, table)
        for offset, row in enumerate(rows):
            row["id"] = first + offset
        conn.execute(insert(table), rows)
    done.add(table, first, first + len(rows) - 1)
    return first


def clear_business_data(engine: Engine, progress: Progress | None = None,
                        check: Callable[[], None] | None = None) -> dict[str, int]:
    """Delete every product, customer, order and order line, a few thousand rows at a time."""
    counts = business_counts(engine)
    total = sum(counts.values()) or 1
    removed = 0
    for table in (ORDER_LINES, ORDERS, CUSTOMERS, PRODUCTS):
        removed += _delete_id_range(engine, table, None, None, check,
                                    lambda n, done=removed: progress and progress(
                                        (done + n) / total, "Removing existing data…"))
    return counts


def _delete_id_range(engine: Engine, table: Table, low: int | None, high: int | None,
                     check: Callable[[], None] | None,
                     on_step: Callable[[int], Any] | None = None, step: int = 2000) -> int:
    with engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
    if lo is None:
        return 0
    lo = max(lo, low) if low is not None else lo
    hi = min(hi, high) if high is not None else hi
    deleted = 0
    start = lo
    while start <= hi:
        if check is not None:
            check()
        stop = min(hi, start + step - 1)
        with write_transaction(engine) as conn:
            deleted += conn.execute(
                delete(table).where(table.c.id >= start, table.c.id <= stop)).rowcount or 0
        start = stop + 1
        if on_step is not None:
            on_step(deleted)
    return deleted


def _undo(engine: Engine, done: _Inserted) -> None:
    for table in (ORDER_LINES, ORDERS, CUSTOMERS, PRODUCTS):
        for first, last in done.ranges.get(table.name, []):
            _delete_id_range(engine, table, first, last, None)


def seed(engine: Engine, size: str = "full", *, replace: bool = False,
         progress: Progress | None = None, check: Callable[[], None] | None = None,
         log: Callable[[str], None] | None = None,
         on_start: Callable[[], None] | None = None) -> SeedResult:
    """Load the sample data set of ``size`` ("small" or "full") into the business tables.

    Refuses (:class:`DatabaseNotEmpty`) when the tables hold data, unless ``replace``
    is true, in which case that data is deleted first.  ``on_start()`` is called
    once that check passed, before the first write.  ``progress(fraction, message)``
    is told how far it got; ``check()`` may raise to stop (then the rows added so far
    are removed again).
    """
    if size not in SIZES:
        raise ValueError(f"unknown sample data size {size!r}; use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    started = time.perf_counter()
    say = progress or (lambda _f, _m: None)
    note = log or (lambda _line: None)
    counts = business_counts(engine)
    replaced: dict[str, int] = {}
    if any(counts.values()) and not replace:
        raise DatabaseNotEmpty(database_label(engine), counts)
    if on_start is not None:
        on_start()
    if any(counts.values()):
        note(f"Deleting existing data: {describe_counts(counts)}")
        replaced = clear_business_data(engine, lambda f, m: say(0.1 * f, m), check)
    rng = random.Random(SEED)
    done = _Inserted()
    try:
        products = generate_products(rng, spec.products)
        customers = generate_customers(rng, spec.customers)
        # products: 0.10-0.20, customers: 0.20-0.25, orders: 0.25-1.0
        product_ids = _load_rows(engine, PRODUCTS, products, 500, done, check,
                                 lambda f: say(0.10 + 0.10 * f, "Adding products…"))
        customer_ids = _load_rows(engine, CUSTOMERS, customers, 500, done, check,
                                  lambda f: say(0.20 + 0.05 * f, "Adding customers…"))
        n_orders = n_lines = 0
        batch: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for pair in generate_orders(rng, spec.orders, products, customers):
            batch.append(pair)
            if len(batch) == ORDER_BATCH:
                n_orders, n_lines = _load_orders(engine, batch, product_ids, customer_ids,
                                                 done, n_orders, n_lines)
                batch = []
                if check is not None:
                    check()
                say(0.25 + 0.75 * n_orders / spec.orders,
                    f"Adding orders: {n_orders:,} of {spec.orders:,}")
        if batch:
            n_orders, n_lines = _load_orders(engine, batch, product_ids, customer_ids, done,
                                             n_orders, n_lines)
    except BaseException:
        note("Stopped before the end; removing the sample rows added so far")
        _undo(engine, done)
        raise
    say(1.0, f"Loaded {len(products):,} products, {len(customers):,} customers and "
             f"{n_orders:,} orders")
    return SeedResult(size=size, products=len(products), customers=len(customers),
                      orders=n_orders, order_lines=n_lines, replaced=replaced,
                      seconds=round(time.perf_counter() - started, 3))


def _load_rows(engine: Engine, table: Table, rows: list[dict[str, Any]], chunk: int,
               done: _Inserted, check: Callable[[], None] | None,
               step: Callable[[float], None]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(rows), chunk):
        if check is not None:
            check()
        part = rows[start:start + chunk]
        first = _insert_with_ids(engine, table, part, done)
        ids.extend(range(first, first + len(part)))
        step(min(1.0, (start + len(part)) / max(1, len(rows))))
    return ids


def _load_orders(engine: Engine, batch: list[tuple[dict[str, Any], list[dict[str, Any]]]],
                 product_ids: list[int], customer_ids: list[int], done: _Inserted,
                 n_orders: int, n_lines: int) -> tuple[int, int]:
    """Insert one batch of orders and their lines in one transaction."""
    with write_transaction(engine) as conn:
        first_order = _next_id(conn, ORDERS)
        first_line = _next_id(conn, ORDER_LINES)
        orders: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for k, (order, order_lines) in enumerate(batch):
            oid = first_order + k
            orders.append({**order, "id": oid, "customer_id": customer_ids[order["customer_id"]]})
            for line in order_lines:
                lines.append({**line, "id": first_line + len(lines), "order_id": oid,
                              "product_id": product_ids[line["product_id"]]})
        conn.execute(insert(ORDERS), orders)
        conn.execute(insert(ORDER_LINES), lines)
    done.add(ORDERS, first_order, first_order + len(orders) - 1)
    done.add(ORDER_LINES, first_line, first_line + len(lines) - 1)
    return n_orders + len(orders), n_lines + len(lines)
