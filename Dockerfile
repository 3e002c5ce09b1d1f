# One image for the web and worker services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=1 DATABASE_URL=postgresql://build/none REDIS_URL=redis://build python manage.py collectstatic --no-input -v0
EXPOSE 8000
CMD ["gunicorn", "imgsearch.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60"]
