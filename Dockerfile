# The killtask bot as a container: `docker build -t killtask .`
#
# It runs the production command `python -m bot`, configured by environment variables only
# (see .env.example and deploy/kubernetes.yaml): HTTP mode serves POST /slack/events and
# GET /healthz, /readyz, /metrics on PORT (3000); Socket Mode serves the three GET paths on
# HEALTH_PORT (8080). It needs DATABASE_URL on PostgreSQL for several replicas, or a writable
# volume for SQLite: -v killtask-data:/data -e DATABASE_URL=sqlite:////data/killtask.db
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only the runtime part of requirements.txt: everything above its "# Tests and lint" line.
COPY requirements.txt .
RUN sed '/^# Tests and lint/,$d' requirements.txt > /tmp/runtime.txt \
    && pip install -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt

# The code is owned by root and only readable by the bot; compiled now, so nothing is written
# at run time and the root filesystem can be read-only.
COPY bot/ bot/
RUN python -m compileall -q bot \
    && groupadd --system --gid 10001 killtask \
    && useradd --system --uid 10001 --gid killtask --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin killtask \
    && mkdir /data \
    && chown killtask:killtask /data

# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001

EXPOSE 3000 8080

# Liveness only (the process serves requests): GET /healthz on PORT in HTTP mode, on
# HEALTH_PORT in Socket Mode (SLACK_APP_TOKEN set). Slim images have no curl; Python has urllib.
# Kubernetes ignores this and uses the probes in deploy/kubernetes.yaml instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; e = lambda k, d: (os.environ.get(k) or '').strip() or d; p = e('HEALTH_PORT', '8080') if e('SLACK_APP_TOKEN', '') else e('PORT', '3000'); u.build_opener(u.ProxyHandler({})).open(f'http://127.0.0.1:{p}/healthz', timeout=3)"]

CMD ["python", "-m", "bot"]
