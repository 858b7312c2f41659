"""Pure chart functions: pandas DataFrame in, a RenderedChart (PNG bytes, title, alt text) out (matplotlib, Agg).
No I/O, no Slack: bot/chart_posting.py posts them."""
