"""`regcopilot cost`: the guide's "Cost Analysis" as a model you can run, and the same figures
from a live instance's counters.

The model (docs/cost-model.md has the derivation and where the guide's own table departs
from it): an active user validated `v` times an hour costs, with a cache whose entries live
`ttl` seconds, at most one database query per TTL — min(v, 3600/ttl) queries an hour — and
without a cache `v` queries an hour. With freshness from events (README, "Freshness"), entries
live up to the max age instead while the change feed is complete: min(v, 3600/max_age), plus
one query per change to the user (not modelled: changes are rare next to validations).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from regcopilot.ops import endpoint, table
from regcopilot.ops.grading import graded, too_few

GUIDE_USERS = (100, 1_000, 10_000, 100_000)
GUIDE_VALIDATIONS_PER_USER_HOUR = 12.0  # one validation per 5-minute interval
GUIDE_TTL_SECONDS = 300
DEFAULT_MAX_AGE_SECONDS = 6 * 3600  # CACHE_MAX_AGE_SECONDS's default
GUIDE_CACHE_DIVISOR = 60  # the guide's "with cache" column is validations/hour ÷ 60
GUIDE_BREAK_EVEN_USERS = 5_000  # "Redis cost is offset by database savings at ~5,000+ users"
# What one idle worker process of this app sends Redis anyway, measured with INFO stats over
# 60 s: the instance heartbeat every 10 s and the event bus's liveness PING every 5 s.
IDLE_COMMANDS_PER_SECOND = 0.35
DAY_HOURS = 24


@dataclass(frozen=True)
class Prices:
    db_per_1000: float = 0.01  # the observability report's figure: $0.01 per 1,000 queries
    redis_per_100k: float = 0.20  # the guide's Upstash pay-as-you-go price
    redis_free_per_day: int = 10_000  # the guide's Upstash free tier
    db_quota_per_day: int = 500_000  # the guide's Supabase Pro quota

    @property
    def per_query(self) -> float:
        return self.db_per_1000 / 1000

    @property
    def per_command(self) -> float:
        return self.redis_per_100k / 100_000


@dataclass(frozen=True)
class Row:
    users: int
    validations_h: float
    queries_no_cache_h: float
    queries_cache_h: float
    savings_pct: float
    queries_events_h: float
    savings_events_pct: float
    guide_cache_h: float
    guide_savings_pct: float
    db_day_no_cache: float
    db_day_cache: float
    redis_commands_day: float
    redis_day: float

    @property
    def net_day(self) -> float:
        return self.db_day_no_cache - self.db_day_cache - self.redis_day


def queries_per_user_hour(v: float, ttl: float) -> float:
    """With a cache: a user's entry is filled at most once per TTL, and never more often
    than the user is validated."""
    return min(v, 3600.0 / ttl)


def redis_commands_day(users: int, v: float, q: float, processes: int) -> float:
    # The guide's cache-aside: a GET for every validation and a SET for every miss; plus the
    # floor this app's metric flush adds per worker process.
    return DAY_HOURS * users * (v + q) + IDLE_COMMANDS_PER_SECOND * 86_400 * processes


def row(users: int, v: float, ttl: float, prices: Prices, processes: int = 1,
        max_age: float = DEFAULT_MAX_AGE_SECONDS) -> Row:
    q = queries_per_user_hour(v, ttl)
    validations = users * v
    with_cache = users * q
    with_events = users * queries_per_user_hour(v, max(ttl, max_age))
    commands = redis_commands_day(users, v, q, processes)
    return Row(
        users=users,
        validations_h=validations,
        queries_no_cache_h=validations,
        queries_cache_h=with_cache,
        savings_pct=(1 - with_cache / validations) * 100 if validations else 0.0,
        queries_events_h=with_events,
        savings_events_pct=(1 - with_events / validations) * 100 if validations else 0.0,
        guide_cache_h=validations / GUIDE_CACHE_DIVISOR,
        guide_savings_pct=(1 - 1 / GUIDE_CACHE_DIVISOR) * 100,
        db_day_no_cache=DAY_HOURS * validations * prices.per_query,
        db_day_cache=DAY_HOURS * with_cache * prices.per_query,
        redis_commands_day=commands,
        redis_day=max(0.0, commands - prices.redis_free_per_day) * prices.per_command,
    )


def break_even_hit_rate(prices: Prices) -> float:
    """Hit rate above which Redis costs less than the queries it saves, per validation:
    saved h·p_db against (1 + (1 − h))·p_redis (a GET always, a SET on a miss)."""
    return 2 * prices.per_command / (prices.per_query + prices.per_command) * 100


def break_even_users(v: float, q: float, prices: Prices, processes: int = 1) -> int | None:
    """Fewest users whose daily database savings pay for Redis, or None if none do."""
    saving = DAY_HOURS * (v - q) * prices.per_query
    redis = DAY_HOURS * (v + q) * prices.per_command
    if saving <= 0:
        return None
    fixed = IDLE_COMMANDS_PER_SECOND * 86_400 * processes - prices.redis_free_per_day
    if saving <= redis:
        return None  # each user costs Redis more than it saves; free tier aside, never
    if fixed <= 0:
        return 1
    return max(1, math.ceil(fixed * prices.per_command / (saving - redis)))


def quota_users(per_user_hour: float, prices: Prices) -> int | None:
    if per_user_hour <= 0:
        return None
    return math.floor(prices.db_quota_per_day / (DAY_HOURS * per_user_hour))


def _pct(x: float) -> str:
    return f"{x:.1f} %"


def _money(x: float) -> str:
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.4f}" if abs(x) < 1 else f"{sign}${abs(x):,.2f}"


def model_text(users: list[int], v: float, ttl: float, prices: Prices, processes: int,
               max_age: float = DEFAULT_MAX_AGE_SECONDS) -> str:
    rows = [row(n, v, ttl, prices, processes, max_age) for n in users]
    q = queries_per_user_hour(v, ttl)
    q_events = queries_per_user_hour(v, max(ttl, max_age))
    hit = (1 - q / v) * 100 if v else 0.0
    out = [
        f"Cost model: {v:g} validations per user per hour, cache TTL {ttl:g} s, "
        f"max age {max_age:g} s",
        f"  TTL model (feed down, or not provably complete): at most one database query per "
        f"TTL: min({v:g}, 3600/{ttl:g}) = {q:g} per user per hour (hit rate {hit:.1f} %)",
        f"  event-driven model (the default while the change feed is complete): one per max "
        f"age: min({v:g}, 3600/{max(ttl, max_age):g}) = {q_events:.4g} per user per hour, plus "
        "one per change to the user",
        "",
        table.render(
            ["Users", "Validations/h", "DB queries/h no cache", "DB queries/h TTL", "Savings",
             "DB queries/h events", "Savings events", "Guide: cache (÷60)", "Guide: savings"],
            [[table.number(r.users), table.number(r.validations_h),
              table.number(r.queries_no_cache_h), table.number(r.queries_cache_h),
              _pct(r.savings_pct), table.number(r.queries_events_h),
              _pct(r.savings_events_pct), table.number(r.guide_cache_h),
              _pct(r.guide_savings_pct)]
             for r in rows],
            right={0, 1, 2, 3, 4, 5, 6, 7, 8},
        ),
        "",
        f"Per day at ${prices.db_per_1000:g} per 1,000 database queries and "
        f"${prices.redis_per_100k:g} per 100,000 Redis commands ({prices.redis_free_per_day:,} "
        f"free), {processes} worker process(es):",
        table.render(
            ["Users", "DB no cache", "DB cache", "Redis commands", "Redis", "Net saving",
             "Quota used no cache", "Quota used cache"],
            [[table.number(r.users), _money(r.db_day_no_cache), _money(r.db_day_cache),
              table.number(r.redis_commands_day), _money(r.redis_day), _money(r.net_day),
              _pct(DAY_HOURS * r.queries_no_cache_h / prices.db_quota_per_day * 100),
              _pct(DAY_HOURS * r.queries_cache_h / prices.db_quota_per_day * 100)]
             for r in rows],
            right={0, 1, 2, 3, 4, 5, 6, 7},
        ),
        "",
        "Redis versus the database:",
        f"  per validation Redis pays off above a {break_even_hit_rate(prices):.1f} % hit rate "
        f"(this model: {hit:.1f} %)",
    ]
    users_needed = break_even_users(v, q, prices, processes)
    guide_q = v / GUIDE_CACHE_DIVISOR
    guide_needed = break_even_users(v, guide_q, prices, processes)
    out.append(
        "  break-even: "
        + (f"from {users_needed:,} user(s)" if users_needed else "never at this hit rate")
        + " (this model); "
        + (f"from {guide_needed:,} user(s)" if guide_needed else "never")
        + f" with the guide's table; the guide says ~{GUIDE_BREAK_EVEN_USERS:,}+"
    )
    no_cache_quota, cache_quota = quota_users(v, prices), quota_users(q, prices)
    out.append(
        f"  the {prices.db_quota_per_day:,} queries/day quota lasts up to "
        f"{table.number(no_cache_quota)} users without a cache, "
        f"{table.number(cache_quota)} with it"
    )
    if hit < break_even_hit_rate(prices):
        out.append(
            f"  note: validated {v:g} times an hour with a {ttl:g} s TTL, an entry has expired "
            "by the next validation; the cache pays when users are validated more often than "
            "once per TTL (every request is validated here: try --validations-per-user-hour "
            "720 for one request per 5 s)"
        )
    return "\n".join(out)


def live_text(report: dict[str, Any], url: str, prices: Prices, processes: int,
              v_override: float | None, ttl_override: float | None) -> str:
    """Measured figures beside what the model predicts for the same users and traffic."""
    auth = report["authentication"]
    vals, c = auth["validations"], auth["costs"]
    users = int(auth["users"]["activeCount"])
    validations_h = float(vals["averagePerHour"])
    cache = report["validationCache"]
    ttl = ttl_override or cache["ttlMs"] / 1000
    # Which age the instance is under now (absent before freshness from events existed).
    events = cache.get("freshness") == "event-driven"
    age = cache.get("maxAgeMs", 0) / 1000 if events and not ttl_override else ttl
    live = [
        table.number(users),
        f"{validations_h / users:,.2f}" if users else "-",
        table.number(validations_h, 1),
        table.number(validations_h, 1),
        table.number(c["queriesPerHour"]),
        f"{float(vals['cacheHitRate']):.2f} %" + (
            "" if graded(vals["total"]) else f" ({too_few(vals['total'])})"),
        f"${c['estimatedDatabaseCost']}",
        f"${c['costWithoutCache']}",
        f"${c['savings']} ({c['savingsPercentage']} %)",
        "-",
        "-",
    ]
    predicted = ["-"] * len(live)
    if users:
        m = row(users, v_override or validations_h / users, ttl, prices, processes, age)
        q, saved = ((m.queries_events_h, m.savings_events_pct) if age > ttl
                    else (m.queries_cache_h, m.savings_pct))
        predicted = [
            table.number(users), f"{m.validations_h / users:g}",
            table.number(m.validations_h, 1), table.number(m.queries_no_cache_h, 1),
            table.number(q, 1), _pct(saved), "-", "-", "-",
            _money(m.redis_day), _money(m.net_day),
        ]
    labels = ["Active users (24 h)", "Validations/user/hour", "Validations/h",
              "DB queries/h without cache", "DB queries/h with cache", "Cache hit rate",
              "Database cost since start", "... without the cache", "Saved", "Redis $/day",
              "Net saving $/day"]
    rows = [list(r) for r in zip(labels, live, predicted, strict=True)]
    head = (f"Live counters from {url} (scope {auth.get('scope', '?')}, uptime "
            f"{float(auth['uptime']['hours']):.2f} h, backend "
            f"{report['validationCache']['backend']}); per-hour figures average over at "
            "least one hour")
    model = (f"event-driven model: entries live up to the max age, {age:g} s, while the change "
             f"feed is complete (the TTL, {ttl:g} s, when it is not)" if age > ttl
             else f"TTL model: entries live {ttl:g} s" + (
                 " (the change feed is not provably complete now)"
                 if "freshness" in cache else ""))
    label = f"Model (max age {age:g} s)" if age > ttl else f"Model (TTL {ttl:g} s)"
    out = [head, f"This instance is under the {model}.",
           table.render(["", "Live", label], rows, right={1, 2})]
    if not users:
        out.append("  no active users yet: the model needs at least one")
    return "\n".join(out)


def cost(
    users: Annotated[list[int] | None, typer.Option(
        "--users", min=1, help="Active users (repeat for several rows); default the guide's "
        "100, 1,000, 10,000, 100,000.", show_default=False)] = None,
    validations_per_user_hour: Annotated[float | None, typer.Option(
        min=0.01, help="Validations per active user per hour [default: 12, the guide's; "
        "with --url: measured].", show_default=False)] = None,
    ttl: Annotated[float | None, typer.Option(
        min=1, help="Cache TTL in seconds [default: 300; with --url: the instance's].",
        show_default=False)] = None,
    max_age: Annotated[float, typer.Option(
        min=1, help="Max age of an entry while the change feed is complete "
        "(CACHE_MAX_AGE_SECONDS).")] = DEFAULT_MAX_AGE_SECONDS,
    processes: Annotated[int, typer.Option(
        min=0, help="Worker processes sharing Redis (each sends Redis a heartbeat and a PING).")
    ] = 1,
    db_price: Annotated[float, typer.Option(help="Dollars per 1,000 database queries.")] = 0.01,
    redis_price: Annotated[float, typer.Option(help="Dollars per 100,000 Redis commands.")
                           ] = 0.20,
    redis_free: Annotated[int, typer.Option(help="Free Redis commands per day.")] = 10_000,
    db_quota: Annotated[int, typer.Option(help="Database queries per day in the plan.")
                        ] = 500_000,
    url: Annotated[str | None, typer.Option(
        help="Also read the live counters of this instance.", show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        envvar="OBSERVABILITY_TOKEN", help="Bearer token for --url ($OBSERVABILITY_TOKEN).",
        show_default=False)] = None,
) -> None:
    """The guide's cost model: database queries with and without the cache, Redis break-even.
    With --url: exit 2 when the instance cannot be read, 3 when it refuses the token."""
    prices = Prices(db_price, redis_price, redis_free, db_quota)
    if url is not None:
        target = endpoint.report_url(url)
        typer.echo(f"reading {target} ...", err=True)
        token, source = endpoint.resolve_token(token)
        try:
            report = endpoint.read_report(target, token, source=source)
        except endpoint.Refused as exc:
            typer.echo(f"error: {target}: {exc}", err=True)
            raise typer.Exit(3) from None
        except endpoint.Unreachable as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(live_text(report, target, prices, processes, validations_per_user_hour, ttl))
        if not users:
            return
        sys.stdout.write("\n")
    typer.echo(model_text(
        list(users or GUIDE_USERS),
        validations_per_user_hour or GUIDE_VALIDATIONS_PER_USER_HOUR,
        ttl or GUIDE_TTL_SECONDS,
        prices,
        processes,
        max_age,
    ))
