"""The generated parts of the user documentation (docs/*.md), written from the code that decides them.

    python -m stream.docs           # rewrite every generated section of docs/*.md
    python -m stream.docs --check   # exit 1 naming each stale or missing section

A generated section stands between two marker comments in a Markdown file::

    <!-- BEGIN GENERATED plan-keys (python -m stream.docs; edit stream/docs.py, not this) -->
    ...
    <!-- END GENERATED plan-keys -->

Everything else in docs/ is written by hand. What is generated, and from where:

- the plan key reference: the msgspec structs of `stream.plan` (`_Document` and the tables in
  it), with each key's type, whether it is required and its default; the words for each key are
  `PLAN_KEYS` below, and a key without them is an error, so a new key cannot go undocumented;
- the event types, their topics, fields and JSON Schema files: `schemas.events.EVENT_TYPES`,
  `stream.settings.Topics` and `schemas.jsonschema`;
- the dead-letter reasons: `schemas.decode.REASONS`, explained in `REASONS`;
- the export columns: `stream.bonus.RUNNING_COLUMNS` plus the settlement's two, explained in
  `COLUMNS`; the Postgres tables: the migrations' ``CREATE TABLE``s, each either for readers
  (`READER_TABLES`) or internal (`INTERNAL_TABLES`);
- the metrics: a `stream.metrics.Metrics` registry; the alerts: deploy/prometheus/alerts.yml;
  the dashboards: deploy/grafana/dashboards/*.json; the shipped plans: stream/plans/*.toml.

tests/unit/test_docs.py fails when a section is stale, or when a name the code knows has no words here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from schemas import jsonschema
from schemas.decode import REASONS as REASON_CODES
from schemas.events import EVENT_TYPES, Id, Money, Timestamp
from stream import plan as plan_module
from stream.bonus import RUNNING_COLUMNS
from stream.settings import DEFAULT_TOPIC_PREFIX, Topics

ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = ROOT / "docs"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PLANS_DIR = Path(__file__).resolve().parent / "plans"
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"

_BEGIN = "<!-- BEGIN GENERATED {name} (python -m stream.docs; edit stream/docs.py, not this) -->"
_END = "<!-- END GENERATED {name} -->"
_BLOCK = re.compile(
    r"<!-- BEGIN GENERATED (?P<name>[a-z-]+) \(python -m stream\.docs; edit stream/docs\.py, not this\) -->\n"
    r".*?"
    r"<!-- END GENERATED (?P=name) -->",
    re.DOTALL,
)


class DocsError(Exception):
    """A name the code knows has no words in this module, or a docs file lacks a section's markers."""


# -- the words: one entry per name the code knows --------------------------------------------

