# syntax=docker/dockerfile:1
# The debug image that `kubectl diag` injects, compiled from source on Debian 12
# with the packages every build uses (scripts/deps.sh --build), assembled from
# images/debug-image.files like every other build of it. scripts/image.sh builds
# it with podman (tag: <default image>-source); with Docker:
#   docker build -t ghcr.io/kdiag-c/kdiag-manager:0.1.0 .
# The CLI is built too and can be copied out of the "build" stage:
#   docker build --target build -t kdiag-build . && docker run --rm kdiag-build cat /build/stripped/kubectl-diag > kubectl-diag
# Context: the source tree without build directories (Dockerfile.dockerignore).
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/deps.sh /src/scripts/deps.sh
RUN /src/scripts/deps.sh --build && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DKDIAG_WERROR=ON \
 && cmake --build /build -j"$(nproc)" --target stripped ash \
 && /src/images/build-rootfs.sh --files /src/images/debug-image.files \
      --build-dir /build --source-dir /src --out /rootfs

FROM scratch
COPY --from=build /rootfs/ /
ENTRYPOINT ["/usr/local/bin/kdiag-manager"]
