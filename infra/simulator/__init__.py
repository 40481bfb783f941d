"""A discrete-time model of a served model's scaling, to replay traffic through a stack's settings.

trace.py (what arrives) → scaling_policies.py (how each policy reacts, with which lags, each
number with its source or an estimate's range) → model.py (one-second ticks, with the runtime's
own admission limit and in-flight gauge) → replay.py (every policy at the planned numbers and at
both ends of the estimates) → report.py (totals, comparisons, JSON) → timeline.py (PNG).
Pure functions over plain data, except timeline.py, which draws with matplotlib.
"""
