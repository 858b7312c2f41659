"""`modelbot`: operator tasks from a shell.

  modelbot prices refresh [--region R ...] [--source auto|api|bulk]
  modelbot prices show <vcpu> <memory_gib> [gpus] [--region R]
  modelbot pipeline check <model> [key=value ...] [--rows N] [--production-model FILE] [--production-schemas FILE]
  modelbot new NAME DIR [--defaults] [--data key=value ...] [--models-file PATH] [--force]
  modelbot update [DIR] [--data key=value ...]

Each command group is a subparser added by one function in GROUPS, so other tasks can join without touching
the ones here.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Callable, TextIO

from sqlalchemy.exc import SQLAlchemyError

from bot.config import ConfigError, load_settings
from bot.registry import RegistryError, load_registry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ProgressBar:
    """A one-line progress bar on a terminal (stdlib only); silent when the stream is not a TTY."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, min_interval: float = 0.1):
        self.label, self.stream, self.width, self.min_interval = label, stream or sys.stderr, width, min_interval
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self._last < self.min_interval:
            return
        self._last = now
        self.stream.write("\r" + self.render(done, total))
        self.stream.flush()
        self._drawn = True

    def render(self, done: int, total: int | None) -> str:
        if total:
            frac = min(1.0, done / total)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            return f"{self.label} [{bar}] {frac:4.0%} {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        return f"{self.label} … {done} records"

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")  # clear the bar: the summary line replaces it
            self.stream.flush()


def _services_light():
    """Settings, store (migrated) and registry if one loads; the CLI works without Slack or a models file."""
    from bot.store import Store

    settings = load_settings()
    store = Store(settings.sqlalchemy_url)
    store.migrate()
    try:
        registry = load_registry(settings.MODELS_FILE)
    except RegistryError:
        registry = None
    return settings, store, registry


def _default_region(settings, registry) -> str:
    if registry is not None:
        return registry.defaults.region
    return settings.AWS_REGION or "us-east-1"


def cmd_prices_refresh(args, out: TextIO, err: TextIO) -> int:
    from bot.pricing import service as pricing
    from bot.integrations.aws import AwsClients
    from bot.integrations.price_list import PriceList, PriceListError
    from jobs.price_refresh import registry_regions

    settings, store, registry = _services_light()
    prices = PriceList(AwsClients())
    if args.region:
        regions = list(dict.fromkeys(args.region))
    elif registry is not None:
        regions = sorted(registry_regions(registry))
    else:
        regions = [_default_region(settings, None)]
    status = EXIT_OK
    for region in regions:
        bar = ProgressBar(f"{region}", err)
        try:
            result = pricing.refresh_region(store, prices, region, args.source, progress=bar)
        except PriceListError as exc:
            bar.close()
            print(f"error: {exc}", file=err)
            status = EXIT_FAILED
            continue
        bar.close()
        print(result.summary(), file=out)
    return status


def cmd_prices_show(args, out: TextIO, err: TextIO) -> int:
    from bot.pricing import service as pricing
    from bot.slack import formatting

    settings, store, registry = _services_light()
    region = args.region or _default_region(settings, registry)
    need = pricing.Need(vcpu=args.vcpu, memory_gib=args.memory_gib, gpus=args.gpus)
    if not pricing.is_known_region(region, store):
        print(f"unknown region {region!r}; use a region code such as {pricing.region_examples().replace('`', '')}",
              file=err)
        return EXIT_USAGE
    try:
        q = pricing.quote(store, region, need)
    except pricing.NoPrices as exc:
        print(str(exc).replace("`", ""), file=err)
        return EXIT_FAILED
    print(f"Cheapest SageMaker hosting instances with at least {need.describe()} in {region}:", file=out)
    if not q.offers:
        largest = q.largest
        print(f"  nothing fits; the largest available is {largest.instance_type} ({largest.specs()}), "
              f"{formatting.money(largest.usd_per_hour)}/h", file=out)
    for o in q.offers:
        print(f"  {o.instance_type:<20} {o.specs():<45} {formatting.money(o.usd_per_hour):>9}/h "
              f"{formatting.money(o.usd_per_month):>10}/month", file=out)
    print(q.freshness() + ".", file=out)
    if q.stale():
        print(f"warning: these prices are over {pricing.STALE_AFTER.days} days old; "
              f"run `modelbot prices refresh --region {region}`.", file=out)
    return EXIT_OK


def _positive(kind: type, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'zero or more' if allow_zero else 'above zero'}")
        return value

    return parse


def add_prices(subparsers) -> None:
    prices = subparsers.add_parser("prices", help="SageMaker hosting prices cached from the AWS price list")
    sub = prices.add_subparsers(dest="action", required=True, metavar="ACTION")
    refresh = sub.add_parser("refresh", help="fetch prices for regions and replace the stored ones")
    refresh.add_argument("--region", action="append", metavar="R",
                         help="region code (repeatable); default: every region the models file uses")
    refresh.add_argument("--source", choices=("auto", "api", "bulk"), default="auto",
                         help="api: Price List Query API (needs AWS credentials); bulk: the public offer file; "
                              "auto: api when credentials are set, else bulk (default)")
    refresh.set_defaults(func=cmd_prices_refresh)
    show = sub.add_parser("show", help="the cheapest instances that fit")
    show.add_argument("vcpu", type=_positive(float))
    show.add_argument("memory_gib", type=_positive(float))
    show.add_argument("gpus", type=_positive(int, allow_zero=True), nargs="?", default=0)
    show.add_argument("--region", metavar="R", help="default: the models file's default region")
    show.set_defaults(func=cmd_prices_show)


