# Images for docker-compose.yml (production). Two targets:
#   app  - CPU image for the ingestion worker, Celery worker/beat and migrations (`recast`, `celery`, `alembic`)
#   api  - the serving image (`recast serve`, RECAST_ENGINE=vllm), built on vLLM's GPU image
# No Docker engine runs on the development machines: tests/test_compose.py checks this file's
# targets and the compose file statically; build it where Docker runs (`docker compose build`).

FROM python:3.11-slim AS app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
# torch first and pinned, as the Makefile does. Pass TORCH_INDEX_URL=<PyTorch's CPU wheel index>
# for a small CPU-only image; left empty, pip takes the default (CUDA) build.
ARG TORCH_INDEX_URL=""
RUN pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
COPY pyproject.toml README.md alembic.ini ./
COPY recast recast
COPY schemas schemas
COPY serving serving
COPY learner learner
COPY ops ops
COPY migrations migrations
COPY data data
RUN pip install . && useradd --system --home /var/lib/recast recast \
    && mkdir -p /var/lib/recast && chown recast /var/lib/recast
USER recast
ENTRYPOINT ["recast"]

FROM vllm/vllm-openai:v0.33.0 AS api
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY --from=app /app /app
# vLLM brings its own CUDA torch (2.14 for vLLM 0.33); the project's torch==2.13.0 pin is for the CPU
# wheel, so it is dropped here rather than letting pip replace vLLM's torch.
RUN sed -i '/"torch==/d' pyproject.toml && pip install .
ENTRYPOINT ["recast"]
