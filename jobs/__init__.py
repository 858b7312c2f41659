"""Background work. Each job module exposes NAME and run_once(services) -> str (a one-line summary)."""

# Job modules run each pass, in this order.
MODULES: list[str] = ["page_escalation", "run_watcher", "rollout_controller", "price_refresh"]