#: Plan key path -> (what it means, an example value as TOML). `[]` marks an array of tables.
PLAN_KEYS: dict[str, tuple[str, str]] = {
    "version": ("A name for this plan version, stored with every bonus row it priced (`plan_version`). "
                "Versions in one plan directory must have different names.", '"2027-h1"'),
    "effective_from": ("The first month this version is in force, in the plan's time zone. Required for every "
                       "file of a plan directory (see Plan versions); a single plan file is in force for "
                       "every month with or without it.", '"2027-01"'),
    "timezone": ("IANA time zone. A period is a calendar month in this zone, so it decides which month an "
                 "event near midnight belongs to. All versions of a plan directory must share it.",
                 '"Europe/Oslo"'),
    "attribution_window_days": ("How many days a telemarketer's touch (an offer made, a booked appointment) "
                                "stays eligible for a later sale.", "30"),
    "attribution_model": ("Who gets the telemarketer share when several touches are eligible: `last_touch` "
                          "(the latest), `first_touch` (the earliest) or `linear` (split equally between "
                          "the telemarketers).", '"linear"'),
    "telemarketer_share": ("The part (0..1) of a cross-sell or upsell line credited to the telemarketer(s) "
                           "when a field rep closes a sale that a touch prepared; the field rep keeps the "
                           "rest.", '"0.30"'),
    "clawback_days": ("A cancellation or refund reduces a sale only when it happens within this many days of "
                      "the sale; later ones are ignored.", "90"),
    "cross_sell": ("The cross-sell programme: what counts as a cross-sell and how it is paid.", "[cross_sell]"),
    "cross_sell.min_count": ("Gate: with fewer cross-sell lines than this in the month the cross-sell bonus "
                             "is 0.", "3"),
    "cross_sell.min_amount": ("Gate: with a cross-sell amount below this in the month the cross-sell bonus is "
                              "0.", '"1000.00"'),
    "cross_sell.tiers": ("Marginal bands over the month's cross-sell amount, sorted by `up_to`: each rate "
                         "applies to the part of the amount inside its band, like income tax brackets.",
                         '[ { up_to = "5000.00", rate = "0.03" }, { rate = "0.05" } ]'),
    "cross_sell.tiers[].up_to": ("The upper end of the band. Every band but the last has one; the last is "
                                 "open-ended and has none.", '"5000.00"'),
    "cross_sell.tiers[].rate": ("The rate applied to the part of the amount within the band.", '"0.03"'),
    "cross_sell.matrix": ("Anchor category -> the categories that count as a cross-sell when the customer "
                          "already holds the anchor (or buys it as the main line of the same sale). A category "
                          "never lists itself.", 'phones = ["accessories", "insurance"]'),
    "appointments": ("Flat credits to telemarketers for appointments they booked for field reps.", "[appointments]"),
    "appointments.held_credit": ("Paid to the telemarketer per appointment that took place (status `held`). "
                                 "Never a percentage of the field rep's deal.", '"25.00"'),
    "appointments.conversion_bonus": ("Paid to the telemarketer when the field rep of a held appointment then "
                                      "sells to that customer within the conversion window.", '"10.00"'),
    "appointments.conversion_window_days": ("How many days after the held appointment a sale still converts "
                                            "it.", "14"),
    "upsell": ("The upsell programme. Without this table nobody earns upsell credit.", "[upsell]"),
    "upsell.rate": ("`upsell_bonus` = this rate (0..1) x the person's upsell amount, the uplift of a line "
                    "over the highest unit price the customer paid before in that category. No gate.",
                    '"0.10"'),
    "lead_sharing": ("Lead points and badges for telemarketers: one point per converted "
                     "appointment, counted per calendar year.", "[lead_sharing]"),
    "lead_sharing.bronze_points": ("Points in a year that earn the `bronze` badge.", "5"),
    "lead_sharing.silver_points": ("Points in a year that earn the `silver` badge; not below "
                                   "`bronze_points`.", "15"),
    "lead_sharing.gold_prize": ("Money split between the telemarketer(s) whose converted leads brought the "
                                "most turnover in the year, paid as `prize_bonus` in December. December's "
                                "version decides it.", '"500.00"'),
    "kpi": ("The KPI bonus: a target amount paid in proportion to how well a person meets "
            "weighted targets. Needs the topic `crm.quality` for the `rating` and `compliance` metrics.", "[kpi]"),
    "kpi.target_bonus": ("What a person earns at exactly 100% attainment of every component: `kpi_bonus` = "
                         "target_bonus x sum(weight x attainment).", '"200.00"'),
    "kpi.roles": ("The roles that can earn it: `telemarketer`, `field_rep` or both, each once.",
                  '["telemarketer"]'),
    "kpi.components": ("The weighted parts of the KPI, one `[[kpi.components]]` table each.",
                       '[[kpi.components]]'),
    "kpi.components[].name": ("A name of your choice, unique in the plan; it names the component's row in "
                              "`kpi_scores`.", '"bought"'),
    "kpi.components[].weight": ("The component's share of the KPI, above 0 and at most 1; the weights of all "
                                "components sum to exactly 1.", '"0.5"'),
    "kpi.components[].metric": ("What is measured: `conversions` (converted appointments of the month), "
                                "`rating` (mean `feedback` rating) or `compliance` (share of `quality_review`s "
                                "passed).", '"rating"'),
    "kpi.components[].target": ("The value that counts as 100%; above 0.", '"4.5"'),
    "kpi.components[].cap": ("The highest attainment paid (value / target is cut to it); at least 1.",
                             '"1.2"'),
}

