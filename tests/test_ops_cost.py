"""`regcopilot cost`: the guide's own figures, and the TTL model the tool follows."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from regcopilot.cli import app
from regcopilot.ops import cost as model

# The guide's "Cost Analysis" table: users → (validations/hour, no cache, with cache).
GUIDE_TABLE = {
    100: (1_200, 1_200, 20),
    1_000: (12_000, 12_000, 200),
    10_000: (120_000, 120_000, 2_000),
    100_000: (1_200_000, 1_200_000, 20_000),
}


@pytest.mark.parametrize("users", sorted(GUIDE_TABLE))
def test_guide_columns_reproduced(users):
    validations, no_cache, guide_cache = GUIDE_TABLE[users]
    row = model.row(users, 12, 300, model.Prices())
    assert row.validations_h == validations
    assert row.queries_no_cache_h == no_cache
    assert row.guide_cache_h == guide_cache  # the guide's column: validations/hour ÷ 60
    assert round(row.guide_savings_pct, 1) == 98.3


def test_ttl_model_one_query_per_user_per_ttl():
    # 12 validations/hour with a 300 s TTL: each validation finds its entry expired.
    assert model.row(100, 12, 300, model.Prices()).queries_cache_h == 1_200
    # One request per 5 s: the guide's 98.3 % savings come out of the TTL model.
    fast = model.row(100, 720, 300, model.Prices())
    assert fast.queries_cache_h == 1_200 and round(fast.savings_pct, 1) == 98.3
    # A longer TTL, fewer queries: min(v, 3600/ttl).
    assert model.row(100, 720, 600, model.Prices()).queries_cache_h == 600


def test_guide_quota_lines():
    # "Without cache: 1,000 users = 288,000 queries/day (57% of quota)"; "with cache: 4,800".
    row = model.row(1_000, 12, 300, model.Prices())
    assert 24 * row.queries_no_cache_h == 288_000
    assert 24 * row.guide_cache_h == 4_800
    assert round(24 * row.queries_no_cache_h / 500_000 * 100) == 58  # 57.6 %, the guide's "57%"
    assert model.quota_users(12, model.Prices()) == 1_736


def test_break_even():
    prices = model.Prices()
    assert round(model.break_even_hit_rate(prices), 1) == 33.3
    assert model.break_even_users(12, 12, prices) is None  # nothing saved at 0 % hits
    # Fixed cost: 0.35 idle commands/s × 86,400 − 10,000 free = 20,240 commands = $0.0405/day.
    # Net saving per user-day at the guide's ÷60: 24 × (11.8 × $0.00001 − 12.2 × $0.000002)
    # = $0.00225 → 18.02 → 19 users; at v = 720: $0.135 per user-day → from the first user.
    assert model.break_even_users(12, 12 / 60, prices) == 19
    assert model.break_even_users(720, 12, prices) == 1


def test_cost_command_table():
    result = CliRunner().invoke(app, ["cost", "--users", "100", "--users", "1000"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row100 = next(line for line in lines if line.strip().startswith("100 "))
    assert row100.split()[:5] == ["100", "1,200", "1,200", "1,200", "0.0"]
    assert "20" in row100.split() and "98.3" in row100.split()
    assert "break-even" in result.output and "~5,000+" in result.output
    fast = CliRunner().invoke(app, ["cost", "--users", "100", "--validations-per-user-hour", "720"])
    row = next(line for line in fast.output.splitlines() if line.strip().startswith("100 "))
    assert row.split()[:6] == ["100", "72,000", "72,000", "1,200", "98.3", "%"]


def test_cost_url_unreachable_exits_2():
    result = CliRunner().invoke(app, ["cost", "--url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 2


def test_event_driven_column_is_one_query_per_max_age():
    # 12 validations an hour, entries living 6 h: 1,000 users cost 1,000/6 queries an hour.
    row = model.row(1_000, 12, 300, model.Prices(), max_age=6 * 3600)
    assert round(row.queries_events_h, 1) == 166.7
    # A max age shorter than the TTL changes nothing: the TTL is the floor.
    assert model.row(1_000, 12, 300, model.Prices(), max_age=60).queries_events_h == 12_000
    result = CliRunner().invoke(app, ["cost", "--users", "1000", "--max-age", "18000"])
    assert result.exit_code == 0, result.output
    row1000 = next(line for line in result.output.splitlines()
                   if line.strip().startswith("1,000 "))
    assert row1000.split()[6:9] == ["200", "98.3", "%"]  # the guide's figure, at a 5 h max age
