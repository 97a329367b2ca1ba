"""Prefect flows and the `stage` command; deployment entrypoints live here."""