#: Dead-letter reason code -> when a message gets it.
REASONS: dict[str, str] = {
    "invalid_json": "The value is not UTF-8 text, not JSON, or beyond the parser's limits.",
    "schema_violation": "Valid JSON, but not an object of the expected shape: a field is missing or of the "
                        "wrong type, or a rule of the event is broken (a bound, a spelling, a repeated key).",
    "unknown_event_type": "`event_type` is missing or names no event crmbonus knows.",
    "conflicting_duplicate": "An `event_id` that was already processed with different content. The first "
                             "one stands; resend with a new `event_id` if the second was meant.",
    "duplicate_sale_id": "A second `sale` with a `sale_id` already taken by an earlier sale. The first one "
                         "stands.",
    "processing_error": "The event was valid, but processing it failed on its own data (a value Postgres or "
                        "the rules cannot handle). `detail` holds the error; the rest of its batch went on.",
}

#: Payroll file column -> what it holds.
COLUMNS: dict[str, str] = {
    "period": "The month, `YYYY-MM`, in the plan's time zone.",
    "person_id": "The telemarketer's or field rep's id, as the CRM sent it.",
    "role": "`telemarketer` or `field_rep`: the role with more credited items that month (ties: `field_rep`).",
    "cross_sell_count": "Cross-sell lines credited to the person (a line counts once per person).",
    "cross_sell_amount": "The person's credited parts of those lines, summed exactly, then rounded to the cent.",
    "appointments_held": "Appointments the person booked that took place this month (telemarketers).",
    "appointments_converted": "Of those, the ones the field rep turned into a sale within the window.",
    "cross_sell_bonus": "The tiered bonus on the exact cross-sell amount; 0 below `min_count` or `min_amount`.",
    "appointment_bonus": "held x `held_credit` + converted x `conversion_bonus`.",
    "prior_adjustments": "Corrections for already settled months (what they earn now minus what was paid).",
    "total_bonus": "What to pay: every bonus column plus `prior_adjustments`.",
    "upsell_count": "Upsell lines credited to the person.",
    "upsell_amount": "The person's credited parts of the uplift of those lines, rounded to the cent.",
    "upsell_bonus": "`upsell.rate` x the exact upsell amount.",
    "kpi_bonus": "`kpi.target_bonus` x the weighted attainment of the KPI components.",
    "prize_bonus": "The person's part of the year's gold prize (December only).",
    "plan_version": "The `version` of the plan that priced the row.",
    "settlement_id": "The id of the settlement that closed the month (the same on every row of the file).",
    "settled_at": "When the month was settled (RFC 3339).",
}

#: Postgres tables a report, a dashboard or an auditor reads -> what they hold.
READER_TABLES: dict[str, str] = {
    "bonus_running": "One row per month and person with any figure, always current; closed months included.",
    "bonus_settled": "The frozen copy of a settled month's rows, with `settlement_id` and `settled_at`. Never "
                     "updated or deleted: triggers refuse it.",
    "periods_closed": "The settled months and their settlement ids.",
    "bonus_adjustments": "The audit of corrections: per source month, target month and person, what it "
                         "earns now, what was paid, and the difference carried.",
    "credits": "The trace behind the figures: one row per credited part in force (customer, sale, line, "
               "lead, kind, amount, share, the touch and the source event).",
    "lead_points": "Per year and telemarketer: lead points, exact turnover (rounded), badge, gold.",
    "kpi_scores": "Per month, person and KPI component: metric, value, attainment and weight.",
    "dead_letters": "Invalid input with its raw bytes, topic, partition, offset, reason and detail.",
}
#: Tables crmbonus keeps for itself; reports never read them and their shape may change in any release.
INTERNAL_TABLES = ("events", "consumer_progress", "customers", "credit_totals", "ledger_rebuilds",
                   "customer_facts", "lead_totals", "plan_versions", "plan_state")

