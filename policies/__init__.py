"""Kiln's CrossGuard policy pack: rules in `rules/`, wrapped for pulumi_policy by `pack.py`."""
