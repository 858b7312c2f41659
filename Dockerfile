# modelbot itself: one image for both processes, as the Procfile says. compose.yaml runs it for a team
# (docs/operations.md, "Run it for a team").
#
#   docker build -t modelbot .
#   docker run --env-file .env -v "$PWD/models.toml:/app/models.toml:ro" -p 3000:3000 modelbot             # web
#   docker run --env-file .env -v "$PWD/models.toml:/app/models.toml:ro" modelbot python -m jobs             # worker
#
# BASE_IMAGE is any Debian-like image with Python 3.11 and its venv module (python:3.11-slim, or Debian
# bookworm's python3 + python3-venv). Without network, put every wheel modelbot needs in wheels/ (pip download
# -d wheels -c constraints.txt '.[app]' setuptools wheel) and pass --build-arg PIP_NO_INDEX=1.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
WORKDIR /src
# A venv (a Debian-packaged Python refuses system-wide installs), modelbot and its app dependencies at the pins
# its tests ran with; the source tree stays behind in this stage.
RUN python3 -m venv /opt/venv \
    && mkdir -p wheels \
    && /opt/venv/bin/pip install --no-cache-dir --find-links wheels -c constraints.txt '.[app]'

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
# Beside the package (which carries the generated pipeline's DAG files for `modelbot pipeline check`): the example
# models file and the Slack app manifest.
COPY --from=build /src/models.example.toml /src/manifest.json /app/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 \
    MODELS_FILE=/app/models.toml \
    DATABASE_URL=sqlite:////app/data/modelbot.db
# A user to run as; /app/data holds the SQLite database when no DATABASE_URL names PostgreSQL.
RUN useradd --create-home --user-group --uid 1000 modelbot \
    && mkdir -p /app/data \
    && chown modelbot:modelbot /app/data
WORKDIR /app
USER modelbot
EXPOSE 3000
# The web process; the worker is the same image with `python -m jobs`.
CMD ["python", "-m", "bot"]
