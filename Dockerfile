# syntax=docker/dockerfile:1
# The whole project built from source on Debian 12 with the same packages as
# every other build (scripts/deps.sh). The final stage is the debug image that
# `kubectl diag` injects, assembled from images/debug-image.files; the CLI
# (kubectl-diag) is built too and can be copied out of the "build" stage:
#   docker build -t ghcr.io/kdiag-c/kdiag-manager:0.1.0 .
#   docker build --target build -t kdiag-build . && docker run --rm kdiag-build cat /build/cli/kubectl-diag > kubectl-diag
FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/deps.sh /src/scripts/deps.sh
RUN /src/scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DKDIAG_WERROR=ON \
 && cmake --build /build -j"$(nproc)" \
 && /src/images/build-rootfs.sh --files /src/images/debug-image.files \
      --build-dir /build --source-dir /src --out /rootfs

FROM scratch
COPY --from=build /rootfs/ /
ENTRYPOINT ["/usr/local/bin/kdiag-manager"]
