# One image for the five services, the console and the CLI: `docker compose up` runs each service
# from it (`aftersales serve <service>`) and the topic job (`aftersales infra topics`). The tools
# (demo, benchmarks, fault suite, message peers) are not in it; the `tools` target adds them for
# the SMS sink (`aftersales peers`). tests/integration/test_deploy_image.py builds the wheel from
# exactly what the build stage copies and checks it holds every file the services load.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY aftersales aftersales
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS product
RUN useradd --create-home --uid 10001 aftersales
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Directories that compose mounts volumes on must exist and belong to the service user, so
# a fresh named volume starts with that owner (complaint handling documents, SMS sink).
RUN mkdir -p /home/aftersales/.local/complaints/documents /home/aftersales/peers \
    && chown -R aftersales:aftersales /home/aftersales
USER aftersales
WORKDIR /home/aftersales
ENV AFTERSALES_HTTP_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8000 8001 8002 8003 8004 8005
ENTRYPOINT ["aftersales"]
CMD ["serve", "all"]

# The tools beside the product, for the local SMS-gateway sink in compose (never a service).
FROM product AS tools
USER root
COPY tools /opt/aftersales-tools/tools
RUN pip install --no-cache-dir "aiosmtpd==1.4.6"
ENV PYTHONPATH=/opt/aftersales-tools
USER aftersales
