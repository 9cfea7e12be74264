# One image for the five services, the console and the CLI: `docker compose up` runs each service
# from it (`aftersales serve <service>`) and the topic job (`aftersales infra topics`). The tools
# (demo, benchmarks, fault suite, message peers) are not in it; the `tools` target adds them for
# the SMS sink (`aftersales peers`). tests/integration/test_deploy_image.py builds the wheel from
# exactly what the build stage copies and checks it holds every file the services load.
#
# The dependencies come from the runtime lock only (requirements/runtime.txt, every version and
# hash pinned; the tools extra is not in it), the project's own wheel is built without them, and
# the product stage installs from those wheels alone (no index: a package missing from the lock
# fails the build).
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY aftersales aftersales
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim AS product
RUN useradd --create-home --uid 10001 aftersales
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/aftersales-*.whl && rm -rf /wheels
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
COPY requirements/tools.txt /tmp/tools.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/tools.txt && rm /tmp/tools.txt
ENV PYTHONPATH=/opt/aftersales-tools
USER aftersales
