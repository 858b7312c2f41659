"""SageMaker Model Registry: a model package's approval status (boto3).

boto3 rather than sagemaker-core's ModelPackage resource: the clients here share bot.integrations.aws's
timeouts and retry mode (sagemaker-core builds its own session and clients), the web process does not load
sagemaker-core's large module tree, and the same calls run unchanged against moto in tests. The generated
DAG (dags/modelbot_pipelines.py) uses plain boto3 too, so workers need nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from bot.errors import ExternalError
from bot.integrations import aws

STATUSES = ("Approved", "Rejected", "PendingManualApproval")
PACKAGE_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):\d{12}:model-package/([^/]+)/(\d+)$")
MAX_DESCRIPTION = 1000  # ApprovalDescription's limit


class ModelRegistryError(ExternalError):
    """A Model Registry call failed; the message names it, the package and what was not done."""


@dataclass(frozen=True)
class PackageInfo:
    arn: str
    group: str | None
    version: int | None
    status: str
    description: str | None


def region_of(arn: str, default: str) -> str:
    match = PACKAGE_ARN.match(arn)
    return match.group(1) if match else default


def _message(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Message", str(exc))
    return str(exc)


class ModelRegistry:
    """The SageMaker Model Registry through boto3. Built once where the services are assembled
    (bot.services.Services) and handed in; raises ModelRegistryError."""

    def __init__(self, clients: aws.AwsClients):
        self._clients = clients

    def describe_package(self, arn: str, region: str) -> PackageInfo:
        try:
            desc = self._clients.client("sagemaker", region).describe_model_package(ModelPackageName=arn)
        except (ClientError, BotoCoreError) as exc:
            raise ModelRegistryError(f"The SageMaker Model Registry did not describe model package `{arn}` "
                                     f"({_message(exc)}).") from None
        return PackageInfo(arn=desc.get("ModelPackageArn", arn), group=desc.get("ModelPackageGroupName"),
                           version=desc.get("ModelPackageVersion"), status=desc.get("ModelApprovalStatus", ""),
                           description=desc.get("ApprovalDescription"))


    def set_approval(self, arn: str, region: str, status: str, description: str) -> bool:
        """Sets ModelApprovalStatus with the reason as ApprovalDescription. False, with no update call, when the
        package already has that status and description (a pass that crashed after the call and runs again)."""
        if status not in STATUSES:
            raise ValueError(f"{status!r} is not a model approval status")
        description = description[:MAX_DESCRIPTION]
        current = self.describe_package(arn, region)
        if current.status == status and (current.description or "") == description:
            return False
        try:
            self._clients.client("sagemaker", region).update_model_package(
                ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=description)
        except (ClientError, BotoCoreError) as exc:
            raise ModelRegistryError(f"The SageMaker Model Registry did not set model package `{arn}` to {status} "
                                     f"({_message(exc)}); it still says {current.status}.") from None
        return True
