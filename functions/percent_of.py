"""Percentages: what p percent of a quantity is."""
from __future__ import annotations


def percent_of(percent: float, whole: float) -> float:
    """Return `percent` percent of `whole`, e.g. percent_of(15, 80) == 12.0.

    Use it for discounts, tips, interest and "X% of Y" in word problems. For an increase
    by X%, add the result to the whole; for a decrease, subtract it.

    Args:
        percent: The percentage as a number of percent (15 for 15%, not 0.15).
        whole: The quantity the percentage is taken of.

    Returns:
        percent / 100 * whole.
    """
    return float(percent) / 100.0 * float(whole)
