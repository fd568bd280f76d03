# One image for every hotdesk service: `hotdesk run <service>` picks which.
# Multi-stage: the build stage compiles wheels, the runtime stage holds only the venv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY ledger ledger
COPY runtime runtime
COPY cli cli
COPY services services
COPY prompts prompts
RUN python -m venv /opt/hotdesk && /opt/hotdesk/bin/pip install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/hotdesk --create-home hotdesk
COPY --from=build /opt/hotdesk /opt/hotdesk
COPY --from=build /src/prompts /opt/hotdesk/share/prompts
ENV PATH=/opt/hotdesk/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOTDESK_CONFIG=/etc/hotdesk/hotdesk.toml
USER 10001:10001
WORKDIR /var/lib/hotdesk
# SIP (UDP and TCP), SIP over TLS, RTP range, admin API, provisioning, health/metrics
EXPOSE 5060/udp 5060/tcp 5061/tcp 20000-20099/udp 8080 8081 9090
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9090/readyz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["hotdesk"]
CMD ["run", "presence"]
