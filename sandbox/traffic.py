"""Simulated production traffic: per-variant CloudWatch datapoints that follow each endpoint's real weights, and
a real sample of requests answered by each variant's modelbot-serve.

Every few seconds, for each endpoint, it reads the current variant weights from SageMaker (DescribeEndpoint,
so a rollout's weight changes show up at once), sends a few real requests to each variant that takes traffic
(sandbox/sampling.py: InvokeEndpoint through the sandbox's hosting, where the variant's own model answers,
400 or 500 included), draws the requests of that interval from a daily-shaped volume, splits them by weight,
draws each variant's 5XX and 4XX errors at the rate its real sample showed plus the panel's injected rate, and
writes Invocations, Invocation5XXErrors and Invocation4XXErrors to CloudWatch (namespace AWS/SageMaker,
dimensions EndpointName and VariantName), as SageMaker publishes them, and ModelLatency as the aggregate it is
(SampleCount and Sum, microseconds): each endpoint's `latency_ms`, times `new_variant_latency` for variants
added later. At start it backfills the last day at 10-minute resolution, so status charts have a history, and
replays calm days of churn's traffic (sandbox/world_clock.py) so its quality has a reference.

It also keeps churn's world (sandbox/churn_world.py): the labels of churn's predictions, uploaded after a
delay, and the drift the page's control turns on.

A small HTTP control on 127.0.0.1 serves GET /state (per endpoint: variants, weights, live split, injected
and served rates, an example request; churn's world), POST /rates {"endpoint", "variant", "rate_5xx",
"rate_4xx"} (variant "*": variants added later) and POST /world {"drift": true|false}; the sandbox page's
panels use them. Run: python -m sandbox.traffic --config traffic.json --port N [--clock FILE] (AWS_* in the
environment; AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME points at the hosting).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sandbox.churn_world import ChurnWorld
from sandbox.sampling import Sampler
from sandbox.world_clock import WorldClock, calm_schedule

NAMESPACE = "AWS/SageMaker"
TICK_SECONDS = 3.0
NEW_VARIANT = "*"  # POST /rates for this "variant": the rates of variants added from now on
BACKFILL_STEP_MINUTES = 10


def daily_volume(per_minute: float, when: datetime) -> float:
    """Requests per minute at `when`: quietest around 04:00 UTC, busiest around 16:00 (0.55x to 1.45x)."""
    hour = when.hour + when.minute / 60
    return per_minute * (1.0 + 0.45 * math.sin((hour - 10.0) / 24.0 * 2 * math.pi))


def draw_errors(rng: random.Random, requests: int, rate: float) -> int:
    """A binomial draw (normal approximation: counts here are in the thousands)."""
    if requests <= 0 or rate <= 0:
        return 0
    mean = requests * rate
    sd = math.sqrt(requests * rate * (1 - rate))
    return max(0, min(requests, round(rng.gauss(mean, sd))))


class Simulation:
    """State shared by the writer loop and the control server; every method takes the lock."""

    def __init__(self, config: dict[str, Any], region: str = "us-east-1", seed: int | None = None,
                 sampler: Sampler | None = None, world: ChurnWorld | None = None):
        self.region = region
        self.sampler, self.world = sampler, world
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        # endpoint -> {"per_minute", "stable": (5xx, 4xx), "new_variant": (5xx, 4xx), "variants": {name: rates}}
        self.endpoints: dict[str, dict[str, Any]] = {}
        for name, spec in config["endpoints"].items():
            self.endpoints[name] = {
                "per_minute": float(spec.get("per_minute", 60000)),
                "stable": tuple(spec.get("stable", (0.002, 0.004))),
                "new_variant": tuple(spec.get("new_variant", spec.get("stable", (0.002, 0.004)))),
                "variants": {},
                "weights": {},
                "last_minute": {},
                "note": spec.get("note", ""),
                "latency_ms": float(spec.get("latency_ms", 40.0)),
                "new_variant_latency": float(spec.get("new_variant_latency", 1.0)),
                "latency": {},  # variant -> factor on latency_ms
            }
        self.errors: list[str] = []
        boto = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
        self.sm = boto3.client("sagemaker", region_name=region, config=boto)
        self.cw = boto3.client("cloudwatch", region_name=region, config=boto)

    # ---- control ----
    def state(self) -> dict[str, Any]:
        with self.lock:
            out = {}
            for name, e in self.endpoints.items():
                total = sum(e["weights"].values()) or 1.0
                out[name] = {
                    "per_minute": round(daily_volume(e["per_minute"], datetime.now(timezone.utc))),
                    "note": e["note"],
                    "new_variant": {"rate_5xx": e["new_variant"][0], "rate_4xx": e["new_variant"][1]},
                    "variants": [
                        {"name": v, "weight": w, "share": w / total,
                         "rate_5xx": e["variants"].get(v, e["new_variant"])[0],
                         "rate_4xx": e["variants"].get(v, e["new_variant"])[1],
                         "last_minute": e["last_minute"].get(v, {})}
                        for v, w in sorted(e["weights"].items())
                    ],
                }
            errors = self.errors[-3:]
        if self.sampler is not None:
            for name, endpoint in out.items():
                endpoint["example"] = self.sampler.example(name) if name in self.sampler.specs else None
                for variant in endpoint["variants"]:
                    variant["served"] = self.sampler.describe(name, variant["name"])
            errors += self.sampler.errors[-2:]
        return {"endpoints": out, "errors": errors, "world": self.world.state() if self.world else None}

    def set_rates(self, endpoint: str, variant: str, rate_5xx: float, rate_4xx: float) -> None:
        if endpoint not in self.endpoints:
            raise KeyError(f"no simulated endpoint {endpoint}")
        for rate in (rate_5xx, rate_4xx):
            if not 0 <= rate <= 1:
                raise ValueError("error rates are fractions between 0 and 1")
        with self.lock:
            if variant == NEW_VARIANT:
                self.endpoints[endpoint]["new_variant"] = (rate_5xx, rate_4xx)
            else:
                self.endpoints[endpoint]["variants"][variant] = (rate_5xx, rate_4xx)

    # ---- writing ----
    def _weights(self, endpoint: str) -> dict[str, float] | None:
        try:
            described = self.sm.describe_endpoint(EndpointName=endpoint)
        except (ClientError, BotoCoreError) as exc:
            self._error(f"SageMaker DescribeEndpoint {endpoint}: {exc}")
            return None
        return {v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)))
                for v in described.get("ProductionVariants", [])}

    def _error(self, message: str) -> None:
        with self.lock:
            self.errors.append(f"{datetime.now(timezone.utc):%H:%M:%S} {message}")
            del self.errors[:-20]

    def _put(self, data: list[dict]) -> None:
        for i in range(0, len(data), 500):  # PutMetricData takes up to 1000 values; stay well under
            try:
                self.cw.put_metric_data(Namespace=NAMESPACE, MetricData=data[i:i + 500])
            except (ClientError, BotoCoreError) as exc:
                self._error(f"CloudWatch PutMetricData: {exc}; these datapoints were dropped")

    @staticmethod
    def _datum(endpoint: str, variant: str, metric: str, value: float, when: datetime) -> dict:
        return {"MetricName": metric, "Timestamp": when, "Value": float(value), "Unit": "None",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]}

    def _counts(self, e: dict, weights: dict[str, float], requests: int,
                served: dict[str, tuple[float, float]] | None = None) -> dict[str, tuple[int, int, int]]:
        """Requests and 5XX/4XX errors per variant: its injected rates, plus the rates its real sample was
        served with (`served`, variant -> (5XX rate, 4XX rate)), scaled to the simulated volume."""
        total = sum(weights.values())
        out = {}
        for variant, weight in weights.items():
            if total <= 0 or weight <= 0:
                continue
            n = round(requests * weight / total)
            r5, r4 = e["variants"].get(variant, e["new_variant"])
            s5, s4 = (served or {}).get(variant, (0.0, 0.0))
            out[variant] = (n, draw_errors(self.rng, n, min(1.0, r5 + s5)), draw_errors(self.rng, n, min(1.0, r4 + s4)))
        return out

    def discover(self) -> None:
        """Variants already serving at start are the stable ones; any added later gets the endpoint's
        new-variant rates (that is what makes fraud's candidate worse in production)."""
        for name in self.endpoints:
            weights = self._weights(name) or {}
            with self.lock:
                e = self.endpoints[name]
                e["weights"] = weights
                for variant in weights:
                    e["variants"].setdefault(variant, e["stable"])
                    e["latency"].setdefault(variant, 1.0)

    def backfill(self, hours: int = 24) -> None:
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        data = []
        for name, e in self.endpoints.items():
            for k in range(hours * 60 // BACKFILL_STEP_MINUTES, 0, -1):
                when = now - timedelta(minutes=k * BACKFILL_STEP_MINUTES)
                requests = round(daily_volume(e["per_minute"], when) * BACKFILL_STEP_MINUTES)
                for variant, (n, f5, f4) in self._counts(e, e["weights"], requests).items():
                    data += [self._datum(name, variant, "Invocations", n, when),
                             self._datum(name, variant, "Invocation5XXErrors", f5, when),
                             self._datum(name, variant, "Invocation4XXErrors", f4, when)]
        self._put(data)

    def tick(self, seconds: float) -> None:
        now = datetime.now(timezone.utc)
        data = []
        for name in list(self.endpoints):
            weights = self._weights(name)
            if weights is None:
                continue
            served = None
            if self.sampler is not None and name in self.sampler.specs:
                self.sampler.sample(name, weights, seconds)
                self.sampler.forget(name, set(weights))
                served = {v: self.sampler.served_rates(name, v) for v in weights}
            with self.lock:
                e = self.endpoints[name]
                e["weights"] = weights
                for gone in set(e["variants"]) - set(weights):
                    del e["variants"][gone]
                for variant in weights:
                    e["variants"].setdefault(variant, e["new_variant"])
                    e["latency"].setdefault(variant, e["new_variant_latency"])
                latency_us = {v: e["latency_ms"] * 1000 * e["latency"][v] * math.exp(self.rng.gauss(0, 0.05))
                              for v in weights}
                requests = round(daily_volume(e["per_minute"], now) * seconds / 60)
                counts = self._counts(e, weights, requests, served)
                scale = 60 / seconds
                e["last_minute"] = {v: {"requests": round(n * scale), "errors_5xx": round(f5 * scale),
                                        "errors_4xx": round(f4 * scale)} for v, (n, f5, f4) in counts.items()}
            for variant, (n, f5, f4) in counts.items():
                data += [self._datum(name, variant, "Invocations", n, now),
                         self._datum(name, variant, "Invocation5XXErrors", f5, now),
                         self._datum(name, variant, "Invocation4XXErrors", f4, now)]
                if n > 0:
                    mean = latency_us[variant]
                    data.append({"MetricName": "ModelLatency", "Timestamp": now, "Unit": "Microseconds",
                                 "StatisticValues": {"SampleCount": float(n), "Sum": n * mean,
                                                     "Minimum": mean / 4, "Maximum": mean * 6},
                                 "Dimensions": [{"Name": "EndpointName", "Value": name},
                                                {"Name": "VariantName", "Value": variant}]})
        if data:
            self._put(data)
        if self.world is not None:
            self.world.write_due()
            self.world.publish()

    def weights_of(self, endpoint: str) -> dict[str, float]:
        with self.lock:
            return dict(self.endpoints[endpoint]["weights"])


class _Control(BaseHTTPRequestHandler):
    simulation: Simulation

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/state":
            self._send(200, self.simulation.state())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path not in ("/rates", "/world"):
            self._send(404, {"error": "not found"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path == "/world":
                if self.simulation.world is None:
                    self._send(404, {"error": "this traffic simulation keeps no world (no quality story)"})
                    return
                if not isinstance(body.get("drift"), bool):
                    raise ValueError('say {"drift": true} or {"drift": false}')
                self.simulation.world.set_drift(body["drift"])
            else:
                self.simulation.set_rates(str(body["endpoint"]), str(body["variant"]),
                                          float(body["rate_5xx"]), float(body["rate_4xx"]))
        except (KeyError, ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, self.simulation.state())

    def log_message(self, *args) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON: {\"endpoints\": {name: {per_minute, stable, "
                                                         "new_variant, requests, instances}}, \"world\": {...}}")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick", type=float, default=TICK_SECONDS)
    parser.add_argument("--clock", help="the sandbox's clock file (sandbox/world_clock.py)")
    options = parser.parse_args(argv)
    with open(options.config) as f:
        config = json.load(f)
    boto = Config(connect_timeout=3, read_timeout=70, retries={"max_attempts": 1})
    sampled = {name: spec for name, spec in config["endpoints"].items() if spec.get("requests")}
    clock = WorldClock(options.clock)
    world = None
    if config.get("world"):
        world = ChurnWorld(boto3.client("s3", region_name="us-east-1", config=boto), clock,
                           config["world"]["labels"], world_uri=config["world"]["world_uri"])
    sampler = Sampler(boto3.client("sagemaker-runtime", region_name="us-east-1", config=boto), sampled,
                      world=world) if sampled else None
    simulation = Simulation(config, sampler=sampler, world=world)
    handler = type("Control", (_Control,), {"simulation": simulation})
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    simulation.discover()
    simulation.backfill()
    print(f"traffic control on http://127.0.0.1:{server.server_address[1]}", flush=True)
    if world is not None and sampler is not None:
        endpoint = config["world"]["endpoint"]

        def begin() -> None:  # calm days replayed from the clock's lag now, at one a second
            lag = clock.schedule().lag_at(time.time())
            clock.set(calm_schedule(time.time(), lag_days=lag / 86400))

        world.publish()
        answered = sampler.replay(endpoint, lambda: simulation.weights_of(endpoint), begin=begin,
                                  running=lambda: clock.schedule().catching_up(time.time()), stopping=stopping)
        print(f"replayed calm days of {endpoint}: {answered} requests answered", flush=True)
    last = time.monotonic()
    try:
        while not stopping.wait(options.tick):
            now = time.monotonic()
            simulation.tick(now - last)
            last = now
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
