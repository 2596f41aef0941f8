# muninn serve: a static binary on distroless, running as nonroot (65532).
# Point it at PostgreSQL with MUNINN_DATABASE_URL (the embedded cluster needs
# PostgreSQL binaries, which this image deliberately does not ship; compose.yaml
# runs PostgreSQL beside it).
#
# The data dir /var/lib/muninn (admin token, geo data) is created in the image
# owned by nonroot, so a named volume mounted there starts owned by nonroot too
# (Docker copies the image dir's ownership into an empty named volume) and the
# first start can keep the admin token. A bind mount keeps the host dir's owner:
# chown 65532:65532 it first.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/muninn ./server/cmd/muninn
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/muninn /usr/local/bin/muninn
COPY --from=build --chown=65532:65532 /out/data /var/lib/muninn
ENV MUNINN_LISTEN=0.0.0.0:8080 MUNINN_DATA_DIR=/var/lib/muninn
VOLUME ["/var/lib/muninn"]
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/muninn"]
CMD ["serve"]
