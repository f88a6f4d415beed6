# The loopctl service (gateway, signup, MCP, worker). Migrations need sqitch and psql.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends sqitch libdbd-pg-perl postgresql-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service service
COPY migrations migrations
COPY sql sql
COPY functions functions
COPY policies policies
RUN pip install --no-cache-dir -e .
ENV LOOPCTL_HOST=0.0.0.0
EXPOSE 8000
CMD ["loopctl", "serve"]