#: What sends events to the dead-letter topic instead of a CRM publisher.
_DEAD_LETTER_TOPIC_NOTE = "invalid input, written by crmbonus (headers `reason`, `detail`, `source_*`)"


# -- the plan key reference -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlanKey:
    path: str
    type: str
    required: bool
    default: str | None


def plan_keys() -> list[PlanKey]:
    """Every key of a plan file, tables included, in the order of the plan model."""
    keys: list[PlanKey] = []
    info = mi.type_info(plan_module._Document)
    assert isinstance(info, mi.StructType)
    _walk(info, "", keys)
    return keys


def _walk(struct: mi.StructType, prefix: str, keys: list[PlanKey]) -> None:
    for fld in struct.fields:
        path = f"{prefix}{fld.encode_name}"
        shape = _unwrap(fld.type)
        required = fld.required
        keys.append(PlanKey(path, _type_text(fld.type), required, None if required else _default_text(fld)))
        if isinstance(shape, mi.StructType):
            _walk(shape, path + ".", keys)
        elif isinstance(shape, mi.VarTupleType | mi.ListType) and isinstance(_unwrap(shape.item_type), mi.StructType):
            item = _unwrap(shape.item_type)
            assert isinstance(item, mi.StructType)
            _walk(item, path + "[].", keys)


def _unwrap(shape: mi.Type) -> mi.Type:
    """`shape` without its metadata and without `| None`."""
    while True:
        if isinstance(shape, mi.Metadata):
            shape = shape.type
        elif isinstance(shape, mi.UnionType):
            members = [member for member in shape.types if not isinstance(member, mi.NoneType)]
            if len(members) != 1:
                return shape
            shape = members[0]
        else:
            return shape


def _type_text(shape: mi.Type) -> str:
    bare = _unwrap(shape)
    if isinstance(bare, mi.StructType):
        return "table"
    if isinstance(bare, mi.DictType):
        return "table of arrays of category names"
    if isinstance(bare, mi.VarTupleType | mi.ListType):
        if isinstance(_unwrap(bare.item_type), mi.StructType):
            return "array of tables"
        return "array of strings"
    if isinstance(bare, mi.DecimalType):
        return "decimal (a quoted string, or a whole number)"
    if isinstance(bare, mi.IntType):
        bounds = " >= 0" if bare.ge == 0 else ""
        if bare.le is not None:
            bounds = f" 0..{bare.le:,}" if bare.ge == 0 else f" <= {bare.le:,}"
        return f"integer{bounds}"
    if isinstance(bare, mi.StrType):
        if isinstance(shape, mi.UnionType) or (isinstance(shape, mi.Metadata) and shape.extra_json_schema
                                                and "YYYY-MM" in str(shape.extra_json_schema)):
            return 'string "YYYY-MM"'
        return "string"
    return type(bare).__name__


def _default_text(fld: mi.Field) -> str:
    if fld.default_factory is not msgspec.NODEFAULT:
        return "its keys' defaults"
    default = fld.default
    if default is None:
        return "absent"
    if isinstance(default, Decimal):
        return f'`"{default}"`'
    if isinstance(default, tuple | list):
        return "`[" + ", ".join(f'"{item}"' for item in default) + "]`"
    if isinstance(default, str):
        return f'`"{default}"`'
    return f"`{default}`"


def plan_key_table() -> str:
    rows = ["| key | type | required / default | meaning | example |", "|---|---|---|---|---|"]
    for key in plan_keys():
        meaning, example = PLAN_KEYS[key.path]  # check() has said which are missing
        when = "**required**" if key.required else f"optional; default: {key.default}"
        rows.append(f"| `{key.path}` | {key.type} | {when} | {meaning} | {_code(example)} |")
    return "\n".join(rows)


def _code(text: str) -> str:
    return f"`{text.replace('|', '&#124;')}`" if text else ""


