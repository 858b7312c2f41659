"""Pure chart functions: pandas DataFrame in, PNG bytes out (matplotlib, Agg). No I/O, no Slack."""
