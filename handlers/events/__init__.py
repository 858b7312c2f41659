from handlers.events import mention


def register(app) -> None:
    mention.register(app)
