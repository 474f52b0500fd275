"""Swifty Desktop: background jobs for people who run a business on Swifty."""

__version__ = "0.1.0"
APP_NAME = "Swifty Desktop"
APP_ID = "com.swifty.Desktop"
