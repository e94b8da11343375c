"""Metrics: classification (per run) and statistics over seeds (per cell, paired against a baseline)."""
