# One image for the web and worker services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=1 DATABASE_URL=postgresql://build/none REDIS_URL=redis://build python manage.py collectstatic --no-input -v0
EXPOSE 8000
# Threads, as `make run` serves: a request waiting for its search (?wait) holds a thread, not a whole process.
CMD ["gunicorn", "imgsearch.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "8", "--timeout", "60"]
