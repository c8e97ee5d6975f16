"""When a figure computed over validations is worth grading: one rule for `monitor`, the
dashboard (/admin/observability), `cost --url` and deploy/prometheus/alerts.yml.

Every user's first validation is a miss, so a new instance's first few validations say nothing
about the cache: one sign-in and five requests read "83.33 %" and used to page someone. Below
MIN_GRADED_VALIDATIONS the hit rate and the average validation time are shown, not graded.
100 keeps the cold misses of a handful of users under the 10 points between the guide's
"alert" (< 90 %) and "target" (> 95 %).
"""

from __future__ import annotations

MIN_GRADED_VALIDATIONS = 100


def graded(validations: int | float) -> bool:
    return validations >= MIN_GRADED_VALIDATIONS


def too_few(validations: int | float) -> str:
    """What is shown instead of a grade (the dashboard's JS says the same words)."""
    return f"too few validations to grade ({int(validations):,} of {MIN_GRADED_VALIDATIONS})"
