# The agent's container image: a static binary on a distroless base.
#
#   docker build -t ghcr.io/periscope-apm/periscope:0.1.0 .
#
# The generated eBPF objects (*_bpfel.o) are committed, so the build needs
# neither clang nor kernel headers. The image runs as root (uid 0) because the
# agent reads /proc of every process, but the DaemonSet grants it only the
# capabilities it needs (deploy/README.md).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/periscope ./cmd/periscope

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/periscope /usr/local/bin/periscope
ENTRYPOINT ["/usr/local/bin/periscope"]
CMD ["run"]
