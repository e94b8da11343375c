"""Self-contained HTML report built from a run directory alone."""

from synthaug.report.html import build_report

__all__ = ["build_report"]
