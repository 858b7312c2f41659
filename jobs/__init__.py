"""Background work. Each job module exposes NAME and run_once(services) -> str (a one-line summary)."""

# Job modules run each pass, in this order.
MODULES: list[str] = []
