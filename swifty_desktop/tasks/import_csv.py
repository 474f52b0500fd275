"""``import_csv``: products or customers from the CSV files people really make.

How a file is read
    The bytes are checked first: missing, empty, binary (an Excel workbook, a PDF)
    or neither UTF-8 nor Windows-1252 text, the import stops with one sentence
    before anything is written.  UTF-8 with or without BOM, Windows-1252 (Excel's
    "CSV" on Windows) and UTF-16 with BOM (Excel's "Unicode text") are read.  The
    delimiter (comma, semicolon, tab or bar; or Excel's ``sep=`` line) is the one
    that makes the first row name the most known columns.  Header names match in
    any case, order and spacing, with a few common aliases ("E-mail address",
    "Item code"); unknown columns are ignored and named in the log.  Quoted values
    with embedded newlines, CRLF, surrounding spaces and blank lines are fine.

What a row must be
    Every row is validated (required values, numbers, non-negative price and
    stock, ISO 4217 currency, lengths, e-mail syntax).  A key (sku / e-mail) seen
    earlier in the same file is reported, never silently merged.  Valid rows are
    upserted by key (e-mail addresses in any case): a new key inserts, a known one
    updates; an empty optional cell leaves the stored value as it is.  Values are
    trimmed, and the export's guard apostrophe is removed exactly once (see
    :func:`unguard`), so an exported CSV imports back unchanged.

Numbers
    ``12,50``, ``1.234,56`` and ``1,234.5`` show by themselves which separator is
    the decimal one.  ``1,234`` or ``1.000`` do not: for those the file's decimal
    separator is decided once, before anything is written, from the values that do
    show it anywhere in the number columns, or else from the delimiter (Excel
    writes semicolons where the decimal separator is a comma).  If nothing decides
    it, or the file shows both, such a value is rejected with a reason saying how
    to write it; it is never guessed (see :class:`NumberStyle`).

``skip_invalid`` (default) imports the valid rows and writes every rejected row,
with its original values and a ``reason`` naming row, column and problem, to
``<name>.rejects.csv`` in the outputs folder.  ``strict`` validates the whole file
first and writes nothing if any row is invalid; the job then fails, and keeps the
same rejects file listing every invalid row (its error names the file).

How it writes
    A first pass parses the whole file (so a broken file fails before any write,
    progress knows about how many rows to expect, and the decimal separator is
    decided); the second streams it in batches, validated a column at a time.

    ``skip_invalid``: each batch is one short transaction that also saves the job's
    checkpoint, so a killed import never leaves half a batch and a retry (or the
    automatic re-run after an engine crash) goes on after the last committed one.
    A cancelled import says how many rows stay imported.

    ``strict``: the checking pass keeps the converted rows in a temporary file;
    only when every row is valid are they all written in one transaction, so a
    cancelled, failed or killed strict import leaves the database as it was.  The
    write lock is held only for that last pass (on a 2-core machine about 1 s per
    200,000 new rows, 2 s per 200,000 updated ones; other writers, the engine's
    progress updates among them, wait meanwhile), not while the CSV is read and
    checked.

    Memory stays flat apart from duplicate detection, which keeps about 25 bytes
    per row (a table of 64-bit hashes; see :class:`KeyIndex`).
"""

from __future__ import annotations

import bisect
import codecs
import collections
import csv
import dataclasses
import datetime as dt
import hashlib
import io
import itertools
import operator
import os
import re
import time
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

from swifty_desktop.tasks.base import (
    Action,
    Context,
    JobCancelled,
    Param,
    RetryPolicy,
    TaskError,
    task,
)
from swifty_desktop.tasks.export import FORMULA_TRIGGERS, csv_safe, needs_guard

TABLES = ("products", "customers")
MODES = ("skip_invalid", "strict")
DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 64 * 1024
SCAN_BLOCK = 1 << 20
FIRST_BATCH_ROWS = 2000
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 100, 25000
# batches adapt so that one write transaction holds the lock about this long (the
# engine and the GUI write to the same SQLite file; ~100 ms is the most they should wait)
TARGET_TX_S = 0.04
STRICT_EXAMPLES = 5
STRICT_BATCH_ROWS = 5000  # a strict import's write pass is one transaction: no adapting
# 2: a strict import saves one checkpoint, with its commit (1 saved one per batch)
CHECKPOINT_VERSION = 2