def shipped_plans() -> str:
    parts = []
    for path in sorted(PLANS_DIR.glob("*.toml")):
        parts += [f"`stream/plans/{path.name}`:", "", "```toml", path.read_text(encoding="utf-8").rstrip("\n"),
                  "```", ""]
    return "\n".join(parts).rstrip("\n")


def plan_lists() -> str:
    models = ", ".join(f"`{model}`" for model in plan_module.ATTRIBUTION_MODELS)
    metrics = ", ".join(f"`{metric}`" for metric in plan_module.KPI_METRICS)
    return f"- attribution models: {models}\n- KPI metrics: {metrics}"


# -- events, topics, schema files, reasons ----------------------------------------------------


def default_topics() -> Topics:
    return Topics.with_prefix(DEFAULT_TOPIC_PREFIX)


def topic_table() -> str:
    topics = default_topics()
    carries: dict[str, list[str]] = {}
    for name in EVENT_TYPES:
        carries.setdefault(topics.for_event_type(name), []).append(name)
    rows = ["| topic (default name) | carries | key |", "|---|---|---|"]
    for fld in dataclasses.fields(topics):
        topic = getattr(topics, fld.name)
        if topic == topics.dead_letters:
            rows.append(f"| `{topic}` | {_DEAD_LETTER_TOPIC_NOTE} | the original key |")
        else:
            events = ", ".join(f"`{name}`" for name in carries.get(topic, []))
            rows.append(f"| `{topic}` | {events} | `customer_id` (UTF-8) |")
    return "\n".join(rows)


_COMMON = {"event_id", "occurred_at", "customer_id"}


def event_fields() -> str:
    topics = default_topics()
    parts = ["Every event also has `event_type` (its name below), `event_id`, `occurred_at` and `customer_id`:", ""]
    any_model = next(iter(EVENT_TYPES.values()))
    parts += _field_table([f for f in _struct(any_model).fields if f.name in _COMMON])
    nested: dict[str, mi.StructType] = {}
    for name, model in EVENT_TYPES.items():
        info = _struct(model)
        parts += ["", f"#### `{name}` (topic `{topics.for_event_type(name)}`, schema "
                      f"`schemas/json/{name}.schema.json`)", ""]
        parts += _field_table([f for f in info.fields if f.name not in _COMMON], nested)
    for title, info in nested.items():
        parts += ["", f"#### {title}", ""]
        parts += _field_table(list(info.fields))
    return "\n".join(parts)


def _struct(model: type) -> mi.StructType:
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    return info


def _field_table(fields: Sequence[mi.Field], nested: dict[str, mi.StructType] | None = None) -> list[str]:
    rows = ["| field | | value |", "|---|---|---|"]
    for fld in fields:
        need = "required" if fld.required else "optional"
        rows.append(f"| `{fld.encode_name}` | {need} | {_value_text(fld.type, nested)} |")
    return rows


def _meta_description(annotation: Any) -> str:
    info = mi.type_info(annotation)
    if isinstance(info, mi.Metadata) and info.extra_json_schema:
        return str(info.extra_json_schema.get("description", ""))
    return ""


#: The descriptions every id, time and money field shares (schemas.events), said once in prose instead.
_SHARED = {
    _meta_description(Id): "id: a string of 1..128 characters, no control characters",
    _meta_description(Timestamp): "time: RFC 3339 with an explicit offset",
    _meta_description(Money): 'money: a decimal string (`"899.00"`) or a JSON number',
}


