# embedfleet: one image for workers, Flower and the CLI (see docker-compose.yml).
#   docker build -t embedfleet .
#   docker run --rm embedfleet --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/var/cache/embedfleet/hf \
    EMBEDFLEET_MODEL_CONFIG=/config/models.json \
    EMBEDFLEET_STATE_DIR=/tmp/embedfleet

WORKDIR /app

# torch first, pinned, from the CPU index: a looser pin pulls a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies before sources, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY celeryconfig.py models.json ./
COPY tasks/ tasks/
COPY workers/ workers/
COPY producers/ producers/
COPY data/ data/
RUN pip install . \
    && mkdir -p /config /var/cache/embedfleet/hf /tmp/embedfleet \
    && cp models.json /config/models.json \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin embedfleet \
    && chown -R embedfleet /var/cache/embedfleet /tmp/embedfleet

USER embedfleet

# `docker run embedfleet worker --models all` ... ; Flower overrides the entrypoint.
ENTRYPOINT ["embedfleet"]
CMD ["worker", "--models", "all"]
