# One image for the web server, the workers and beat of docker-compose.yml: the service's own dependencies only
# (requirements.txt; the test, lint and benchmark tools are in requirements-dev.txt), run as an unprivileged user.
FROM python:3.11-slim

# TORCH=cpu takes torch and torchvision from PyTorch's CPU-only index: no CUDA libraries (about 4 GB less, see
# docs/operations.md); TORCH=locked, the default, installs requirements.txt as it is, which also runs on a GPU.
ARG TORCH=locked
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY requirements.txt .
RUN set -eu; \
    if [ "$TORCH" = cpu ]; then \
        torch=$(sed -n 's/^torch==*\([0-9.]*\).*/\1/p' requirements.txt); \
        vision=$(sed -n 's/^torchvision==*\([0-9.]*\).*/\1/p' requirements.txt); \
        pip install --extra-index-url "$TORCH_CPU_INDEX" "torch==$torch+cpu" "torchvision==$vision+cpu"; \
        grep -vE '^(torch|torchvision|triton|nvidia-|cuda-)' requirements.txt > /tmp/requirements.txt; \
    elif [ "$TORCH" = locked ]; then \
        cp requirements.txt /tmp/requirements.txt; \
    else \
        echo "TORCH must be locked or cpu, not $TORCH" >&2; exit 1; \
    fi; \
    pip install -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

COPY . .
RUN DEBUG=1 DATABASE_URL=postgresql://build/none REDIS_URL=redis://build python manage.py collectstatic --no-input -v0

# The service's user owns only its data folders (each a volume in docker-compose.yml); the code stays root's.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/imgsearch imgsearch \
    && mkdir -p /data/media /data/queries /data/incoming /data/beat /import \
    && chown imgsearch:imgsearch /data/media /data/queries /data/incoming /data/beat
USER imgsearch
ENV IMGSEARCH_DATA_DIR=/data MEDIA_ROOT=/data/media QUERY_ROOT=/data/queries INCOMING_ROOT=/data/incoming

EXPOSE 8000
# The web server's health: /healthz answers once the database does (docker-compose.yml checks the workers and beat
# in their own way). It asks with the first of ALLOWED_HOSTS, which Django insists on.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD python -c "import os, urllib.request as u; \
host = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.'); \
host = 'localhost' if host in ('', '*') else host; \
u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=8)"
# Threads, as `make run` serves: a request waiting for its search (?wait) holds a thread, not a whole process.
CMD ["gunicorn", "imgsearch.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "8", "--timeout", "60"]
