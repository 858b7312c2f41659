"""`/model retrain <model> [key=value ...]`: trigger the model's Airflow DAG and open the run's thread."""

from __future__ import annotations

from bot import audit
from bot.runs import service as runs
from bot.slack.command_line import UsageError, parse_key_values
from bot.errors import ExternalError
from bot.slack.text import code, escape
from handlers.commands.spec import Invocation, Subcommand

RESERVED = ("model", "requested_by")  # modelbot sets these in the conf itself


def run_retrain(inv: Invocation) -> None:
    services, model = inv.services, inv.model
    extra = parse_key_values(inv.args)
    clash = [k for k in RESERVED if k in extra]
    if clash:
        raise UsageError(f"{code(clash[0])} is set by modelbot itself; choose another key.")
    try:
        result = runs.trigger_retrain(services, model, inv.user_id, extra)
    except ExternalError as exc:
        audit.record(services.store, user_id=inv.user_id, action="retrain", model=model.name, outcome="failed",
                     reason=str(exc), conf=extra)
        raise
    info = result.info
    audit.record(services.store, user_id=inv.user_id, action="retrain", model=model.name, outcome="ok",
                 dag_id=info.dag_id, run_id=info.run_id, conf=extra)
    head = f":rocket: Retraining of *{escape(model.name)}* started: run {code(info.run_id)} of DAG {code(info.dag_id)}."
    airflow_link = f"<{result.run_url}|Airflow>"
    if result.thread_ts:
        where = f"<{result.permalink}|the run's thread>" if result.permalink else f"the run's thread in <#{result.channel}>"
        text = f"{head}\nFollow it in {where} · {airflow_link}"
    else:
        text = (f"{head}\n:warning: Its thread in <#{result.channel}> could not be opened yet ({escape(result.problem or '')}); "
                f"the run watcher will open it. Meanwhile: {airflow_link}")
    inv.reply(text=text)


def _progress(inv: Invocation) -> str:
    return f":hourglass_flowing_sand: Triggering *{escape(inv.model.name)}* retraining in Airflow…"


SUBCOMMANDS = [
    Subcommand(
        name="retrain",
        usage="retrain <model> [key=value ...]",
        summary="trigger the model's Airflow DAG (key=value pairs go into its conf); the run gets a thread",
        run=run_retrain,
        model_arg=True,
        min_args=1,
        mutating=True,
        action="retrain",
        progress=_progress,
    ),
]
