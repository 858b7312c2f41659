from handlers.commands.model import handle_model_command


def register(app) -> None:
    app.command("/model")(handle_model_command)
