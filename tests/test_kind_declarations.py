"""The heavy local kinds declare what the GUI and the engine need to know."""

from __future__ import annotations

from pathlib import Path

import pytest

from swifty_desktop.tasks import all_kinds, get_kind

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def icon_path(name: str) -> Path:
    return ICONS / f"{name}.svg"

KINDS = ("export", "import_csv", "report_pdf", "archive", "demo_seed")


@pytest.mark.parametrize("name", KINDS)
def test_kind_metadata_is_complete(name: str) -> None:
    kind = get_kind(name)
    assert kind.title and kind.description and not kind.diagnostic
    assert kind.run.startswith(f"swifty_desktop.tasks.{name}:")
    for param in kind.params:
        assert param.label and param.help, param.name
        if param.type == "choice":
            assert param.default in param.choices
    assert kind.timeout >= 600 and kind.rerun_safe
    assert kind.actions and icon_path(kind.icon).is_file()
    for action in kind.actions:
        assert action.label and action.menu in ("File", "Data", "Reports", "Tools")
        assert icon_path(action.icon).is_file(), action.icon
        assert set(action.ask) <= {p.name for p in kind.params}
        kind.validate({**action.params, **{p: "x.csv" for p in action.ask if p == "path"}})
    assert kind.make_title(kind.validate({} if name != "import_csv" else {"path": "/a/b.csv"}))


def test_the_toolbar_and_shortcuts() -> None:
    export = get_kind("export").actions[0]
    assert (export.label, export.shortcut, export.toolbar) == ("Export products to Excel",
                                                              "Ctrl+E", True)
    imp = get_kind("import_csv").actions[0]
    assert imp.label == "Import products from CSV…" and imp.ask == ("path",)
    assert get_kind("report_pdf").actions[0].label == "Sales report (PDF)"
    assert get_kind("archive").actions[0].label.startswith("Archive old orders")
    titles = {get_kind("import_csv").make_title({"path": "/x/Products 2026.csv",
                                                 "table": "products"}),
              get_kind("export").make_title({"table": "customers", "format": "csv"})}
    assert titles == {"Import products from Products 2026.csv", "Export customers to CSV"}
    shortcuts = [a.shortcut for k in KINDS for a in get_kind(k).actions if a.shortcut]
    assert len(shortcuts) == len(set(shortcuts))


def test_kinds_declare_the_tables_a_completed_job_changed() -> None:
    """The app re-reads exactly these tabs when such a job completes."""
    assert get_kind("import_csv").tables_changed({"table": "products"}) == ("products",)
    assert get_kind("import_csv").tables_changed({"table": "customers"}) == \
        ("customers", "orders")  # the Orders tab shows customers' names
    assert get_kind("archive").tables_changed({}) == ("orders",)
    assert get_kind("catalog_sync").tables_changed({}) == ("products",)
    assert get_kind("demo_seed").tables_changed({}) == ("products", "customers", "orders")
    assert get_kind("export").tables_changed({"table": "products"}) == ()  # reads only
    assert get_kind("exchange_rates").tables_changed({}) == ()  # no tab shows rates


def test_every_kind_the_gui_offers_says_what_its_job_did() -> None:
    """Notifications and the registry read a finished job the way its kind declares."""
    offered = [k for k in all_kinds() if not k.diagnostic]
    assert {k.name for k in offered} >= {*KINDS, "catalog_sync", "exchange_rates",
                                         "email_batch"}
    for kind in offered:
        assert kind.outcome is not None, kind.name
        assert kind.outcome_text({}) == "" and kind.outcome_text(None) == "", kind.name
    # only where a bare file name would not say what the file is
    assert {k.name: k.output_label for k in all_kinds() if k.output_label} == \
        {"import_csv": "the rejected rows"}