def cmd_pipeline_check(args, out: TextIO, err: TextIO) -> int:
    from bot.pipelines.check import CheckFailed, run_check

    settings = load_settings()
    try:
        registry = load_registry(settings.MODELS_FILE)
    except RegistryError as exc:
        print(f"modelbot: {exc}", file=err)
        return EXIT_USAGE
    model = registry.get(args.model)
    if model is None:
        close = registry.suggest(args.model)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; known: {', '.join(registry.names()) or 'none'}"
        print(f"modelbot: no model {args.model!r} in {registry.path}{hint}", file=err)
        return EXIT_USAGE
    conf = {}
    for pair in args.conf:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"modelbot: {pair!r} is not key=value (the run conf /model retrain would pass)", file=err)
            return EXIT_USAGE
        conf[key] = value
    try:
        report = run_check(model, conf, rows=args.rows, dag_path=args.dag_file, module_path=args.path,
                           production_model=args.production_model, production_schemas=args.production_schemas,
                           registry_path=registry.path)
    except CheckFailed as exc:
        print(f"Pipeline check of {model.name} failed: {exc}", file=err)
        return EXIT_FAILED
    print(report.text(), file=out)
    return EXIT_OK


def add_pipeline(subparsers) -> None:
    pipeline = subparsers.add_parser("pipeline", help="models whose DAG modelbot generates from three functions")
    sub = pipeline.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="run the model's preprocess, train and predict here on a small sample, "
                                         "without AWS, and say what the DAG would do")
    check.add_argument("model")
    check.add_argument("conf", nargs="*", metavar="key=value", help="run conf, as /model retrain passes it")
    check.add_argument("--rows", type=int, default=200, help="sample size per dataset (default 200)")
    check.add_argument("--path", action="append", metavar="DIR",
                       help="where the module is (repeatable); default: beside the DAG file, and here")
    check.add_argument("--dag-file", metavar="FILE", help="dags/modelbot_pipelines.py (default: this checkout's)")
    check.add_argument("--production-model", metavar="FILE",
                       help="a pickled model or model.tar.gz to compare with, as the DAG compares with production")
    check.add_argument("--production-schemas", metavar="FILE",
                       help="production's schemas.json (its package names it): compare the request schemas too")
    check.set_defaults(func=cmd_pipeline_check)


def cmd_new(args, out: TextIO, err: TextIO) -> int:
    from bot.scaffold import messages, service

    if not args.defaults and not sys.stdin.isatty():
        print("modelbot: no terminal to ask the questions on: pass --defaults (answers not given with --data take "
              "their defaults)", file=err)
        return EXIT_USAGE
    try:
        made = service.new_package(args.name, args.dir, service.parse_data(args.data), defaults=args.defaults,
                                   models_file=args.models_file, force=args.force)
    except service.ScaffoldError as exc:
        print(f"modelbot new: {exc}", file=err)
        return EXIT_USAGE if exc.usage else EXIT_FAILED
    print(messages.made(made), file=out)
    return EXIT_OK


def cmd_update(args, out: TextIO, err: TextIO) -> int:
    from bot.scaffold import messages, service

    try:
        updated = service.update_package(args.dir, service.parse_data(args.data))
    except service.ScaffoldError as exc:
        print(f"modelbot update: {exc}", file=err)
        return EXIT_USAGE if exc.usage else EXIT_FAILED
    print(messages.updated(updated), file=out)
    return EXIT_OK


def add_scaffold(subparsers) -> None:
    new = subparsers.add_parser(
        "new", help="a model package from a few questions (Copier template; docs/new-model.md)",
        description="Make a model package: the module with preprocess, train and predict and its schemas, tests, "
                    "a Dockerfile for modelbot-serve, CI, and the model's models-file entry.")
    new.add_argument("name", metavar="NAME", help="the model's name in the models file")
    new.add_argument("dir", metavar="DIR", help="where the package goes (new or empty)")
    new.add_argument("--defaults", action="store_true", help="ask nothing: default answers, except those --data gives")
    new.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="an answer (repeatable)")
    new.add_argument("--models-file", metavar="PATH",
                     help="append the model's entry to this models file (checked first) instead of the package's own")
    new.add_argument("--force", action="store_true", help="write into DIR even if it is not empty")
    new.set_defaults(func=cmd_new)
    update = subparsers.add_parser(
        "update", help="bring template changes into a package made by `modelbot new` (copier update)")
    update.add_argument("dir", metavar="DIR", nargs="?", default=".", help="the package (default: here)")
    update.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="change an answer")
    update.set_defaults(func=cmd_update)


GROUPS: list[Callable] = [add_prices, add_pipeline, add_scaffold]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelbot", description="modelbot operator tasks")
    subparsers = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for add in GROUPS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, out, err)
    except ConfigError as exc:
        print(f"modelbot: {exc}", file=err)
        return EXIT_USAGE
    except SQLAlchemyError as exc:
        print(f"modelbot: the database could not be used ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
              "nothing was changed. Check DATABASE_URL.", file=err)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
