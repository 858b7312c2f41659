"""Cheapest-fit query over the cached price table vs. the same lookup through the Price List API.

Both are measured in this run: the table holds >= 20,000 price rows (many regions x many instance types), the
baseline asks the local fake Price List API (real GetProducts JSON over HTTP, paginated) for one region's
products and picks the cheapest fit from them, which is what answering without the cache would take.

  python bench/pricing.py [--rows N] [--database-url URL] [--quick]

--quick (what `make test` runs so the benchmark cannot rot): 2,000 rows, 200 queries, 3 API lookups; it
checks that both paths answer, not how fast.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bot.integrations import price_list  # noqa: E402
from bot.integrations.price_list import Fetched, PriceRecord  # noqa: E402
from bot.pricing import service as pricing  # noqa: E402
from bot.pricing.service import Need  # noqa: E402
from bot.store import Store  # noqa: E402
from sandbox import price_catalog as catalog  # noqa: E402
from sandbox.price_list import FakePriceList  # noqa: E402

FAMILIES = ["t2", "t3", "m5", "m5d", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "g4dn", "g5", "g6",
            "p3", "p4d", "inf1", "inf2", "trn1"]
SIZES = [("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("12xlarge", 48),
         ("16xlarge", 64), ("24xlarge", 96), ("48xlarge", 192)]


def synthetic_types(n: int, rng: random.Random) -> list[catalog.Spec]:
    """n distinct instance types with plausible specs and prices (generation suffixes make them distinct)."""
    specs = []
    gen = 0
    while len(specs) < n:
        for family in FAMILIES:
            for size, vcpu in SIZES:
                if len(specs) >= n:
                    break
                ratio = {"c": 2, "r": 8}.get(family[0], 4)
                gpus = (1 if vcpu < 48 else 4 if vcpu < 192 else 8) if family[0] in "gp" else 0
                usd = round(vcpu * (0.05 if family[0] == "c" else 0.06) * (1 + gpus) * rng.uniform(0.8, 1.2), 4)
                name = f"ml.{family}{'' if gen == 0 else f'-v{gen}'}.{size}"
                specs.append(catalog.Spec(name, vcpu, vcpu * ratio, gpus, usd))
        gen += 1
    return specs


def fill(store: Store, regions: list[str], specs: list[catalog.Spec]) -> int:
    rows = 0
    for region in regions:
        records = [PriceRecord(region, s.instance_type, s.vcpu, s.memory_gib, s.gpus, None, s.usd_us_east_1)
                   for s in specs]
        rows += pricing.store_prices(store, Fetched(region=region, source="bulk", records=records)).rows
    return rows


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=21_000, help="price rows in the table (>= 20,000)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="default: a temporary SQLite file")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds: does it still run?")
    args = parser.parse_args()
    if args.quick:
        args.rows = 2_000
    queries, lookups = (200, 3) if args.quick else (1000, 15)
    rng = random.Random(6)
    regions = list(pricing.known_regions())[:30]
    per_region = -(-args.rows // len(regions))
    specs = synthetic_types(per_region, rng)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        store = Store(url)
        store.migrate()
        rows = fill(store, regions, specs)
        needs = [Need(vcpu=rng.choice([1, 2, 4, 8, 16, 32]), memory_gib=rng.choice([2, 8, 16, 64, 128]),
                      gpus=rng.choice([0, 0, 0, 1])) for _ in range(500)]
        picks = iter(needs * 4)
        region_picks = iter([rng.choice(regions) for _ in range(2000)])

        def table_query():
            with store.session() as s:
                pricing.cheapest_fits(s, next(region_picks), next(picks))

        for _ in range(50):  # warm the connection pool and the page cache
            table_query()
        table_ms = median_ms(table_query, queries)
        query = ("SELECT * FROM instance_prices WHERE region='us-east-1' AND vcpu>=2 AND memory_gib>=8 "
                 "AND gpus>=0 ORDER BY usd_per_hour LIMIT 5")
        explain = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN "
        with store.engine.connect() as conn:
            plan_text = "; ".join(str(r[-1]).strip() for r in conn.execute(text(explain + query)))
        store.dispose()

    # The baseline: the same question answered from the Price List API, one region's products over HTTP.
    region = "us-east-1"
    api_records = [catalog.record(s, region) for s in specs]
    fake = FakePriceList(api_records).start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    client = price_list.pricing_client(fake.url)
    need = Need(vcpu=2, memory_gib=8)

    def api_lookup():
        fetched = price_list.fetch_from_api(region, client=client, page_size=100)
        fits = [r for r in fetched.records if r.vcpu >= need.vcpu and r.memory_gib >= need.memory_gib]
        return sorted(fits, key=lambda r: r.usd_per_hour)[:5]

    assert api_lookup(), "the fake served nothing usable"
    api_ms = median_ms(api_lookup, lookups)
    fake.stop()
    pages = -(-len(api_records) // 100)

    print(f"cheapest-fit query, {rows:,} price rows in {len(regions)} regions ({store.dialect}): "
          f"median {table_ms:.3f} ms over {queries} queries")
    print(f"  plan: {plan_text}")
    print(f"Price List API lookup on the local fake, {len(api_records)} products of one region in {pages} pages: "
          f"median {api_ms:.1f} ms over {lookups} lookups")
    print(f"ratio: the cached table answers {api_ms / table_ms:,.0f}x faster")
    return 0 if rows >= args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
