# One image for the five services (and the CLI). `docker compose up` runs each service from it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY aftersales aftersales
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 aftersales
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER aftersales
WORKDIR /home/aftersales
ENV AFTERSALES_HTTP_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8001 8002 8003 8004 8005
ENTRYPOINT ["aftersales"]
CMD ["serve", "all"]
