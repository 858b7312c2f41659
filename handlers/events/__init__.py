def register(app) -> None:
    from handlers.events import mention

    mention.register(app)
