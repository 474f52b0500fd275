"""SQLAlchemy 2.0 typed models: the engine's tables and the business tables.

Times in the engine's tables are UTC epoch seconds (REAL): cheap to compare and
index, and exact across processes.  Business tables use dates and datetimes.
Money is stored in integer cents so that totals add up exactly on every database.
The schema itself is owned by Alembic (``swifty_desktop/db/migrations``); a test
checks that these models and the migrations agree.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base for every table."""


# --------------------------------------------------------------------------- engine


class Job(Base):
    """One attempt of one job.  A retry is a new row whose ``retry_of`` points back."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    trigger: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    trigger_type: Mapped[str] = mapped_column(String(32), default="api")
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    root_id: Mapped[int | None] = mapped_column(Integer)  # first attempt of the chain
    superseded_by: Mapped[int | None] = mapped_column(Integer)  # the attempt that retries it
    schedule_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    not_before: Mapped[float | None] = mapped_column(Float)  # "retry at" for automatic retries
    progress: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    output_path: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    error_transient: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # JSON, for resumable kinds
    engine_id: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_updated_at", "updated_at"),
        Index("ix_jobs_root_id", "root_id"),
        Index("ix_jobs_kind_id", "kind", "id"),
        Index("ix_jobs_engine_status", "engine_id", "status"),
    )


class JobLog(Base):
    """One log line written by a job body (or by the engine about a job)."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    ts: Mapped[float] = mapped_column(Float)
    line: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_job_logs_job_id", "job_id", "id"),)


class EngineRow(Base):
    """A running engine (the app, a headless worker, a CLI waiting on a job)."""

    __tablename__ = "engines"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)


class Setting(Base):
    """A key/value setting (JSON values).  Secrets live in the OS keyring instead."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Schedule(Base):
    """A recurring job: APScheduler fires it, the engine runs it as an ordinary job."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[str] = mapped_column(Text, default="{}")
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="local")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    misfire_policy: Mapped[str] = mapped_column(String(16), default="coalesce")
    grace_seconds: Mapped[int] = mapped_column(Integer, default=86400)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    rule_changed_at: Mapped[float] = mapped_column(Float)  # an interval's runs count from it
    last_fire_at: Mapped[float | None] = mapped_column(Float)  # the fire time last claimed
    last_job_id: Mapped[int | None] = mapped_column(Integer)
    next_run_at: Mapped[float | None] = mapped_column(Float)
    missed: Mapped[int] = mapped_column(Integer, default=0)
    failure_streak: Mapped[int] = mapped_column(Integer, default=0)
    backoff_until: Mapped[float | None] = mapped_column(Float)
    status_note: Mapped[str | None] = mapped_column(Text)  # e.g. why it is backing off


# ------------------------------------------------------------------------- business


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100), default="")
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    stock: Mapped[int] = mapped_column(Integer, default=0)
    supplier: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | discontinued
    external_id: Mapped[str | None] = mapped_column(String(64))
    last_seen_run: Mapped[str | None] = mapped_column(String(64))  # the sync that last saw it
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_products_name", "name"),
        Index("ix_products_category", "category"),
        Index("ix_products_supplier", "supplier", "status"),
    )

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_cents) / 100


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    country: Mapped[str] = mapped_column(String(2), default="")
    opted_in: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)

    orders: Mapped[list[Order]] = relationship(back_populates="customer")

    __table_args__ = (Index("ix_customers_name", "name"),)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    order_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    total_cents: Mapped[int] = mapped_column(Integer, default=0)
    archived_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    customer: Mapped[Customer] = relationship(back_populates="orders")
    lines: Mapped[list[OrderLine]] = relationship(back_populates="order",
                                                  cascade="all, delete-orphan")

    __table_args__ = (
        Index("ix_orders_customer", "customer_id", "order_date"),
        Index("ix_orders_status_date", "status", "order_date"),
        Index("ix_orders_date", "order_date"),
    )

    @property
    def total(self) -> Decimal:
        return Decimal(self.total_cents) / 100


class OrderLine(Base):
    __tablename__ = "order_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    sku: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    line_total_cents: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="lines")

    __table_args__ = (
        Index("ix_order_lines_order", "order_id"),
        Index("ix_order_lines_product", "product_id"),
    )


class ExchangeRate(Base):
    __tablename__ = "exchange_rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rate_date: Mapped[dt.date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[float] = mapped_column(Float)  # units of currency per 1 EUR
    fetched_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("rate_date", "currency", name="uq_exchange_rates_day"),)


class EmailDelivery(Base):
    """The per-recipient ledger that makes an e-mail batch exactly-once."""

    __tablename__ = "email_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_key: Mapped[str] = mapped_column(String(64))  # the job chain (root id)
    recipient: Mapped[str] = mapped_column(String(254))
    customer_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | failed
    message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("batch_key", "recipient", name="uq_email_batch_recipient"),)
