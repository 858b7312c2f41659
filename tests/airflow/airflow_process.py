"""The real Airflow used by the tests lives in sandbox/airflow.py (the sandbox starts the same one)."""

from sandbox.airflow import (  # noqa: F401  (re-exported for the tests)
    AIRFLOW_VERSION, CONSTRAINTS, DAG_IDS, JWT_SECRET, VENV, AirflowProcess, ensure_venv, start_secured_api,
    start_standalone,
)
