"""Pipelines generated from the models file: the packages their deploys register in the SageMaker Model
Registry (recorded per run, approved or rejected after the rollout), and the local `modelbot pipeline check`."""
