"""modelbot: Slack ChatOps for the ML model lifecycle."""
