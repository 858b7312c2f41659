"""`modelbot new`: a model package from a few questions, rendered with Copier from the template shipped here
(bot/scaffold/template), and kept up to date with it through `copier update`."""
