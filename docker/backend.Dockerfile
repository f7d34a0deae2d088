# The API server (FastAPI + the engine). Build from the repository root:
#   docker build -f docker/backend.Dockerfile .
# TORCH_INDEX picks the torch build: the CPU wheels by default; for a GPU box use
#   --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY backend/ backend/
COPY autoencoders/ autoencoders/
COPY explanations/ explanations/
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip install --no-cache-dir "torch==2.13.0" --index-url "$TORCH_INDEX" \
 && python -m pip install --no-cache-dir -e "backend"
ENV CD_HOST=0.0.0.0 CD_PORT=8000 CD_SHARE_DB=/data/investigations.sqlite
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health')"
CMD ["circuit-debugger", "serve"]
