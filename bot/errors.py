"""The one base class for failures of an outside system (Slack, Airflow, SageMaker, CloudWatch, S3, pricing).

Its message is shown to users as is: it names the system and what was not done.
"""


class ExternalError(Exception):
    pass