# ISO 4217 codes in use (2024), plus a few funds codes that show up in price lists.
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN
ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD
JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT
MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG
QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS
TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU
XBA XBB XBC XBD XCD XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWL
""".split())

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\t]")
_PLAIN_MONEY = re.compile(r"[0-9]{1,11}(?:\.[0-9]{1,2})?")
_SEP_LINE = re.compile(r"\s*sep=(.)\s*", re.IGNORECASE)


class ImportFileError(TaskError):
    """The file cannot be an import at all (nothing was written)."""


class Invalid(ValueError):
    """One value is invalid; the message says why (without row and column)."""


# ------------------------------------------------------------------- values
def _show(raw: str, limit: int = 40) -> str:
    text = raw if len(raw) <= limit else raw[: limit - 1] + "…"
    return repr(text) if not text.isprintable() else f"'{text}'"


def unguard(cell: str) -> str:
    """One cell as the import reads it: surrounding spaces trimmed, and the export's
    guard apostrophe removed again (the exact inverse of
    :func:`swifty_desktop.tasks.export.csv_safe`): "'=SUM(A1)" reads back as
    "=SUM(A1)", "' padded " as " padded ", "''=x" as "'=x"; "It's" stays as it is.
    """
    text = cell.lstrip()
    if text[:1] == "'" and needs_guard(text[1:]):
        return text[1:]
    return cell.strip()


def unguard_all(vals: list[str], cells: Sequence[str]) -> bool:
    """:func:`unguard` the trimmed ``vals`` of ``cells`` that start with an apostrophe,
    in place; return whether any changed."""
    changed = False
    for i, v in enumerate(vals):
        if v[:1] == "'":
            value = unguard(cells[i])
            if value != v:
                vals[i] = value
                changed = True
    return changed


def parse_text(max_len: int, single_line: bool = False) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if _CONTROL.search(value):
            raise Invalid(f"{_show(value)} contains control characters")
        if single_line and _LINE_BREAK.search(value):
            raise Invalid(f"{_show(value)} contains a line break or tab")
        if len(value) > max_len:
            raise Invalid(f"is {len(value)} characters long; at most {max_len} are allowed")
        return value

    return parse


# ------------------------------------------------------------------ numbers
@dataclasses.dataclass(frozen=True)
class NumberStyle:
    """A file's decimal separator, decided once for the whole file (see :func:`prescan`).

    ``decimal`` is "," or ".", or None when the file does not tell; ``why`` says how
    it was decided, as a clause for the reasons of rejected values.  Only a value
    like ``1,234`` or ``1.000`` (one separator, one to three digits before it and
    exactly three after) needs it: every other way of writing a number shows by
    itself which separator is the decimal one (``12,50``, ``1.234,56``, ``1,234.5``).
    """

    decimal: str | None
    why: str


UNDECIDED = NumberStyle(None, "nothing else in the file shows whether its decimal separator "
                              "is a comma or a point")
_SEP_NAME = {",": "comma", ".": "point"}
_NUMBER_NOISE = str.maketrans("", "", "\u00a0\u202f '")  # grouping spaces and apostrophes
_GROUPED = {",": re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+"),
            ".": re.compile(r"[0-9]{1,3}(?:\.[0-9]{3})+")}


class _Number(NamedTuple):
    sign: str
    whole: str
    frac: str
    shows: str | None  # the decimal separator the value's own shape shows, if any
    ambiguous: str  # "1,234" / "1.000": the separator that could be either, else ""


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def read_number(raw: str, symbols: bool = True) -> _Number | None:
    """Split a written number into sign, whole and fraction digits (None: not a number).

    Spaces, no-break spaces and apostrophes group thousands; with ``symbols`` a
    currency sign before or after is ignored.  With both "," and "." the last one is
    the decimal separator and the other must group by threes; several of one kind
    group thousands.  A lone separator is the decimal one unless the value is
    ambiguous (``1,234``): then ``ambiguous`` names it, ``whole``/``frac`` are the
    digits before and after it, and the caller decides with the file's
    :class:`NumberStyle`.
    """
    text = raw.translate(_NUMBER_NOISE)
    if symbols:
        text = text.strip("€$£")
    sign = ""
    if text[:1] in ("+", "-"):
        sign, text = text[0], text[1:]
    comma, dot = text.count(","), text.count(".")
    if not comma and not dot:
        return _Number(sign, text, "", None, "") if _digits(text) else None
    if comma and dot:
        dec = "," if text.rfind(",") > text.rfind(".") else "."
        head, _, frac = text.rpartition(dec)
        if not (_GROUPED["." if dec == "," else ","].fullmatch(head) and _digits(frac)):
            return None
        return _Number(sign, head.translate({44: None, 46: None}), frac, dec, "")
    sep = "," if comma else "."
    if comma + dot > 1:
        if not _GROUPED[sep].fullmatch(text):
            return None
        return _Number(sign, text.replace(sep, ""), "", "." if sep == "," else ",", "")
    head, _, tail = text.partition(sep)
    if not (_digits(head) and _digits(tail)):
        return None
    if len(tail) == 3 and len(head) <= 3 and head[0] != "0":
        return _Number(sign, head, tail, None, sep)
    return _Number(sign, head, tail, sep, "")


def _ambiguous(raw: str, n: _Number, numbers: NumberStyle, what: str) -> Invalid:
    sep = _SEP_NAME[n.ambiguous]
    return Invalid(f"{_show(raw)}: the {sep} could be a thousands separator or the decimal "
                   f"{sep}, and {numbers.why}; write {what} without thousands separators "
                   f"(such as {n.whole}{n.frac})")


def _settle(raw: str, n: _Number, numbers: NumberStyle, what: str, as_decimal: str,
            instead: str) -> tuple[str, str]:
    """The whole and fraction digits of ``n``, once its one ambiguous separator (as in
    ``1,234``) is settled by the file's decimal separator: a thousands separator is
    dropped; read as the decimal separator the value is refused (``as_decimal``, then
    ``instead`` says how to write it); undecided, it is refused as ambiguous."""
    if not n.ambiguous:
        return n.whole, n.frac
    if numbers.decimal is None:
        raise _ambiguous(raw, n, numbers, what)
    if numbers.decimal != n.ambiguous:
        return n.whole + n.frac, ""
    raise Invalid(f"{_show(raw)} {as_decimal}: the {_SEP_NAME[n.ambiguous]} is read as the "
                  f"decimal separator, as {numbers.why}; {instead} (such as {n.whole}{n.frac})")


def parse_money(raw: str, numbers: NumberStyle = UNDECIDED) -> int:
    """Text -> integer cents, exactly; raises Invalid for negatives, > 2 decimals, or a
    value whose meaning depends on a decimal separator ``numbers`` does not decide."""
    if _PLAIN_MONEY.fullmatch(raw):
        whole, _, frac = raw.partition(".")
        return int(whole) * 100 + int(frac.ljust(2, "0"))
    n = read_number(raw)
    if n is None:
        raise Invalid(f"{_show(raw)} is not an amount (write digits, e.g. 12.50)")
    whole, frac = _settle(raw, n, numbers, "amounts", "has more than 2 decimal places",
                          "write at most 2 decimals, and no thousands separators")
    if len(frac) > 2:
        raise Invalid(f"{_show(raw)} has more than 2 decimal places (for thousands, write "
                      "the amount without separators, e.g. 1234.50)")
    if len(whole) > 11:
        raise Invalid(f"{_show(raw)} is too large")
    cents = int(whole) * 100 + int(frac.ljust(2, "0"))
    if n.sign == "-" and cents:
        raise Invalid(f"{_show(raw)} is negative; a price cannot be below 0")
    return cents


def parse_count(raw: str, numbers: NumberStyle = UNDECIDED) -> int:
    """Text -> a whole number >= 0 ('1 000', '12.0' are read too; '1,000' and '1.000'
    as the file's decimal separator decides, see :class:`NumberStyle`)."""
    if _digits(raw):
        whole = raw
    else:
        n = read_number(raw, symbols=False)
        if n is None:
            raise Invalid(f"{_show(raw)} is not a whole number")
        # '1,000' read with a decimal comma would be 1: a stock never has a 3-digit
        # decimal part, so that is much more likely a thousands separator: refused
        whole, frac = _settle(raw, n, numbers, "whole numbers", "is not a whole number",
                              "write whole numbers without separators")
        if frac.strip("0"):
            raise Invalid(f"{_show(raw)} is not a whole number")
        if n.sign == "-" and int(whole):
            raise Invalid(f"{_show(raw)} is negative; stock cannot be below 0")
    if len(whole) > 10 or int(whole) > 2_000_000_000:
        raise Invalid(f"{_show(raw)} is too large")
    return int(whole)


_PLAIN_POINT_LINES = re.compile(r"(?:(?:[0-9]+(?:\.[0-9]{1,2})?)?\n)*(?:[0-9]+(?:\.[0-9]{1,2})?)?")
_PLAIN_COMMA_LINES = re.compile(r"(?:(?:[0-9]+(?:,[0-9]{1,2})?)?\n)*(?:[0-9]+(?:,[0-9]{1,2})?)?")


class NumberEvidence:
    """Collects, from the number columns of a whole file, which decimal separator its
    values show by themselves (``12,50`` shows a comma, ``3.75`` a point), and
    decides the file's :class:`NumberStyle` from that, or from the delimiter."""

    def __init__(self, columns: Sequence[int]) -> None:
        self.columns = list(columns)
        self.seen: dict[str, str] = {}  # separator -> an example value showing it

    def reset(self) -> None:
        self.seen.clear()

    def feed(self, records: list[list[str]]) -> None:
        if len(self.seen) == 2 or not records:
            return
        for idx in self.columns:
            try:
                vals = list(map(operator.itemgetter(idx), records))
            except IndexError:  # short rows: their missing cells are empty
                vals = [r[idx] if len(r) > idx else "" for r in records]
            joined = "\n".join(vals)
            has_comma, has_dot = "," in joined, "." in joined
            if not has_comma and not has_dot:
                continue
            # the usual files, in one regex: plain numbers with one kind of decimal
            # (which shows that kind and nothing else)
            if not has_comma and _PLAIN_POINT_LINES.fullmatch(joined):
                if "." not in self.seen:
                    self.seen["."] = next(v for v in vals if "." in v)
                continue
            if not has_dot and _PLAIN_COMMA_LINES.fullmatch(joined):
                if "," not in self.seen:
                    self.seen[","] = next(v for v in vals if "," in v)
                continue
            for value in set(vals):
                n = read_number(value.strip())
                if n is not None and n.shows and n.shows not in self.seen:
                    self.seen[n.shows] = value.strip()
                    if len(self.seen) == 2:
                        return

    def decide(self, delimiter: str) -> NumberStyle:
        comma, point = self.seen.get(","), self.seen.get(".")
        if comma is not None and point is not None:
            return NumberStyle(None, f"the file writes both decimal commas, such as "
                                     f"{_show(comma)}, and decimal points, such as "
                                     f"{_show(point)}")
        if comma is not None:
            return NumberStyle(",", f"the file writes decimal commas elsewhere, such as "
                                    f"{_show(comma)}")
        if point is not None:
            return NumberStyle(".", f"the file writes decimal points elsewhere, such as "
                                    f"{_show(point)}")
        if delimiter == ";":
            return NumberStyle(",", "the file is semicolon-separated (Excel saves CSV that way "
                                    "where the decimal separator is a comma)")
        if delimiter == ",":
            return NumberStyle(".", "the file is comma-separated (spreadsheets save CSV that "
                                    "way where the decimal separator is a point)")
        return UNDECIDED


def parse_currency(raw: str) -> str:
    code = raw.upper()
    if code not in ISO_4217:
        raise Invalid(f"{_show(raw)} is not an ISO 4217 currency code (such as EUR, USD, GBP)")
    return code


def parse_status(raw: str) -> str:
    value = raw.lower()
    if value not in ("active", "discontinued"):
        raise Invalid(f"{_show(raw)} is not a product status (use active or discontinued)")
    return value


def parse_email(raw: str) -> str:
    value = raw.lower()
    if len(value) > 254:
        raise Invalid(f"is {len(value)} characters long; at most 254 are allowed")
    local = value.partition("@")[0]
    if not _EMAIL.fullmatch(value) or len(local) > 64:
        raise Invalid(f"{_show(raw)} is not a valid e-mail address")
    return value


def parse_country(raw: str) -> str:
    code = raw.upper()
    if len(code) != 2 or not ("A" <= code[0] <= "Z" and "A" <= code[1] <= "Z"):
        raise Invalid(f"{_show(raw)} is not a two-letter country code (such as DE, FR, US)")
    return code


_TRUE = frozenset(("1", "yes", "y", "true", "t", "x", "on", "ja", "oui", "si", "sí", "opted in"))
_FALSE = frozenset(("0", "no", "n", "false", "f", "off", "nein", "non", "opted out", "-"))


def parse_bool(raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Invalid(f"{_show(raw)} is not yes or no")


# ------------------------------------------------------------------ tables
def norm_header(text: str) -> str:
    """'  E-Mail Address ' -> 'emailaddress' (case, spacing and punctuation ignored)."""
    folded = unicodedata.normalize("NFKD", text.strip().lstrip("\ufeff")).lower()
    return "".join(ch for ch in folded if ch.isalnum() and ch.isascii())


# ------------------------------------------------- whole-column fast checks
# Validating a column of a few thousand values at once (one regex over the joined
# text, one set of distinct values) costs a fraction of calling a parser per value.
# A fast check either returns the whole converted column or None: then each value
# goes through the field's parser, which names the problem.  Both give the same
# values for valid input (a test checks that).
_MONEY_LINES = re.compile(r"(?:[0-9]{1,11}(?:\.[0-9]{1,2})?\n)*[0-9]{1,11}(?:\.[0-9]{1,2})?")
_EMAIL_ONE = (r"(?=[^@\n]{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
              r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_EMAIL_LINES = re.compile(rf"(?:{_EMAIL_ONE}\n)*{_EMAIL_ONE}")


def fast_text(max_len: int, single_line: bool, required: bool
              ) -> Callable[[list[str], str], list[Any] | None]:
    def check(vals: list[str], joined: str) -> list[Any] | None:
        if _CONTROL.search(joined) or (single_line and _LINE_BREAK.search(joined)):
            return None
        if max(map(len, vals)) > max_len:
            return None
        if "" in vals:
            return None if required else [v or None for v in vals]
        return vals

    return check


def fast_money(vals: list[str], _joined: str = "") -> list[Any] | None:
    if "" in vals or not _MONEY_LINES.fullmatch("\n".join(vals)):
        return None
    return [round(float(v) * 100) for v in vals]


def fast_count(vals: list[str], joined: str) -> list[Any] | None:
    if "" in vals or not (joined.isascii() and joined.isdigit()) or max(map(len, vals)) > 9:
        return None
    return list(map(int, vals))


def fast_email(vals: list[str], _joined: str = "") -> list[Any] | None:
    joined = "\n".join(vals).lower()
    if "" in vals or max(map(len, vals)) > 254 or not _EMAIL_LINES.fullmatch(joined):
        return None
    return joined.split("\n")


def fast_lookup(parse: Callable[[str], Any], required: bool
                ) -> Callable[[list[str], str], list[Any] | None]:
    """For columns with few distinct values (currency, status): parse each once."""
    def check(vals: list[str], _joined: str = "") -> list[Any] | None:
        distinct = set(vals)
        if len(distinct) > 256:
            return None
        conv: dict[str, Any] = {}
        for raw in distinct:
            if not raw:
                if required:
                    return None
                conv[raw] = None
                continue
            try:
                conv[raw] = parse(raw)
            except Invalid:
                return None
        return list(map(conv.__getitem__, vals))

    return check


@dataclasses.dataclass(frozen=True)
class Field:
    """One importable column: its name, header aliases and how a value is checked."""

    name: str
    column: str  # the database column it fills
    # one read (see unguard), non-empty value -> stored value, or Invalid; a number
    # field's parser also takes the file's NumberStyle
    parse: Callable[..., Any]
    # a whole column at once (its values, and those joined), or None
    fast: Callable[[list[str], str], list[Any] | None]
    required: bool = False
    default: Any = None  # for new rows when the cell is empty or the column absent
    aliases: tuple[str, ...] = ()
    number: bool = False  # its value depends on the file's decimal separator

    def matches(self) -> tuple[str, ...]:
        return (norm_header(self.name), *(norm_header(a) for a in self.aliases))


def _text(name: str, column: str, max_len: int, *, required: bool = False,
          single_line: bool = False, default: Any = None,
          aliases: tuple[str, ...] = ()) -> Field:
    return Field(name, column, parse_text(max_len, single_line),
                 fast_text(max_len, single_line, required), required, default, aliases)


def _lookup(name: str, column: str, parse: Callable[[str], Any], *, default: Any,
            aliases: tuple[str, ...] = ()) -> Field:
    return Field(name, column, parse, fast_lookup(parse, False), False, default, aliases)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    name: str
    key: str  # the field that identifies a row (upsert key)
    fields: tuple[Field, ...]
    read_only: tuple[str, ...]  # exported columns the import knowingly leaves alone
    stamp: str  # column set to the import time
    stamp_on_update: bool  # also on updates (products.updated_at) or only on insert

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    @property
    def key_pos(self) -> int:
        return [f.name for f in self.fields].index(self.key)


SPECS: dict[str, TableSpec] = {
    "products": TableSpec(
        name="products", key="sku",
        fields=(
            _text("sku", "sku", 64, required=True, single_line=True,
                  aliases=("item code", "item no", "article number", "article no",
                           "product code", "code", "ref", "reference", "art nr")),
            _text("name", "name", 200, required=True,
                  aliases=("product name", "product", "title", "item name")),
            _text("category", "category", 100, default="",
                  aliases=("product category", "group", "product group")),
            Field("price", "price_cents", parse_money, fast_money, required=True,
                  aliases=("unit price", "sales price", "retail price"), number=True),
            _lookup("currency", "currency", parse_currency, default="EUR",
                    aliases=("currency code", "ccy", "cur")),
            Field("stock", "stock", parse_count, fast_count, default=0,
                  aliases=("qty", "quantity", "on hand", "stock qty", "in stock",
                           "inventory"), number=True),
            _text("supplier", "supplier", 120, default="",
                  aliases=("vendor", "manufacturer")),
            _lookup("status", "status", parse_status, default="active", aliases=("state",)),
        ),
        read_only=("id", "updated_at", "external_id"),
        stamp="updated_at", stamp_on_update=True,
    ),
    "customers": TableSpec(
        name="customers", key="email",
        fields=(
            Field("email", "email", parse_email, fast_email, required=True,
                  aliases=("e-mail", "email address", "e-mail address", "mail")),
            _text("name", "name", 200, required=True,
                  aliases=("customer name", "full name", "customer", "company")),
            _lookup("country", "country", parse_country, default="",
                    aliases=("country code", "land")),
            _lookup("opted_in", "opted_in", parse_bool, default=False,
                    aliases=("opt in", "newsletter", "marketing opt in", "subscribed",
                             "consent", "notifications")),
        ),
        read_only=("id", "created_at"),
        stamp="created_at", stamp_on_update=False,
    ),
}


# ---------------------------------------------------------------- file checks
@dataclasses.dataclass(frozen=True)
class FileFormat:
    """What the first look at a file found; everything the readers need."""

    path: Path
    size: int
    encoding: str  # a Python codec name
    encoding_label: str
    delimiter: str
    sep_line: bool  # the file starts with Excel's "sep=;" line
    header: list[str]
    header_row: int  # 1-based record number of the header
    mapping: dict[str, int]  # field name -> column index
    ignored: list[str]  # header names of unknown columns
    read_only: list[str]
    fingerprint: dict[str, Any]


_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"SQLite format 3", "a SQLite database"),
)


def _label(path: Path) -> str:
    return path.name or str(path)


def check_file(path: Path) -> tuple[int, str, str]:
    """Size, codec and label of a readable text file, or ImportFileError."""
    name = _label(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImportFileError(
            f"Nothing was imported: the file {path} does not exist; check its name and "
            "folder, then import it again.") from None
    except OSError as exc:
        raise ImportFileError(
            f"Nothing was imported: {path} cannot be opened ({exc.strerror or exc}); "
            "check that the file is reachable and that you may read it.") from None
    if path.is_dir():
        raise ImportFileError(f"Nothing was imported: {path} is a folder, not a file; "
                              "choose a CSV file.")
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ImportFileError(
            f"Nothing was imported: {path} cannot be read ({exc.strerror or exc}); check "
            "that you may read it and that no other program has it locked.") from None
    with fh:
        head = fh.read(SNIFF_BYTES)
        if not _has_content(head, fh):
            raise ImportFileError(
                f"Nothing was imported: {name} is empty; choose a CSV file with a header row "
                "and at least one data row.")
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise ImportFileError(
                    f"Nothing was imported: {name} is {what}, not a CSV file; open it in its "
                    "program and save or export it as CSV (in Excel: File › Save As › CSV "
                    "UTF-8), then import that file.")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            codec, label = "utf-16", "UTF-16"
        elif head.startswith(codecs.BOM_UTF8):
            codec, label = "utf-8-sig", "UTF-8 with BOM"
        else:
            codec, label = "utf-8", "UTF-8"
        fh.seek(0)
        bad = _scan(fh, codec, check_nul=codec != "utf-16")
        if bad is not None and bad[0] == "nul":
            raise ImportFileError(
                f"Nothing was imported: {name} is not a text file (it contains binary data "
                f"at byte {bad[1]:,}); save it as CSV and import that file.")
        if bad is not None and codec == "utf-8":
            fh.seek(0)
            first_bad = bad[1]
            bad = _scan(fh, "cp1252", check_nul=False)
            if bad is None:
                codec, label = "cp1252", "Windows-1252"
            else:
                raise ImportFileError(
                    f"Nothing was imported: {name} is neither UTF-8 nor Windows-1252 text "
                    f"(unreadable byte at position {first_bad:,}); save it as 'CSV UTF-8' "
                    "and import it again.")
        elif bad is not None:
            raise ImportFileError(
                f"Nothing was imported: {name} starts like {label} text but is not valid "
                f"{label} (at byte {bad[1]:,}); save it as 'CSV UTF-8' and import it again.")
    return st.st_size, codec, label


_BLANK_BYTES = b" \t\r\n\xef\xbb\xbf\x00\xff\xfe"  # white space, NULs, byte-order marks


def _has_content(head: bytes, fh: Any) -> bool:
    """Whether the file holds anything but blank bytes (``head`` is its start; the rest
    is read from ``fh`` only while everything so far was blank)."""
    block = head
    while block:
        if block.translate(None, _BLANK_BYTES):
            return True
        block = fh.read(SCAN_BLOCK)
    return False


def _scan(fh: Any, codec: str, check_nul: bool) -> tuple[str, int] | None:
    """Decode the whole file once: None if fine, else ("nul" | "decode", byte offset)."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    offset = 0
    while True:
        block = fh.read(SCAN_BLOCK)
        if check_nul:
            pos = block.find(b"\x00")
            if pos >= 0:
                return "nul", offset + pos
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            return "decode", offset + max(0, exc.start)
        if not block:
            return None
        offset += len(block)


def _fingerprint(path: Path, size: int) -> dict[str, Any]:
    st = path.stat()
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        fh.seek(max(0, size - SNIFF_BYTES))
        tail = fh.read(SNIFF_BYTES)
    return {"size": size, "mtime_ns": st.st_mtime_ns,
            "sha1": hashlib.sha1(head + tail).hexdigest()}


def inspect_file(path: Path, spec: TableSpec) -> FileFormat:
    """Check the file and read its header; ImportFileError if it cannot be an import."""
    size, codec, label = check_file(path)
    name = _label(path)
    with open(path, encoding=codec, newline="", errors="replace") as fh:
        # blank lines before the header (any number of them) are records of their own
        blank_lines = 0
        line = fh.readline()
        while line and not line.strip():
            blank_lines += 1
            line = fh.readline()
        sample = line + fh.read(SNIFF_BYTES)
    sep_line = False
    forced: str | None = None
    first_line = sample.split("\n", 1)[0].rstrip("\r")
    m = _SEP_LINE.fullmatch(first_line) if not blank_lines else None
    if m:
        forced, sep_line = m.group(1), True
        sample = sample.split("\n", 1)[1] if "\n" in sample else ""
    known = {alias: f.name for f in spec.fields for alias in f.matches()}
    read_only = {norm_header(r) for r in spec.read_only}
    best: tuple[int, int, str, list[str], int] | None = None
    for delim in ((forced,) if forced else DELIMITERS):
        header, row = _first_record(sample, delim)
        score = len({known[norm_header(h)] for h in header if norm_header(h) in known})
        candidate = (score, len(header), delim, header, row)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    assert best is not None
    score, _, delimiter, header, header_row = best
    header_row += blank_lines + (1 if sep_line else 0)
    if not header:
        raise ImportFileError(f"Nothing was imported: {name} has no header row; the first "
                              "row must name the columns (" + ", ".join(
                                  f.name for f in spec.fields) + ").")
    shown = ", ".join(h.strip() or "(blank)" for h in header[:12]) + \
        (", …" if len(header) > 12 else "")
    if score == 0:
        raise ImportFileError(
            f"Nothing was imported: {name} does not look like a {spec.name} file, as its "
            f"first row ({shown}) names none of the columns "
            f"{', '.join(f.name for f in spec.fields)}; choose the right file, or add a "
            f"header row naming at least {' and '.join(spec.required)}.")
    mapping: dict[str, int] = {}
    ignored: list[str] = []
    ro: list[str] = []
    for idx, raw in enumerate(header):
        key = norm_header(raw)
        field = known.get(key)
        if field is None:
            if key in read_only:
                ro.append(raw.strip())
            elif key != "reason":  # a rejects file's reason column, when re-imported
                ignored.append(raw.strip() or f"(column {idx + 1})")
            continue
        if field in mapping:
            raise ImportFileError(
                f"Nothing was imported: in {name}, the columns '{header[mapping[field]].strip()}'"
                f" and '{raw.strip()}' both mean {field}; delete or rename one of them.")
        mapping[field] = idx
    missing = [f for f in spec.required if f not in mapping]
    if missing:
        raise ImportFileError(
            f"Nothing was imported: {name} has no {' or '.join(missing)} column (its columns "
            f"are {shown}); {spec.name} need the columns {', '.join(spec.required[:-1])} "
            f"and {spec.required[-1]}.")
    return FileFormat(path=path, size=size, encoding=codec, encoding_label=label,
                      delimiter=delimiter, sep_line=sep_line, header=header,
                      header_row=header_row, mapping=mapping, ignored=ignored, read_only=ro,
                      fingerprint=_fingerprint(path, size))


def _first_record(sample: str, delimiter: str) -> tuple[list[str], int]:
    """The first non-blank record of ``sample`` and its 1-based record number."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    try:
        for number, record in enumerate(reader, 1):
            if any(v.strip() for v in record):
                return record, number
    except csv.Error:
        pass
    return [], 0


def _delimiter_name(d: str) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}.get(d, repr(d))


class _Reader:
    """Records of a file, read a batch at a time; ``count`` is the last record number."""

    def __init__(self, fmt: FileFormat, strict: bool = False) -> None:
        self._raw = open(fmt.path, "rb")
        self._text = io.TextIOWrapper(self._raw, encoding=fmt.encoding, newline="",
                                      errors="strict")
        if fmt.sep_line:
            self._text.readline()
        self._reader = csv.reader(self._text, delimiter=fmt.delimiter, strict=strict)
        self._sep_line = fmt.sep_line
        self.count = 1 if fmt.sep_line else 0

    def take(self, n: int) -> list[list[str]]:
        batch = list(itertools.islice(self._reader, n))
        self.count += len(batch)
        return batch

    def skip_all(self, every: Callable[[], Any],
                 evidence: NumberEvidence | None = None) -> int:
        """Parse to the end, keeping nothing but what ``evidence`` collects (``count``
        is not kept up); return the number of physical lines.  ``every()`` runs every
        20,000 records."""
        while True:
            before = self._reader.line_num
            chunk = itertools.islice(self._reader, 20000)
            if evidence is not None and evidence.columns:
                # small slices: their records are freed (and the memory reused) at once
                for _ in range(20):
                    evidence.feed(list(itertools.islice(chunk, 1000)))
            else:
                collections.deque(chunk, maxlen=0)
            if self._reader.line_num == before:
                return self.lines
            every()

    @property
    def lines(self) -> int:
        return self._reader.line_num + (1 if self._sep_line else 0)

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._text.close()


def prescan(fmt: FileFormat, ctx: Context, start: float, span: float,
            evidence: NumberEvidence | None = None) -> tuple[int, list[str]]:
    """Parse the whole file once, before anything is written.

    Returns the number of physical lines (an estimate of the rows, for progress) and
    warnings; ``evidence`` collects how the file writes its numbers on the way.
    Raises ImportFileError for a quoted value that never closes (it would swallow
    the rest of the file) or a value too long to be real; a stray quote inside a
    value is read leniently, with a warning naming its row.
    """
    name = _label(fmt.path)
    failure = ""
    reader = _Reader(fmt, strict=True)

    def step() -> None:
        ctx.check_cancelled()
        ctx.progress(start + span * reader.bytes_read / max(1, fmt.size),
                     f"Checking {name}: {reader.lines:,} lines read")

    try:
        return reader.skip_all(step, evidence), []
    except csv.Error as exc:
        failure, line = str(exc), reader.lines
    finally:
        reader.close()
    if "field larger than field limit" in failure:
        raise ImportFileError(
            f"Nothing was imported: line {line:,} of {name} has a value longer than "
            f"{csv.field_size_limit():,} characters, which usually means a quote (\") is "
            "missing; fix that line and import it again.")
    bad_row = _failing_record(fmt)
    if "unexpected end of data" in failure:
        raise ImportFileError(
            f"Nothing was imported: in {name}, the quoted value that starts on row "
            f"{bad_row:,} is never closed, so the rest of the file would be read as one "
            "value; add the missing closing quote (\") and import it again.")
    reader = _Reader(fmt, strict=False)
    if evidence is not None:
        evidence.reset()
    try:
        lines = reader.skip_all(ctx.check_cancelled, evidence)
        return lines, [f"row {bad_row:,} has a stray quote (\") inside a value; it was "
                       "read as the csv module reads it: check that row"]
    except csv.Error as exc:
        raise ImportFileError(
            f"Nothing was imported: row {bad_row:,} of {name} cannot be read as CSV "
            f"({exc}); fix that row and import it again.") from None
    finally:
        reader.close()


def _failing_record(fmt: FileFormat) -> int:
    """The number of the record where strict CSV parsing fails (slow; errors only)."""
    reader = _Reader(fmt, strict=True)
    n = reader.count
    try:
        for _record in reader._reader:
            n += 1
    except csv.Error:
        return n + 1
    finally:
        reader.close()
    return n


# ------------------------------------------------------------------ the rows
class KeyIndex:
    """Keys seen so far and the row that had each first: an open-addressing table of
    64-bit string hashes (12 bytes per slot), so a million keys take ~24 MB, not the
    ~150 MB a dict of strings would.  Two different keys with the same 64-bit hash
    would be reported as duplicates; with a million keys the odds are about 1 in 10^7.
    """

    def __init__(self, expected: int) -> None:
        cap = 1 << max(12, (max(1, expected) * 2).bit_length())
        self._mask = cap - 1
        self._hashes = array("q", [0]) * cap
        self._rows = array("i", [0]) * cap
        self.count = 0

    def first_row(self, key: str, row: int) -> int:
        """0 if ``key`` is new (now recorded at ``row``), else the row that had it first."""
        h = hash(key) or 1
        mask, hashes = self._mask, self._hashes
        i = h & mask
        while True:
            v = hashes[i]
            if v == 0:
                hashes[i] = h
                self._rows[i] = row
                self.count += 1
                if self.count * 2 > mask:
                    self._grow()
                return 0
            if v == h:
                return self._rows[i]
            i = (i + 1) & mask

    def add_many(self, keys: Sequence[str], rows: Sequence[int], skip: Any
                 ) -> list[tuple[int, int]]:
        """Record each key not at a position in ``skip``; return (position, first row)
        for the keys seen before.  The loop of :meth:`first_row`, inlined for speed.
        """
        repeats: list[tuple[int, int]] = []
        if self.count + len(keys) > (self._mask + 1) // 2:
            self._grow(self.count + len(keys))
        mask, hashes, first = self._mask, self._hashes, self._rows
        added = 0
        for i, key in enumerate(keys):
            if skip and i in skip:
                continue
            h = hash(key) or 1
            j = h & mask
            while True:
                v = hashes[j]
                if v == 0:
                    hashes[j] = h
                    first[j] = rows[i]
                    added += 1
                    break
                if v == h:
                    repeats.append((i, first[j]))
                    break
                j = (j + 1) & mask
        self.count += added
        return repeats

    def _grow(self, need: int = 0) -> None:
        old = [(h, r) for h, r in zip(self._hashes, self._rows, strict=True) if h]
        cap = (self._mask + 1) * 2
        while cap < need * 2:
            cap *= 2
        self._mask = cap - 1
        self._hashes = array("q", [0]) * cap
        self._rows = array("i", [0]) * cap
        for h, r in old:
            i = h & self._mask
            while self._hashes[i]:
                i = (i + 1) & self._mask
            self._hashes[i] = h
            self._rows[i] = r




class BatchValidator:
    """Validates a batch of records column by column.

    Returns one list per field (the stored values; None for an empty cell or an
    absent column) and the problems found, by position in the batch, each naming
    row, column and what is wrong.  Number fields read ``1,234`` as ``numbers``
    (the file's decimal separator) says.
    """

    def __init__(self, spec: TableSpec, fmt: FileFormat, *, fast: bool = True,
                 numbers: NumberStyle = UNDECIDED) -> None:
        self.width = len(fmt.header)
        self.plan = [(_bind(f, numbers), fmt.mapping.get(f.name)) for f in spec.fields]
        self.fast = fast

    def __call__(self, rows: Sequence[int], records: list[list[str]]
                 ) -> tuple[list[list[Any]], dict[int, list[str]]]:
        n = len(records)
        width = self.width
        problems: dict[int, list[str]] = {}
        if not n:
            return [[] for _ in self.plan], problems
        records = list(records)
        if set(map(len, records)) != {width}:
            for i, rec in enumerate(records):
                if len(rec) < width:
                    records[i] = rec + [""] * (width - len(rec))
                elif len(rec) > width:
                    if "".join(rec[width:]).strip():
                        problems[i] = [f"row {rows[i]}: has {len(rec)} values but the "
                                       f"header names {width} columns (a value containing "
                                       "the delimiter needs quotes)"]
                    records[i] = rec[:width]
        columns: list[list[Any]] = []
        by_column = list(zip(*records, strict=False)) if n else []
        for field, idx in self.plan:
            if idx is None:
                columns.append([None] * n)
                continue
            cells = by_column[idx]
            vals = list(map(str.strip, cells))
            flat = "".join(vals)  # the fast checks search it, too
            if "'" in flat and unguard_all(vals, cells):
                flat = "".join(vals)
            out = field.fast(vals, flat) if n and self.fast else None
            if out is None:
                out = self._one_by_one(field, vals, rows, problems)
            columns.append(out)
        return columns, problems

    @staticmethod
    def _one_by_one(field: Field, vals: list[str], rows: Sequence[int],
                    problems: dict[int, list[str]]) -> list[Any]:
        out: list[Any] = []
        parse = field.parse
        for i, raw in enumerate(vals):
            if not raw:
                if field.required:
                    problems.setdefault(i, []).append(
                        f"row {rows[i]}, column {field.name}: is empty but required")
                out.append(None)
                continue
            try:
                out.append(parse(raw))
            except Invalid as exc:
                problems.setdefault(i, []).append(f"row {rows[i]}, column {field.name}: {exc}")
                out.append(None)
        return out


def _bind(field: Field, numbers: NumberStyle) -> Field:
    if not field.number:
        return field
    parse = field.parse
    return dataclasses.replace(field, parse=lambda raw: parse(raw, numbers))


def validate_row(spec: TableSpec, fmt: FileFormat, row: int, record: list[str],
                 numbers: NumberStyle = UNDECIDED
                 ) -> tuple[tuple[Any, ...] | None, list[str]]:
    """One record through the field parsers only (the reference the fast checks match)."""
    columns, problems = BatchValidator(spec, fmt, fast=False, numbers=numbers)(
        [row], [list(record)])
    if problems:
        return None, problems[0]
    return tuple(col[0] for col in columns), []


def check_batch(validator: BatchValidator, keys: KeyIndex, key_pos: int, key_name: str,
                rows: Sequence[int], records: list[list[str]],
                dup_note: str = "; only the first is imported"
                ) -> tuple[list[list[Any]], dict[int, list[str]], set[int], int]:
    """Validate a batch and look for keys seen before (in this file).

    Returns the value columns, the problems by position, the positions of blank rows
    (skipped, not rejected) and how many rows were duplicates.
    """
    columns, problems = validator(rows, records)
    blank: set[int] = set()
    for i in list(problems):
        if not "".join(records[i]).strip():
            del problems[i]
            blank.add(i)
    first_rows = keys.add_many(columns[key_pos], rows, problems.keys() | blank)
    for i, first in first_rows:
        key = columns[key_pos][i]
        problems[i] = [f"row {rows[i]}, column {key_name}: {_show(key)} appears again "
                       f"(first on row {first}){dup_note}"]
    return columns, problems, blank, len(first_rows)


def rejects_cell(cell: str) -> str:
    """A rejected cell for the rejects file: as it was in the file, unless a spreadsheet
    would run it as a formula; then as the import read it, guarded.  Either way,
    importing the rejects file reads the same value as the first import did."""
    if cell[:1] in FORMULA_TRIGGERS or cell.lstrip()[:1] in FORMULA_TRIGGERS:
        return csv_safe(unguard(cell))
    return cell


class _Rejects:
    """The rejects CSV: the original header plus a reason column, opened on first use.

    ``keep_on_failure``: a strict import's list, kept when the job fails once
    :meth:`complete` said it is whole (see ``ctx.output_path``).
    """

    def __init__(self, ctx: Context, fmt: FileFormat, keep_on_failure: bool = False) -> None:
        self._ctx, self._fmt = ctx, fmt
        self._keep = keep_on_failure
        self._fh: Any = None
        self._writer: Any = None
        self.path: Path | None = None
        self.count = 0
        header = [h for h in fmt.header]
        norm = [norm_header(h) for h in header]
        if "reason" in norm:
            self._reason_at = norm.index("reason")
        else:
            self._reason_at = len(header)
            header.append("reason")
        self._header = header

    def write(self, fields: list[str], reason: str) -> None:
        if self._writer is None:
            stem = self._fmt.path.stem or "import"
            self.path = self._ctx.output_path(f"{stem}.rejects.csv", keep_on_failure=self._keep)
            self._fh = open(self.path, "w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._fh, delimiter=self._fmt.delimiter)
            self._writer.writerow([rejects_cell(h) for h in self._header])
        row = [rejects_cell(v) for v in fields]
        if len(row) < len(self._header):
            row += [""] * (len(self._header) - len(row))
        row[self._reason_at] = csv_safe(reason)
        self._writer.writerow(row)
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def complete(self) -> None:
        """Close the file and tell the engine it is whole: kept even if the job fails."""
        self.close()
        if self.path is not None:
            self._ctx.mark_output_complete(self.path)


# ------------------------------------------------------------------ database
class _Writer:
    """Upserts batches of validated rows: one short transaction per batch (:meth:`write`),
    or all of them in the caller's transaction (:meth:`write_in`, a strict import).

    Customers are matched on the e-mail address in any case (the import stores it in
    lower case; a row another program stored as ``Anna@X.com`` is updated, keeping
    that spelling).  Rows go to the DB-API driver as plain tuples (``exec_driver_sql``)
    of a statement SQLAlchemy compiled for this database: without SQLAlchemy's
    per-row parameter processing, which costs more than the insert itself.
    """

    def __init__(self, engine: Any, spec: TableSpec, fmt: FileFormat, stamp: dt.datetime,
                 table_was_empty: bool) -> None:
        from sqlalchemy import Table, bindparam, func, insert, update

        from swifty_desktop.db.models import Customer, Product

        self.engine = engine
        self.last_tx_s = 0.0
        t = cast(Table, (Product if spec.name == "products" else Customer).__table__)
        self.key_pos = spec.key_pos
        key_col = t.c[spec.field(spec.key).column]
        self.table_was_empty = table_was_empty
        self.fold_case = spec.name == "customers"
        self._spellings: dict[str, str] | None = None
        dialect = engine.dialect
        process = t.c[spec.stamp].type.dialect_impl(dialect).bind_processor(dialect)
        self.stamp = process(stamp) if process else stamp
        self.defaults = [f.default for f in spec.fields]
        slot = {f"v_{f.column}": i for i, f in enumerate(spec.fields)}
        slot[f"v_{spec.stamp}"] = -1  # the stamp
        ins = insert(t).values({name[2:]: bindparam(name) for name in slot})
        self.insert = self._compile(ins)
        self.insert_slots = [slot[n] for n in self.insert[1]]
        # updates: the columns in the file; an empty optional cell keeps the stored value
        values: dict[str, Any] = {}
        uslot: dict[str, int] = {"u_key": self.key_pos}
        for i, f in enumerate(spec.fields):
            if f.name == spec.key or f.name not in fmt.mapping:
                continue
            param: Any = bindparam(f"u_{f.column}")
            values[f.column] = param if f.required else func.coalesce(param, t.c[f.column])
            uslot[f"u_{f.column}"] = i
        if spec.stamp_on_update:
            values[spec.stamp] = bindparam(f"u_{spec.stamp}")
            uslot[f"u_{spec.stamp}"] = -1
        self.update: tuple[str, list[str], bool] | None = None
        self.update_slots: list[int] = []
        if values:
            self.update = self._compile(update(t).where(key_col == bindparam("u_key"))
                                        .values(values))
            self.update_slots = [uslot[n] for n in self.update[1]]
        self.key_col = key_col

    def _compile(self, stmt: Any) -> tuple[str, list[str], bool]:
        """SQL text for the driver, its parameter names in order, and whether positional."""
        compiled = stmt.compile(dialect=self.engine.dialect)
        if compiled.positional:
            return str(compiled), list(compiled.positiontup or []), True
        return str(compiled), list(compiled.params), False

    def write(self, columns: list[list[Any]], state: dict[str, Any], ctx: Context
              ) -> dict[str, Any]:
        """Upsert the rows (given as value columns) and save the new state as the job's
        checkpoint, in one transaction.  Returns the new state; ``state`` is left alone,
        so that after a failed commit the caller still holds what was really saved.
        """
        from sqlalchemy.exc import IntegrityError

        from swifty_desktop.db.engine import write_transaction

        for attempt in (1, 2):
            new = dict(state)
            prepared = self._prepare_insert(columns) if self.table_was_empty else None
            try:
                t0 = time.perf_counter()
                with write_transaction(self.engine) as conn:
                    ins, upd = self._write(conn, columns, prepared)
                    new["inserted"] += ins
                    new["updated"] += upd
                    ctx.checkpoint(new, conn=conn)  # type: ignore[call-arg]
                self.last_tx_s = time.perf_counter() - t0
                return new
            except IntegrityError:
                if attempt == 2 or not self.table_was_empty:
                    raise
                # another program added rows meanwhile: look keys up from now on
                self.table_was_empty = False
                state = dict(state, table_was_empty=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def write_in(self, conn: Any, columns: list[list[Any]], state: dict[str, Any]
                 ) -> dict[str, Any]:
        """Upsert the rows in the caller's open write transaction; return the new state."""
        new = dict(state)
        prepared = self._prepare_insert(columns) if self.table_was_empty else None
        ins, upd = self._write(conn, columns, prepared)
        new["inserted"] += ins
        new["updated"] += upd
        return new

    def _other_spellings(self, conn: Any) -> dict[str, str]:
        """Stored keys that are not in lower case, by their lower-case form (read once:
        the import itself only adds lower-case e-mail addresses)."""
        from sqlalchemy import func, select

        if self._spellings is None:
            self._spellings = {k.lower(): k for k in conn.execute(
                select(self.key_col).where(self.key_col != func.lower(self.key_col)))
                .scalars()}
        return self._spellings

    def _prepare_insert(self, columns: list[list[Any]]) -> Any:
        """Driver arguments inserting every row (built before the write lock is taken)."""
        n = len(columns[0]) if columns else 0
        if not n:
            return []
        filled = [col if None not in col else [d if v is None else v for v in col]
                  for col, d in zip(columns, self.defaults, strict=False)]
        return self._arguments(self.insert, self.insert_slots, filled, n)

    def _write(self, conn: Any, columns: list[list[Any]], prepared: Any) -> tuple[int, int]:
        """Insert new keys and update known ones; ``prepared``: every row is new."""
        from sqlalchemy import select

        n = len(columns[0]) if columns else 0
        if not n:
            return 0, 0
        if prepared is not None:
            conn.exec_driver_sql(self.insert[0], prepared)
            return n, 0
        keys = columns[self.key_pos]
        existing: set[Any] = set()
        for start in range(0, n, 5000):
            existing.update(conn.execute(
                select(self.key_col).where(self.key_col.in_(keys[start:start + 5000])))
                .scalars())
        respelled: dict[str, str] = {}  # key in the file -> its spelling in the table
        if self.fold_case and (other := self._other_spellings(conn)):
            respelled = {k: other[k] for k in keys if k not in existing and k in other}
            existing.update(respelled)
        if not existing:
            conn.exec_driver_sql(self.insert[0], self._prepare_insert(columns))
            return n, 0
        new_idx = [i for i, k in enumerate(keys) if k not in existing]
        old_idx = [i for i, k in enumerate(keys) if k in existing]
        if new_idx:
            new_cols = [[col[i] for i in new_idx] for col in columns]
            conn.exec_driver_sql(self.insert[0], self._prepare_insert(new_cols))
        if self.update is not None:
            old_cols = [[col[i] for i in old_idx] for col in columns]
            if respelled:
                old_cols[self.key_pos] = [respelled.get(k, k) for k in old_cols[self.key_pos]]
            conn.exec_driver_sql(self.update[0], self._arguments(
                self.update, self.update_slots, old_cols, len(old_idx)))
        return len(new_idx), len(old_idx)

    def _arguments(self, stmt: tuple[str, list[str], bool], slots: list[int],
                   columns: list[list[Any]], n: int) -> Any:
        _sql, names, positional = stmt
        stamp = [self.stamp] * n
        rows = list(zip(*[columns[s] if s >= 0 else stamp for s in slots], strict=False))
        return rows if positional else [dict(zip(names, r, strict=False)) for r in rows]


def _table_is_empty(db: Any, spec: TableSpec) -> bool:
    """Whether the table has no rows; ``db`` is an Engine or an open Connection."""
    from sqlalchemy import Connection, select

    from swifty_desktop.db.models import Customer, Product

    model = Product if spec.name == "products" else Customer
    query = select(model.id).limit(1)
    if isinstance(db, Connection):
        return db.execute(query).first() is None
    with db.connect() as conn:
        return conn.execute(query).first() is None


# ---------------------------------------------------------------------- task
def _title(params: Mapping[str, Any]) -> str:
    name = os.path.basename(str(params.get("path") or "")) or "CSV"
    return f"Import {params.get('table', 'products')} from {name}"


def _outcome(result: Mapping[str, Any]) -> str:
    """"1,200 new and 34 updated products; 3 rows rejected"."""
    from swifty_desktop.tasks.base import counted, result_count

    if not result.keys() & {"inserted", "updated"}:
        return ""
    text = (f"{result_count(result, 'inserted'):,} new and "
            f"{result_count(result, 'updated'):,} updated {result.get('table') or 'products'}")
    if rejected := result_count(result, "rejected"):
        text += f"; {counted(rejected, 'row')} rejected"
    return text


@task(
    "import_csv",
    title="Import CSV",
    changes=lambda p: ((str(p.get("table") or "products"),)
                       # the Orders tab shows customers' names
                       + (("orders",) if p.get("table") == "customers" else ())),
    outcome=_outcome,
    output_label="the rejected rows",  # the output file lists the rows not imported
    description="Reads products or customers from a CSV file, validates every row and "
                "adds or updates them; invalid rows go to a rejects file.",
    params=(
        Param("path", "path", required=True, label="CSV file", path_mode="open",
              file_filter="CSV files (*.csv *.txt *.tsv);;All files (*)",
              help="a header row, then one product (sku, name, price…) or customer (email, "
                   "name…) per row; as Excel saves it or as an export wrote it"),
        Param("table", "choice", default="products", choices=TABLES, label="Import into",
              help="products (matched by sku) or customers (matched by e-mail)"),
        Param("mode", "choice", default="skip_invalid", choices=MODES, label="Invalid rows",
              help="skip_invalid: import the valid rows and list the others in a rejects "
                   "file; strict: import nothing if any row is invalid"),
    ),
    retry=RetryPolicy(max_attempts=3, backoff_base=5.0,
                      transient=("swifty_desktop.tasks.export:DatabaseBusy",)),
    concurrency=1,
    timeout=3600,
    rerun_safe=True,  # resumes after its last committed batch
    title_fn=_title,
    icon="import",
    actions=(
        Action("Import products from CSV…", {"table": "products"}, ask=("path",),
               shortcut="Ctrl+I", icon="import", menu="Data", toolbar=True,
               tooltip="Add or update products from a CSV file (matched by SKU)",
               ack="{title}: working in the background; rejected rows, if any, go to a "
                   "rejects file"),
        Action("Import customers from CSV…", {"table": "customers"}, ask=("path",),
               icon="import", menu="Data",
               tooltip="Add or update customers from a CSV file (matched by e-mail)"),
    ),
)
def import_csv(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Import one CSV file; see the module docstring for what it accepts."""
    import gc

    from swifty_desktop.tasks.export import raise_if_busy

    # Batches of tens of thousands of short-lived rows make the cyclic garbage
    # collector run again and again for nothing (none of them are in cycles):
    # pausing it makes the import about 10 % faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return run_import(params, ctx)
    except TaskError:
        raise
    except Exception as exc:
        raise_if_busy(exc)
        raise
    finally:
        if collecting:
            gc.enable()


def _batches(reader: _Reader, header_row: int, size: Callable[[], int]
             ) -> Iterator[tuple[range, list[list[str]], int]]:
    """(row numbers, records, last row number read) per batch of rows after the header."""
    while True:
        start = reader.count
        records = reader.take(size())
        if not records:
            return
        first = start + 1
        if first <= header_row:
            records = records[header_row - start:]
            first = header_row + 1
            if not records:
                continue
        yield range(first, first + len(records)), records, reader.count


def run_import(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    table = str(params.get("table", "products"))
    mode = str(params.get("mode", "skip_invalid"))
    if table not in SPECS:
        raise TaskError(f"Nothing was imported: '{table}' cannot be imported; choose "
                        f"{' or '.join(TABLES)}.")
    spec = SPECS[table]
    path = Path(str(params["path"])).expanduser()
    name = _label(path)
    started = time.perf_counter()
    ctx.progress(0.0, f"Checking {name}…")
    fmt = inspect_file(path, spec)
    # what is saved so far, for the note a cancelled import leaves (see _cancel_note)
    saved: dict[str, Any] = {"state": _resume_state(ctx.resume_state, fmt, table, mode),
                             "strict": mode == "strict"}
    try:
        return _import_file(fmt, spec, mode, ctx, started, saved)
    except JobCancelled:
        raise JobCancelled(_cancel_note(saved, fmt, table)) from None


def _cancel_note(saved: Mapping[str, Any], fmt: FileFormat, table: str) -> str:
    """What a cancelled import tells the user: how many rows stay imported, and what a
    retry does (it inherits the checkpoint, so it goes on after the saved rows)."""
    state = saved["state"]
    if state is None or state["records"] <= fmt.header_row:
        return ("Cancelled before any row was imported: the database is unchanged; retry "
                "the job to import the file.")
    if saved["strict"] and not saved.get("committed"):
        return ("Cancelled: nothing was imported, as a strict import writes every row or "
                "none; retry the job to import the file.")
    return (f"Cancelled after row {state['records']:,}: {state['inserted']:,} new and "
            f"{state['updated']:,} updated {table} are imported and stay; retry the job to "
            f"import the rest (it goes on after row {state['records']:,}).")


def _import_file(fmt: FileFormat, spec: TableSpec, mode: str, ctx: Context, started: float,
                 saved: dict[str, Any]) -> dict[str, Any]:
    table, path, name = spec.name, fmt.path, _label(fmt.path)
    warnings: list[str] = []
    used = ", ".join(fmt.header[i].strip() for i in fmt.mapping.values())
    ctx.log(f"Reading {name}: {fmt.encoding_label}, {_delimiter_name(fmt.delimiter)}-"
            f"separated; columns used: {used}")
    if fmt.encoding == "cp1252":
        warnings.append("the file is not UTF-8; it was read as Windows-1252 (Excel's CSV on "
                        "Windows)")
    if fmt.ignored:
        warnings.append(f"unknown columns ignored: {', '.join(fmt.ignored)}")
    if fmt.read_only:
        ctx.log(f"Not imported (set by the app): {', '.join(fmt.read_only)}")
    evidence = NumberEvidence([fmt.mapping[f.name] for f in spec.fields
                               if f.number and f.name in fmt.mapping])
    last_line, scan_warnings = prescan(fmt, ctx, 0.0, 0.1, evidence)
    warnings += scan_warnings
    numbers = evidence.decide(fmt.delimiter)
    if evidence.columns:
        ctx.log(f"Numbers: decimal {_SEP_NAME[numbers.decimal]}, as {numbers.why}"
                if numbers.decimal else
                f"Numbers: a value such as 1,234 or 1.000 is rejected, as {numbers.why}")
    engine = ctx.engine()  # type: ignore[attr-defined]
    validator = BatchValidator(spec, fmt, numbers=numbers)
    strict = mode == "strict"
    resume = saved["state"]
    if ctx.resume_state and resume is None:
        ctx.log("The file, table or mode changed since the interrupted attempt; importing "
                "from the start (rows already imported are updated, not duplicated)")
    if resume is None:
        state: dict[str, Any] = {
            "v": CHECKPOINT_VERSION, "table": table, "mode": mode, "file": fmt.fingerprint,
            "records": fmt.header_row, "inserted": 0, "updated": 0,
            # strict: decided again under the write lock, where no one else adds rows
            "table_was_empty": False if strict else _table_is_empty(engine, spec),
            "stamp": dt.datetime.now().isoformat(),
        }
    else:
        state = resume
        saved["committed"] = True  # a strict import's only checkpoint is its commit
        ctx.log(f"Resuming after row {state['records']:,} ({state['inserted']:,} inserted "
                f"and {state['updated']:,} updated before the interruption)")
        warnings.append(f"resumed after row {state['records']:,} of an interrupted import")
    resumed_after = state["records"] if resume else 0
    job = _Job(fmt, spec, validator, ctx, engine, saved, max(1, last_line))
    if strict:
        state, data_rows, blank = job.strict(state, resume is not None)
        duplicates, rejects = 0, None
    else:
        state, data_rows, blank, duplicates, rejects = job.in_batches(state)

    if blank:
        ctx.log(f"Skipped {blank:,} blank rows")
    if duplicates:
        article = "an" if spec.key[0] in "aeiou" else "a"
        warnings.append(f"{duplicates:,} {'row repeats' if duplicates == 1 else 'rows repeat'} "
                        f"{article} {spec.key} used on an earlier row of the file; only the "
                        f"first row with each {spec.key} was imported (see the rejects file)")
    if rejects is not None and rejects.count:
        ctx.log(f"{rejects.count:,} rows rejected; see {rejects.path}")
    if data_rows == 0:
        warnings.append("the file has a header row but no data rows")
    for w in warnings:
        ctx.log(f"Warning: {w}")
    seconds = time.perf_counter() - started
    ctx.log(f"Imported {state['inserted']:,} new and {state['updated']:,} updated {table} "
            f"in {seconds:.1f} s")
    return {
        "table": table,
        "path": str(path),
        "mode": mode,
        "rows": data_rows,
        "inserted": state["inserted"],
        "updated": state["updated"],
        "rejected": rejects.count if rejects is not None else 0,
        "rejects_path": str(rejects.path) if rejects is not None and rejects.path else None,
        "warnings": warnings,
        "encoding": fmt.encoding_label,
        "delimiter": fmt.delimiter,
        "decimal": numbers.decimal,
        "resumed_after_row": resumed_after,
        "seconds": round(seconds, 3),
    }


class _Job:
    """The write passes of one import (after the file was checked)."""

    def __init__(self, fmt: FileFormat, spec: TableSpec, validator: BatchValidator,
                 ctx: Context, engine: Any, saved: dict[str, Any], total: int) -> None:
        self.fmt, self.spec, self.validator, self.ctx = fmt, spec, validator, ctx
        self.engine, self.saved, self.total = engine, saved, total

    def in_batches(self, state: dict[str, Any]
                   ) -> tuple[dict[str, Any], int, int, int, _Rejects]:
        """skip_invalid: valid rows are upserted a batch at a time, each batch one short
        transaction with the checkpoint, so a retry goes on after the last one.

        Returns the final state, data rows, blank rows, duplicates and the rejects.
        """
        fmt, spec, ctx = self.fmt, self.spec, self.ctx
        writer = _Writer(self.engine, spec, fmt, dt.datetime.fromisoformat(state["stamp"]),
                         bool(state["table_was_empty"]))
        rejects = _Rejects(ctx, fmt)
        keys = KeyIndex(self.total)
        blank = duplicates = 0
        replay_until = state["records"]
        batch = {"size": FIRST_BATCH_ROWS}
        reader = _Reader(fmt)
        try:
            for rows, records, last in _batches(reader, fmt.header_row, lambda: batch["size"]):
                ctx.check_cancelled()
                columns, problems, blanks, dups = check_batch(
                    self.validator, keys, spec.key_pos, spec.key, rows, records)
                blank += len(blanks)
                duplicates += dups
                for i in sorted(problems):
                    rejects.write(records[i], "; ".join(problems[i]))
                skip = bisect.bisect_right(rows, replay_until)  # committed before: replayed
                if problems or blanks or skip:
                    good = [i for i in range(skip, len(rows))
                            if i not in problems and i not in blanks]
                    columns = [[col[i] for i in good] for col in columns]
                if last <= state["records"]:
                    continue
                state = writer.write(columns, dict(state, records=last), ctx)
                self.saved["state"] = state
                took = writer.last_tx_s
                # keep each write transaction short: the batch size follows what it took
                if took < TARGET_TX_S * 0.6:
                    batch["size"] = min(MAX_BATCH_ROWS, int(batch["size"] * 1.5))
                elif took > TARGET_TX_S * 1.3:
                    batch["size"] = max(MIN_BATCH_ROWS, int(batch["size"] * TARGET_TX_S / took))
                ctx.progress(0.1 + 0.9 * min(1.0, last / self.total),
                             f"Importing {spec.name}: row {last:,} of about {self.total:,} "
                             f"({state['inserted']:,} new, {state['updated']:,} updated, "
                             f"{rejects.count:,} rejected)")
        except BaseException:
            if state["records"] > fmt.header_row:
                ctx.log(f"Stopped after row {state['records']:,}: the rows up to it are "
                        "imported and saved; retry the job to import the rest")
            else:
                ctx.log("Stopped before any row was imported")
            raise
        finally:
            reader.close()
            rejects.close()
        data_rows = max(0, reader.count - fmt.header_row) - blank
        return state, data_rows, blank, duplicates, rejects

    def strict(self, state: dict[str, Any], committed: bool) -> tuple[dict[str, Any], int, int]:
        """strict: validate the whole file, keeping the converted rows in a temporary
        file; then, only if every row is valid, write them all in one transaction.

        A cancelled, failed or killed strict import so leaves the database as it was,
        while the write lock is held only for the database work (the engine and the
        app write to the same file), not for reading and checking the CSV.
        Returns the final state, data rows and blank rows.
        """
        import marshal
        import tempfile

        from swifty_desktop.db.engine import write_transaction

        fmt, spec, ctx = self.fmt, self.spec, self.ctx
        if committed:  # its one checkpoint is its commit: everything is in already
            return state, int(state.get("rows", 0)), int(state.get("blank", 0))
        # a temporary file has no name where the OS allows: a killed job leaves nothing
        with tempfile.TemporaryFile(prefix="swifty-import-") as spool:
            checked, blank, batches, end = self._validate_all(spool)
            spool.seek(0)
            writer = _Writer(self.engine, spec, fmt, dt.datetime.fromisoformat(state["stamp"]),
                             table_was_empty=False)
            try:
                with write_transaction(self.engine) as tx:
                    writer.table_was_empty = _table_is_empty(tx, spec)
                    for done in range(1, batches + 1):
                        ctx.check_cancelled()
                        # one read per batch: marshal.load(file) reads value by value
                        size = int.from_bytes(spool.read(8), "little")
                        last, columns = marshal.loads(spool.read(size))
                        state = writer.write_in(tx, columns, dict(state, records=last))
                        self.saved["state"] = state
                        ctx.progress(0.7 + 0.3 * done / batches,
                                     f"Importing {spec.name}: row {last:,} of {end:,}, in "
                                     f"one transaction ({state['inserted']:,} new, "
                                     f"{state['updated']:,} updated)")
                    state = dict(state, rows=checked, blank=blank)
                    ctx.checkpoint(state, conn=tx)  # type: ignore[call-arg]
            except BaseException:
                ctx.log("Stopped before the end: nothing was imported (a strict import "
                        "writes every row or none)")
                raise
        self.saved["committed"] = True
        return state, checked, blank

    def _validate_all(self, spool: Any) -> tuple[int, int, int, int]:
        """Strict mode's checking pass: every row, no writes; the converted values of
        the valid rows go to ``spool`` (while no row was invalid), every invalid row
        with its reason to a rejects file.  Raises TaskError naming the first invalid
        rows and the rejects file, which the engine keeps (the job fails; a cancelled
        or stopped check keeps no rejects file); returns (data rows, blank rows,
        batches, the last row's number).
        """
        import marshal

        fmt, spec, ctx = self.fmt, self.spec, self.ctx
        keys = KeyIndex(self.total)
        examples: list[str] = []
        bad = checked = blank = batches = 0
        reader = _Reader(fmt)
        rejects = _Rejects(ctx, fmt, keep_on_failure=True)
        try:
            for rows, records, last in _batches(reader, fmt.header_row,
                                                lambda: STRICT_BATCH_ROWS):
                ctx.check_cancelled()
                columns, problems, blanks, _dups = check_batch(
                    self.validator, keys, spec.key_pos, spec.key, rows, records, dup_note="")
                bad += len(problems)
                blank += len(blanks)
                checked += len(rows) - len(blanks)
                for i in sorted(problems):
                    rejects.write(records[i], "; ".join(problems[i]))
                    if len(examples) < STRICT_EXAMPLES:
                        examples.append(problems[i][0])
                if not bad and len(rows) > len(blanks):
                    if blanks:
                        good = [i for i in range(len(rows)) if i not in blanks]
                        columns = [[col[i] for i in good] for col in columns]
                    data = marshal.dumps((last, columns))
                    spool.write(len(data).to_bytes(8, "little"))
                    spool.write(data)
                    batches += 1
                ctx.progress(0.1 + 0.6 * min(1.0, last / self.total),
                             f"Validating {_label(fmt.path)}: row {last:,}")
        finally:
            reader.close()
            rejects.close()  # not complete: a stopped check's list is deleted
        if bad:
            rejects.complete()
            listed_in = rejects.path.name if rejects.path else "a rejects file"
            extra = bad - len(examples)
            more = f"; and {extra:,} more row{'s' if extra != 1 else ''}" if extra > 0 else ""
            # the engine names the file by its final name (rejects.path is temporary)
            raise TaskError(
                f"Nothing was imported: {bad:,} of {checked:,} rows of {_label(fmt.path)} "
                f"{'is' if bad == 1 else 'are'} invalid and the mode is strict ("
                f"{'; '.join(examples)}{more}); every invalid row with its reason is in "
                f"{listed_in}; fix those rows, or import with mode skip_invalid to "
                "import the valid rows.")
        return checked, blank, batches, reader.count


def _resume_state(saved: Any, fmt: FileFormat, table: str, mode: str) -> dict[str, Any] | None:
    if not isinstance(saved, dict) or saved.get("v") != CHECKPOINT_VERSION:
        return None
    if saved.get("table") != table or saved.get("mode") != mode or \
            saved.get("file") != fmt.fingerprint:
        return None
    return dict(saved)
