# One image for every brokerflow service; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY agents ./agents
COPY tables ./tables
COPY flows ./flows
COPY connectors ./connectors
RUN pip install --no-cache-dir -c constraints.txt .
USER nobody
ENTRYPOINT ["brokerflow"]
CMD ["--help"]
