ARG BASE=python:3.12-slim
FROM ${BASE}

# One image for the volunteer's worker and the host's monitor (see docs/HOST.md, "Containers").
#   docker build -t wms .
#   docker run --rm -e GITHUB_REPO_URL=https://x-access-token:TOKEN@github.com/org/board.git wms
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git talks to the board; Tesseract (Japanese horizontal and vertical, English) is the
# optional engine; libglib is what OpenCV's headless wheel still needs from the system.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        git ca-certificates \
        tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng \
        libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Run as a plain user; its state (clone, spool, monitor's alert ledger) lives under /data.
RUN useradd --create-home --uid 1000 wms && mkdir -p /data && chown wms /data
USER wms
ENV WMS_WORKDIR=/data/worker \
    WMS_HOST_WORKDIR=/data/host
VOLUME ["/data"]

# The volunteer's one command (the board URL comes from GITHUB_REPO_URL in the environment).
CMD ["python", "wms_worker_processor.py"]
