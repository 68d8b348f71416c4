"""The data contract: canonical tables, their columns, dtypes and rules.

A dataset folder holds one file per table (``opportunities.csv``, ``.parquet`` or ``.xlsx``) plus
``dataset.yml``. Only ``opportunities`` is required; every other table unlocks more sections.
Column kinds:

- ``id`` / ``str``: text (pandas ``str`` dtype); ids are compared as text.
- ``date``: calendar date (``datetime64``, time dropped).
- ``datetime``: timestamp (``datetime64``).
- ``money``: float, never negative.
- ``number``: float.
- ``prob``: probability, normalised to 0–1 (values given as 0–100 are divided by 100).
- ``bool``: boolean; accepts true/false, yes/no, 1/0, y/n, t/f (any case).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("id", "str", "date", "datetime", "money", "number", "prob", "bool")


@dataclass(frozen=True)
class Column:
    """``required`` columns must be present for the table to load; the others are used by the sections
    that need them (each section says what it needs when they are absent)."""

    name: str
    kind: str
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    key: str | None
    columns: tuple[Column, ...]
    description: str = ""
    required: bool = False
    references: dict[str, str] = field(default_factory=dict)  # column -> "table.column"

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _c(name: str, kind: str, required: bool = False, description: str = "") -> Column:
    return Column(name, kind, required, description)


OPPORTUNITIES = Table(
    "opportunities",
    key="opportunity_id",
    required=True,
    description="One row per deal (opportunity), open or closed, as it stands on the export date.",
    columns=(
        _c("opportunity_id", "id", True, "Unique id of the deal."),
        _c("owner", "id", False, "The rep who owns the deal; matches `reps.rep_id` when `reps` is given."),
        _c("created_date", "date", False, "Day the opportunity was created (counts as pipeline created)."),
        _c(
            "close_date",
            "date",
            False,
            "Actual close date for closed deals, expected close date for open ones; may be empty for early open deals.",
        ),
        _c("stage", "str", True, "Current stage; must be one of the stages in `dataset.yml`."),
        _c(
            "amount",
            "money",
            False,
            "Deal value in the dataset currency (expected for open, booked for won); empty means unknown.",
        ),
        _c(
            "is_closed",
            "bool",
            False,
            "True once the deal is won or lost (derived from the stage when absent).",
        ),
        _c(
            "is_won",
            "bool",
            False,
            "True for won deals; a won deal is always closed (derived from the stage when absent).",
        ),
        _c("account", "str", description="Customer account name or id."),
        _c("segment", "str", description="Customer segment (e.g. SMB, Mid-Market, Enterprise)."),
        _c("region", "str", description="Sales region of the deal."),
        _c("product", "str", description="Product or product line."),
        _c("source", "str", description="Lead source (Inbound, Outbound, Partner, …)."),
        _c("deal_type", "str", description="New business, expansion, renewal, …"),
        _c("probability", "prob", description="CRM win probability; 0–1 or 0–100."),
        _c("forecast_category", "str", description="Pipeline, Best Case, Commit, Closed or Omitted."),
        _c("loss_reason", "str", description="Why a lost deal was lost."),
        _c("competitor", "str", description="Main competitor on the deal."),
        _c("next_step", "str", description="Next step as written by the rep."),
        _c("last_activity_date", "date", description="Last logged activity on the deal."),
    ),
)

OPPORTUNITY_HISTORY = Table(
    "opportunity_history",
    key=None,
    description="Field history of deals: one row per change, holding the values after the change.",
    references={"opportunity_id": "opportunities.opportunity_id"},
    columns=(
        _c("opportunity_id", "id", True, "The deal that changed."),
        _c("changed_at", "datetime", True, "When the change happened."),
        _c("stage", "str", True, "Stage after the change."),
        _c("amount", "money", description="Amount after the change."),
        _c("close_date", "date", description="Expected close date after the change."),
        _c("probability", "prob", description="Probability after the change."),
        _c("forecast_category", "str", description="Forecast category after the change."),
    ),
)

ACTIVITIES = Table(
    "activities",
    key="activity_id",
    description="Logged sales activities: calls, emails, meetings, demos, social touches.",
    references={"opportunity_id": "opportunities.opportunity_id"},
    columns=(
        _c("activity_id", "id", True, "Unique id of the activity."),
        _c("owner", "id", True, "The rep who did it."),
        _c(
            "type",
            "str",
            True,
            "call, email, meeting, demo, social (free text is kept; these are the known types).",
        ),
        _c("occurred_at", "datetime", True, "When it happened (or is scheduled)."),
        _c("opportunity_id", "id", description="Deal the activity is tied to, if any."),
        _c("account", "str", description="Account the activity is tied to."),
        _c(
            "outcome",
            "str",
            description="connected / no_answer (calls), replied / no_reply (emails), held / no_show / scheduled (meetings, demos), positive when the next step was set.",
        ),
        _c("duration_minutes", "number", description="Time spent, where logged."),
    ),
)

LEADS = Table(
    "leads",
    key="lead_id",
    description="Leads from creation through MQL and SQL to an opportunity.",
    references={"opportunity_id": "opportunities.opportunity_id"},
    columns=(
        _c("lead_id", "id", True, "Unique id of the lead."),
        _c("created_date", "date", True, "Day the lead was created."),
        _c("source", "str", description="Lead source."),
        _c("mql_date", "date", description="Day it became a marketing-qualified lead."),
        _c("sql_date", "date", description="Day it became a sales-qualified lead."),
        _c("opportunity_id", "id", description="Opportunity it converted to."),
        _c("owner", "id", description="Rep (often an SDR) who worked the lead."),
    ),
)

REPS = Table(
    "reps",
    key="rep_id",
    description="The sales team: one row per rep, current and departed.",
    columns=(
        _c("rep_id", "id", True, "Id used as `owner` in the other tables."),
        _c("name", "str", description="Display name."),
        _c("team", "str", description="Team the rep belongs to."),
        _c("manager", "str", description="The rep's manager."),
        _c("region", "str", description="Region / territory."),
        _c("role", "str", description="AE (quota-carrying seller), SDR, … ."),
        _c("hire_date", "date", description="Start date (drives ramp)."),
        _c("end_date", "date", description="Leaving date, empty while employed."),
        _c("ote", "money", description="Annual on-target earnings."),
        _c("ramp_months", "number", description="Months to full productivity."),
        _c("territory_weight", "number", description="Relative size of the rep's territory (1 = average)."),
    ),
)

QUOTAS = Table(
    "quotas",
    key=None,
    description="Quota per rep per period (normally one row per rep and month).",
    columns=(
        _c("rep_id", "id", True, "The rep."),
        _c("period_start", "date", True, "First day of the period the quota covers."),
        _c(
            "quota",
            "money",
            True,
            "Quota for that period, in the dataset currency (or in units for non-revenue metrics).",
        ),
        _c(
            "period_end",
            "date",
            description="Last day of the period; defaults to the end of the month of period_start.",
        ),
        _c(
            "metric", "str", description="What the quota counts: bookings (default), meetings, opportunities."
        ),
    ),
)

CHURN = Table(
    "churn",
    key=None,
    description="Customers lost (churned), with the revenue that went with them.",
    columns=(
        _c("account", "str", True, "The account that churned."),
        _c("churn_date", "date", True, "Day it churned."),
        _c("lost_amount", "money", True, "Annual revenue lost."),
        _c("reason", "str", description="Why the customer left."),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (OPPORTUNITIES, OPPORTUNITY_HISTORY, ACTIVITIES, LEADS, REPS, QUOTAS, CHURN)
}

# Activity vocabulary used by the sample generator, importers and the activity tracker.
ACTIVITY_TYPES = ("call", "email", "meeting", "demo", "social")
CONNECTED_OUTCOMES = {"call": "connected", "email": "replied", "social": "replied"}
MEETING_OUTCOMES = ("held", "no_show", "scheduled", "positive")