def _value_text(shape: mi.Type, nested: dict[str, mi.StructType] | None = None) -> str:
    note = ""
    if isinstance(shape, mi.UnionType):  # `X | None`: the field is optional, its value an X
        members = [member for member in shape.types if not isinstance(member, mi.NoneType)]
        shape = members[0] if len(members) == 1 else shape
    if isinstance(shape, mi.Metadata):
        description = str((shape.extra_json_schema or {}).get("description", ""))
        if description in _SHARED:
            return _SHARED[description]
        if description and not description.startswith("an integer"):  # an integer's bounds are said below
            note = f"; {description}"
        shape = shape.type
    if isinstance(shape, mi.StrType):
        return f"string{note}"
    if isinstance(shape, mi.IntType):
        return f"integer {shape.ge}..{shape.le:,}{note}" if shape.le is not None else f"integer{note}"
    if isinstance(shape, mi.BoolType):
        return f"boolean{note}"
    if isinstance(shape, mi.LiteralType):
        return "one of " + ", ".join(f"`{value}`" for value in sorted(map(str, shape.values))) + note
    if isinstance(shape, mi.ListType):
        item = _unwrap(shape.item_type)
        low = shape.min_length or 0
        size = f", {low}..{shape.max_length:,} items" if shape.max_length is not None else ""
        if isinstance(item, mi.StructType):
            if nested is not None:
                nested[f"`{item.cls.__name__}`: an item of `lines`"] = item
            return f"array of `{item.cls.__name__}` objects{size}{note}"
        return f"array of {_value_text(shape.item_type).split(':')[0]}s{size}{note}"
    return f"{type(shape).__name__}{note}"


def schema_files() -> str:
    rows = ["| file | describes |", "|---|---|"]
    for name, schema in jsonschema.schemas().items():
        rows.append(f"| `schemas/json/{name}` | {schema['title']} |")
    return "\n".join(rows)


def reason_table() -> str:
    rows = ["| reason | when |", "|---|---|"]
    rows += [f"| `{code}` | {REASONS[code]} |" for code in REASON_CODES]
    return "\n".join(rows)


# -- payroll ----------------------------------------------------------------------------------

EXPORT_COLUMNS: tuple[str, ...] = (*RUNNING_COLUMNS, "settlement_id", "settled_at")


def column_table() -> str:
    rows = ["| # | column | holds |", "|---|---|---|"]
    rows += [f"| {index} | `{name}` | {COLUMNS[name]} |" for index, name in enumerate(EXPORT_COLUMNS, 1)]
    return "\n".join(rows)


_CREATE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def migration_tables() -> list[str]:
    """Every table the migrations create, in migration order."""
    names: list[str] = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        names += [name for name in _CREATE.findall(path.read_text(encoding="utf-8")) if name not in names]
    return names


def table_table() -> str:
    created = migration_tables()
    rows = ["| table | holds |", "|---|---|"]
    rows += [f"| `{name}` | {READER_TABLES[name]} |" for name in READER_TABLES if name in created]
    internal = ", ".join(f"`{name}`" for name in created if name in INTERNAL_TABLES)
    return "\n".join([*rows, "", f"Internal, never read by a report (their shape may change): {internal}."])


# -- ops --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def metric_infos() -> list[MetricInfo]:
    """The metrics of a fresh `Metrics` registry, as /metrics serves them (counters with `_total`)."""
    from stream.metrics import Metrics  # prometheus_client, and the pipeline: only when asked

    metrics = Metrics()
    out = []
    for collector in vars(metrics).values():
        describe = getattr(collector, "describe", None)
        if describe is None or collector is metrics.registry:
            continue
        for family in describe():
            name = family.name + "_total" if family.type == "counter" else family.name
            labels = tuple(getattr(collector, "_labelnames", ()))
            out.append(MetricInfo(name, family.type, labels, family.documentation))
    return out


def metric_table() -> str:
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for info in metric_infos():
        labels = ", ".join(f"`{label}`" for label in info.labels)
        rows.append(f"| `{info.name}` | {info.type} | {labels} | {info.help} |")
    return "\n".join(rows)


def alert_table() -> str:
    import yaml  # a test and development dependency: only the generator reads the file

    document = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    rows = ["| alert | severity | after | fires when | says |", "|---|---|---|---|---|"]
    for group in document["groups"]:
        for rule in group["rules"]:
            expr = " ".join(str(rule["expr"]).split()).replace("|", "&#124;")
            rows.append(f"| `{rule['alert']}` | {rule.get('labels', {}).get('severity', '')} | "
                        f"{rule.get('for', 'at once')} | `{expr}` | {rule['annotations']['summary']} |")
    return "\n".join(rows)


