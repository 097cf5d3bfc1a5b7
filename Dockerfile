# syntax=docker/dockerfile:1

# Build: docker build --build-arg VERSION=$(git describe --always) --build-arg COMMIT=$(git rev-parse HEAD) .
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# CGO off: the binary must run on distroless/static, which has no libc.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /dispatcher ./cmd/dispatcher

# static-debian12 carries CA certificates (deliveries are HTTPS) and tzdata, and no shell:
# health checks run `dispatcher healthcheck URL`. nonroot is uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /dispatcher /dispatcher
USER 65532:65532
# 8080: API (API_ADDR); /metrics and /healthz (METRICS_ADDR): 9090 for worker and all,
# 9091 for api (docker-compose sets 9090 for both, one process per container).
EXPOSE 8080 9090 9091
ENTRYPOINT ["/dispatcher"]
