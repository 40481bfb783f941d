"""A discrete-time model of a served model's scaling, to replay traffic through a stack's settings.

trace.py (what arrives) → policies.py (how each policy reacts, with which lags) →
model.py (one-second ticks) → report.py (totals, comparisons, tables) → timeline.py (PNG).
Pure functions over plain data, except timeline.py, which draws with matplotlib.
"""
