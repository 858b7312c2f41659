"""What runs inside a model's container: `modelbot-serve`, SageMaker's custom-container contract.

The data scientist's module (MODELBOT_MODEL_MODULE) defines `predict`, `REQUEST_SCHEMA` and `RESPONSE_SCHEMA`
(and optionally `FEATURES` and `load`); this package serves it on GET /ping and POST /invocations under
gunicorn, checking every request and every prediction against the schemas. It imports nothing of the Slack
app (bot/, handlers/, jobs/) and installs with a small dependency set: `pip install "modelbot[serving]"`.
See docs/serving.md.
"""
