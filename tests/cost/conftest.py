"""Cost fixtures: the scaling tests' world (moto behind the UpdateEndpoint fake, a models file with a scaling
table, prices stored)."""

from tests.scaling.conftest import scaling_aws, scaling_models, services  # noqa: F401  (fixtures)
