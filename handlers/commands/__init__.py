def register(app) -> None:
    from handlers.commands.model import handle_model_command

    app.command("/model")(handle_model_command)
