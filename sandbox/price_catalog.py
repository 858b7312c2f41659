"""Price list records in the real AWS shape, generated from a small instance catalogue.

A GetProducts PriceList entry is the JSON text of one document:
  {"product": {"productFamily", "attributes": {...}, "sku"}, "serviceCode", "terms": {"OnDemand": {
     "<sku>.<offerTermCode>": {"priceDimensions": {"<sku>.<offerTermCode>.<rateCode>": {"unit": "Hrs",
        "pricePerUnit": {"USD": "0.2300000000"}, ...}}, "sku", "offerTermCode", ...}}}, "version", "publicationDate"}
The bulk offer file holds the same products keyed by sku, and terms.OnDemand keyed by sku, then by
"<sku>.<offerTermCode>" (see fake_price_list.bulk_offer_file).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

ON_DEMAND_TERM = "JRTCKXETXF"  # the real on-demand offer term code
RATE_CODE = "6YS6EN2CT7"
VERSION = "20260901000000"
PUBLISHED = "2026-09-01T00:00:00Z"

LOCATIONS = {
    "us-east-1": ("US East (N. Virginia)", "USE1", 1.0),
    "us-west-2": ("US West (Oregon)", "USW2", 1.0),
    "eu-west-1": ("EU (Ireland)", "EU", 1.12),
    "ap-northeast-1": ("Asia Pacific (Tokyo)", "APN1", 1.29),
}


@dataclass(frozen=True)
class Spec:
    instance_type: str
    vcpu: int
    memory_gib: float
    gpus: int
    usd_us_east_1: float
    gpu_memory_per_gpu: str = "N/A"  # what the price list says; often N/A


CATALOG = [
    Spec("ml.t2.medium", 2, 4, 0, 0.056),
    Spec("ml.t2.large", 2, 8, 0, 0.111),
    Spec("ml.t2.xlarge", 4, 16, 0, 0.223),
    Spec("ml.m5.large", 2, 8, 0, 0.115),
    Spec("ml.m5.xlarge", 4, 16, 0, 0.23),
    Spec("ml.m5.2xlarge", 8, 32, 0, 0.461),
    Spec("ml.m5.4xlarge", 16, 64, 0, 0.922),
    Spec("ml.m5.12xlarge", 48, 192, 0, 2.765),
    Spec("ml.m5.24xlarge", 96, 384, 0, 5.53),
    Spec("ml.c5.large", 2, 4, 0, 0.102),
    Spec("ml.c5.xlarge", 4, 8, 0, 0.204),
    Spec("ml.c5.2xlarge", 8, 16, 0, 0.408),
    Spec("ml.c5.4xlarge", 16, 32, 0, 0.816),
    Spec("ml.c5.9xlarge", 36, 72, 0, 1.836),
    Spec("ml.c5.18xlarge", 72, 144, 0, 3.672),
    Spec("ml.r5.large", 2, 16, 0, 0.151),
    Spec("ml.r5.xlarge", 4, 32, 0, 0.302),
    Spec("ml.r5.2xlarge", 8, 64, 0, 0.605),
    Spec("ml.r5.4xlarge", 16, 128, 0, 1.21),
    Spec("ml.r5.12xlarge", 48, 384, 0, 3.629),
    Spec("ml.r5.24xlarge", 96, 768, 0, 7.258),
    Spec("ml.inf1.xlarge", 4, 8, 0, 0.297),
    Spec("ml.g4dn.xlarge", 4, 16, 1, 0.736),
    Spec("ml.g4dn.2xlarge", 8, 32, 1, 0.94),
    Spec("ml.g4dn.12xlarge", 48, 192, 4, 4.89),
    Spec("ml.g5.xlarge", 4, 16, 1, 1.408),
    Spec("ml.g5.12xlarge", 48, 192, 4, 7.09),
    Spec("ml.g5.48xlarge", 192, 768, 8, 20.36),
    Spec("ml.p3.2xlarge", 8, 61, 1, 3.825),
    Spec("ml.p4d.24xlarge", 96, 1152, 8, 37.688),
    # Not in sagemaker.core's GPU table: its GPU memory must come from the price list (per GPU).
    Spec("ml.g6.xlarge", 4, 16, 1, 1.0064, gpu_memory_per_gpu="24"),
]
BY_TYPE = {s.instance_type: s for s in CATALOG}


def sku_for(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16].upper().replace("0", "Q")


def price_in(spec: Spec, region: str) -> float:
    return round(spec.usd_us_east_1 * LOCATIONS[region][2], 4)


def record(spec: Spec, region: str, *, component: str = "Hosting", usd: float | None = None) -> dict:
    """One GetProducts document (a dict; the API sends json.dumps of it)."""
    location, prefix, _ = LOCATIONS[region]
    usage = {"Hosting": "Host", "Training": "Train", "Notebook": "Notebk"}.get(component, component)
    sku = sku_for(region, spec.instance_type, component, str(usd))
    usd = price_in(spec, region) if usd is None else usd
    term = f"{sku}.{ON_DEMAND_TERM}"
    return {
        "product": {
            "productFamily": "ML Instance",
            "attributes": {
                "regionCode": region,
                "servicecode": "AmazonSageMaker",
                "usagetype": f"{prefix}-{usage}:{spec.instance_type}",
                "locationType": "AWS Region",
                "gpuMemory": spec.gpu_memory_per_gpu if spec.gpus else "N/A",
                "gpu": str(spec.gpus) if spec.gpus else "N/A",
                "physicalGpu": str(spec.gpus) if spec.gpus else "N/A",
                "location": location,
                "servicename": "Amazon SageMaker",
                "instanceName": spec.instance_type,
                "operation": "RunInstance",
                "instanceType": spec.instance_type,
                "vCpu": str(spec.vcpu),
                "memory": f"{spec.memory_gib:g} GiB",
                "component": component,
                "platoinstancetype": component,
                "platoinstancename": "Standard",
                "computeType": "GPU Instances" if spec.gpus else "Standard Instances",
                "currentGeneration": "Yes",
                "processorArchitecture": "64-bit",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {
            "OnDemand": {
                term: {
                    "priceDimensions": {
                        f"{term}.{RATE_CODE}": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${usd} per On Demand {component} {spec.instance_type} in {location}",
                            "appliesTo": [],
                            "rateCode": f"{term}.{RATE_CODE}",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{usd:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2026-09-01T00:00:00Z",
                    "offerTermCode": ON_DEMAND_TERM,
                    "termAttributes": {},
                }
            }
        },
        "version": VERSION,
        "publicationDate": PUBLISHED,
    }


def region_records(region: str) -> list[dict]:
    """A region as the price list has it: hosting prices, plus training/notebook prices and a free-tier $0
    hosting entry that must all stay out of the table."""
    out = [record(spec, region) for spec in CATALOG]
    out += [record(spec, region, component="Training") for spec in CATALOG[:6]]
    out += [record(BY_TYPE["ml.t2.medium"], region, component="Notebook")]
    out.append(record(BY_TYPE["ml.t2.medium"], region, usd=0.0))
    return out


def malformed_records(region: str) -> list[dict]:
    """Four hosting records that cannot be used, each broken in a different field."""
    base = BY_TYPE["ml.m5.large"]
    no_memory = record(Spec("ml.x1.large", 2, 8, 0, 0.5), region)
    no_memory["product"]["attributes"]["memory"] = "NA"
    no_vcpu = record(Spec("ml.x2.large", 2, 8, 0, 0.5), region)
    del no_vcpu["product"]["attributes"]["vCpu"]
    bad_price = record(Spec("ml.x3.large", 2, 8, 0, 0.5), region)
    for term in bad_price["terms"]["OnDemand"].values():
        for dim in term["priceDimensions"].values():
            dim["pricePerUnit"]["USD"] = "call us"
    no_terms = copy.deepcopy(record(Spec("ml.x4.large", base.vcpu, 8, 0, 0.5), region))
    no_terms["terms"] = {}
    return [no_memory, no_vcpu, bad_price, no_terms]


def expected_hosting(region: str) -> dict[str, float]:
    return {s.instance_type: price_in(s, region) for s in CATALOG}


def dumps(doc: dict) -> str:
    return json.dumps(doc)
