# Image of the ATM simulator. Target `production` (the default) serves the HTTP API on :8000;
# the same image runs the ISO 8583 host (`atm-sim host serve`) and the worker (`atm-sim worker`).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY device ./device
COPY host ./host
COPY peripherals ./peripherals
COPY scripts ./scripts
# The product and every dependency as wheels, so the production stage installs offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm AS production
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production \
    LOG_LEVEL=INFO \
    LOG_FORMAT=json \
    ATM_SIM_HOME=/home/atm/.atm-sim \
    STATEMENT_OUTPUT_DIR=/app/statements
RUN useradd --create-home --uid 10001 --user-group atm
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/atm_sim-*.whl \
    && rm -rf /wheels \
    && mkdir -p /app/statements \
    && chown 10001:10001 /app/statements
# The guide's commands run in /app: `alembic upgrade head` reads alembic.ini and the migrations
# beside it, `python -m scripts.seed_db` the seed script (the package has them too).
COPY alembic.ini ./
COPY host/migrations ./host/migrations
COPY scripts ./scripts
USER 10001
EXPOSE 8000 8583
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
CMD ["uvicorn", "--factory", "device.sim.api.app:app_from_environment", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
