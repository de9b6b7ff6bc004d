# profilestream worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY model ./model
COPY stream ./stream
COPY bench ./bench
COPY deploy ./deploy
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && useradd --create-home --uid 10001 app && mkdir -p /state /cache && chown app /state /cache
USER app
# /metrics and /ready; inside a container the web server must bind all interfaces.
ENV PROFILESTREAM_WEB_BIND=0.0.0.0
# numba's compiled-kernel cache (model/fused.py): the package folder is not writable by `app`.
ENV NUMBA_CACHE_DIR=/cache/numba
EXPOSE 6066
CMD ["profilestream", "worker"]
