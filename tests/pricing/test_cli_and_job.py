"""`modelbot prices ...` and the price refresh job, against the fake price list."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from bot import cli
from bot.pricing import service as pricing
from bot.store.base import utcnow
from bot.pricing.tables import InstancePrice, PriceRefresh
from charts.pricing import price_vs_memory
from jobs import price_refresh
from sandbox import price_catalog as catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(sqlite_store, models_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_store.url)
    monkeypatch.setenv("MODELS_FILE", str(models_path))
    return sqlite_store


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_refresh_one_region_from_the_api(cli_env, with_credentials):
    code, out, err = run_cli("prices", "refresh", "--region", "us-east-1", "--source", "api")
    assert code == 0, err
    assert out.strip() == ("us-east-1: 31 instance prices from the AWS Price List API, "
                           "1 records skipped (1 zero price)")
    assert err == ""  # not a terminal: no progress bar


def test_refresh_without_region_covers_the_registry_regions(cli_env, without_credentials):
    code, out, _ = run_cli("prices", "refresh")
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["eu-west-1", "us-east-1"]
    assert "from the AWS bulk price list file" in out


def test_refresh_failure_exits_non_zero_and_says_why(cli_env, without_credentials):
    code, out, err = run_cli("prices", "refresh", "--region", "mars-north-1")
    assert code == 1 and out == ""
    assert err.startswith("error: The AWS price list has no SageMaker prices for region 'mars-north-1'")


def test_show_prints_the_cheapest_fits_and_their_age(cli_env, without_credentials):
    run_cli("prices", "refresh", "--region", "us-east-1")
    code, out, _ = run_cli("prices", "show", "4", "16", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Cheapest SageMaker hosting instances with at least 4 vCPU, 16 GiB, 1 GPU in us-east-1:"
    assert lines[1].split()[0] == "ml.g4dn.xlarge" and "$0.736/h" in lines[1] and "$537.28/month" in lines[1]
    assert lines[-1].startswith("prices fetched less than a minute ago from the AWS bulk price list file")


def test_show_without_prices_says_how_to_get_them(cli_env):
    code, _, err = run_cli("prices", "show", "2", "8", "--region", "eu-west-1")
    assert code == 1 and "modelbot prices refresh --region eu-west-1" in err


def test_show_with_an_unknown_region_names_real_ones(cli_env):
    code, _, err = run_cli("prices", "show", "2", "8", "--region", "mars-north-1")
    assert code == 2 and err.startswith("unknown region 'mars-north-1'; use a region code such as us-east-1")


def test_show_rejects_a_non_number(cli_env, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli("prices", "show", "two", "8")
    assert exit_.value.code == 2
    assert "'two' is not a number" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_clears_itself():
    term = _Terminal()
    bar = cli.ProgressBar("us-east-1", term, width=10, min_interval=0)
    bar(5_000_000, 10_000_000)
    assert term.getvalue().endswith("us-east-1 [#####-----]  50% 5.0/10.0 MB")
    bar(12, None)
    assert term.getvalue().endswith("us-east-1 … 12 records")
    bar.close()
    assert term.getvalue().endswith("\r\033[K")


def test_console_script_runs_as_a_process(cli_env, without_credentials):
    env = {k: v for k, v in os.environ.items()}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "prices", "refresh", "--region", "eu-west-1"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("eu-west-1: 31 instance prices from the AWS bulk price list file")


# --- the job ---------------------------------------------------------------------------------------------------


def test_job_refreshes_missing_regions_then_leaves_fresh_ones_alone(services, without_credentials):
    summary = price_refresh.run_once(services)
    assert price_refresh.NAME == "price_refresh"
    assert summary == ("eu-west-1 (no prices stored): 31 prices from bulk, 1 skipped; "
                       "us-east-1 (no prices stored): 31 prices from bulk, 1 skipped")
    without_credentials.requests.clear()
    assert price_refresh.run_once(services) == "prices are fresh"
    assert without_credentials.requests == []


def test_job_refreshes_prices_older_than_a_day(services, without_credentials):
    price_refresh.run_once(services)
    old = utcnow() - timedelta(hours=25)
    with services.store.session() as s:
        for row in s.scalars(select(InstancePrice).where(InstancePrice.region == "eu-west-1")):
            row.fetched_at = old
    summary = price_refresh.run_once(services)
    assert summary.startswith("eu-west-1 (prices 1 day old): 31 prices from bulk")
    assert "us-east-1" not in summary


def test_job_failure_is_reported_and_not_retried_at_once(services, without_credentials, monkeypatch):
    monkeypatch.setenv("MODELBOT_PRICE_BULK_URL", "http://127.0.0.1:9")
    summary = price_refresh.run_once(services)
    assert "us-east-1 failed (The AWS bulk price list could not be reached" in summary
    with services.store.session() as s:
        assert s.scalar(select(PriceRefresh.error).where(PriceRefresh.region == "us-east-1")) is not None
    again = price_refresh.run_once(services)  # waits RETRY_AFTER before the next try
    assert again.startswith("eu-west-1 waiting to retry (no prices stored; last attempt failed less than a minute ago)")
    assert pricing.regions_due(services.store, ["us-east-1"], now=utcnow() + timedelta(hours=2))


def test_job_interval_setting_and_off_switch(services, without_credentials, monkeypatch):
    price_refresh.run_once(services)
    with services.store.session() as s:
        for row in s.scalars(select(InstancePrice)):
            row.fetched_at = utcnow() - timedelta(hours=3)
    monkeypatch.setenv("MODELBOT_PRICE_REFRESH_HOURS", "0")
    assert price_refresh.run_once(services) == "turned off (MODELBOT_PRICE_REFRESH_HOURS=0)"
    monkeypatch.setenv("MODELBOT_PRICE_REFRESH_HOURS", "2")
    assert price_refresh.run_once(services).startswith("eu-west-1 (prices 3 hours old): 31 prices")


# --- the chart -------------------------------------------------------------------------------------------------


def test_chart_is_a_small_png_and_needs_its_columns():
    df = pd.DataFrame({
        "instance_type": [s.instance_type for s in catalog.CATALOG],
        "memory_gib": [s.memory_gib for s in catalog.CATALOG],
        "usd_per_hour": [s.usd_us_east_1 for s in catalog.CATALOG],
        "fits": [s.memory_gib >= 8 for s in catalog.CATALOG],
    })
    png = price_vs_memory(df, pick="ml.t2.large", current="ml.m5.xlarge")
    assert png.startswith(b"\x89PNG") and 5_000 < len(png) < 300_000
    with pytest.raises(ValueError, match="fits"):
        price_vs_memory(df.drop(columns=["fits"]))
