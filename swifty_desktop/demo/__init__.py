"""Deterministic sample data: thousands of products, customers and orders.

:mod:`swifty_desktop.demo.seed` builds it (the ``demo_seed`` job kind and the
``demo seed`` command both call it); :mod:`swifty_desktop.demo.cli` is the command.
Nothing here imports Qt.
"""
