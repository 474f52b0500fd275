"""Widgets and Qt models only: they render state and forward intent to services."""
