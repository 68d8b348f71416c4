"""The activity section shown inside the pipeline health report (placeholder until the activity
tracker lands)."""

from __future__ import annotations


def show(ctx, scope: str = "company", who: str = "") -> None:
    """Display the activity section for ``scope`` (company / team / rep) and add its headline figures."""
    from helpers.display import note

    msg = ctx.ds.missing("activities", "type", "occurred_at", section="The activity tracker")
    note(msg or "The activity tracker is not built yet.")
