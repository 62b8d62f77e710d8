# Multi-stage build of the ATM simulator. The `production` target runs the bank host.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY config ./config
COPY device ./device
COPY host ./host
COPY peripherals ./peripherals
COPY scripts ./scripts
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /wheels

FROM python:3.11-slim AS production
RUN useradd --create-home --uid 10001 atm
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY alembic.ini ./
COPY host/migrations ./host/migrations
USER atm
ENV ENVIRONMENT=production \
    LOG_LEVEL=INFO \
    ATM_SIM_HOME=/home/atm/.atm-sim
EXPOSE 8583
# Migrations run first so a new image upgrades the schema before serving.
CMD ["sh", "-c", "atm-sim db upgrade && atm-sim host serve --bind 0.0.0.0 --port 8583"]
