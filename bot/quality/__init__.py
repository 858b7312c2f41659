"""Model quality over time: realized metrics from captured predictions and delayed labels, decay reported once.

reading (S3 -> the join, with cursors), join (bulk SQL), formats (SageMaker's JSON Lines), metrics (the
pipeline's definitions), measure (one pass of one model), references, decay (the pure judgement), episodes
(messages through the outbox), chart_data, messages, service (the worker's entry, /model quality, the button).
"""
