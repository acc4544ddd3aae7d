# mitm407 as a CI service: an authenticating forward proxy configured by MITM407_* variables.
#   docker build -t mitm407 .
#   docker run --rm -p 8080:8080 -p 8081:8081 -e MITM407_SCENARIO=expired-credentials \
#              -e MITM407_CONTROL_PORT=8081 -e MITM407_CONTROL_TOKEN=ci-only-token mitm407
# (the control API listens on the container's address, so it requires a token)
# Settings: `mitm407 container --help` (docs/ci.md). The CA is /ca/mitmproxy-ca-cert.pem, also served
# by the control API at GET /ca.pem. Hop log: JSON lines on stdout.
FROM python:3.12-slim

RUN useradd --create-home --uid 10001 mitm407 && mkdir /ca && chown mitm407 /ca
COPY pyproject.toml README.md /src/
COPY addons /src/addons
COPY scenarios /src/scenarios
RUN pip install --no-cache-dir /src && rm -rf /src

USER mitm407
ENV MITM407_CA_DIR=/ca MITM407_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080 8081
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
    CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ['MITM407_PORT'])), 2)"]
ENTRYPOINT ["mitm407", "container"]
