# The handshake server, alone or as one node of a cluster (see README, "Running a public
# server"). Untested here: this machine cannot pull base images.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY framework ./framework
COPY server ./server
COPY games ./games
RUN pip install --no-cache-dir '.[cluster]' \
    && useradd --system --home-dir /var/lib/p2p --create-home p2p \
    && mkdir -p /keys && chown p2p /keys
USER p2p

# UDP for players; TCP for the metrics endpoint (keep it on a private network).
EXPOSE 5160/udp 5170/udp 9160/tcp
ENTRYPOINT ["python", "-m", "server", "--host", "0.0.0.0", "--port", "5160", \
            "--key-file", "/keys/handshake-server.key"]