def dashboard_list() -> str:
    parts = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        sources = sorted({str(panel.get("datasource", {}).get("uid", "")) for panel in board["panels"]
                          if isinstance(panel.get("datasource"), dict)} - {""})
        panels = "; ".join(str(panel.get("title", "")) for panel in board["panels"])
        parts.append(f"- **{board['title']}** (`deploy/grafana/dashboards/{path.name}`, uid `{board.get('uid')}`, "
                     f"datasource {', '.join(f'`{s}`' for s in sources)}): {panels}.")
    return "\n".join(parts)


# -- the files and their sections --------------------------------------------------------------

#: docs file -> section name -> its generator.
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "publishers.md": {"topics": topic_table, "event-fields": event_fields, "schema-files": schema_files,
                      "dead-letter-reasons": reason_table},
    "payroll.md": {"tables": table_table, "export-columns": column_table},
    "ops.md": {"metrics": metric_table, "alerts": alert_table, "dashboards": dashboard_list},
    "plan-authors.md": {"plan-lists": plan_lists, "plan-keys": plan_key_table, "shipped-plans": shipped_plans},
}


def missing_words() -> list[str]:
    """Names the code knows that this module has no words for, and words for names the code no longer has."""
    problems: list[str] = []

    def compare(kind: str, known: Sequence[str], words: Sequence[str]) -> None:
        problems.extend(f"{kind} {name!r} has no explanation in stream/docs.py" for name in known if name not in words)
        problems.extend(f"{kind} {name!r} is explained in stream/docs.py but the code has no such thing"
                        for name in words if name not in known)

    compare("plan key", [key.path for key in plan_keys()], list(PLAN_KEYS))
    compare("dead-letter reason", list(REASON_CODES), list(REASONS))
    compare("export column", list(EXPORT_COLUMNS), list(COLUMNS))
    compare("table", migration_tables(), [*READER_TABLES, *INTERNAL_TABLES])
    return problems


def render(text: str, sections: dict[str, Callable[[], str]], file: str = "") -> str:
    """`text` with every generated section of `sections` written anew; a section without markers is an error."""
    found = {match["name"] for match in _BLOCK.finditer(text)}
    absent = [name for name in sections if name not in found]
    unknown = sorted(found - set(sections))
    if absent or unknown:
        raise DocsError(f"docs/{file}: " + "; ".join(
            [f"no markers for the generated section {name!r}" for name in absent]
            + [f"markers of a section stream/docs.py does not generate: {name!r}" for name in unknown]))

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        return f"{_BEGIN.format(name=name)}\n{sections[name]().rstrip()}\n{_END.format(name=name)}"

    return _BLOCK.sub(block, text)


def stale(directory: Path = DOCS_DIR) -> list[str]:
    """What is out of date in `directory`, one line each (empty: the docs agree with the code)."""
    problems = missing_words()
    if problems:
        return problems
    for file, sections in SECTIONS.items():
        path = directory / file
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            fresh = render(text, sections, file)
        except DocsError as error:
            problems.append(str(error))
            continue
        old = {m["name"]: m.group() for m in _BLOCK.finditer(text)}
        new = {m["name"]: m.group() for m in _BLOCK.finditer(fresh)}
        problems += [f"{path}: section {name!r} is stale: run `python -m stream.docs` (or `make docs`)"
                     for name in sections if old.get(name) != new.get(name)]
    return problems


def write(directory: Path = DOCS_DIR) -> list[Path]:
    """Rewrite the generated sections of every docs file in `directory`; return the files changed."""
    problems = missing_words()
    if problems:
        raise DocsError("\n".join(problems))
    changed = []
    for file, sections in SECTIONS.items():
        path = directory / file
        text = path.read_text(encoding="utf-8")
        fresh = render(text, sections, file)
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated section is stale")
    parser.add_argument("--dir", type=Path, default=DOCS_DIR, help="the docs directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    try:
        changed = write(args.dir)
    except (DocsError, OSError) as error:
        print(error, file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{args.dir}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
