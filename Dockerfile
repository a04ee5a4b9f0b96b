# One image for both services; the command picks which one runs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY generated ./generated
COPY services ./services
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app recipeimage \
    && mkdir -p /data/images && chown recipeimage /data/images

USER recipeimage
EXPOSE 50051 50052 9101 9102
CMD ["recipeimage-budget"]
